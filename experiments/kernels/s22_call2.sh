#!/usr/bin/env bash
# Session 22, device call 2: which staged-x gather and column-pair placement. Variants of the
# committed decode kernel alternated twice, 64:2:8 and 16:2:8, all three Llama shapes: base (as
# committed: generic loads), lds (s21/next_lds_gather.patch: ld.shared by inline asm), lds2
# (s22/lds2.patch: the staged and global pointers passed apart, so the compiler knows the staged one
# is shared: LDS.U16 without asm), wide (s21/next_wide_spills.patch: pairs loaded right before each
# gather in <4, 12>, per tile in <1, 12>), w2 (s22/w2.patch: lds2 + pairs before each gather in <4, 12>).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
PATTERNS=64:2:8,16:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  base:- lds:experiments/kernels/s21/next_lds_gather.patch lds2:experiments/kernels/s22/lds2.patch \
  wide:experiments/kernels/s21/next_wide_spills.patch w2:experiments/kernels/s22/w2.patch
echo "all done: $((SECONDS - t0)) s"
