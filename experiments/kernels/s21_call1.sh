#!/usr/bin/env bash
# Session 21, device call 1 (n = 16 decode): the warps' partial sums stored swizzled (conflict-free
# stores; VNM_DECODE_WSWZ=0: as before) and one receive buffer when a cluster has one row tile (so
# that VNM_DECODE_PUSH_N=16 keeps 5 CTAs per SM at 4096²): vnm_spmm GPU test with the defaults and
# with push at every n; --decode-layers defaults / WSWZ=0 / PUSH_N=16; then s20/next_pairs_once.patch
# built into build-pairs (its test, new / pairs alternated twice); a trace of 4096² at n = 16.
# (Run on that call's working tree: the XOR-swizzled warp sums behind a runtime switch, VNM_DECODE_WSWZ,
# not kept; the switch is gone. The pairs patch is merged since call 2.)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
PATTERNS=64:2:8 TEST_AB="VNM_DECODE_PUSH_N=16 VNM_DECODE_WSWZ=0" AB="- VNM_DECODE_WSWZ=0 VNM_DECODE_PUSH_N=16 -" \
  bash experiments/kernels/decode_ab.sh
cp kernels/vnm_spmm_decode.cu /tmp/decode_new.cu
patch kernels/vnm_spmm_decode.cu experiments/kernels/s20/next_pairs_once.patch >/dev/null
export PATH=/opt/torch/.venv/bin:$PATH
{ cmake -S . -B build-pairs -G Ninja -DVNMTUNE_DEPS_PREFIX=/opt/vnmdeps -DVNMTUNE_CUDA=ON -DVNMTUNE_CUDA_ARCHS=90a &&
  cmake --build build-pairs --target vnmtune gpu_test_vnm_spmm -j"$(nproc)"; } >"$OUT/build_pairs.log" 2>&1
echo "pairs build rc $? ($((SECONDS - t0)) s)"
cp /tmp/decode_new.cu kernels/vnm_spmm_decode.cu
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 90 build-pairs/gpu_test_vnm_spmm >"$OUT/test_pairs.txt" 2>&1; echo "pairs test rc $? $(grep Synthesis "$OUT/test_pairs.txt")"
for b in build-gpu build-pairs build-gpu build-pairs; do
  echo "### $b" >>"$OUT/ab_pairs.txt"
  timeout 100 $b/vnmtune bench spmm --decode-layers --patterns 64:2:8 --reps 20 2>&1 | tee -a "$OUT/ab_pairs.txt" |
    grep llama | awk -v b=$b '{print b, $2, $3, $4, $7, "dense", $8, "ours", $9, $11 "x"}'
done
echo "($((SECONDS - t0)) s)"
SKIP_TEST=1 AB= PATTERNS=64:2:8 TRACE_LAYERS="4096x4096@16 11008x4096@16" bash experiments/kernels/decode_ab.sh
