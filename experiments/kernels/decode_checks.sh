#!/usr/bin/env bash
# Device-side checks of a decode-kernel change, after a build into build-gpu. `tests`: every GPU
# test, then vnm_spmm with partial sums pulled above n = 4 (VNM_DECODE_PUSH_N=4); `llama BIN`:
# Llama-2-7B 64:2:8 prefill 1 × 2048 and decode at each batch of LLAMA_BATCHES (default "1 16")
# with vnmtune binary BIN.
# Logs in $OUT, a summary on stdout.
#   bash experiments/kernels/decode_checks.sh tests; bash experiments/kernels/decode_checks.sh llama build-gpu/vnmtune
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
case "$1" in
  tests)
    VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|tests passed|rc|FAIL" | tail -12
    VNM_DECODE_PUSH_N=4 timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_pull.txt" 2>&1
    echo "vnm_spmm PUSH_N=4: rc $? $(grep Synthesis "$OUT/test_pull.txt")" ;;
  llama)
    for b in ${LLAMA_BATCHES:-1 16}; do
      timeout 100 "$2" bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch "$b" \
        --steps 32 >"$OUT/bench_infer_llama_b$b.txt" 2>&1
      grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_b$b.txt"
    done ;;
  *) echo "usage: $0 tests | llama BIN" >&2; exit 2 ;;
esac
echo "($1: $((SECONDS - t0)) s)"
