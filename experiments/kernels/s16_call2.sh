#!/usr/bin/env bash
# Session 16, device call 2: (a) the wide SS form now the default for out, in >= 4096: vnm_spmm test
# and bench vs VNM_SS_WIDE=0 at the Llama shapes; (b) DeiT-B forward, 64:2:8, without and with channel
# permutations (folded export, 2:4 rows in output order); (c) Llama-2-7B prefill / decode with the
# wide form; (d) bench spmm --decode-layers (decode one layer after another, in a CUDA graph).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
SHAPES=4096x4096,11008x4096,4096x11008 AB="- VNM_SS_WIDE=0" BENCH_ARGS="--patterns 2:4,64:2:8" \
  bash experiments/kernels/ab_quick.sh .deps 2>&1
echo "ab done: $((SECONDS - t0)) s"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for p in 0 1; do
  echo "### --permute $p" >>"$OUT/bench_infer_deit_permute.txt"
  timeout 100 build-gpu/vnmtune bench infer --model deit_base --pattern 64:2:8 --permute $p >>"$OUT/bench_infer_deit_permute.txt" 2>&1
done
grep -E "###|img/s|ratio|diff|error" "$OUT/bench_infer_deit_permute.txt" | head -20
echo "deit done: $((SECONDS - t0)) s"
timeout 120 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32 \
  >"$OUT/bench_infer_llama.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama.txt"
echo "llama done: $((SECONDS - t0)) s"
timeout 150 build-gpu/vnmtune bench spmm --decode-layers --patterns 2:4,64:2:8 --reps 20 >"$OUT/decode_layers.txt" 2>&1
cat "$OUT/decode_layers.txt"
echo "all done: $((SECONDS - t0)) s"
