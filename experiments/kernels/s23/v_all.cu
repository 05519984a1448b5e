#define VAR_STASYNC 1
#define VAR_EARLY 1
#define VAR_XSPLIT 1
#include "experiments/kernels/s23/decode_exp.cu"
