// Batch loader (see loader.h).
#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#define LOADER_STATE_TAG 0x564e4d4c44523031ull  // "VNMLDR01"
#define SHUFFLE_STREAM 0xa0761d6478bd642full
#define AUGMENT_STREAM 0xe7037ed1a0b428dbull

LoaderOptions loader_eval_options(int batch_size) {
    LoaderOptions o = {0};
    o.batch_size = batch_size;
    loader_options_set_norm(&o, 0.0f, 1.0f);
    return o;
}

LoaderOptions loader_train_options(int batch_size, uint64_t seed) {
    LoaderOptions o = loader_eval_options(batch_size);
    o.shuffle = o.augment = o.drop_last = true;
    o.pad = 2;
    o.seed = seed;
    return o;
}

void loader_options_set_norm(LoaderOptions *opt, float mean, float std) {
    for (int c = 0; c < LOADER_MAX_CHANNELS; c++) {
        opt->mean[c] = mean;
        opt->std[c] = std;
    }
}

// The order of epoch e depends only on (seed, e): Fisher-Yates over the identity.
static void make_order(Loader *L) {
    for (int64_t i = 0; i < L->n; i++) L->order[i] = i;
    if (!L->opt.shuffle) return;
    Rng r;
    rng_seed(&r, L->opt.seed ^ (SHUFFLE_STREAM * (L->epoch + 1)));
    for (int64_t i = L->n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = L->order[i];
        L->order[i] = L->order[j];
        L->order[j] = t;
    }
}

void loader_reset(Loader *L) {
    L->epoch = 0;
    L->pos = 0;
    L->batch_start = 0;
    L->batch_count = 0;
    rng_seed(&L->aug_rng, L->opt.seed ^ AUGMENT_STREAM);
    make_order(L);
}

int loader_init(Loader *L, const ImageSet *set, const LoaderOptions *opt, Err *err) {
    memset(L, 0, sizeof *L);
    if (opt->batch_size < 1) return err_set(err, "data loader: batch size %d < 1", opt->batch_size);
    if (set->c < 1 || set->c > LOADER_MAX_CHANNELS)
        return err_set(err, "data loader: %s has %d channels (supported 1..%d)", set->name, set->c,
                       LOADER_MAX_CHANNELS);
    if (opt->augment && (opt->pad < 0 || opt->pad >= set->h || opt->pad >= set->w))
        return err_set(err, "data loader: crop padding %d out of range for %dx%d images", opt->pad, set->h,
                       set->w);
    int64_t n = opt->limit > 0 && opt->limit < set->n ? opt->limit : set->n;
    if (n == 0 || (opt->drop_last && n < opt->batch_size))
        return err_set(err, "data loader: %s has %lld samples (limit %lld), fewer than one batch of %d",
                       set->name, (long long)n, (long long)opt->limit, opt->batch_size);
    for (int c = 0; c < set->c; c++) {
        if (!(opt->std[c] > 0.0f))
            return err_set(err, "data loader: std of channel %d is %g (must be > 0)", c, opt->std[c]);
        for (int v = 0; v < 256; v++) L->lut[c][v] = ((float)v / 255.0f - opt->mean[c]) / opt->std[c];
    }
    L->set = set;
    L->opt = *opt;
    L->n = n;
    L->order = xmalloc((size_t)n * sizeof *L->order);
    loader_reset(L);
    return 0;
}

void loader_free(Loader *L) {
    free(L->order);
    memset(L, 0, sizeof *L);
}

// One HWC uint8 image -> CHW floats, shifted by (dy, dx) (source = output + shift, out of range =
// pixel 0) and mirrored horizontally when flip (the crop comes first, as crop-then-flip).
static void convert_image(const Loader *L, const uint8_t *src, float *dst, int dy, int dx, bool flip) {
    const int H = L->set->h, W = L->set->w, C = L->set->c;
    for (int c = 0; c < C; c++) {
        const float *lut = L->lut[c];
        for (int y = 0; y < H; y++, dst += W) {
            int sy = y + dy;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++) dst[x] = lut[0];
                continue;
            }
            const uint8_t *row = src + (size_t)sy * W * C + c;
            if (dx == 0 && !flip) {
                for (int x = 0; x < W; x++) dst[x] = lut[row[x * C]];
                continue;
            }
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + dx;
                dst[x] = sx >= 0 && sx < W ? lut[row[sx * C]] : lut[0];
            }
        }
    }
}

