// A labelled image set held in memory, and its on-disk HDF5 format.
//
// In memory: uint8 pixels in (N, H, W, C) order (HWC, as stored by PIL/numpy) and int32 labels.
//
// On disk, one HDF5 file per split:
//   /images   uint8  (N, H, W, C)
//   /labels   int32  (N)            every label in [0, num_classes)
//   attributes on the root group "/":
//     num_classes  int64
//     name         string           e.g. "fashion_mnist", "imagenet"
//   other attributes are ignored (images_to_h5.py adds class_names, the newline-joined folder names)
// Naming rule: a prepared data set is a directory <dir> holding <dir>/<split>.h5, where <split>
// is "train", "test" or "val" (imageset_split_path builds the path). Files are written by
// imageset_write_h5 (C, e.g. `vnmtune convert fashion_mnist`) or data/images_to_h5.py
// (ImageFolder trees such as ImageNet); the reader accepts chunked/compressed datasets too.
// A set too large for memory (ImageNet train) is read in ranges (imageset_read_h5_range).
#pragma once
#include <stdint.h>

#include "autograd/util.h"

#define IMAGESET_NAME_LEN 64

typedef struct ImageSet {
    int64_t n;             // number of images
    int h, w, c;           // height, width, channels
    uint8_t *pixels;       // (n, h, w, c), malloc'd (NULL in a header-only ImageSet)
    int32_t *labels;       // (n), malloc'd
    int num_classes;
    char name[IMAGESET_NAME_LEN];
} ImageSet;

// Allocates pixels and labels (uninitialised) for n images of h x w x c.
void imageset_alloc(ImageSet *s, int64_t n, int h, int w, int c, int num_classes, const char *name);
void imageset_free(ImageSet *s);                  // frees and zeroes; safe on a zeroed ImageSet
static inline int64_t imageset_image_bytes(const ImageSet *s) { return (int64_t)s->h * s->w * s->c; }

// "<dir>/<split>.h5" into buf (fatal if it does not fit).
const char *imageset_split_path(char *buf, size_t size, const char *dir, const char *split);

// ---- HDF5 (data/imageset_h5.c) ----
// Writes s to path (through path.tmp, renamed at the end; see train/h5io.h).
int imageset_write_h5(const char *path, const ImageSet *s, Err *err);
// Reads the whole file.
int imageset_read_h5(const char *path, ImageSet *out, Err *err);
// Reads images [start, start + count) only (count < 0: up to the end). out->n is the count read.
int imageset_read_h5_range(const char *path, int64_t start, int64_t count, ImageSet *out, Err *err);
// Reads only the shape, num_classes and name (pixels and labels stay NULL).
int imageset_info_h5(const char *path, ImageSet *out, Err *err);
