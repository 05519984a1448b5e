#!/usr/bin/env bash
# Session 19, device call 1: the mma.sp.sync rate probe (probe_mmasp.cu), then the decode checks:
# the default GPU test and the wide decode form (VNM_DECODE_KC=12) A/B (decode_ab.sh), then the
# s18/next patch (decode_bisect.sh). Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o /tmp/probe_mmasp experiments/kernels/probe_mmasp.cu &&
  cuobjdump -sass /tmp/probe_mmasp | grep -oE "HMMA[.A-Z0-9]*|LDSM[.A-Z0-9]*" | sort | uniq -c &&
  timeout 60 /tmp/probe_mmasp | tee "$OUT/probe_mmasp.txt"
TEST_AB=VNM_DECODE_KC=12 AB="- VNM_DECODE_KC=12" PATTERNS=64:2:8 bash experiments/kernels/decode_ab.sh
PATCHES="experiments/kernels/s18/next/*.patch" TEST=all NS="1 4 16" bash experiments/kernels/decode_bisect.sh
