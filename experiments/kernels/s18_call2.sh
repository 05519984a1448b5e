#!/usr/bin/env bash
# Session 18, call 2 (one device call): the decode kernel's n = 16 time, explained. The build, then
#   1. the tree as it is: bench spmm --decode-layers, 64:2:8, n = 1 and 16;
#   2. s18/trace.patch (thread 0 of every CTA stamps its phases; the 10th launch of each shape and
#      n prints the medians over CTAs): bench spmm --decode (single launches, cold L2) as the host
#      chooses, pushing at every n, pulling at every n;
#   3. s18/call3_kernel.patch (the kernel file of Session 17's call 3, 9.72 / 19.98 µs at n = 16 then):
#      --decode-layers n = 1 and 16, as a control measured in the same call.
# Logs in $OUT, a summary on stdout.
source "$(dirname "$0")/device_build.sh"
layers() {  # $1: the variant's name
  for n in 1 16; do
    timeout 60 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8 --n "$n" --reps 20 2>&1 |
      tee -a "$OUT/layers.txt" | grep llama | awk -v v="$1" '{print v, $2, $3, $4, "dense", $8, "ours", $9, $11 "x"}'
  done
}
rebuild() { cmake --build build-gpu --target vnmtune >>"$OUT/rebuild.log" 2>&1 || echo "rebuild failed"; }
layers committed
git apply experiments/kernels/s18/trace.patch && rebuild
for ab in VNM_AB=1 VNM_DECODE_PUSH_N=16 VNM_DECODE_PUSH_N=0; do
  echo "### trace $ab" | tee -a "$OUT/trace.txt"
  env $ab timeout 120 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >>"$OUT/trace.txt" 2>&1
  grep -E "^trace" "$OUT/trace.txt" | tail -9
  grep llama "$OUT/trace.txt" | tail -9 | awk '{print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), $(NF-7) "x"}'
done
git apply -R experiments/kernels/s18/trace.patch
git apply experiments/kernels/s18/call3_kernel.patch && rebuild
layers call3
git apply -R experiments/kernels/s18/call3_kernel.patch
echo "all done: $((SECONDS - t0)) s"
