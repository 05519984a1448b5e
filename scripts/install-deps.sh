#!/usr/bin/env bash
# Installs what vnmtune needs on a fresh Debian 12 machine (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq build-essential cmake ninja-build pkg-config zlib1g-dev libhdf5-dev libyaml-dev \
  libcjson-dev libcriterion-dev libopenblas-dev dataset-fashion-mnist openmpi-bin libopenmpi-dev >/dev/null
echo "vnmtune dependencies installed"
