#!/usr/bin/env bash
# Device-side build + checks + benchmark for the V:N:M SpMM kernels (one `run` call).
#   bash experiments/kernels/device_run.sh [probe] [test] [sass] [ncu] [bench ARGS... --] [variants]
# Everything after `bench` up to `--` goes to the benchmark. `variants` rebuilds vnm_spmm_sm90.cu
# with each VARIANTS entry's flags (name:-DFLAG=V,...) into its own bench binary and runs
# VARIANT_ARGS with it (compiled in the background while the other steps run).
# Run from the worktree copy root; DEPS = folder of .deb files (Criterion etc.); logs go to $OUT.
set -uo pipefail
DEPS=${DEPS:-../../.deps}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:$PATH
mkdir -p /opt/vnmdeps && for f in "$DEPS"/*.deb; do dpkg -x "$f" /opt/vnmdeps; done
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee "$OUT/gpu.txt"

B=/tmp/build-kernels
# CMake build as the project does it; a direct nvcc build of this helper's files if that fails.
if timeout 300 bash -c "cmake -S . -B $B -G Ninja -DVNMTUNE_DEPS_PREFIX=/opt/vnmdeps -DVNMTUNE_CUDA=ON \
      -DVNMTUNE_CUDA_ARCHS=90a -DVNMTUNE_TESTS=ON > $OUT/build.log 2>&1 && cmake --build $B -j16 >> $OUT/build.log 2>&1"; then
  TEST=$B/gpu_test_vnm_spmm
  LIB=$B/libvnmcore.a
  nvcc experiments/kernels/bench_main.c $LIB -o $B/bench_spmm -lcublasLt -ldl >> $OUT/build.log 2>&1 || true
  echo "cmake build ok" | tee -a "$OUT/build.log"
else
  echo "cmake build failed; direct nvcc build" | tee -a "$OUT/build.log"
  tail -20 "$OUT/build.log"
  mkdir -p $B
  SRC="kernels/vnm_spmm.cu kernels/vnm_spmm_sm90.cu kernels/bench_spmm.cu train/vnm_format.c autograd/util.c"
  NV="nvcc -std=c++17 -O3 -lineinfo -gencode=arch=compute_90a,code=sm_90a -I. -I/opt/vnmdeps/usr/include"
  $NV $SRC experiments/kernels/bench_main.c -o $B/bench_spmm -lcublasLt -ldl >> $OUT/build.log 2>&1 &
  $NV $SRC tests/gpu/test_vnm_spmm.cu -o $B/gpu_test_vnm_spmm -L/opt/vnmdeps/usr/lib/x86_64-linux-gnu -lcriterion -lcublasLt -ldl >> $OUT/build.log 2>&1
  wait
  TEST=$B/gpu_test_vnm_spmm
  LIB=$B/bench_spmm
fi
ls -la $B/bench_spmm $TEST 2>&1 | tee -a "$OUT/build.log"
NV90="nvcc -std=c++17 -O3 -lineinfo -gencode=arch=compute_90a,code=sm_90a -I."
for v in ${VARIANTS:-}; do  # background builds for the variants step
  name=${v%%:*}; flags=$(echo ${v#*:} | tr ',' ' ')
  ( $NV90 $flags -c kernels/vnm_spmm_sm90.cu -o $B/sm90_$name.o && \
    nvcc experiments/kernels/bench_main.c $B/sm90_$name.o $LIB -o $B/bench_$name -lcublasLt -ldl && \
    $NV90 -I/opt/vnmdeps/usr/include tests/gpu/test_vnm_spmm.cu $B/sm90_$name.o $LIB -o $B/test_$name \
      -L/opt/vnmdeps/usr/lib/x86_64-linux-gnu -lcriterion -lcublasLt -ldl ) > $B/variant_$name.log 2>&1 &
done

BENCH_ARGS=()
STEPS=()
while (($#)); do
  if [[ $1 == bench ]]; then
    shift; STEPS+=(bench)
    while (($#)) && [[ $1 != -- ]]; do BENCH_ARGS+=("$1"); shift; done
    (($#)) && shift; continue
  fi
  STEPS+=("$1"); shift
done
for step in "${STEPS[@]}"; do
  case "$step" in
    probe)
      nvcc -gencode=arch=compute_90a,code=sm_90a -o $B/probe_sp experiments/kernels/probe_sp.cu && $B/probe_sp 2>&1 | tee "$OUT/probe.txt" ;;
    test)
      timeout 150 $TEST --jobs 4 --verbose > "$OUT/$step.txt" 2>&1
      echo "== $step (rc $?)"; grep -E "bad [1-9]" "$OUT/$step.txt" | head -8
      grep -E "^(wgmma|mma)" "$OUT/$step.txt" | awk '{print $1}' | sort | uniq -c
      grep -E "Synthesis" "$OUT/$step.txt" ;;
    sass)
      cuobjdump -sass $LIB 2>/dev/null | grep -oE "HGMMA[.A-Z0-9x]*" | sort | uniq -c | tee "$OUT/sass.txt"
      cuobjdump -res-usage $LIB 2>/dev/null | grep -A1 -E "vnm_(wgmma|mma|decode)" | grep -oE "(Function.*|REG:[0-9]+|LOCAL:[0-9]+)" | tee -a "$OUT/sass.txt"
      echo "feature-major kernel (rows filler):" | tee -a "$OUT/sass.txt"
      cuobjdump -sass -fun _ZN5vnm9019vnm_wgmma_sp_kernelILi3EEEv6VnmDevPKt6VnmEpi14CUtensorMap_st $LIB 2>/dev/null | \
        grep -oE "HGMMA[.A-Z0-9x]*|LDGSTS[.A-Z0-9]*|ARRIVES[.A-Z0-9]*|LDL|STL" | sort | uniq -c | tee -a "$OUT/sass.txt" ;;
    ncu)  # NCU_RUNS="pattern@n:kernel-regex ..."
      for r in ${NCU_RUNS:-2:4@2048:vnm_wgmma 64:2:8@2048:vnm_wgmma 64:2:8@16:vnm_decode}; do
        pat=${r%:*}; kre=${r##*:}; f="$OUT/ncu_$(echo $pat | tr ':@/' '___').txt"
        (cd $B && timeout 90 ncu --kernel-name regex:$kre --launch-skip 2 --launch-count 1 --section SpeedOfLight \
           --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats \
           --section ComputeWorkloadAnalysis --section Occupancy --section SchedulerStats \
           ./bench_spmm --ncu $pat 2>&1) > "$f"
        grep -E "ncu run|Duration|Throughput|Issue Slots|Warp Cycles Per Issued|Hit Rate|Bank|ERROR" "$f" | head -24
      done ;;
    bench)
      (cd $B && timeout ${BENCH_TIMEOUT:-300} ./bench_spmm "${BENCH_ARGS[@]}" 2>&1) | tee "$OUT/bench.txt"
      cp $B/spmm_table.txt "$OUT/" 2>/dev/null || true ;;
    variants)
      wait
      for v in ${VARIANTS:-}; do
        name=${v%%:*}; echo "== variant $v"; tail -3 $B/variant_$name.log
        timeout 60 $B/test_$name --jobs 1 --verbose --filter 'vnm_spmm_gpu/feature_major*' > $B/vtest_$name.txt 2>&1
        echo "tests (rc $?): $(grep -cE 'bad [1-9]' $B/vtest_$name.txt) bad cases; $(grep Synthesis $B/vtest_$name.txt)"
        (cd $B && timeout 100 ./bench_$name ${VARIANT_ARGS:---prefill --fm-only --no-table --no-check --reps 5} 2>&1) | tee "$OUT/variant_$name.txt" | grep -v "^#"
      done ;;
  esac
done
