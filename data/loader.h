// Batch loader over an in-memory ImageSet, for training and evaluation.
//
// Each call to loader_next() fills caller buffers with one batch:
//   x       float (B, C, H, W)  (CHW, as PyTorch), normalised: (pixel/255 - mean[c]) / std[c]
//   labels  int32 (B)
// Epochs: the samples [0, n) (n = limit if 0 < limit < set->n, else set->n) are visited once per
// epoch, in a random order when shuffle is set. The order of epoch e is a Fisher-Yates shuffle
// of 0..n-1 drawn from an Rng seeded by (seed, e), so any epoch's order can be rebuilt from e.
// Augmentation (training): a random crop of the image zero-padded by `pad` pixels on each side
// (the padding is pixel value 0, normalised like any pixel, as torchvision's RandomCrop(padding)
// before Normalize), then a horizontal flip with probability 1/2. Its draws come from a second
// Rng, 3 draws per sample in batch order.
// Last partial batch: dropped when drop_last (training), returned with its actual size otherwise.
// When an epoch has no full batch left, loader_next() returns 0 once and moves to the next epoch
// (reshuffled); the following call returns that epoch's first batch.
//
// Exact resume: loader_state_get() writes LOADER_STATE_WORDS uint64 values (a tag, a
// fingerprint of seed/n/shuffle/augment/pad, the epoch, the position in the epoch, the 4 words of
// the augmentation Rng); loader_state_set() on a loader made with the same options over the same
// set continues with exactly the batches the saved loader would have produced.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/rng.h"
#include "autograd/util.h"
#include "data/imageset.h"

#define LOADER_MAX_CHANNELS 4
#define LOADER_STATE_WORDS 8

typedef struct LoaderOptions {
    int batch_size;
    bool shuffle;
    bool augment;                      // random crop (zero padding `pad`) + horizontal flip
    int pad;                           // crop padding in pixels (2 for Fashion-MNIST)
    bool drop_last;                    // drop the last partial batch of each epoch
    int64_t limit;                     // use only the first `limit` samples (0 = all)
    uint64_t seed;                     // shuffling and augmentation
    float mean[LOADER_MAX_CHANNELS];   // per channel, in [0, 1] units
    float std[LOADER_MAX_CHANNELS];
    int shard, shards;                 // data parallel: loader_next returns only samples
                                       // [shard·count/shards, (shard+1)·count/shards) of each batch
                                       // (shards <= 1: all); order and augmentation draws stay those
                                       // of the whole batch, so the shards of all ranks = the batch
} LoaderOptions;

// Training: shuffle, augment with pad 2, drop_last. Eval: none of these. Both: mean 0, std 1.
LoaderOptions loader_train_options(int batch_size, uint64_t seed);
LoaderOptions loader_eval_options(int batch_size);
// Sets the same mean and std on every channel.
void loader_options_set_norm(LoaderOptions *opt, float mean, float std);

typedef struct Loader {
    const ImageSet *set;     // borrowed; must outlive the loader
    LoaderOptions opt;
    int64_t n;               // samples used per epoch
    int64_t *order;          // this epoch's sample order, n entries
    uint64_t epoch;          // current epoch (0-based)
    int64_t pos;             // next position in order
    int64_t batch_start;     // position of the last returned batch (for loader_batch_indices)
    int batch_count;         // size of the last returned batch
    Rng aug_rng;             // augmentation draws
    float lut[LOADER_MAX_CHANNELS][256];  // normalised value of each pixel byte, per channel
} Loader;

// Errors (user input): batch_size < 1, a set with more than LOADER_MAX_CHANNELS channels, a
// std of 0, or drop_last with fewer samples than one batch.
int loader_init(Loader *L, const ImageSet *set, const LoaderOptions *opt, Err *err);
void loader_free(Loader *L);

// Fills x (batch_size * C * H * W floats) and labels (batch_size ints) and returns the number
// of samples in the batch (in this shard, see LoaderOptions.shards) (batch_size, or fewer for the last batch without drop_last), or 0 at
// the end of an epoch (see above).
int loader_next(Loader *L, float *x, int32_t *labels);
// Like loader_next, but never returns 0: crosses epoch boundaries (for step-based training).
int loader_next_wrap(Loader *L, float *x, int32_t *labels);
// Indices into the set of the samples of the last returned batch (the whole batch, all shards); *count is its size.
const int64_t *loader_batch_indices(const Loader *L, int *count);
// Full batches per epoch (plus the partial one without drop_last).
int64_t loader_batches_per_epoch(const Loader *L);
// Back to the state right after loader_init (epoch 0, position 0, augmentation Rng re-seeded).
void loader_reset(Loader *L);

void loader_state_get(const Loader *L, uint64_t out[LOADER_STATE_WORDS]);
// Errors when the state is not a loader state, or was saved with another seed, sample count,
// shuffle/augment setting or padding.
int loader_state_set(Loader *L, const uint64_t in[LOADER_STATE_WORDS], Err *err);
