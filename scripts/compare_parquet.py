"""Compare every Parquet file under two output directories (see compare_releases.sh)."""
import argparse
import os
import sys

import numpy as np
import pyarrow.parquet as pq

# Columns of training logs and evaluations: the arithmetic is the same, so they must be equal.
EXACT = {"loss", "accuracy", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "step", "lr", "grad_norm"}
# Wall-clock columns and metadata differ between any two runs.
TIMING = {"seconds", "wall_seconds", "elapsed_seconds", "time_seconds"}
REL = 1e-12


def files(root):
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names if n.endswith(".parquet")]
    return sorted(out)


def compare(a, b):
    """None if equal within the rules, else a reason; and the largest relative difference."""
    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.schema.names != tb.schema.names or [str(t) for t in ta.schema.types] != [str(t) for t in tb.schema.types]:
        return f"schemas differ: {ta.schema} vs {tb.schema}", 0.0
    ma, mb = ta.schema.metadata or {}, tb.schema.metadata or {}
    if set(ma) != set(mb):
        return f"metadata keys differ: {sorted(set(ma) ^ set(mb))}", 0.0
    if ta.num_rows != tb.num_rows:
        return f"{ta.num_rows} rows vs {tb.num_rows}", 0.0
    worst = 0.0
    for name in ta.schema.names:
        if name in TIMING:
            continue
        ca, cb = ta.column(name).to_numpy(zero_copy_only=False), tb.column(name).to_numpy(zero_copy_only=False)
        if ca.dtype.kind == "f" and name not in EXACT:
            both_nan = np.isnan(ca) & np.isnan(cb)
            scale = np.nanmax(np.abs(ca)) if np.isfinite(ca).any() else 1.0
            d = np.where(both_nan, 0.0, np.abs(ca - cb))
            rel = float(np.nanmax(d) / max(scale, 1e-300)) if len(d) else 0.0
            if np.isnan(rel) or rel > REL:
                return f"column `{name}` differs by {rel:.3g} relative", rel
            worst = max(worst, rel)
        elif ca.dtype.kind == "f":
            if not np.array_equal(ca, cb, equal_nan=True):
                return f"column `{name}` is not identical (training arithmetic)", 0.0
        elif ca.dtype == object:
            if list(ca) != list(cb):
                return f"column `{name}` differs", 0.0
        elif not np.array_equal(ca, cb):
            return f"column `{name}` differs", 0.0
    return None, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    old, new = files(a.old), files(a.new)
    bad, same, close, worst = [], 0, 0, 0.0
    for f in old:
        if f not in new:
            bad.append(f"{f}: missing in the new output")
            continue
        pa, pb = os.path.join(a.old, f), os.path.join(a.new, f)
        if open(pa, "rb").read() == open(pb, "rb").read():
            same += 1
            continue
        why, rel = compare(pa, pb)
        if why:
            bad.append(f"{f}: {why}")
        else:
            close += 1
            worst = max(worst, rel)
    bad += [f"{f}: only in the new output" for f in new if f not in old]
    line = f"{a.label}: {len(old)} files, {same} byte-identical, {close} within {REL:g} (largest {worst:.2g})"
    print(line + (f", {len(bad)} DIFFER" if bad else ""))
    for b in bad:
        print("  " + b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
