#!/usr/bin/env bash
# Session 22, device call 1: s21/next_lds_gather.patch (the staged-x gather as explicit ld.shared.u16
# on a 32-bit address instead of generic loads through a pointer that merged shared and global; no
# spills in any instantiation) applied to the tree: build, vnm_spmm GPU test (defaults and pull above
# n = 4); then variants alternated twice on all three Llama shapes, 64:2:8 and 16:2:8: lds (the patch),
# base (the committed kernel), wide (s21/next_wide_spills.patch on the committed kernel); Llama-2-7B
# decode at batch 1 and 16 with lds; a trace of 4096x11008 at n = 16 and n = 1 with lds.
# (The GPU tests and Llama steps rewritten after the run over decode_checks.sh, same steps.)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
cp kernels/vnm_spmm_decode.cu /tmp/decode_committed.cu
patch -s -o /tmp/decode_wide.cu /tmp/decode_committed.cu experiments/kernels/s21/next_wide_spills.patch
patch -s kernels/vnm_spmm_decode.cu experiments/kernels/s21/next_lds_gather.patch && echo "lds patch applied"
PATTERNS=64:2:8 TEST_AB="VNM_DECODE_PUSH_N=4" AB= bash experiments/kernels/decode_ab.sh
PATTERNS=64:2:8,16:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  lds:- base:/tmp/decode_committed.cu wide:/tmp/decode_wide.cu
bash experiments/kernels/decode_checks.sh llama /tmp/vnmtune_lds
SKIP_TEST=1 AB= PATTERNS=64:2:8 TRACE_LAYERS="4096x11008@16 4096x11008@1" bash experiments/kernels/decode_ab.sh
echo "all done: $((SECONDS - t0)) s"
