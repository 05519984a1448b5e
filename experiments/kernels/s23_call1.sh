#!/usr/bin/env bash
# Session 23, device call 1. (a) Decode-kernel variants (experiments/kernels/s23/decode_exp.cu, switches
# set by the v_*.cu wrappers): st (partial sums sent by st.async from the warp sum: no part buffer,
# proxy fence, barrier or bulk copies), ea (next row tile's A loads right after the warp's last mma),
# stea (both), xs (x tokens 8..15 on their own mbarrier), all (the three); the vnm_spmm GPU test of
# `all`; the variants alternated twice, 64:2:8 on the three Llama shapes. (b) s22/next_sm80_gather.patch
# (vnm_spmm.cu: the sm_80 kernels' gathers without a branch per unit): vnm_spmm GPU test (default and
# VNM_DECODE=atomic), then alternated with the committed kernel: --decode-layers through the atomic
# decode kernel, and n = 2048 (the mma_sp column).
# After the run the experimental kernel and its wrappers were taken out of the tree (a near-copy of
# the kernel): s23/call1_switches.patch turns Session 22's kernel (e985a7b) into decode_exp.cu, and
# each v_NAME.cu was `#define VAR_...` lines (st: STASYNC; ea: EARLY; stea: both; xs: XSPLIT; all:
# the three) followed by `#include "experiments/kernels/s23/decode_exp.cu"`.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
S=experiments/kernels/s23
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
export PATH=/opt/torch/.venv/bin:$PATH
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
test_with() {  # NAME [ENV=...]: build and run gpu_test_vnm_spmm
  local name=$1; shift
  cmake --build build-gpu --target gpu_test_vnm_spmm >"$OUT/build_test_$name.log" 2>&1
  env "$@" timeout 120 build-gpu/gpu_test_vnm_spmm >"$OUT/test_$name.txt" 2>&1
  echo "vnm_spmm $name $*: rc $? $(grep Synthesis "$OUT/test_$name.txt") ($((SECONDS - t0)) s)"
}
cp kernels/vnm_spmm_decode.cu /tmp/decode_keep.cu
cp $S/v_all.cu kernels/vnm_spmm_decode.cu
test_with all VNM_AB=1
cp /tmp/decode_keep.cu kernels/vnm_spmm_decode.cu
PATTERNS=64:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  base:- st:$S/v_st.cu ea:$S/v_ea.cu stea:$S/v_stea.cu xs:$S/v_xs.cu all:$S/v_all.cu
cmake --build build-gpu --target vnmtune >/dev/null 2>&1 && cp build-gpu/vnmtune /tmp/vnmtune_s80base
patch -s -p1 <experiments/kernels/s22/next_sm80_gather.patch && echo "sm80 patch applied"
test_with sm80 VNM_AB=1
test_with sm80_atomic VNM_DECODE=atomic
cmake --build build-gpu --target vnmtune >/dev/null 2>&1 && cp build-gpu/vnmtune /tmp/vnmtune_s80new
for round in 1 2; do
  for v in s80base s80new; do
    echo "### $v atomic decode-layers" >>"$OUT/sm80.txt"
    VNM_DECODE=atomic timeout 60 /tmp/vnmtune_$v bench spmm --decode-layers --patterns 64:2:8 \
      --shapes 4096x4096,11008x4096,4096x11008 --reps 20 2>&1 | tee -a "$OUT/sm80.txt" | grep llama |
      awk -v v="$v" '{print v, $3, $4, $7, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'; echo
    echo "### $v n=2048" >>"$OUT/sm80.txt"
    timeout 90 /tmp/vnmtune_$v bench spmm --no-table --patterns 64:2:8,2:4 --shapes 4096x4096,11008x4096,4096x11008 \
      --n 2048 --reps 10 2>&1 | tee -a "$OUT/sm80.txt" | grep -E "^llama" | cut -c1-150
  done
done
patch -s -R -p1 <experiments/kernels/s22/next_sm80_gather.patch
grep -E "^model|^# bench" "$OUT/sm80.txt" | head -3
echo "all done: $((SECONDS - t0)) s"
