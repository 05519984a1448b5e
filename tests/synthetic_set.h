// Test helper: a tiny synthetic image set (8×8 grey, 4 classes: class k has brightness around
// 60·k) written as the HDF5 splits "train" (256 images) and "test" (64) into a directory.
#pragma once
#include <criterion/criterion.h>

#include "autograd/rng.h"
#include "data/imageset.h"

__attribute__((unused)) static void synthetic_set_write(const char *dir) {
    Rng r;
    rng_seed(&r, 5);
    const char *splits[] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        ImageSet set;
        imageset_alloc(&set, s ? 64 : 256, 8, 8, 1, 4, "synthetic");
        for (int64_t i = 0; i < set.n; i++) {
            int label = (int)(rng_next(&r) % 4);
            set.labels[i] = label;
            for (int p = 0; p < 64; p++) set.pixels[i * 64 + p] = (uint8_t)(rng_next(&r) % 48 + 60 * label);
        }
        char path[400];
        Err err;
        cr_assert_eq(imageset_write_h5(imageset_split_path(path, sizeof path, dir, splits[s]), &set, &err), 0, "%s", err.msg);
        imageset_free(&set);
    }
}
