#!/usr/bin/env bash
# One device call for the decode SpMM (n <= 16): build vnmtune + the gpu tests in TESTS, run them,
# `bench spmm --decode` for each RUNS entry (default: the cluster and the atomic kernel, write and
# read flush), then ncu of the decode kernels for each NCU_SPEC; PROBE=1 also runs probe_rate.cu.
#   [TESTS="gpu_test_a gpu_test_b"] bash experiments/kernels/decode_run.sh [DEB_DIR] [NCU_SPEC ...]   logs into $OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
DEPS=${1:-.deps}
shift || true
PREFIX=/opt/vnmdeps
mkdir -p "$OUT" "$PREFIX"
export PATH=/opt/torch/.venv/bin:$PATH
for f in "$DEPS"/*.deb; do dpkg -x "$f" "$PREFIX"; done
export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=build-gpu
TESTS=${TESTS:-gpu_test_vnm_spmm}
{ cmake -S . -B $B -G Ninja -DVNMTUNE_DEPS_PREFIX=$PREFIX -DVNMTUNE_CUDA=ON -DVNMTUNE_CUDA_ARCHS=90a &&
  cmake --build $B -j"$(nproc)" --target vnmtune $TESTS; } >"$OUT/build.log" 2>&1 ||
  { tail -30 "$OUT/build.log"; exit 1; }
for t in $TESTS; do
  (cd $B && ./$t --jobs 1) >"$OUT/$t.log" 2>&1; echo "$t rc $?"; grep -E "Synthesis|FAIL|rel err" "$OUT/$t.log" | head -8
done
V=$B/vnmtune
# RUNS: "tag:ENV=V,ENV=V:bench args" entries, ';'-separated (default: cluster vs atomic, both flushes)
RUNS=${RUNS:-"write:VNM_X=1:;read:VNM_X=1:--flush-read;atomic_write:VNM_DECODE=atomic:;atomic_read:VNM_DECODE=atomic:--flush-read"}
IFS=';' read -ra runs <<<"$RUNS"
[ "$RUNS" = - ] && runs=()  # RUNS=- : build and test only
for r in "${runs[@]}"; do
  IFS=':' read -r tag envs args <<<"$r"
  echo "== $tag ($envs $args): shape n pattern kernel dense_us ours_us floor_us ratio"
  env ${envs//,/ } $V bench spmm --decode --reps 20 $args >"$OUT/decode_$tag.txt" 2>&1
  grep -E "^llama" "$OUT/decode_$tag.txt" | awk '{print $2, $3, $4, $5, $6, $8, $9, $10}'
done
# ncu: NCU_SPEC entries "SPEC" or "SPEC+ENV=V" (e.g. 64:2:8@16=4096x4096+VNM_DECODE=atomic)
for item in "$@"; do
  spec=${item%%+*}; envs=; [[ $item == *+* ]] && envs=${item#*+}
  tag=${item//[^A-Za-z0-9]/_}
  env ${envs:-VNM_X=1} ncu --section SpeedOfLight --section WarpStateStats --section LaunchStats --section Occupancy \
    --section MemoryWorkloadAnalysis -k regex:decode -c 1 --page raw --print-units base $V bench spmm --ncu "$spec" >"$OUT/ncu_$tag.txt" 2>&1
  echo "== ncu $item"
  grep -E "gpu__time_duration.sum|sm__cycles_elapsed.avg |dram__throughput.avg.pct|launch__registers|launch__grid_size|sm__warps_active.avg.pct|smsp__inst_executed.sum |smsp__average_warp_latency_per_inst_issued" "$OUT/ncu_$tag.txt" | awk '{print $1, $NF}'
  grep -E "smsp__average_warps_issue_stalled_.*_per_issue_active.ratio" "$OUT/ncu_$tag.txt" | awk '$NF+0 > 0.3 {print $1, $NF}'
done
if [ -f experiments/kernels/probe_rate.cu ] && [ -n "${PROBE:-}" ]; then
  nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o $B/probe_rate experiments/kernels/probe_rate.cu &&
    $B/probe_rate | tee "$OUT/probe_rate.txt"
fi
