#!/usr/bin/env bash
# Builds vnmtune and runs every test (GPU tests skip themselves without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
ctest --test-dir build --output-on-failure -j "$(nproc)"
