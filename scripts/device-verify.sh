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
grep -E "^llama2-7b .* 16 64:2:8" "$LOG/bench_decode.txt" | awk '{print $2, $5, $6, $8, $10}'
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
