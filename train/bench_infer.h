// `vnmtune bench infer`: DeiT forward throughput on the GPU, dense (cuBLASLt) vs the V:N:M sparse
// path (train/vnm_linear.h) on the same pruned weights, in one run; checks that the logits agree.
#pragma once

int bench_infer_main(int argc, char **argv);
