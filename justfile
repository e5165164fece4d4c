# Recipes mirror the README's commands; nothing requires `just`.
quickstart:
    cargo run --release -p hesslab-cli -- run pipelines/quickstart.toml

test:
    bash scripts/test.sh

bench:
    cargo run --release -p hesslab-cli -- bench

stages:
    cargo run --release -p hesslab-cli -- stages
