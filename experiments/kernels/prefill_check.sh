#!/usr/bin/env bash
# One device call: build + gpu tests (scripts/gpu-test.sh), then the prefill-sized SpMM benchmark
# (bench spmm --prefill), Llama-2-7B prefill 1×2048 + decode (batch 1 and 16) and DeiT-S/B forward,
# all 64:2:8. Logs into $OUT/logs.tgz. Extra environment (e.g. VNM_PREFILL_24=0) applies to every step.
#   [AB="VAR=VALUE ..."] [LLAMA=0] [LLAMA_B16=0] [TABLE=1] bash experiments/kernels/prefill_check.sh [DEB_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh "${1:-.deps}" || echo "GPU TESTS FAILED"
echo "build + gpu tests: $((SECONDS - t0)) s"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
V=build-gpu/vnmtune
step() {  # name timeout_s args...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$V" "$@" >"$OUT/$name.txt" 2>&1
  echo "== $name (rc $?, $((SECONDS - t0)) s)"
}
# AB="NAME=VALUE ..." runs the SpMM GPU test and benchmark once more per setting (e.g. AB="VNM_PERSISTENT=0")
for ab in ${AB:-}; do
  env "$ab" timeout 60 build-gpu/gpu_test_vnm_spmm >"$OUT/gpu_test_vnm_spmm_${ab//=/_}.txt" 2>&1
  echo "gpu_test_vnm_spmm with $ab: rc $? $(grep Synthesis "$OUT/gpu_test_vnm_spmm_${ab//=/_}.txt")"
done
step spmm_prefill 150 bench spmm --prefill --reps 10 --no-table --no-mmasp
for ab in ${AB:-}; do env "$ab" timeout 150 "$V" bench spmm --prefill --reps 10 --no-table --no-mmasp >"$OUT/spmm_prefill_${ab//=/_}.txt" 2>&1; done
for f in "$OUT"/spmm_prefill*.txt; do echo "-- $f"; grep -E "^ *(llama|deit)" "$f" | awk '{print $1, $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), $(NF-7) "x", "cusparselt", $(NF-6) "x", "fm", $(NF-3)}'; done
[ "${LLAMA:-1}" = 1 ] && step llama_b1 120 bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32
[ "${LLAMA_B16:-1}" = 1 ] && step llama_b16 120 bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 128 --decode-batch 16 --steps 32
grep -hE "^    (1 |dense|sparse)|kernels at" "$OUT"/llama_b*.txt
for m in deit_small deit_base; do
  step "$m" 60 bench infer --model "$m" --pattern 64:2:8
  grep -E "img/s" "$OUT/$m.txt"
  for ab in ${AB:-}; do env "$ab" timeout 60 "$V" bench infer --model "$m" --pattern 64:2:8 >"$OUT/${m}_${ab//=/_}.txt" 2>&1; echo "$ab:"; grep -E "img/s" "$OUT/${m}_${ab//=/_}.txt"; done
done
# TABLE=1: also the select-vm speed table with today's kernels (several minutes)
[ "${TABLE:-0}" = 1 ] && step spmm_table_run 400 bench spmm --reps 5 --table-only "$OUT/spmm_table.txt"
# one tarball: the device tool returns only a few files per call
(cd "$OUT" && tar czf logs.tgz --exclude logs.tgz -- * && find . -maxdepth 1 -type f ! -name logs.tgz -delete)
exit 0
