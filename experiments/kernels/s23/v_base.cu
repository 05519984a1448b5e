
#include "experiments/kernels/s23/decode_exp.cu"
