#!/usr/bin/env bash
# hesslab vs JAX on the same networks, in one run, for tanh and relu: `hesslab bench --only hvp
# --only dense --only train --activation A`, then scripts/compare_jax.py A (jvp-of-grad HVPs and jax.hessian, float64, CPU).
# Then the E4 convnet: `hesslab bench --only conv` and scripts/compare_jax_convnet.py.
# Installs jax[cpu] into .venv-jax (not needed by anything else; not part of CI).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-jax/bin/python ] || { python3 -m venv .venv-jax && .venv-jax/bin/pip install -q "jax[cpu]"; }
cargo build --release --quiet -p hesslab-cli
for act in tanh relu; do
  ./target/release/hesslab bench --only hvp --only dense --only train --activation "$act"
  .venv-jax/bin/python scripts/compare_jax.py "$act"
done
./target/release/hesslab bench --only conv
.venv-jax/bin/python scripts/compare_jax_convnet.py
