#!/usr/bin/env bash
# Session 19, device call 3: the select-vm table with the banded tile order (bench spmm --table-only),
# and 2-CTA pairs of the wide form (VNM_SS_PAIR=1) now that the tiles come in bands. Logs in $OUT.
source "$(dirname "$0")/device_build.sh"
timeout 250 build-gpu/vnmtune bench spmm --reps 5 --table-only "$OUT/spmm_table_h200.txt" >"$OUT/spmm_table_run.txt" 2>&1
tail -3 "$OUT/spmm_table_run.txt"; echo "table: $((SECONDS - t0)) s"
AB="- VNM_SS_PAIR=1" bash experiments/kernels/prefill_ab.sh
echo "all done: $((SECONDS - t0)) s"
