#!/usr/bin/env bash
# Session 22, device call 4: the x gather without a branch per column pair (padding pairs read two
# valid channels and are zeroed after: s22/nb.patch; nbl: with LDS in every kernel; nbg: one generic
# pointer for staged and global x in every kernel, no spills; nbg2: nbg with the k-steps >= kw
# gathered as padding too, no branch per k-step, spills) against the committed kernel (s22), alternated
# twice, 64:2:8 and 16:2:8 on all three shapes; the vnm_spmm GPU test of nbg and nb.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
PATTERNS=64:2:8,16:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  s22:- nb:experiments/kernels/s22/nb.patch nbl:experiments/kernels/s22/nbl.patch nbg:experiments/kernels/s22/nbg.patch \
  nbg2:experiments/kernels/s22/nbg2.patch
export PATH=/opt/torch/.venv/bin:$PATH
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cp kernels/vnm_spmm_decode.cu /tmp/decode_keep.cu
for v in nbg nb; do
  patch -s kernels/vnm_spmm_decode.cu "experiments/kernels/s22/$v.patch"
  cmake --build build-gpu --target gpu_test_vnm_spmm >"$OUT/build_test_$v.log" 2>&1
  timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_$v.txt" 2>&1; echo "vnm_spmm $v: rc $? $(grep Synthesis "$OUT/test_$v.txt") ($((SECONDS - t0)) s)"
  cp /tmp/decode_keep.cu kernels/vnm_spmm_decode.cu
done
echo "all done: $((SECONDS - t0)) s"
