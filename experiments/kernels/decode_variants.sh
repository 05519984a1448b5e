#!/usr/bin/env bash
# Variants of the decode kernel measured side by side (on the device, after a build into build-gpu):
# each argument NAME:FILE builds one vnmtune binary, with FILE a .patch applied to
# kernels/vnm_spmm_decode.cu, a .cu that replaces it, or - (the kernel as it is); only the kernel
# recompiles. Then bench spmm --decode-layers (PATTERNS, default 64:2:8; SHAPES, default
# 11008x4096,4096x11008) of every variant in turn, ROUNDS times (default 2). Logs in $OUT
# (variants.txt, build_NAME.log), a line per variant and round on stdout; the kernel file is restored
# and build-gpu rebuilt from it.
#   bash experiments/kernels/decode_variants.sh new:- wld64:experiments/kernels/s21/v4_wld64.patch
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
export PATH=/opt/torch/.venv/bin:$PATH
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cp kernels/vnm_spmm_decode.cu /tmp/decode_base.cu
names=()
for arg in "$@"; do
  name=${arg%%:*}; file=${arg#*:}; names+=("$name")
  case "$file" in
    -) cp /tmp/decode_base.cu kernels/vnm_spmm_decode.cu ;;
    *.patch) patch -s -o kernels/vnm_spmm_decode.cu /tmp/decode_base.cu "$file" ;;
    *) cp "$file" kernels/vnm_spmm_decode.cu ;;
  esac
  cmake --build build-gpu --target vnmtune >"$OUT/build_$name.log" 2>&1; echo "$name build rc $? ($((SECONDS - t0)) s)"
  cp build-gpu/vnmtune "/tmp/vnmtune_$name"
done
cp /tmp/decode_base.cu kernels/vnm_spmm_decode.cu
# build-gpu's binaries are the tree's again (a later step that runs them must not get the last variant)
cmake --build build-gpu --target vnmtune >"$OUT/build_restored.log" 2>&1 || echo "rebuild of the restored kernel failed"
for round in $(seq "${ROUNDS:-2}"); do
  for name in "${names[@]}"; do
    echo "### $name" >>"$OUT/variants.txt"
    timeout 60 "/tmp/vnmtune_$name" bench spmm --decode-layers --patterns "${PATTERNS:-64:2:8}" \
      --shapes "${SHAPES:-11008x4096,4096x11008}" --reps 20 2>&1 | tee -a "$OUT/variants.txt" |
      grep llama | awk -v v="$name" '{print v, $3, $4, $5, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'
    echo
  done
done
echo "variants done: $((SECONDS - t0)) s"
