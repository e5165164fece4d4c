#!/usr/bin/env bash
# Run every paper pipeline and print its wall time (used to fill the README table).
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p hesslab-cli
for f in "$@"; do
  t0=$(date +%s.%N)
  if ./target/release/hesslab run "$f" > /tmp/hesslab-run.log 2>&1; then s=ok; else s=FAILED; fi
  t1=$(date +%s.%N)
  printf '%s\t%s\t%.0f s\n' "$f" "$s" "$(echo "$t1 - $t0" | bc)"
  [ "$s" = ok ] || tail -5 /tmp/hesslab-run.log
done
