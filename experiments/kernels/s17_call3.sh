#!/usr/bin/env bash
# Session 17, device call 3: the decode cluster barrier split in arrive / wait with the next row
# tile's A loads between (the arrive's MEMBAR waited for them). (a) vnm_spmm GPU test, default and the ring (D = 2, R = 3);
# (b) bench spmm --decode-layers, register kernel and ring D = 1; (c) ncu warp-stall samples per
# instruction of the register kernel at 11008x4096, n = 1 and 16.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -4
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
VNM_DECODE_RING=2 VNM_DECODE_TILES=3 timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_ring2_tiles3.txt" 2>&1
echo "vnm_spmm ring 2, R 3: rc $? $(grep Synthesis "$OUT/test_ring2_tiles3.txt")"
echo "tests done: $((SECONDS - t0)) s"
for r in 0 2; do
  echo "### decode-layers VNM_DECODE_RING=$r" | tee -a "$OUT/decode_layers.txt"
  VNM_DECODE_RING=$r timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,2:4 --reps 20 2>&1 |
    tee -a "$OUT/decode_layers.txt" | grep llama | awk '{print $2, $3, $4, $7, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
  echo "($((SECONDS - t0)) s)"
done
KREGEX=vnm_decode_cluster NCU_EXTRA="--section SpeedOfLight --section Occupancy --section LaunchStats" \
  SPECS="64:2:8@1=11008x4096" bash experiments/kernels/ncu_source.sh 2>&1 | grep -v "^\"" | head -20
mkdir -p "$OUT/ncu" && tar xzf "$OUT/ncu_source.tgz" -C "$OUT/ncu"
for f in "$OUT"/ncu/src/*.csv; do python3 experiments/kernels/ncu_source_summary.py "$f" --top 25; done 2>&1 | cut -c1-220
for f in "$OUT"/ncu/src/*.ncu-rep; do ncu -i "$f" --page details 2>&1 | grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers|Cluster|Block Limit|Waves" | head -20; done
rm -rf "$OUT/ncu"
echo "all done: $((SECONDS - t0)) s"
