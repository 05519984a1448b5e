#!/usr/bin/env bash
# Session 16, device call 5: the wide SS form only when x rows are 128-byte aligned (in % 64 == 0):
# 64:2:5 / 64:2:12 (in rounded up to 4100 / 4104 by the bench) with the new rule vs the wide form
# forced (VNM_SS_TN=256), and gathered inputs now padded to 64 slots (aligned x' rows, 64:2:5); then the
# select-vm table again. First the vnm_spmm GPU test (the sparse SS
# wgmma wrappers are now made by one macro).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh .deps >/dev/null 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_vnm_spmm.txt" 2>&1; echo "vnm_spmm: rc $? $(grep Synthesis "$OUT/test_vnm_spmm.txt")"
timeout 200 build-gpu/vnmtune bench spmm --reps 5 --table-only "$OUT/spmm_table_h200.txt" >"$OUT/spmm_table_run.txt" 2>&1
echo "table done: $((SECONDS - t0)) s"
for ab in - VNM_SS_TN=256; do
  echo "### $ab" >>"$OUT/prefill_align.txt"
  env ${ab/#-/VNM_AB=1} timeout 100 build-gpu/vnmtune bench spmm --prefill --reps 10 --no-table --no-mmasp --patterns 64:2:5,64:2:8,64:2:12 \
    --shapes 4096x4096,4096x11008 >>"$OUT/prefill_align.txt" 2>&1
done
grep -E "###|^ *llama" "$OUT/prefill_align.txt" | awk '/###/ {print; next} {print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), $(NF-7) "x"}'
echo "prefill done: $((SECONDS - t0)) s"
echo "all done: $((SECONDS - t0)) s"
