#!/usr/bin/env bash
# The test command of the README: the whole workspace test suite (unit, property,
# integration and bad-input corpus tests), then the Arrow interop check of the quickstart
# artifacts with pyarrow, Polars and DuckDB (installed into a local venv).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_datasets.sh
cargo test --workspace --release
bash scripts/interop.sh
