#!/usr/bin/env bash
# Session 23, device call 3 (call 2's stdout was cut before its A/B lines): the committed decode
# kernel against Session 22's, alternated twice, 64:2:8 on the three Llama shapes; at n = 8 st.async
# (default) vs bulk copies (VNM_DECODE_STASYNC_N=4); at n = 16 on 4096x11008 (the wide form) bulk
# copies (default) vs st.async (VNM_DECODE_STASYNC_N=16); each twice.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
PATTERNS=64:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  s23:- s22:experiments/kernels/s23/revert_to_s22.patch
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ab() {  # N SHAPES STASYNC_N ...
  local n=$1 shapes=$2; shift 2
  for s in "$@"; do
    VNM_DECODE_STASYNC_N=$s timeout 60 /tmp/vnmtune_s23 bench spmm --decode-layers --n "$n" --patterns 64:2:8 \
      --shapes "$shapes" --reps 20 2>&1 | grep llama |
      awk -v v="stasync_n$s" '{print v, $3, $4, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'; echo
  done
}
for round in 1 2; do
  ab 8 4096x4096,11008x4096,4096x11008 8 4
  ab 16 4096x11008 8 16
done
echo "all done: $((SECONDS - t0)) s"
