#!/usr/bin/env bash
# Session 17, device call 7 (the last of the budget, so lean): the hybrid decode reduction of call 6
# (push for n <= 4, pull above; call 6 was refused). vnm_spmm GPU test with R = 3 forced (every
# row-tile path), then bench spmm --decode-layers (64:2:8, 2:4), and 64:2:8 with push for every n
# (VNM_DECODE_PUSH_N=16) and pull for every n (=0).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh .deps >/dev/null 2>&1; echo "build rc $? ($((SECONDS - t0)) s)"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
VNM_DECODE_TILES=3 timeout 60 build-gpu/gpu_test_vnm_spmm >"$OUT/test_tiles_3.txt" 2>&1
echo "vnm_spmm VNM_DECODE_TILES=3: rc $? $(grep Synthesis "$OUT/test_tiles_3.txt") ($((SECONDS - t0)) s)"
for ab in - VNM_DECODE_PUSH_N=16 VNM_DECODE_PUSH_N=0; do
  pat=64:2:8; [ "$ab" = - ] && pat=64:2:8,2:4
  echo "### decode-layers $ab" | tee -a "$OUT/decode_layers.txt"
  env ${ab/#-/VNM_AB=1} timeout 60 build-gpu/vnmtune bench spmm --decode-layers --patterns $pat --reps 20 2>&1 |
    tee -a "$OUT/decode_layers.txt" | grep llama | awk '{print $2, $3, $4, $7, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
  echo "($((SECONDS - t0)) s)"
done
