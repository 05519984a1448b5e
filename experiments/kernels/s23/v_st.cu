#define VAR_STASYNC 1
#include "experiments/kernels/s23/decode_exp.cu"
