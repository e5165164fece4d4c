#!/usr/bin/env bash
# Regenerate (or with --check, compare) the PyTorch fixtures the tests read: torch, NumPy and
# pyarrow are installed from PyPI into .venv-torch on first use (a large download; never a
# dependency of hesslab or of CI — the committed JSON is).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-torch
if ! "$VENV/bin/python" -c "import torch, numpy, pyarrow, scipy, safetensors" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch numpy pyarrow scipy safetensors
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
"$VENV/bin/python" scripts/gpt_fixtures.py "$@"
# Networks trained in torch for `import_model` (tests/import_model.rs), and the round trip of
# the resnet_digits model above through torch.
"$VENV/bin/python" scripts/import_fixtures.py "$@"
if [ "${1:-}" != "--check" ]; then
  cargo run --release --quiet -p hesslab-cli -- run tests/fixtures/resnet_digits.toml --out "$OUT" > /dev/null
  "$VENV/bin/python" scripts/import_fixtures.py --roundtrip "$OUT"
fi
# The README's "Bring your own model", live: its Python recipe, then its pipeline.
RECIPE=$(mktemp -d)
python3 - "$RECIPE" <<'PY'
import os, re, sys
text = open("README.md").read()
py = re.search(r"<!-- export recipe[^\n]*\n```python\n(.*?)```", text, re.S).group(1)
toml = re.search(r"<!-- fragment: files from export_torch.py -->\n```toml\n(.*?)```", text, re.S).group(1)
py = py.replace('sys.path.insert(0, "scripts")', f'sys.path.insert(0, "{os.getcwd()}/scripts")')
open(sys.argv[1] + "/recipe.py", "w").write(py)
open(sys.argv[1] + "/mine.toml", "w").write(toml)
PY
ROOT=$PWD
(cd "$RECIPE" && "$ROOT/$VENV/bin/python" recipe.py && "$ROOT/target/release/hesslab" run mine.toml > /dev/null)
test -s "$RECIPE/out/mine/main/density/density.png"
echo "README recipe: ran, $RECIPE/out/mine/main/density/density.png drawn"
rm -rf "$RECIPE"
