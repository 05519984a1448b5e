#!/usr/bin/env bash
# One device call (after a build in build-gpu): per-instruction warp-stall samples of our SpMM
# kernel (ncu SourceCounters) for each SPEC of bench spmm --ncu ("+VAR=VALUE" adds an environment
# setting), e.g.  SPECS="2:4 2:4+VNM_SS_COPIES=2" bash experiments/kernels/ncu_source.sh
# Writes $OUT/src/<spec>.csv (ncu's source page, SASS) into $OUT/ncu_source.tgz; summarize a CSV with
# experiments/kernels/ncu_source_summary.py. KREGEX=NAME profiles another kernel (default vnm_wgmma).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/src"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for item in ${SPECS:-2:4}; do
  spec=${item%%+*}; env_set=""; [ "$spec" != "$item" ] && env_set=${item#*+}
  tag=$(echo "$item" | tr ':@=+/' '_____')
  env ${env_set:-VNM_X=1} timeout 200 ncu --section SourceCounters --section WarpStateStats ${NCU_EXTRA:-} -k regex:${KREGEX:-vnm_wgmma} -s 2 -c 1 \
    -f -o "$OUT/src/$tag" build-gpu/vnmtune bench spmm --ncu "$spec" >"$OUT/src/$tag.log" 2>&1
  echo "== $item (rc $?)"
  ncu -i "$OUT/src/$tag.ncu-rep" --page source --csv --print-source sass >"$OUT/src/$tag.csv" 2>&1
  echo "source page rc $?, $(wc -l <"$OUT/src/$tag.csv") lines"; head -3 "$OUT/src/$tag.csv" | cut -c1-400
done
tar czf "$OUT/ncu_source.tgz" -C "$OUT" src && rm -r "$OUT/src"
