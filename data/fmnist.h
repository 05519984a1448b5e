// Fashion-MNIST (and MNIST) from idx files, gzipped or not, as Debian's dataset-fashion-mnist
// installs them in /usr/share/datasets/fashion-mnist/:
//   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (60000 images)
//   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (10000 images)
// idx format: big-endian uint32 magic (2051 = images, 3 dims; 2049 = labels, 1 dim), then the
// big-endian uint32 dims, then the uint8 data. Result: an ImageSet of n x 28 x 28 x 1, 10 classes.
// Every check failure (magic, counts, truncation, trailing bytes, label range, gzip corruption)
// is an Err naming the file and the byte offset (in the uncompressed stream).
#pragma once
#include "data/imageset.h"

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_NUM_CLASSES 10

// Reads an idx3 image file and its idx1 label file into out (name "fashion_mnist").
int fmnist_read(const char *images_path, const char *labels_path, ImageSet *out, Err *err);
// split "train" or "test" (alias "t10k"): reads <dir>/<prefix>-{images-idx3,labels-idx1}-ubyte.gz,
// falling back to the names without .gz when the .gz file does not exist.
int fmnist_load(const char *dir, const char *split, ImageSet *out, Err *err);
