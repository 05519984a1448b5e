#!/usr/bin/env bash
# Session 22, device call 3 (final build): the decode kernel with LDS staged gathers in <4, DC_KC>
# only and the column pairs loaded right before each gather in <4, DC_KC_WIDE> (per token half in
# <1, DC_KC_WIDE>): every GPU test; vnm_spmm with pull above n = 4; --decode-layers 64:2:8, 16:2:8,
# 64:2:5, 2:4; this kernel against Session 21's (s22/revert_to_s21.patch) alternated twice on all
# three shapes; Llama-2-7B decode at batch 1 and 16.
# (The GPU tests and Llama steps rewritten after the run over decode_checks.sh, same steps.)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
bash experiments/kernels/decode_checks.sh tests
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 150 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,16:2:8,64:2:5,2:4 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt" | awk '{print $3, $4, $5, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'; echo
PATTERNS=64:2:8,16:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  s22:- s21:experiments/kernels/s22/revert_to_s21.patch
bash experiments/kernels/decode_checks.sh llama /tmp/vnmtune_s22
echo "all done: $((SECONDS - t0)) s"
