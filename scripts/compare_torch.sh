#!/usr/bin/env bash
# hesslab vs PyTorch on the ResNet of pipelines/resnet_fashion.toml, in one run and on the same
# threads: `hesslab bench --only resnet` (gradient, one-off and operator HVPs in both BatchNorm
# modes), then scripts/compare_torch.py (double backward and torch.func). torch goes into
# .venv-torch (as for scripts/torch_fixtures.sh); not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-torch
if ! "$VENV/bin/python" -c "import torch, numpy, pyarrow" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch numpy pyarrow
fi
cargo build --release --quiet -p hesslab-cli
./target/release/hesslab bench --only resnet "$@" | tee /dev/stderr | "$VENV/bin/python" scripts/compare_torch.py
