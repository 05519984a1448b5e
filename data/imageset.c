// In-memory ImageSet helpers (the HDF5 part is in imageset_h5.c).
#include "data/imageset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void imageset_alloc(ImageSet *s, int64_t n, int h, int w, int c, int num_classes, const char *name) {
    CHECK(n >= 0 && h > 0 && w > 0 && c > 0, "imageset_alloc: bad shape (%lld, %d, %d, %d)",
          (long long)n, h, w, c);
    memset(s, 0, sizeof *s);
    s->n = n;
    s->h = h;
    s->w = w;
    s->c = c;
    s->num_classes = num_classes;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    s->pixels = xmalloc((size_t)(n * imageset_image_bytes(s)));
    s->labels = xmalloc((size_t)n * sizeof(int32_t));
}

void imageset_free(ImageSet *s) {
    free(s->pixels);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

const char *imageset_split_path(char *buf, size_t size, const char *dir, const char *split) {
    int n = snprintf(buf, size, "%s/%s.h5", dir, split);
    CHECK(n >= 0 && (size_t)n < size, "imageset_split_path: path too long: %s/%s.h5", dir, split);
    return buf;
}
