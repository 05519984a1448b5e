#!/usr/bin/env bash
# Session 15, device call 3: the gather kernel reading whole aligned chunks (any row alignment);
# A/B of the gathered 2:4 form vs the V:N:M kernels (VNM_PREFILL_24=0) with M = 5, 6 and permuted
# 64:2:8; then the select-vm table (bench spmm --table-only), as far as the time allows.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
SHAPES=${SHAPES:-4096x4096,4096x11008,768x3072,1536x384} AB="- VNM_PREFILL_24=0" \
  BENCH_ARGS="--patterns 2:4,64:2:5,64:2:6,64:2:8,64:2:8p" \
  bash experiments/kernels/ab_quick.sh .deps 2>&1 | tee "$OUT/gather_summary.txt"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
t0=$SECONDS
timeout ${TABLE_LIMIT:-320} build-gpu/vnmtune bench spmm --reps 5 --table-only "$OUT/spmm_table_h200.txt" >"$OUT/spmm_table_run.txt" 2>&1
echo "table rc $? in $((SECONDS - t0)) s"; grep -c "^[0-9]" "$OUT/spmm_table_h200.txt"
