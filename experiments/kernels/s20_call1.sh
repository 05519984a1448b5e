#!/usr/bin/env bash
# Session 20, device call 1: what each decode phase costs end to end (s20/ablate_patch.py:
# VNM_DECODE_ABLATE=1 no B build, 2 no x staging, 4 no DSMEM reduction reads; results wrong, timing
# only), then the phase traces of the last layer at 4096², n = 1 / 16 with VNM_DECODE_AFIRST=4 and without.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
python3 experiments/kernels/s20/ablate_patch.py || exit 1
SKIP_TEST=1 PATTERNS=64:2:8 AB="- VNM_DECODE_ABLATE=1 VNM_DECODE_ABLATE=2 VNM_DECODE_ABLATE=4 VNM_DECODE_ABLATE=3 VNM_DECODE_ABLATE=7 -" \
  bash experiments/kernels/decode_ab.sh
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
python3 experiments/kernels/s18/trace_patch.py && cmake --build build-gpu --target vnmtune >"$OUT/trace_build.log" 2>&1 || echo "traced build failed"
for af in 12 4 12 4; do
  for item in 4096x4096@1 4096x4096@16 11008x4096@4; do
    VNM_DECODE_AFIRST=$af timeout 60 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8 --shapes "${item%@*}" \
      --n "${item#*@}" --reps 20 >"$OUT/trace_one.txt" 2>&1
    { echo "### afirst=$af $item"; cat "$OUT/trace_one.txt"; } >>"$OUT/trace.txt"
    echo "afirst=$af $(grep -E "^trace_last" "$OUT/trace_one.txt" | cut -c1-330)"
  done
done
echo "all done: $((SECONDS - t0)) s"
