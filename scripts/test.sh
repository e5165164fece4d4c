#!/usr/bin/env bash
# The test command of the README: the whole workspace test suite (unit, property,
# integration and bad-input corpus tests), then the Arrow interop check of the quickstart
# artifacts with pyarrow, Polars and DuckDB (installed into a local venv), and the reports in a
# headless browser.
#
# As root, a single-node Slurm cluster is brought up for tests/slurm.rs (and taken down again if
# this script started it); HESSLAB_REQUIRE_SLURM=1 then makes a missing cluster a test failure
# rather than a skip. Without root those tests say they skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_datasets.sh
if [ "$(id -u)" = 0 ]; then
  if ! sinfo -h >/dev/null 2>&1; then
    trap 'bash scripts/slurm-local.sh down' EXIT
  fi
  bash scripts/slurm-local.sh up
  export HESSLAB_REQUIRE_SLURM=1
else
  echo "scripts/test.sh: not root, so no local Slurm cluster; tests/slurm.rs will skip" >&2
fi
# Build the test binaries first, once more if that fails: a CI run died with the linker killed by
# SIGBUS (ld signal 7, a host resource fault, not our code). A real compile error fails the second
# build the same way, so the retry hides nothing.
if ! cargo test --workspace --release --no-run; then
  echo "scripts/test.sh: building the tests failed; retrying once" >&2
  cargo test --workspace --release --no-run
fi
cargo test --workspace --release
bash scripts/interop.sh
# report.html in headless Chromium (installed from Debian as root): every figure loads, no error.
bash scripts/browser_check.sh
