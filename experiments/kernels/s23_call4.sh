#!/usr/bin/env bash
# Session 23, device call 4: n = 16 decode (64:2:8, three Llama shapes) under the kernel's
# environment switches, the committed kernel (build-gpu from call 3), twice: defaults, split 16,
# x rows padded by 8 / 32 channels, 2 / 4 row tiles per cluster.
set -uo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
[ -x build-gpu/vnmtune ] || SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for round in 1 2; do
  for ab in VNM_AB=1 VNM_DECODE_SPLIT=16 VNM_DECODE_XPAD=1 VNM_DECODE_XPAD=4 VNM_DECODE_TILES=2 VNM_DECODE_TILES=4; do
    env $ab timeout 60 build-gpu/vnmtune bench spmm --decode-layers --n 16 --patterns 64:2:8 \
      --shapes 4096x4096,11008x4096,4096x11008 --reps 20 2>&1 | grep llama |
      awk -v v="$ab" '{print v, $3, $4, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'; echo
  done
done
echo "all done: $((SECONDS - t0)) s"
