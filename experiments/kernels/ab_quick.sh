#!/usr/bin/env bash
# One device call for kernel A/B experiments: build, then for each setting of AB (space-separated;
# "-" = the defaults, "A=1,B=2" sets several variables) the vnm_spmm GPU test and
# `bench spmm --prefill --shapes $SHAPES`; NCU="SPEC ..." then runs ncu_compare.sh's sections on
# those specs (its syntax: "2:4+VNM_X=1"). SKIP_TEST=1 skips the tests (timing-only settings);
# PROBE=1 first runs probe_copy.cu (copy-engine costs, no math), probe_rate.cu (wgmma rates, with
# shared-memory stores or bulk copies beside them) and probe_ring.cu (the SS main loop alone), or
# those PROBES names. BENCH_N=1024 benches every shape at that n only;
# BENCH_ARGS (e.g. --no-flush) go to bench spmm as they are. The machine's `nvidia-smi -q` goes
# into the logs too (kernel speed depends on the machine: NOTES.md, Session 11). Logs into
# $OUT/ab.tgz, a summary on stdout.
#   AB="- VNM_SS_COPIES=2" [SHAPES=4096x4096,768x3072] [NCU="2:4 2:4+VNM_SS_COPIES=2"] bash experiments/kernels/ab_quick.sh [DEB_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/ab"
t0=$SECONDS
VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh "${1:-.deps}" >/dev/null || { tail -30 "$OUT/build.log"; exit 1; }
echo "build: $((SECONDS - t0)) s"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi -q >"$OUT/ab/nvidia_smi_q.txt" 2>&1
if [ "${PROBE:-0}" = 1 ]; then
  for p in ${PROBES:-probe_copy probe_rate probe_ring}; do
    "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. \
      -o build-gpu/$p experiments/kernels/$p.cu -L/usr/local/cuda/lib64/stubs -lcuda &&
      timeout 120 build-gpu/$p | tee "$OUT/ab/$p.txt"
  done
fi
i=0
for ab in ${AB:--}; do
  vars=(VNM_AB=1)
  [ "$ab" != - ] && IFS=, read -r -a vars <<<"$ab"
  i=$((i + 1)); tag=${i}_$(echo "$ab" | tr '=,' '_+')
  if [ "${SKIP_TEST:-0}" = 1 ]; then echo "== $ab"; else
    env "${vars[@]}" timeout "${TEST_LIMIT:-90}" build-gpu/gpu_test_vnm_spmm >"$OUT/ab/test_$tag.txt" 2>&1
    echo "== $ab: test rc $? $(grep Synthesis "$OUT/ab/test_$tag.txt") ($((SECONDS - t0)) s)"
  fi
  env "${vars[@]}" timeout 150 build-gpu/vnmtune bench spmm --prefill --reps 10 --no-table --no-mmasp \
    --shapes "${SHAPES:-4096x4096,4096x11008,768x3072,1536x384}" ${BENCH_N:+--n $BENCH_N} ${BENCH_ARGS:-} >"$OUT/ab/bench_$tag.txt" 2>&1
  grep -E "^ *(llama|deit)|rror" "$OUT/ab/bench_$tag.txt" |
    awk '/^ *(llama|deit)/ {print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), $(NF-7) "x", "splt", $(NF-6) "x"; next} {print}'
done
if [ -n "${NCU:-}" ]; then
  SPECS="$NCU" TAG=_ab bash experiments/kernels/ncu_compare.sh "${1:-.deps}"
  mv "$OUT/ncu_ab.tgz" "$OUT/ab/" 2>/dev/null
fi
tar czf "$OUT/ab.tgz" -C "$OUT" ab && rm -r "$OUT/ab"
