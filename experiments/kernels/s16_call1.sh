#!/usr/bin/env bash
# Session 16, device call 1: (a) every GPU test (Session 15's untested code: prefill_as_24 with
# permuted rows, the export folds); (b) DeiT-B forward, 64:2:8, without and with channel
# permutations (folded export, rows in output order); (c) ncu (full set, real clocks) of our 2:4 SS
# kernel and of cuSPARSELt's winning 128x256 cluster kernel, 4096², n = 2048: copy-side counters;
# (d) bench spmm --decode-layers (decode one layer after another, in a CUDA graph).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | tail -15
echo "tests done: $((SECONDS - t0)) s"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for p in 0 1; do
  echo "### --permute $p" | tee -a "$OUT/bench_infer_deit_permute.txt"
  timeout 150 build-gpu/vnmtune bench infer --model deit_base --pattern 64:2:8 --permute $p 2>&1 | tail -14 | tee -a "$OUT/bench_infer_deit_permute.txt"
done
echo "infer done: $((SECONDS - t0)) s"
timeout 150 build-gpu/vnmtune bench spmm --decode-layers --patterns 2:4,64:2:8 --reps 20 2>&1 | tee "$OUT/decode_layers.txt"
echo "decode layers done: $((SECONDS - t0)) s"
mkdir -p "$OUT/ncu"
timeout 200 ncu --set full --clock-control none -k regex:vnm_wgmma -c 1 --page raw --print-units base \
  build-gpu/vnmtune bench spmm --ncu 2:4 >"$OUT/ncu/ours_2_4.txt" 2>&1; echo "ncu ours rc $?"
timeout 240 ncu --set full --clock-control none -k regex:tilesize128x256x64_cgasize2x1x1 -c 1 --page raw --print-units base \
  build-gpu/vnmtune bench spmm --ncu 2:4 --ncu-search >"$OUT/ncu/splt_128x256_c2.txt" 2>&1; echo "ncu splt rc $?"
echo "all done: $((SECONDS - t0)) s"
