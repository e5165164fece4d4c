#!/usr/bin/env bash
# Run pipelines with two hesslab binaries and compare every Parquet output they write.
#
#   scripts/compare_releases.sh OLD_BINARY NEW_BINARY [--full] [pipelines/X.toml ...]
#
# Default: every pipeline in pipelines/, each at the reduced size the test suite runs it at
# (the --set lists below; E2's is smaller than the suite's ignored full run; pipelines without
# one run whole); --full runs them as written (hours).
# A file is "identical" when its bytes are; otherwise scripts/compare_parquet.py compares it
# column by column: same schema and metadata keys, integer/string columns equal, training
# columns (loss, accuracy, …) identical, other floating columns within 1e-12 relative to the
# column's largest magnitude. Exit 1 naming every file that is missing or differs beyond that.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,11p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2"); shift 2
FULL=0
if [ "${1:-}" = --full ]; then FULL=1; shift; fi
PIPES=("$@")
[ ${#PIPES[@]} -gt 0 ] || PIPES=(pipelines/*.toml)

reduced() {
  [ "$FULL" = 1 ] && return
  case "$(basename "$1" .toml)" in
    s18_e4_small_vs_large_batch) echo 'sweep.train.seed=[1, 2, 3]|train.max_steps=200|eigen.k=10|eigen.max_samples=250|eigen.tol=1e-6|bottom.k=5|bottom.max_samples=250|density.max_samples=250|density.probes=2|density.steps=30' ;;
    s18_e6_lb_then_sb_interpolation) echo 'sweep.phase1.seed=[1, 2]|data.samples_per_class=60|data.test_images=""|data.test_labels=""|phase1.batch_size=200|phase1.max_steps=150|phase2.max_steps=150|line.points=16|top_lb.k=5|top_lb.max_samples=250|top_lb.tol=1e-4|top_sb.k=5|top_sb.max_samples=250|top_sb.tol=1e-4' ;;
    s18_e3_width_sweep) echo 'sweep.train.hidden=[[30], [70]]|sweep.train.seed=[1, 2, 3]|top.k=20|bottom.k=5|bottom.tol=1e-4' ;;
    s16_p1_width_heatmaps) echo 'sweep.train.hidden=[[10, 10], [30, 30]]|sweep.train.seed=[1, 2, 3]|data.samples_per_class=50|train.max_steps=1000' ;;
    s16_p3_two_blobs_widths) echo 'sweep.train.seed=[1]' ;;
    s18_e2_outliers_vs_classes) echo 'sweep.data.classes=[2, 10]|sweep.data.cov_multiplier=[1.0]|sweep.train.seed=[1]' ;;
    s18_bulk_vs_data) echo 'sweep.data.classes=[2, 5]|sweep.train.seed=[1, 2, 3]|data.samples=1250' ;;
    s16_p4_init_sphere) echo 'ensemble.members=400' ;;
    s18_e5_negative_tail) echo 'sweep.train.seed=[1]|train.max_steps=5000|top.k=5|bottom.k=5|bottom.tol=1e-4' ;;
    convnet_quickstart) echo 'train.max_steps=60|top.k=8|top.max_samples=200|negative.k=3|negative.max_samples=200' ;;
    edge_of_stability) echo 'sweep.train.lr=[0.08]|data.samples_per_class=110|train.max_steps=600' ;;
    bn_ablation) echo 'data.samples_per_class=30|train.max_steps=60|top.k=5|top.max_samples=100|top.tol=1e-6' ;;
    resnet_fashion) echo 'data.samples_per_class=30|train.max_steps=60|top.k=5|top.max_samples=100|density.probes=2|density.steps=20|density.max_samples=100|stem_top.max_samples=100|classifier_top.max_samples=100|split.k=4|split.max_samples=60|small.max_steps=60|small_dense.max_samples=40|small_lanczos.max_samples=40|small_lanczos.k=8' ;;
    s16_p2_real_vs_random_inputs) echo 'sweep.init.seed=[1, 2]|data.samples_per_class=30|train.max_steps=200|top_init.max_samples=100|top_end.max_samples=100|density_init.steps=30|density_end.steps=30' ;;
    gpt_char) echo 'data.context=8|data.samples=200|train.layers=[{ transformer = { vocab_size = 76, n_layer = 1, n_embd = 8, n_head = 2, block_size = 8 } }, "last_position"]|train.max_steps=40|train.batch_size=50|top.k=4|top.max_samples=60|density.probes=2|density.steps=10|density.max_samples=60|split.k=3|split.max_samples=60' ;;
    grokking) echo 'data.p=7|train.layers=[{ transformer = { vocab_size = 9, n_layer = 1, n_embd = 16, n_head = 2, block_size = 4 } }, "last_position"]|train.max_steps=300|train.snapshot_every=100|spectra.k=4' ;;
    slq_validation) echo 'sweep.train.seed=[1]|data.samples_per_class=20|train.max_steps=100' ;;
    adaptive_eos) echo 'sweep.train.seed=[1]|data.samples_per_class=30|train.max_steps=200' ;;
  esac
}

VENV=.venv-interop
if ! "$VENV/bin/python" -c "import pyarrow, numpy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow polars duckdb numpy
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
status=0
for p in "${PIPES[@]}"; do
  name=$(basename "$p" .toml)
  sets=()
  IFS='|' read -ra parts <<< "$(reduced "$p")"
  for s in "${parts[@]}"; do [ -n "$s" ] && sets+=(--set "$s"); done
  for side in old new; do
    bin=$OLD; [ $side = new ] && bin=$NEW
    t0=$(date +%s.%N)
    if ! "$bin" run "$p" --out "$WORK/$side/$name" "${sets[@]}" > "$WORK/$side-$name.log" 2>&1; then
      echo "$name: the $side binary failed:"; tail -5 "$WORK/$side-$name.log"; status=1; continue 2
    fi
    printf -v "t_$side" '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)"
  done
  if ! "$VENV/bin/python" scripts/compare_parquet.py "$WORK/old/$name" "$WORK/new/$name" --label "$name (old ${t_old} s, new ${t_new} s)"; then
    status=1
  fi
done
exit $status