int loader_next(Loader *L, float *x, int32_t *labels) {
    const int64_t B = L->opt.batch_size, left = L->n - L->pos;
    if (left <= 0 || (L->opt.drop_last && left < B)) {
        L->epoch++;
        L->pos = 0;
        L->batch_count = 0;
        make_order(L);
        return 0;
    }
    const int count = (int)(left < B ? left : B);
    const int64_t image_bytes = imageset_image_bytes(L->set);
    const int64_t image_floats = image_bytes;  // C*H*W either way
    const int pad = L->opt.pad;
    int lo = 0, hi = count;  // this shard's samples
    if (L->opt.shards > 1) {
        lo = count * L->opt.shard / L->opt.shards;
        hi = count * (L->opt.shard + 1) / L->opt.shards;
    }
    for (int b = 0; b < count; b++) {
        int64_t k = L->order[L->pos + b];
        int dy = 0, dx = 0;
        bool flip = false;
        if (L->opt.augment) {
            // crop offset in the padded image is in [0, 2*pad]; as a shift of the source: -pad..pad
            dy = (int)rng_below(&L->aug_rng, 2 * (uint64_t)pad + 1) - pad;
            dx = (int)rng_below(&L->aug_rng, 2 * (uint64_t)pad + 1) - pad;
            flip = rng_next(&L->aug_rng) >> 63;
        }
        if (b < lo || b >= hi) continue;
        convert_image(L, L->set->pixels + k * image_bytes, x + (b - lo) * image_floats, dy, dx, flip);
        labels[b - lo] = L->set->labels[k];
    }
    L->batch_start = L->pos;
    L->batch_count = count;
    L->pos += count;
    return hi - lo;
}

int loader_next_wrap(Loader *L, float *x, int32_t *labels) {
    int count = loader_next(L, x, labels);
    return count ? count : loader_next(L, x, labels);  // loader_init ensures an epoch has a batch
}

const int64_t *loader_batch_indices(const Loader *L, int *count) {
    *count = L->batch_count;
    return L->order + L->batch_start;
}

int64_t loader_batches_per_epoch(const Loader *L) {
    int64_t B = L->opt.batch_size;
    return L->opt.drop_last ? L->n / B : (L->n + B - 1) / B;
}

// What must match for a saved state to mean the same sequence.
static uint64_t fingerprint(const Loader *L) {
    uint64_t h = L->opt.seed;
    uint64_t words[4] = {(uint64_t)L->n, L->opt.shuffle, L->opt.augment, (uint64_t)L->opt.pad};
    for (int i = 0; i < 4; i++) {
        h ^= words[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h = splitmix64(&h);
    }
    return h;
}

void loader_state_get(const Loader *L, uint64_t out[LOADER_STATE_WORDS]) {
    out[0] = LOADER_STATE_TAG;
    out[1] = fingerprint(L);
    out[2] = L->epoch;
    out[3] = (uint64_t)L->pos;
    for (int i = 0; i < 4; i++) out[4 + i] = L->aug_rng.s[i];
}

int loader_state_set(Loader *L, const uint64_t in[LOADER_STATE_WORDS], Err *err) {
    if (in[0] != LOADER_STATE_TAG) return err_set(err, "data loader state: bad tag (not a loader state)");
    if (in[1] != fingerprint(L))
        return err_set(err, "data loader state: saved with another seed, sample count (limit), shuffle, "
                       "augment or padding setting than this loader's");
    if (in[3] > (uint64_t)L->n)
        return err_set(err, "data loader state: position %llu beyond the %lld samples of an epoch",
                       (unsigned long long)in[3], (long long)L->n);
    L->epoch = in[2];
    L->pos = (int64_t)in[3];
    L->batch_start = L->pos;
    L->batch_count = 0;
    for (int i = 0; i < 4; i++) L->aug_rng.s[i] = in[4 + i];
    make_order(L);
    return 0;
}
