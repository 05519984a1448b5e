#!/usr/bin/env bash
# One device call that checks what was built without a GPU (see the last closing note): the gpu
# tests, the decode SpMM dispatch (cluster vs atomic), Llama LoRA training / export / eval on CUDA,
# and the NCCL path with one rank. Logs into $OUT.   scripts/device-verify.sh [DEB_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/vnmtune-gpu-logs}
mkdir -p "$LOG"
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh "${1:-.deps}" || echo "GPU TESTS FAILED"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
V=build-gpu/vnmtune
step() { local name=$1; shift; echo "== $name"; "$@" >"$LOG/$name.log" 2>&1; echo "rc $?"; }
{ $V bench spmm --decode --reps 20; VNM_DECODE=atomic $V bench spmm --decode --reps 20; } >"$LOG/bench_decode.txt" 2>&1
grep -E "^llama2-7b .* 64:2:8" "$LOG/bench_decode.txt" | awk '{print $2, $3, $5, $6, $8, $9, $10}'
# token-major products: transposes + feature-major kernel (VNM_TOKEN_MAJOR=0) vs the token-major kernel (=1)
for tm in 0 1; do VNM_TOKEN_MAJOR=$tm $V bench spmm --reps 5 --no-mmasp --no-table >"$LOG/bench_route_tm$tm.txt" 2>&1; done
paste <(grep -E "^(llama|deit)" "$LOG/bench_route_tm0.txt" | awk '$3 > 16 {print $2, $3, $4, $8}') \
      <(grep -E "^(llama|deit)" "$LOG/bench_route_tm1.txt" | awk '$3 > 16 {print $8, $6}')  # shape n pattern routed_us tm_us dense_us
$V bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --decode-batch 16 --steps 16 >"$LOG/infer_llama.txt" 2>&1
grep -E "^    (1 |dense|sparse)" "$LOG/infer_llama.txt"
OUTDIR=/tmp/vt
step train $V train configs/llama_tiny_lora.yaml train.device=cuda train.out_dir=$OUTDIR/llama
step train_recompute_accum $V train configs/llama_tiny_lora.yaml train.device=cuda train.recompute=layers \
  train.grad_accum=2 train.out_dir=$OUTDIR/llama_ra
for r in llama llama_ra; do grep -h '"loss"' $OUTDIR/$r/metrics.jsonl | tail -1; done  # should agree (dropout aside)
step export $V export configs/llama_tiny_lora.yaml train.device=cuda train.out_dir=$OUTDIR/llama
step eval $V eval configs/llama_tiny_lora.yaml train.device=cuda --model=$OUTDIR/llama/export.h5
grep -E "perplexity|kernel" "$LOG"/eval.log | head -4
if command -v mpirun >/dev/null; then
  step nccl mpirun --allow-run-as-root -np 1 $V train configs/llama_tiny_lora.yaml train.device=cuda dist.backend=mpi \
    train.out_dir=$OUTDIR/nccl
  tail -2 "$LOG"/nccl.log
fi
