// Token files in llm.c's format (karpathy/llm.c dev/data/data_common.py write_datafile), so that
// token shards made by its data scripts (or any tokenizer + a few lines of numpy) load as they are:
//   header  256 × int32 little-endian: [0] = 20240520 (magic), [1] = 1 (version), [2] = number of
//           tokens n, the rest 0
//   tokens  n × uint16 little-endian, right after the header (byte 1024); nothing after them
// The file is memory-mapped. Opening checks the header, the size and that every token is below the
// model's vocabulary; errors name the file and the byte offset or the token index.
//
// Windows: the model reads `len` consecutive tokens at a time (data.seq_len) and predicts tokens
// 1..len-1 of the window from the ones before (llama_shift_labels).
//   sequential  window k = tokens [k·len, (k+1)·len): contiguous, non-overlapping (evaluation;
//               the n mod len tokens at the end are not used)
//   random      each window starts at a uniform offset in [0, n - len] (calibration), drawn from an
//               Rng seeded by `seed`, so the same seed gives the same windows
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/rng.h"
#include "autograd/util.h"

#define TOKENS_MAGIC 20240520
#define TOKENS_VERSION 1
#define TOKENS_HEADER_INTS 256

typedef struct TokenFile {
    char path[512];
    const uint16_t *tokens;  // n tokens (inside the mapping)
    int64_t n;
    void *map;               // the whole file, mapped read-only
    size_t map_bytes;
} TokenFile;

// vocab_size > 0: every token must be below it (0: no check).
int token_file_open(TokenFile *f, const char *path, int vocab_size, Err *err);
void token_file_close(TokenFile *f);
// Writes tokens (each in [0, 65535]) as a token file.
int token_file_write(const char *path, const int32_t *tokens, int64_t n, Err *err);

typedef struct TokenWindows {
    const TokenFile *f;      // borrowed
    int64_t len;             // tokens per window
    int64_t count;           // sequential: windows in the file (n / len); random: unbounded (INT64_MAX)
    int64_t next;            // sequential: the next window
    bool random;
    Rng rng;
} TokenWindows;

// Errors when the file holds fewer than `len` tokens (len >= 2).
int token_windows_init(TokenWindows *w, const TokenFile *f, int64_t len, bool random, uint64_t seed, Err *err);
// The next `count` windows as (count, len) int32 ids; returns how many were written (sequential:
// fewer at the end of the file, 0 after the last).
int token_windows_next(TokenWindows *w, int count, int32_t *ids);

// `vnmtune convert tokens IN.txt OUT.bin`: whitespace- or comma-separated token ids -> a token file.
int tokens_convert_text(const char *in, const char *out, Err *err);
