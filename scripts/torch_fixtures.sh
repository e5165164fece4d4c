#!/usr/bin/env bash
# Regenerate (or with --check, compare) the PyTorch fixtures the tests read: torch, NumPy and
# pyarrow are installed from PyPI into .venv-torch on first use (a large download; never a
# dependency of hesslab or of CI — the committed JSON is).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-torch
if ! "$VENV/bin/python" -c "import torch, numpy, pyarrow" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch numpy pyarrow
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for name in resnet_digits activations_digits; do
  cargo run --release --quiet -p hesslab-cli -- run "tests/fixtures/$name.toml" --out "$OUT" > /dev/null
  "$VENV/bin/python" scripts/torch_fixtures.py "$OUT" "$name" "$@"
done
# Self-contained fixtures (no hesslab run needed): BatchNorm in both modes, torch.optim.
"$VENV/bin/python" scripts/torch_batch_norm.py "$@"
"$VENV/bin/python" scripts/torch_optim.py "$@"
