#!/usr/bin/env bash
# Session 16, device call 1: (a) every GPU test but vnm_spmm (Session 15's untested code:
# prefill_as_24 with permuted rows, the export folds; the SS half-block layout of this session);
# (b) ab_quick: vnm_spmm test + bench of the SS kernel as it was (256 x 128/192 tiles) vs the wide
# form (128 x 256 tiles, m64n256) in 2-CTA pairs sharing x, and without pairs.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 VNM_GPU_TESTS='adamw|deit|llama|ops|mask' bash scripts/gpu-test.sh .deps 2>&1 | tail -12
echo "tests done: $((SECONDS - t0)) s"
AB="- VNM_SS_WIDE=1 VNM_SS_WIDE=1,VNM_SS_PAIR=0" bash experiments/kernels/ab_quick.sh .deps 2>&1
echo "all done: $((SECONDS - t0)) s"
