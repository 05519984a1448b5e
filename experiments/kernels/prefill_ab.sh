#!/usr/bin/env bash
# bench spmm --prefill at the Llama shapes (SHAPES, default 11008x4096,4096x11008,4096x4096; 2:4 and
# 64:2:8), once per setting of AB ("-" the defaults, or "A=1,B=2"); full tables appended to
# $OUT/prefill.txt, the Llama rows on stdout. Run from the repository root after the build.
set -uo pipefail
OUT=${OUT:-/tmp/out}
for ab in ${AB:--}; do
  echo "### prefill $ab" >>"$OUT/prefill.txt"
  env $(if [ "$ab" = - ]; then echo VNM_AB=1; else echo "${ab//,/ }"; fi) timeout 150 build-gpu/vnmtune bench spmm \
    --prefill --reps 10 --no-table --no-mmasp --no-check --patterns 2:4,64:2:8 \
    --shapes "${SHAPES:-11008x4096,4096x11008,4096x4096}" >"$OUT/prefill_one.txt" 2>&1
  cat "$OUT/prefill_one.txt" >>"$OUT/prefill.txt"
  echo "## prefill $ab"
  grep -E "^ *llama" "$OUT/prefill_one.txt" | cut -c13-125
done
