#!/usr/bin/env bash
# Session 20, device call 2: the decode kernel with B fragments gathered per warp (each warp its own
# k-steps of all four 16-row tiles; no B tile, no barrier) against the B-tile kernel of Session 19
# (s20/decode_btile.cu, built into build-old): vnm_spmm GPU test of the new one, then
# --decode-layers new / old alternated twice, Llama-2-7B decode at batch 1 with each.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
PATTERNS=${PATTERNS:-64:2:8,16:2:8} AB=- bash experiments/kernels/decode_ab.sh | grep -v "^4096x\|^11008x" | head -12
cp kernels/vnm_spmm_decode.cu /tmp/decode_new.cu && cp experiments/kernels/s20/decode_btile.cu kernels/vnm_spmm_decode.cu
VNM_BUILD=build-old VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh .deps >/dev/null 2>&1; echo "old build rc $? ($((SECONDS - t0)) s)"
cp /tmp/decode_new.cu kernels/vnm_spmm_decode.cu
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for b in build-gpu build-old build-gpu build-old; do
  echo "### $b" >>"$OUT/ab.txt"
  timeout 100 $b/vnmtune bench spmm --decode-layers --patterns "${PATTERNS:-64:2:8,16:2:8}" --reps 20 2>&1 | tee -a "$OUT/ab.txt" |
    grep llama | awk -v b=$b '{print b, $2, $3, $4, $7, "dense", $8, "ours", $9, $11 "x"}'
done
for b in build-gpu build-old; do
  timeout 100 $b/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 \
    --steps 32 >"$OUT/bench_infer_llama_$b.txt" 2>&1
  echo "$b: $(grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_$b.txt" | tr '\n' ' ')"
done
echo "all done: $((SECONDS - t0)) s"
