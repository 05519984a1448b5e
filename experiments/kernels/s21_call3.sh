#!/usr/bin/env bash
# Session 21, device call 3: which change of call 2 slowed n <= 4 on the shapes with several row
# tiles per cluster (11008×4096: 11.1 -> 11.8 µs at n = 1). Variants of the decode kernel (s21/*.cu,
# not kept: v0 = kernels/vnm_spmm_decode.cu of call 2, decode_s20.cu = that file at commit aecf585;
# v0 as call 2, v1 without the pairs loaded once, v2 with the scalar warp sum, v3 with two receive
# buffers whenever partial sums are pushed, as in Session 20; decode_s20.cu the Session 20 kernel),
# each built into build-gpu in turn (only the kernel recompiles) and kept as its own vnmtune binary;
# --decode-layers on 11008x4096,4096x11008 alternated twice.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
SKIP_TEST=1 AB= bash experiments/kernels/decode_ab.sh | head -3
export PATH=/opt/torch/.venv/bin:$PATH
cp kernels/vnm_spmm_decode.cu /tmp/decode_new.cu
V="v0_new v1_nopairs v2_scalar v3_recv2 decode_s20"
for v in $V; do
  cp experiments/kernels/s21/$v.cu kernels/vnm_spmm_decode.cu
  cmake --build build-gpu --target vnmtune >"$OUT/build_$v.log" 2>&1; echo "$v build rc $? ($((SECONDS - t0)) s)"
  cp build-gpu/vnmtune /tmp/vnmtune_$v
done
cp /tmp/decode_new.cu kernels/vnm_spmm_decode.cu
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for round in 1 2; do
  for v in $V; do
    echo "### $v" >>"$OUT/variants.txt"
    timeout 60 /tmp/vnmtune_$v bench spmm --decode-layers --patterns 64:2:8 --shapes 11008x4096,4096x11008 --reps 20 2>&1 |
      tee -a "$OUT/variants.txt" | grep llama | awk -v v=$v '{print v, $3, $4, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'
    echo
  done
done
echo "all done: $((SECONDS - t0)) s"
