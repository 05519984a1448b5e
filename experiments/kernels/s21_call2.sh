#!/usr/bin/env bash
# Session 21, device call 2: the decode kernel with the warps' partial sums 68 floats per token apart
# (conflict-free stores), the column pairs loaded once for both token halves (s20/next_pairs_once.patch),
# 16-byte loads in the warp sum and one receive buffer with one row tile per cluster, against the
# Session 20 kernel (s21/decode_s20.cu, not kept: the file at commit aecf585; built into build-old): vnm_spmm GPU test (defaults, and push at
# every n), --decode-layers new / old / new with VNM_DECODE_PUSH_N=16, alternated twice; a trace.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
PATTERNS=64:2:8 TEST_AB="VNM_DECODE_PUSH_N=16" AB= bash experiments/kernels/decode_ab.sh
cp kernels/vnm_spmm_decode.cu /tmp/decode_new.cu && cp experiments/kernels/s21/decode_s20.cu kernels/vnm_spmm_decode.cu
export PATH=/opt/torch/.venv/bin:$PATH
{ cmake -S . -B build-old -G Ninja -DVNMTUNE_DEPS_PREFIX=/opt/vnmdeps -DVNMTUNE_CUDA=ON -DVNMTUNE_CUDA_ARCHS=90a &&
  cmake --build build-old --target vnmtune -j"$(nproc)"; } >"$OUT/build_old.log" 2>&1
echo "old build rc $? ($((SECONDS - t0)) s)"
cp /tmp/decode_new.cu kernels/vnm_spmm_decode.cu
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for run in "build-gpu -" "build-old -" "build-gpu VNM_DECODE_PUSH_N=16" "build-gpu -" "build-old -" "build-gpu VNM_DECODE_PUSH_N=16"; do
  set -- $run; b=$1; ab=$2; [ "$ab" = - ] && ab=VNM_AB=1
  echo "### $run" >>"$OUT/ab.txt"
  env $ab timeout 100 $b/vnmtune bench spmm --decode-layers --patterns 64:2:8 --reps 20 2>&1 | tee -a "$OUT/ab.txt" |
    grep llama | awk -v r="$run" '{print r, $3, $4, "dense", $8, "ours", $9, $11 "x"}'
done
echo "($((SECONDS - t0)) s)"
SKIP_TEST=1 AB= PATTERNS=64:2:8 TRACE_LAYERS="4096x4096@16 4096x4096@1" bash experiments/kernels/decode_ab.sh
