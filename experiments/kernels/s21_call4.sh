#!/usr/bin/env bash
# Session 21, device call 4 (final build): every GPU test; vnm_spmm with partial sums pulled above
# n = 4 (VNM_DECODE_PUSH_N=4: the pull path, no longer a default); --decode-layers 64:2:8 with the
# defaults; on the shapes with several row tiles per cluster, the defaults (v0) against v4 (warp
# partial sums 64 floats per token apart, as in Session 20) and v5 (Session 20's count of row tiles
# and receive buffers; s21/v4_wld64.patch, s21/v5_oldR.patch), alternated twice; Llama-2-7B decode
# at batch 1 and 16. (Rewritten in Session 22 over decode_checks.sh, same steps.)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
bash experiments/kernels/decode_checks.sh tests
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,16:2:8 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt" | awk '{print $3, $4, $5, "dense", $8, "ours", $9, $11 "x"}'
bash experiments/kernels/decode_variants.sh v0_new:- v4_wld64:experiments/kernels/s21/v4_wld64.patch \
  v5_oldR:experiments/kernels/s21/v5_oldR.patch
bash experiments/kernels/decode_checks.sh llama /tmp/vnmtune_v0_new
echo "all done: $((SECONDS - t0)) s"
