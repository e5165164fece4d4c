"""pipelines/optimizer_spectra.toml side by side: per optimizer the steps to the target loss,
the final training loss and test accuracy, the top three Hessian eigenvalues and the outlier
counts (elbow, gap); per line between two solutions the barrier max over α ∈ [0, 1] of
L(w(α)) − ((1 − α)L(w_a) + αL(w_b)). Each as mean ± std over the replicates (data subsets).
Reads only the Parquet outputs (pyarrow).

    python scripts/optimizer_spectra.py OUT/optimizer_spectra
"""
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

OPTIMIZERS = ["sgd", "adam", "adamw", "muon"]


def ms(xs):
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.4g} ± {sd:.2g}"


root = Path(sys.argv[1])
members = sorted(p for p in root.iterdir() if (p / "sgd").is_dir())
rows = defaultdict(lambda: defaultdict(list))
lines = defaultdict(list)
for m in members:
    for o in OPTIMIZERS:
        log = pq.read_table(m / o / "log.parquet").to_pydict()
        top = pq.read_table(m / f"top_{o}" / "eigenvalues.parquet").to_pydict()["eigenvalue"]
        s = pq.read_table(m / f"summary_{o}" / "summary.parquet").to_pydict()
        r = rows[o]
        r["steps"].append(log["step"][-1])
        r["train loss"].append(log["train_loss"][-1])
        r["test accuracy"].append(log["test_accuracy"][-1])
        for i in range(3):
            r[f"λ{i + 1}"].append(top[i])
        r["outliers (elbow)"].append(s["outliers_heuristic"][0])
        r["outliers (gap)"].append(s["outliers_gap"][0])
    for line in sorted(m.glob("line_*/curve.parquet")):
        c = pq.read_table(line).to_pydict()
        a, loss = c["alpha"], c["train_loss"]
        la, lb = loss[a.index(0.0)], loss[a.index(1.0)]
        barrier = max(l - ((1 - x) * la + x * lb) for x, l in zip(a, loss) if 0.0 <= x <= 1.0)
        lines[line.parent.name].append(barrier)
print(f"{len(members)} replicates: {', '.join(m.name for m in members)}\n")
keys = list(rows["sgd"].keys())
print("| quantity | " + " | ".join(OPTIMIZERS) + " |")
print("|---" * (len(OPTIMIZERS) + 1) + "|")
for k in keys:
    print(f"| {k} | " + " | ".join(ms(rows[o][k]) for o in OPTIMIZERS) + " |")
print("\n| line | barrier on [0, 1] |\n|---|---|")
for name, b in lines.items():
    print(f"| {name.removeprefix('line_').replace('_', ' – ')} | {ms(b)} |")
