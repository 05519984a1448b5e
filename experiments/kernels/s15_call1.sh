#!/usr/bin/env bash
# Session 15, device call 1: (a) the 2-CTA pair modes (cluster_pairs_s15.patch, in this tree) with the
# producer fix of Session 14; (b) a copy of the tree without them and with timing_s14.patch:
# VNM_AB_CLK per-stage split of the busiest CTA.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
SHAPES=${SHAPES:-4096x4096,4096x11008,11008x4096,768x3072} AB="- VNM_CLUSTER=1 VNM_CLUSTER=2 -" \
  bash experiments/kernels/ab_quick.sh .deps 2>&1 | tee "$OUT/pairs_summary.txt"
mv "$OUT/ab.tgz" "$OUT/pairs.tgz"
rm -rf /tmp/t2 && mkdir /tmp/t2 && tar cf - --exclude=./build-gpu . | tar xf - -C /tmp/t2
cd /tmp/t2 && patch -R -p1 -s <experiments/kernels/cluster_pairs_s15.patch && patch -p1 -s <experiments/kernels/timing_s14.patch || exit 1
SKIP_TEST=1 SHAPES=4096x4096,4096x11008 BENCH_N=2048 AB="VNM_AB_CLK=1 -" OUT=$OUT \
  bash experiments/kernels/ab_quick.sh .deps 2>&1 | tee "$OUT/clk_summary.txt"
mkdir -p "$OUT/clk" && tar xzf "$OUT/ab.tgz" -C "$OUT/clk" && grep -h -i -E "clk|stage|MHz" "$OUT"/clk/ab/bench_1*.txt | head -40
