# Recipes mirror the README's commands; nothing requires `just`.
quickstart:
    cargo run --release -p hesslab-cli -- run pipelines/quickstart.toml

test:
    bash scripts/test.sh

bench:
    cargo run --release -p hesslab-cli -- bench

stages:
    cargo run --release -p hesslab-cli -- stages

# A single-node Slurm cluster on this machine (root), and the quickstart through it.
slurm-up:
    bash scripts/slurm-local.sh up

slurm-down:
    bash scripts/slurm-local.sh down

slurm-quickstart:
    cargo run --release -p hesslab-cli -- run pipelines/quickstart.toml --executor slurm --wait

# The generated reference: docs/stages.md and docs/artifacts.md (tests/docs.rs fails when
# either is stale).
docs:
    cargo run --release -q -p hesslab-cli -- stages --markdown > docs/stages.md
    cargo run --release -q -p hesslab-cli -- artifacts --markdown > docs/artifacts.md
