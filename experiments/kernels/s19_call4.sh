#!/usr/bin/env bash
# Session 19, device call 4: the vnm_spmm GPU test (host change: failed cluster sizes per kernel
# form); the banded tile order A/B alternated three times (default vs VNM_TILE_BAND=0) at the two
# large Llama shapes; then decode phase traces as a model runs them (decode_ab.sh TRACE_LAYERS:
# the last --decode-layers layer, launched behind the one before it). Logs in $OUT.
source "$(dirname "$0")/device_build.sh"
timeout 120 build-gpu/gpu_test_vnm_spmm >"$OUT/test_vnm_spmm.txt" 2>&1; echo "vnm_spmm rc $? $(grep Synthesis "$OUT/test_vnm_spmm.txt")"
for i in 1 2 3; do
  for ab in - VNM_TILE_BAND=0; do
    for n in 8192 2048; do
      echo "### $i $ab n=$n" >>"$OUT/band_ab.txt"
      env ${ab/#-/VNM_AB=1} timeout 60 build-gpu/vnmtune bench spmm --reps 10 --no-table --no-mmasp --no-check --n $n \
        --patterns 2:4,64:2:8 --shapes 11008x4096,4096x11008 >"$OUT/one.txt" 2>&1
      cat "$OUT/one.txt" >>"$OUT/band_ab.txt"
      grep -E "^ *llama" "$OUT/one.txt" | cut -c13-110 | sed "s/^/$i $ab | /"
    done
  done
done
echo "band A/B: $((SECONDS - t0)) s"
SKIP_TEST=1 PATTERNS=64:2:8 TRACE_LAYERS="4096x4096@1 4096x4096@16 11008x4096@16" bash experiments/kernels/decode_ab.sh
