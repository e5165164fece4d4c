#!/usr/bin/env bash
# Copy the figures of finished paper runs into docs/figures/ for docs/figures.md.
#   bash scripts/gallery.sh [OUT_ROOT ...]      (default: out)
# Each figure is looked up as OUT_ROOT/<pipeline>/<path> in the roots in order; figures of
# pipelines not run yet are listed as missing and left as they are. Nothing is recomputed:
# the figures are the ones the stages drew (or `hesslab plot` redrew) from the Parquet files.
set -euo pipefail
cd "$(dirname "$0")/.."
roots=("$@")
[ ${#roots[@]} -eq 0 ] && roots=(out)
dest=docs/figures
mkdir -p "$dest"
# name | pipeline | path under the pipeline's output directory
figures='
s18_fig1_init|s18_e1_init_vs_end|train.max_steps=0__train.seed=1/summary/spectrum.png
s18_fig1_end|s18_e1_init_vs_end|train.max_steps=3000__train.seed=1/summary/spectrum.png
s18_fig2|s18_e2_outliers_vs_classes|all/table/top_overlay.png
s18_fig3|s18_e3_width_sweep|all/table/top_overlay.png
s18_fig5_slq|s18_e3_width_sweep|all/negative/negative_slq_overlay.png
s18_fig5_lanczos|s18_e3_width_sweep|all/negative/negative_overlay.png
s18_fig4|s18_e4_small_vs_large_batch|all/table/top_overlay.png
s18_fig6|s18_e4_small_vs_large_batch|all/negative/negative_overlay.png
s18_fig7_loss|s18_e6_lb_then_sb_interpolation|phase1.seed=1/curves/loss.png
s18_fig7_accuracy|s18_e6_lb_then_sb_interpolation|phase1.seed=1/curves/accuracy.png
s18_fig8_loss|s18_e6_lb_then_sb_interpolation|phase1.seed=1/line/interpolation_loss.png
s18_fig8_accuracy|s18_e6_lb_then_sb_interpolation|phase1.seed=1/line/interpolation_accuracy.png
s16_fig1_histogram|quickstart|main/summary/histogram.png
s16_heatmap|quickstart|main/heatmap/heatmap.png
s16_p2_real_end|s16_p2_real_vs_random_inputs|data.random_inputs=false__init.seed=1/plot_end/density.png
s16_p2_random_end|s16_p2_real_vs_random_inputs|data.random_inputs=true__init.seed=1/plot_end/density.png
s16_p4|s16_p4_init_sphere|main/ensemble/top_histogram.png
resnet_top|resnet_fashion|main/summary/top.png
resnet_density|resnet_fashion|main/density/density.png
resnet_split|resnet_fashion|main/split/decomposition.png
bn_ablation|bn_ablation|all/table/top_overlay.png
adaptive_eos|adaptive_eos|train.lr=0.001__train.seed=1/curves/preconditioned_sharpness.png
'
missing=0
while IFS='|' read -r name pipeline path; do
  [ -z "$name" ] && continue
  found=""
  for r in "${roots[@]}"; do
    if [ -f "$r/$pipeline/$path" ]; then found="$r/$pipeline/$path"; break; fi
  done
  if [ -n "$found" ]; then
    cp "$found" "$dest/$name.png"
    echo "$name.png <- $found"
  else
    echo "missing: $pipeline/$path (run pipelines/$pipeline.toml)" >&2
    missing=$((missing + 1))
  fi
done <<< "$figures"
echo "$missing figure(s) missing"
