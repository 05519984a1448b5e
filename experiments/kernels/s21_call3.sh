#!/usr/bin/env bash
# Session 21, device call 3: which change of call 2 slowed n <= 4 on the shapes with several row
# tiles per cluster (11008×4096: 11.1 -> 11.8 µs at n = 1). Variants of the decode kernel (s21/*.cu,
# not kept: v0 = kernels/vnm_spmm_decode.cu of call 2, decode_s20.cu = that file at commit aecf585;
# v0 as call 2, v1 without the pairs loaded once, v2 with the scalar warp sum, v3 with two receive
# buffers whenever partial sums are pushed, as in Session 20; decode_s20.cu the Session 20 kernel),
# each built into build-gpu in turn (only the kernel recompiles) and kept as its own vnmtune binary;
# --decode-layers on 11008x4096,4096x11008 alternated twice.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
bash experiments/kernels/decode_variants.sh v0_new:- v1_nopairs:experiments/kernels/s21/v1_nopairs.cu \
  v2_scalar:experiments/kernels/s21/v2_scalar.cu v3_recv2:experiments/kernels/s21/v3_recv2.cu \
  decode_s20:experiments/kernels/s21/decode_s20.cu
echo "all done: $((SECONDS - t0)) s"
