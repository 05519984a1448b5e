// Data set conversion to the HDF5 image set format (imageset.h).
#pragma once
#include "autograd/util.h"

// Reads the Fashion-MNIST idx files in dir (see fmnist.h) and writes <out_dir>/train.h5 and
// <out_dir>/test.h5 (out_dir is created if missing). Prints one line per file written.
int imageset_convert_fmnist(const char *dir, const char *out_dir, Err *err);

// `vnmtune convert <kind> <dir> <out_dir>`: argv[0] is "convert" (or any program name), then
// kind ("fashion_mnist"), the source directory and the output directory. Returns the exit code
// (0 ok, 1 error, 2 usage).
int data_convert_main(int argc, char **argv);
