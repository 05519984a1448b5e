#!/usr/bin/env bash
# One device call that measures variants of the decode kernel: the build, then bench spmm
# --decode-layers (PATTERNS, default 64:2:8; at --n of each of NS, default "1 16") for the tree as it
# is and with each patch of PATCHES (default experiments/kernels/s17/bisect/*.patch) applied in turn
# (incremental rebuild of vnmtune and gpu_test_vnm_spmm; TEST=1 also runs that test), the tree
# restored after each (TEST=1: the vnm_spmm GPU test on the tree as it is; TEST=all: on every variant;
# LLAMA=1: at the end, Llama-2-7B decode at batch 1 and 16 with the tree as it is). Summary on
# stdout, logs in $OUT/bisect.txt.
#   NS="1 4 16" bash experiments/kernels/decode_bisect.sh
source "$(dirname "$0")/device_build.sh"
measure() {  # $1: the variant's name
  echo "### $1" | tee -a "$OUT/bisect.txt"
  if [ "${TEST:-0}" = all ] || { [ "${TEST:-0}" = 1 ] && [ "$1" = "as committed" ]; }; then
    timeout 90 build-gpu/gpu_test_vnm_spmm >>"$OUT/bisect.txt" 2>&1
    echo "vnm_spmm rc $?: $(grep Synthesis "$OUT/bisect.txt" | tail -1)"
  fi
  for n in ${NS:-1 16}; do
    timeout 60 build-gpu/vnmtune bench spmm --decode-layers --patterns "${PATTERNS:-64:2:8}" --n "$n" --reps 20 2>&1 |
      tee -a "$OUT/bisect.txt" | grep llama | awk '{print $2, $3, $4, "dense", $8, "ours", $9, $11 "x"}'
  done
}
measure "as committed"
for p in ${PATCHES:-experiments/kernels/s17/bisect/*.patch}; do
  git apply "$p" || { echo "$p does not apply"; continue; }
  cmake --build build-gpu --target vnmtune gpu_test_vnm_spmm >"$OUT/build_$(basename "$p").log" 2>&1 ||
    echo "$p: build failed"
  measure "$(basename "$p")"
  git apply -R "$p"
done
cmake --build build-gpu --target vnmtune >/dev/null 2>&1
if [ "${LLAMA:-0}" = 1 ]; then
  for b in 1 16; do
    timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch $b \
      --steps 32 >"$OUT/bench_infer_llama_b$b.txt" 2>&1
    echo "llama decode batch $b:"; grep -E "ratio|decode" "$OUT/bench_infer_llama_b$b.txt" | tail -4
  done
fi
echo "all done: $((SECONDS - t0)) s"
