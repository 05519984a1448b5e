#!/usr/bin/env bash
# Session 20, device call 3 (the per-warp fragment gather of call 2): every GPU test; --decode-layers
# with the defaults, rows padded by 16 channels (XPAD=2), partial sums pushed up to n = 16;
# Llama-2-7B decode at batch 1 and 16; phase traces of the last layer at n = 16 (4096², 11008×4096).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -20
echo "tests: $((SECONDS - t0)) s"
SKIP_TEST=1 PATTERNS=64:2:8 AB="- VNM_DECODE_XPAD=2 VNM_DECODE_PUSH_N=16" LLAMA=1 LLAMA_BATCHES="1 16" \
  TRACE_LAYERS="4096x4096@16 11008x4096@16" bash experiments/kernels/decode_ab.sh
