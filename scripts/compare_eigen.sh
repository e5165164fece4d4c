#!/usr/bin/env bash
# Dense symmetric eigenvalues: hesslab's two-stage solver (and faer's one-stage) against
# torch.linalg.eigvalsh (MKL) and numpy/scipy (OpenBLAS), on the same matrices, at 1 and 2
# threads, in one run. Not CI: installs torch and scipy into .venv-eigen (about 3 GB).
#   scripts/compare_eigen.sh                # n = 4270 and 11274, eigenvalues only
#   SIZES=4270 VECTORS=1 scripts/compare_eigen.sh
#   THREADS=2 scripts/compare_eigen.sh       # only 2 threads (default: 1 and 2)
# Run it on a quiet machine; every line is one measurement, compare within a thread count.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-eigen}"  # any venv with torch, scipy and numpy (e.g. VENV=.venv-torch)
"$VENV/bin/python" -c "import torch, scipy, numpy" 2>/dev/null || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch scipy numpy; }
cargo build --release --quiet -p hesslab-cli
sizes="${SIZES:-4270 11274}"
vec_flag=()
py_flag=()
if [ -n "${VECTORS:-}" ]; then vec_flag=(--eigen-vectors); py_flag=(--vectors); fi
for t in ${THREADS:-1 2}; do
  RAYON_NUM_THREADS=$t ./target/release/hesslab bench --only eigen --eigen-sizes "${sizes// /,}" "${vec_flag[@]}"
  OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t "$VENV/bin/python" scripts/compare_eigen.py $sizes "${py_flag[@]}"
done
