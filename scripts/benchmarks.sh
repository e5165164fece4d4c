#!/usr/bin/env bash
# Every number in docs/benchmarks.md, in one run on one machine: hesslab's own ratios
# (`hesslab bench`), then hesslab beside PyTorch (ResNet), JAX (MLPs, E4 convnet) and MKL/OpenBLAS
# (dense eigenvalues). Writes one log per part under DIR (default bench-logs/) plus the commit and
# the machine. Not CI (installs torch, scipy and jax into their own venvs; about 45 minutes on
# 2 cores). Run it on a quiet machine: compare numbers within one log, never across runs.
#   scripts/benchmarks.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-bench-logs}"
mkdir -p "$dir"
cargo build --release --quiet -p hesslab-cli
{ git rev-parse HEAD; lscpu | grep -E 'Model name|^CPU\(s\)'; grep MemTotal /proc/meminfo; } > "$dir/machine.txt"
./target/release/hesslab bench --only hvp --only dense --only lanczos --only slq --only train \
  --only sharpness --only elementwise --only conv --only memory --only dense20k 2>&1 | tee "$dir/hesslab_bench.txt"
bash scripts/compare_torch.sh 2>&1 | tee "$dir/torch_resnet.txt"
bash scripts/compare_jax.sh 2>&1 | tee "$dir/jax.txt"
THREADS="${THREADS:-2}" VENV="${VENV:-.venv-torch}" bash scripts/compare_eigen.sh 2>&1 | tee "$dir/eigen.txt"
