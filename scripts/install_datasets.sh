#!/usr/bin/env bash
# System datasets the tests and pipelines read: Fashion-MNIST's gzip IDX files from the Debian
# package `dataset-fashion-mnist` (into /usr/share/datasets/fashion-mnist/). Installed when
# missing; needs root (CI runs as root) or sudo.
set -euo pipefail
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq dataset-fashion-mnist
test -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
