#!/usr/bin/env bash
# Every artifact of the quickstart pipeline must be readable by pyarrow, Polars and DuckDB.
# They (and NumPy, which rebuilds the models) are installed from PyPI into a local venv (.venv-interop) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-interop
if ! "$VENV/bin/python" -c "import pyarrow, polars, duckdb, numpy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow polars duckdb numpy
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo run --release --quiet -p hesslab-cli -- run pipelines/quickstart.toml --out "$OUT"
# A small convnet (conv with stride and padding, both poolings) on the vendored 8×8 digits.
cat > "$OUT/convnet_digits.toml" <<'TOML'
[pipeline]
name = "convnet_digits"
seed = 3
[stages.data]
kind = "digits"
n = 300
[stages.train]
kind = "train"
dataset = "data.dataset"
layers = [
  { conv2d = { out_channels = 4, kernel_size = 3, padding = 1 } }, "tanh", { max_pool2d = 2 },
  { conv2d = { out_channels = 6, kernel_size = 2, stride = [1, 2] } }, "relu", { avg_pool2d = { kernel_size = [2, 1] } },
  "flatten", { linear = 12 }, "relu", { linear = 10 },
]
lr = 0.1
max_steps = 30
TOML
cargo run --release --quiet -p hesslab-cli -- run "$OUT/convnet_digits.toml" --out "$OUT"
# A residual convnet (projection shortcut) with a named-node graph (SiLU, concat, add): the
# `architecture` JSON's Residual and Graph containers rebuilt in NumPy below.
cat > "$OUT/resnet_digits.toml" <<'TOML'
[pipeline]
name = "resnet_digits"
seed = 5
[stages.data]
kind = "digits"
n = 300
[stages.train]
kind = "train"
dataset = "data.dataset"
layers = [
  { conv2d = { out_channels = 4, kernel_size = 3, padding = 1 } }, "relu",
  { residual = { body = [{ conv2d = { out_channels = 6, kernel_size = 3, stride = 2, padding = 1 } }, "relu",
                         { conv2d = { out_channels = 6, kernel_size = 3, padding = 1 } }],
                 shortcut = [{ conv2d = { out_channels = 6, kernel_size = 1, stride = 2, bias = false } }] } },
  "relu", { avg_pool2d = 2 }, "flatten",
  { graph = [
      { name = "h", layer = { linear = 12 } },
      { name = "a", layer = "silu" },
      { name = "g", layer = { linear = 12 }, inputs = ["input"] },
      { name = "cat", layer = "concat", inputs = ["a", "g"] },
      { name = "p", layer = { linear = 24 } },
      { name = "sum", layer = "add", inputs = ["p", "cat"] },
  ] },
  "tanh", { linear = 10 },
]
lr = 0.1
max_steps = 30
TOML
cargo run --release --quiet -p hesslab-cli -- run "$OUT/resnet_digits.toml" --out "$OUT"
# BatchNorm (on images and on vectors, affine and not) and dropout: the model's buffer rows
# (running statistics, state_dict order) rebuilt in eval mode in NumPy below.
cat > "$OUT/bn_digits.toml" <<'TOML'
[pipeline]
name = "bn_digits"
seed = 6
[stages.data]
kind = "digits"
n = 300
[stages.train]
kind = "train"
dataset = "data.dataset"
layers = [
  { conv2d = { out_channels = 4, kernel_size = 3, padding = 1, bias = false } }, "batch_norm", "relu",
  { residual = [{ conv2d = { out_channels = 4, kernel_size = 3, padding = 1 } }, { batch_norm = { affine = false } }] },
  "relu", "global_avg_pool", { dropout = 0.2 }, { linear = 16 }, "batch_norm", "tanh", { linear = 10 },
]
batch_size = 32
momentum = 0.9
lr = 0.05
max_steps = 40
TOML
cargo run --release --quiet -p hesslab-cli -- run "$OUT/bn_digits.toml" --out "$OUT"
# Every smooth activation and global average pooling (the PyTorch fixture's network).
cargo run --release --quiet -p hesslab-cli -- run tests/fixtures/activations_digits.toml --out "$OUT" --only train
# Replicates (spread, rank_spread) and an ensemble of initializations.
cat > "$OUT/seeds.toml" <<'TOML'
[pipeline]
name = "seeds"
[sweep]
data.classes = [2, 3]
train.seed = [1, 2, 3]
[stages.data]
kind = "gaussian_mixture"
dim = 4
samples = 90
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [5]
max_steps = 50
[stages.eigen]
kind = "eigenvalues"
model = "train.model"
dataset = "data.dataset"
[stages.summary]
kind = "spectrum_summary"
eigenvalues = "eigen.eigenvalues"
fixed_cutoff = 0.01
plots = false
[stages.table]
kind = "compare"
summaries = "summary.summary[*]"
eigenvalues = "eigen.eigenvalues[*]"
TOML
cargo run --release --quiet -p hesslab-cli -- run "$OUT/seeds.toml" --out "$OUT"
cargo run --release --quiet -p hesslab-cli -- run pipelines/s16_p4_init_sphere.toml --out "$OUT" --set ensemble.members=50
# Spectra along training (#15): the long step × rank table, per-snapshot densities and a log
# with the tracked sharpness, on a shortened E1 run.
cargo run --release --quiet -p hesslab-cli -- run pipelines/s18_e1_spectrum_during_training.toml --out "$OUT" \
  --set train.max_steps=300 --set train.target_loss=0 --set train.sharpness_every=50 --set spectra.k=5
# Optimizer state in the model (#39): Adam's and Muon's moments as `optimizer` rows, which the
# NumPy rebuild skips (one replicate, the gallery's Fashion-MNIST from the Debian package).
cargo run --release --quiet -p hesslab-cli -- run pipelines/optimizer_spectra.toml --out "$OUT" --set 'sweep.data.seed=[1]'
"$VENV/bin/python" scripts/interop.py "$OUT" --own
# The README tutorial's Python step, on this run's quickstart outputs.
"$VENV/bin/python" - "$OUT" <<'PY'
import pathlib, re, sys
readme = pathlib.Path("README.md").read_text()
block = re.search(r"<!-- tutorial: python -->\n```python\n(.*?)```", readme, re.S).group(1)
exec(block.replace("'out/", f"'{sys.argv[1]}/").replace('"out/', f'"{sys.argv[1]}/'))
print("ok  the README tutorial's Python step")
PY
