"""The adaptive-EoS claim from pipelines/adaptive_eos.toml's outputs: per member, the ratio of
the preconditioned sharpness to its threshold (2 + 2β₁)/((1 − β₁)η) over the last half of
training (mean, min, max), and the plain sharpness over 2/η; then mean ± std over the seeds per
step size. Reads only the Parquet logs (pyarrow).

    python scripts/adaptive_eos.py OUT/adaptive_eos
"""
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

root = Path(sys.argv[1])
by_lr = defaultdict(list)
for log in sorted(root.glob("*/train/log.parquet")):
    t = pq.read_table(log)
    meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
    thr, lr = float(meta["preconditioned_threshold"]), float(meta["lr"])
    d = t.to_pydict()
    half = d["step"][-1] / 2
    pre = [p / thr for s, p in zip(d["step"], d["preconditioned_sharpness"]) if p is not None and s >= half]
    plain = [p * lr / 2 for s, p in zip(d["step"], d["sharpness"]) if p is not None and s >= half]
    member = log.parent.parent.name
    by_lr[lr].append(statistics.mean(pre))
    print(f"{member:32} P⁻¹H / (38/η): mean {statistics.mean(pre):.3f} [{min(pre):.3f}, {max(pre):.3f}]; H / (2/η): max {max(plain):.3f}; final loss {d['train_loss'][-1]:.4f}")
for lr, r in sorted(by_lr.items()):
    sd = statistics.stdev(r) if len(r) > 1 else 0.0
    print(f"η = {lr}: preconditioned sharpness / threshold over the last half = {statistics.mean(r):.3f} ± {sd:.3f} ({len(r)} seeds)")
