#!/usr/bin/env bash
# Session 20, device call 4 (final build): vnm_spmm + Llama GPU tests, and vnm_spmm with 2 row tiles
# per cluster (partial sums pushed at every n); --decode-layers with the new defaults (rows of x padded
# by 16 channels, push when a cluster has several row tiles) against the call-3 defaults; Llama-2-7B
# decode at batch 1 and 16.
set -uo pipefail
cd "$(dirname "$0")/../.."
LLAMA=1 LLAMA_BATCHES="1 16" PATTERNS=64:2:8 TEST_AB=VNM_DECODE_TILES=2 \
  AB="- VNM_DECODE_XPAD=1,VNM_DECODE_PUSH_ROWS=0 -" bash experiments/kernels/decode_ab.sh
