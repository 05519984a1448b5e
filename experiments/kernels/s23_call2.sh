#!/usr/bin/env bash
# Session 23, device call 2: the committed decode kernel (st.async sends at n <= 8, early A loads,
# split x barrier in the 5-CTA form) and the sm_80 atomic decode kernel's branch-free gather: build,
# every GPU test (+ pull above n = 4); the kernel against Session 22's (s23/revert_to_s22.patch),
# alternated twice, 64:2:8 on the three Llama shapes; n = 8 with st.async (default) vs bulk copies
# (VNM_DECODE_STASYNC_N=4), twice; 64:2:5, 2:4 and 16:2:8 decode; Llama-2-7B decode at batch 1 and 16.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
bash experiments/kernels/decode_checks.sh tests
PATTERNS=64:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  s23:- s22:experiments/kernels/s23/revert_to_s22.patch
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for round in 1 2; do
  for s in 8 4; do
    VNM_DECODE_STASYNC_N=$s timeout 60 /tmp/vnmtune_s23 bench spmm --decode-layers --n 8 --patterns 64:2:8 \
      --shapes 4096x4096,11008x4096,4096x11008 --reps 20 2>&1 | grep llama |
      awk -v v="stasync_n$s" '{print v, $3, $4, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'; echo
  done
done
timeout 120 /tmp/vnmtune_s23 bench spmm --decode-layers --patterns 64:2:5,2:4,16:2:8 --reps 20 2>&1 | tee "$OUT/patterns.txt" |
  grep llama | awk '{print $2, $3, $4, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
bash experiments/kernels/decode_checks.sh llama /tmp/vnmtune_s23
echo "all done: $((SECONDS - t0)) s"
