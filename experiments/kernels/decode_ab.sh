#!/usr/bin/env bash
# One device call for decode-kernel A/B experiments (n <= 16). In order: the build; the vnm_spmm GPU
# test with the defaults (LLAMA=1: and the Llama GPU tests; SKIP_TEST=1: neither), then once per
# setting of TEST_AB; bench spmm --decode-layers (PATTERNS, default 64:2:8,2:4) once per setting of AB;
# SINGLE=1 bench spmm --decode (single launches, write flush); LLAMA=1 Llama-2-7B prefill 1 × 2048
# and decode at batch 1 (LLAMA_BATCHES="1 16": at each; bench infer); NCU="SPEC ..." warp-stall samples per instruction of the
# cluster decode kernel (ncu_source.sh syntax, e.g. 64:2:8@1=11008x4096); TRACE_AB="SETTING ...": the
# kernel instrumented by s18/trace_patch.py (phase stamps per CTA), bench spmm --decode once per
# setting, the phase medians of every shape and n (trace.txt); TRACE_LAYERS="4096x4096@16 ...": the
# same for the last layer of --decode-layers (first of PATTERNS) at that shape and n, a layer launched
# behind the one before it as in a model. A setting is "-" (the
# defaults) or "A=1,B=2". Logs in $OUT (decode_layers.txt, ...), a summary on stdout.
#   TEST_AB=VNM_DECODE_TILES=3 AB="- VNM_DECODE_PUSH_N=0" NCU=64:2:8@1=11008x4096 bash experiments/kernels/decode_ab.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
t0=$SECONDS
vars_of() { if [ "$1" = - ]; then echo VNM_AB=1; else echo "${1//,/ }"; fi; }
if [ "${SKIP_TEST:-0}" = 1 ]; then
  VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh .deps >/dev/null 2>&1
  echo "build rc $? ($((SECONDS - t0)) s)"
else
  tests=vnm_spmm; [ "${LLAMA:-0}" = 1 ] && tests='vnm_spmm|llama'
  VNM_SKIP_CPU=1 VNM_GPU_TESTS="$tests" bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
fi
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for ab in ${TEST_AB:-}; do
  env $(vars_of "$ab") timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_${ab//[=,]/_}.txt" 2>&1
  echo "vnm_spmm $ab: rc $? $(grep Synthesis "$OUT/test_${ab//[=,]/_}.txt") ($((SECONDS - t0)) s)"
done
for ab in ${AB--}; do  # AB="": none
  echo "### decode-layers $ab" | tee -a "$OUT/decode_layers.txt"
  env $(vars_of "$ab") timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns "${PATTERNS:-64:2:8,2:4}" --reps 20 2>&1 |
    tee -a "$OUT/decode_layers.txt" | grep llama | awk '{print $2, $3, $4, $7, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
  echo "($((SECONDS - t0)) s)"
done
if [ "${SINGLE:-0}" = 1 ]; then
  timeout 100 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >"$OUT/decode_single.txt" 2>&1
  grep llama "$OUT/decode_single.txt" | awk '{print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), "floor", $(NF-8), $(NF-7) "x"}'
fi
if [ "${LLAMA:-0}" = 1 ]; then
  LLAMA_BATCHES=${LLAMA_BATCHES:-1} bash experiments/kernels/decode_checks.sh llama build-gpu/vnmtune
fi
if [ -n "${NCU:-}" ]; then
  KREGEX=vnm_decode_cluster NCU_EXTRA="--section SpeedOfLight" SPECS="$NCU" bash experiments/kernels/ncu_source.sh 2>&1 | grep "^=="
  mkdir -p "$OUT/ncu" && tar xzf "$OUT/ncu_source.tgz" -C "$OUT/ncu"
  for f in "$OUT"/ncu/src/*.csv; do python3 experiments/kernels/ncu_source_summary.py "$f" --top 16; done 2>&1 | cut -c1-200
  for f in "$OUT"/ncu/src/*.ncu-rep; do ncu -i "$f" --page details 2>&1 | grep -E "Duration|DRAM Throughput"; done
  rm -rf "$OUT/ncu"
fi
if [ -n "${TRACE_AB:-}${TRACE_LAYERS:-}" ]; then
  cp kernels/vnm_spmm_decode.cu "$OUT/decode_untraced.cu"
  python3 experiments/kernels/s18/trace_patch.py && cmake --build build-gpu --target vnmtune >"$OUT/trace_build.log" 2>&1 ||
    echo "traced build failed"
  for ab in ${TRACE_AB:-}; do
    echo "### trace $ab" >>"$OUT/trace.txt"
    env $(vars_of "$ab") timeout 120 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >"$OUT/trace_one.txt" 2>&1
    cat "$OUT/trace_one.txt" >>"$OUT/trace.txt"
    echo "trace $ab ($((SECONDS - t0)) s)"
    grep -E "^trace" "$OUT/trace_one.txt" | cut -c1-400
  done
  first_pattern=${PATTERNS:-64:2:8}
  for item in ${TRACE_LAYERS:-}; do  # SHAPE@N: the last layer of --decode-layers, run behind the one before it
    echo "### trace_last $item" >>"$OUT/trace.txt"
    timeout 60 build-gpu/vnmtune bench spmm --decode-layers --patterns "${first_pattern%%,*}" --shapes "${item%@*}" --n "${item#*@}" \
      --reps 20 >"$OUT/trace_one.txt" 2>&1
    cat "$OUT/trace_one.txt" >>"$OUT/trace.txt"
    grep -E "^trace_last" "$OUT/trace_one.txt" | cut -c1-400
  done
  cp "$OUT/decode_untraced.cu" kernels/vnm_spmm_decode.cu && rm -f "$OUT/decode_untraced.cu" "$OUT/trace_one.txt"
fi
echo "all done: $((SECONDS - t0)) s"
