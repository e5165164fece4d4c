#!/usr/bin/env bash
# Every artifact of the quickstart pipeline must be readable by pyarrow, Polars and DuckDB.
# The three are installed from PyPI into a local venv (.venv-interop) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-interop
if ! "$VENV/bin/python" -c "import pyarrow, polars, duckdb" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow polars duckdb
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo run --release --quiet -p hesslab-cli -- run pipelines/quickstart.toml --out "$OUT"
"$VENV/bin/python" scripts/interop.py "$OUT"
