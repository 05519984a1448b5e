#!/usr/bin/env bash
# Session 23, device call 5: why st.async lost at n = 16 on 11008x4096 (16.9 vs 14.6 us, call 1):
# without the part buffer a CTA needs less shared memory, which may change the row tiles per cluster
# R. The committed kernel at n = 16, 11008x4096, bulk copies (default) vs st.async
# (VNM_DECODE_STASYNC_N=16), each with R from occupancy and R forced to 3 and 4; twice.
set -uo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -1
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for round in 1 2; do
  for ab in VNM_AB=1 VNM_DECODE_TILES=3 VNM_DECODE_TILES=4 VNM_DECODE_STASYNC_N=16 VNM_DECODE_STASYNC_N=16,VNM_DECODE_TILES=3 \
    VNM_DECODE_STASYNC_N=16,VNM_DECODE_TILES=4; do
    env ${ab//,/ } timeout 60 build-gpu/vnmtune bench spmm --decode-layers --n 16 --patterns 64:2:8 \
      --shapes 11008x4096 --reps 20 2>&1 | grep llama | awk -v v="$ab" '{print v, $3, $4, "dense", $8, "ours", $9, $11 "x"}'
  done
done
echo "all done: $((SECONDS - t0)) s"
