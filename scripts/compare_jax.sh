#!/usr/bin/env bash
# hesslab vs JAX on the same networks, in one run: `hesslab bench --only hvp --only dense`,
# then scripts/compare_jax.py (jvp-of-grad HVPs and jax.hessian, float64, CPU).
# Installs jax[cpu] into .venv-jax (not needed by anything else; not part of CI).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-jax/bin/python ] || { python3 -m venv .venv-jax && .venv-jax/bin/pip install -q "jax[cpu]"; }
cargo build --release --quiet -p hesslab-cli
./target/release/hesslab bench --only hvp --only dense
.venv-jax/bin/python scripts/compare_jax.py
