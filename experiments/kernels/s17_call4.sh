#!/usr/bin/env bash
# Session 17, device call 4: decode cluster kernel without per-tile cluster barriers: partial sums
# pushed to their owner CTA by st.async on its mbarrier; column lists loaded ahead of A; B tiles
# built by all threads. (a) vnm_spmm + Llama GPU tests; vnm_spmm with R = 3 and with clusters of 12
# and 16; (b) bench spmm --decode-layers (64:2:8, 2:4) and --decode; (c) Llama-2-7B decode;
# (d) ncu warp-stall samples at 11008x4096, n = 1.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm|llama' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
cp "$OUT/gpu-tests.log" "$OUT/gpu_tests.log" 2>/dev/null
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for ab in VNM_DECODE_TILES=3 VNM_DECODE_SPLIT=12 VNM_DECODE_SPLIT=16; do
  env $ab timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_${ab//=/_}.txt" 2>&1
  echo "vnm_spmm $ab: rc $? $(grep Synthesis "$OUT/test_${ab//=/_}.txt")"
done
echo "tests done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,2:4 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt" | awk '{print $2, $3, $4, $7, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
timeout 100 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >"$OUT/decode_single.txt" 2>&1
grep llama "$OUT/decode_single.txt" | awk '{print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), "floor", $(NF-8), $(NF-7) "x"}'
echo "decode done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32 \
  >"$OUT/bench_infer_llama.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama.txt"
KREGEX=vnm_decode_cluster NCU_EXTRA="--section SpeedOfLight" SPECS="64:2:8@1=11008x4096" \
  bash experiments/kernels/ncu_source.sh 2>&1 | grep "^=="
mkdir -p "$OUT/ncu" && tar xzf "$OUT/ncu_source.tgz" -C "$OUT/ncu"
for f in "$OUT"/ncu/src/*.csv; do python3 experiments/kernels/ncu_source_summary.py "$f" --top 16; done 2>&1 | cut -c1-200
for f in "$OUT"/ncu/src/*.ncu-rep; do ncu -i "$f" --page details 2>&1 | grep -E "Duration|DRAM Throughput"; done
rm -rf "$OUT/ncu"
echo "all done: $((SECONDS - t0)) s"
