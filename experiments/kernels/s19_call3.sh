#!/usr/bin/env bash
# Session 19, device call 3: the select-vm table with the banded tile order (bench spmm --table-only),
# and 2-CTA pairs of the wide form (VNM_SS_PAIR=1) now that the tiles come in bands. Logs in $OUT.
source "$(dirname "$0")/device_build.sh"
timeout 250 build-gpu/vnmtune bench spmm --reps 5 --table-only "$OUT/spmm_table_h200.txt" >"$OUT/spmm_table_run.txt" 2>&1
tail -3 "$OUT/spmm_table_run.txt"; echo "table: $((SECONDS - t0)) s"
for ab in - VNM_SS_PAIR=1; do
  echo "### prefill $ab" >>"$OUT/prefill.txt"
  env ${ab/#-/VNM_AB=1} timeout 150 build-gpu/vnmtune bench spmm --prefill --reps 10 --no-table --no-mmasp --no-check \
    --patterns 2:4,64:2:8 --shapes 11008x4096,4096x11008,4096x4096 >"$OUT/prefill_one.txt" 2>&1
  cat "$OUT/prefill_one.txt" >>"$OUT/prefill.txt"
  echo "## prefill $ab ($((SECONDS - t0)) s)"
  grep -E "^ *llama" "$OUT/prefill_one.txt" | cut -c13-125
done
echo "all done: $((SECONDS - t0)) s"
