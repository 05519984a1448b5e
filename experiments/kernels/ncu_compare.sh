#!/usr/bin/env bash
# One device call: build, then ncu of our SpMM and of the baselines of the same shape (cuBLASLt
# dense, cuSPARSELt 2:4) for each SPEC (bench spmm --ncu syntax, "+VAR=VALUE" adds an environment
# setting), e.g.  SPECS="2:4 2:4+VNM_REGA=1 2:4@12608=768x3072" bash experiments/kernels/ncu_compare.sh
# The raw pages go into $OUT/ncu.tgz; selected metrics are printed. NAMES=1 also lists the kernels
# cuSPARSELt's algorithm search runs for the first SPEC, fastest first (to learn its tile shapes).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/ncu"
VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh "${1:-.deps}" >/dev/null || { tail -30 "$OUT/build.log"; exit 1; }
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for item in ${SPECS:-2:4}; do
  spec=${item%%+*}; env_set=""; [ "$spec" != "$item" ] && env_set=${item#*+}
  f="$OUT/ncu/$(echo "$item" | tr ':@=+/' '_____').txt"
  env ${env_set:-VNM_X=1} timeout 240 ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section LaunchStats \
    --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats -c 30 \
    --page raw --print-units base build-gpu/vnmtune bench spmm --ncu "$spec" >"$f" 2>&1
  echo "== $item (rc $?)"
  awk '/^  [a-zA-Z_].*\(.*\)x\(/ {name=$1" "$2; sub(/\(.*/, "", name)} 
       /gpu__time_duration.sum|launch__grid_size|launch__block_size|launch__registers_per_thread |launch__shared_mem_per_block_dynamic|sm__throughput.avg.pct_of_peak_sustained_elapsed|l1tex__throughput.avg.pct|lts__throughput.avg.pct|l1tex__data_pipe_lsu_wavefronts_mem_shared.sum |l1tex__data_bank_(reads|writes).avg.pct|sm__pipe_tensor[a-z_]*.avg.pct_of_peak_sustained_active|sm__inst_executed_pipe_tensor[a-z_]*.avg.pct|lts__t_bytes.sum |dram__bytes_read.sum |sm__cycles_elapsed.avg / {print "  " substr(name,1,40), $1, $NF}' "$f" | grep -v "^  .*cudaMemset" | head -120
done
# NAMES=1: for each SPEC, the kernels cuSPARSELt's algorithm search runs, fastest first (to learn
# its tile shapes), with the same sections for each, so the fastest one's metrics can be read.
if [ "${NAMES:-0}" = 1 ]; then
  for item in ${SPECS:-2:4}; do
    f="$OUT/ncu/search_$(echo "$item" | tr ':@=+/' '_____').txt"
    timeout 300 ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section LaunchStats -k regex:xmma_sparse -c 40 --page raw --print-units base \
      build-gpu/vnmtune bench spmm --ncu "${item%%+*}" --ncu-search >"$f" 2>&1
    echo "== search $item (rc $?): time, name"
    awk '/^  [a-zA-Z_].*\(.*\)x\(/ {name=$1} /gpu__time_duration.sum/ {print $NF, name}' "$f" | tr -d , | sort -n | awk '!seen[$2]++' | head -12
  done
fi
tar czf "$OUT/ncu${TAG:-}.tgz" -C "$OUT" ncu && rm -r "$OUT/ncu"
