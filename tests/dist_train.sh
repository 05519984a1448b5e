#!/usr/bin/env bash
# Data-parallel training (ctest, label cpu): the tiny Llama LoRA job (configs/llama_tiny_lora.yaml,
# three-stage 64:2:8: mask updates are shared too) or a tiny DeiT on Fashion-MNIST, under
# `mpirun -np 2` and as one process, LoRA dropout off.
#   agree        2 ranks vs 1 process on the same global batch: per-step losses and final weights
#   resume       2 ranks: 6 steps, checkpoint, resume = 12 straight steps; 1 process continues a
#                2-rank checkpoint (another process count is allowed) close to the 2-rank run
#   accum        2 ranks with train.grad_accum=2 (2 micro-batches of 2 per rank) vs 1 process without, batch 8
#   indivisible  train.batch_size=3 over 2 ranks fails naming train.batch_size; batch 4 over 2 ranks
#                with train.grad_accum=4 fails naming train.grad_accum (each rank's share must divide)
# usage: dist_train.sh VNMTUNE SOURCE_DIR WORK_DIR MODE [llama|deit]   (exit 77: skipped, no mpirun)
set -euo pipefail
vnmtune=$1 work=$3 mode=$4 model=${5:-llama}
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
cd "$2"
rm -rf "$work" && mkdir -p "$work"
if [ "$model" = llama ]; then
  job=(configs/llama_tiny_lora.yaml lora.dropout=0)
else  # a 2-block DeiT, 12 steps of 8 images (stages 1, 2, 3 of 64:2:8 -> 16:2:8 by V lowering)
  job=(configs/deit_fmnist.yaml model.embed_dim=32 model.depth=2 model.num_heads=2 data.augment=true
       data.train_limit=256 data.test_limit=64 train.batch_size=8 train.steps=12 eval.every=6 checkpoint.every=6
       lora.enabled=true lora.rank=4 lora.dropout=0 sparsity.enabled=true sparsity.pattern=64:2:8
       schedule.mode=three_stage schedule.stage1=4 schedule.stage2=4 schedule.mask_update_every=2)
fi
job+=(train.device=cpu train.threads=1 train.log_every=1)

train1() { local out=$1; shift; "$vnmtune" train "${job[@]}" train.out_dir="$work/$out" "$@" >"$work/$out.log" 2>&1; }
train2() {
  local out=$1; shift
  mpirun --allow-run-as-root --oversubscribe -np 2 "$vnmtune" train "${job[@]}" dist.backend=mpi \
    train.out_dir="$work/$out" "$@" >"$work/$out.log" 2>&1
}

# "step loss" of each training line of a metrics.jsonl
losses() { sed -n 's/^{"step": \([0-9]*\), "stage": [0-9], "loss": \([-0-9.e]*\),.*/\1 \2/p' "$work/$1/metrics.jsonl"; }
# "index value" of each fp32 value of a model.safetensors (after its 8-byte length and JSON header)
weights() {
  local f=$work/$1/model.safetensors n
  n=$(od -A n -t u8 -N 8 "$f" | tr -d ' ')
  tail -c +$((n + 9)) "$f" | od -A n -v -t f4 | tr -s ' ' '\n' | sed '/^$/d' | awk '{print NR, $1}'
}

# Final weights: the all-reduce sums each gradient in another order than one process does, and Adam
# turns that rounding into update differences (near-zero gradients most): 1.2e-4 .. 1.7e-4 of the
# 1e-2 floor on an AMD EPYC host (1e-4 held on an Intel one). One Adam step (lr 2e-3) moves a weight by up to 0.2 of the floor.
weight_tol=1e-3

# Two lists of "key value" lines (same keys): the largest |a - b| / max(|a|, floor) must be <= tol.
agree() {  # what tol floor list_a list_b
  paste -d' ' <(echo "$4") <(echo "$5") | awk -v what="$1" -v tol="$2" -v floor="$3" '
    $1 != $3 { print what ": keys differ: " $1 " vs " $3; exit 1 }
    { d = $2 - $4; d = d < 0 ? -d : d; m = $2 < 0 ? -$2 : $2; r = d / (m > floor ? m : floor); if (r > worst) worst = r; n++ }
    END { printf "%s: %d values, largest relative difference %.3g (tolerance %g)\n", what, n, worst, tol
          exit !(n > 0 && worst <= tol) }'
}

case $mode in
agree)
  train1 one && train2 two
  agree "per-step losses, 2 ranks vs 1 process" 1e-5 1e-3 "$(losses one)" "$(losses two)"
  agree "final weights, 2 ranks vs 1 process" $weight_tol 1e-2 "$(weights one)" "$(weights two)"
  ;;
accum)
  train1 one train.batch_size=8 && train2 two train.batch_size=8 train.grad_accum=2
  agree "per-step losses, 2 ranks x 2 micro-batches vs 1 process" 1e-5 1e-3 "$(losses one)" "$(losses two)"
  agree "final weights, 2 ranks x 2 micro-batches vs 1 process" $weight_tol 1e-2 "$(weights one)" "$(weights two)"
  ;;
resume)
  train2 straight && train2 part train.until=6
  cp "$work/part/checkpoint.h5" "$work/at6.h5"
  train2 part checkpoint.resume="$work/at6.h5"
  [ "$(losses part)" = "$(losses straight)" ] || { echo "2-rank resume: losses differ"; diff <(losses part) <(losses straight); exit 1; }
  echo "2-rank resume: the 12 losses equal the straight run's"
  cmp <(weights part) <(weights straight) && echo "2-rank resume: final weights equal"
  mkdir -p "$work/one" && head -n 6 "$work/part/metrics.jsonl" | grep '"loss"' >"$work/one/metrics.jsonl"
  train1 one checkpoint.resume="$work/at6.h5"
  agree "1 process resuming a 2-rank checkpoint" 1e-5 1e-3 "$(losses one)" "$(losses straight)"
  ;;
indivisible)
  if train2 odd train.batch_size=3; then echo "expected an error"; exit 1; fi
  grep "train.batch_size=3 is not divisible by the 2 processes" "$work/odd.log"
  if train2 share train.batch_size=4 train.grad_accum=4; then echo "expected an error"; exit 1; fi
  grep "train.grad_accum=4 does not divide train.batch_size=4 (2 items per process, 2 processes)" "$work/share.log"
  ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
