#!/usr/bin/env bash
# Time two hesslab binaries alternately on the same `hesslab bench` workloads, so a change's
# speed is a ratio measured in one run on one (noisy) machine.
#
#   scripts/bench_alternate.sh OLD_BINARY NEW_BINARY ROUNDS [bench arguments, e.g. --only conv]
#
# Prints every run's timing lines and, per line label, the median of each binary and new/old.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,7p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD=$1; NEW=$2; ROUNDS=$3; shift 3
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for r in $(seq "$ROUNDS"); do
  for side in old new; do
    bin=$OLD; [ $side = new ] && bin=$NEW
    "$bin" bench "$@" 2>&1 | sed "s/^/$side\t/" | tee -a "$LOG"
  done
done
# Median of every "NAME X ms" figure per workload (an unindented header line) and side.
python3 - "$LOG" <<'PY'
import re, statistics, sys
from collections import defaultdict
t = defaultdict(lambda: defaultdict(list))
work = {}
for line in open(sys.argv[1]):
    side, text = line.rstrip("\n").split("\t", 1)
    if text and not text.startswith(" "):
        work[side] = text.split(":")[0].split(" (")[0][:24]
        continue
    label = re.split(r"\s{2,}|[0-9]", text.strip())[0].strip()[:28]
    for name, ms in re.findall(r"([A-Za-z][\w /-]*?) ([0-9.]+) ms", text):
        t[f"{work.get(side, '')} | {label} | {name.strip()}"][side].append(float(ms))
print(f"\n{'figure':70s} {'old ms':>9s} {'new ms':>9s} {'new/old':>8s}")
for k, v in t.items():
    if v["old"] and v["new"]:
        o, n = statistics.median(v["old"]), statistics.median(v["new"])
        print(f"{k[:70]:70s} {o:9.2f} {n:9.2f} {n / o:8.3f}")
PY
