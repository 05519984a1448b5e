#!/usr/bin/env bash
# Session 15, device call 4: the gather kernel staging 4 rows per CTA (more loads in flight), the
# vnm_spmm GPU test and the prefill bench with M = 5, 6 and permuted 64:2:8.
set -uo pipefail
cd "$(dirname "$0")/../.."
SHAPES=${SHAPES:-4096x4096,4096x11008,768x3072,1536x384} AB="-" BENCH_ARGS="--patterns 2:4,64:2:5,64:2:6,64:2:8,64:2:8p" \
  bash experiments/kernels/ab_quick.sh .deps 2>&1 | tee "${OUT:-/tmp/out}/gather_summary.txt"
