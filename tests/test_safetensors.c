// safetensors: round trips through st_write / st_open, dtype conversion, and every error class
// on files the tests write themselves.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/safetensors.h"
#include "scratch_dir.h"
#include "test_helpers.h"

TestSuite(safetensors, .init = scratch_make, .fini = scratch_remove);

// A file made by hand: 8-byte length, the header text as given, then `data_len` bytes of data.
static char *raw_file(const char *name, uint64_t declared_len, const char *header, size_t data_len) {
    char *p = scratch_path(name);
    FILE *fp = fopen(p, "wb");
    cr_assert_not_null(fp);
    fwrite(&declared_len, 8, 1, fp);
    fwrite(header, 1, strlen(header), fp);
    for (size_t i = 0; i < data_len; i++) fputc((int)i, fp);
    fclose(fp);
    return p;
}
static char *hand_file(const char *name, const char *header, size_t data_len) {
    return raw_file(name, strlen(header), header, data_len);
}

static void expect_open_error(const char *path, const char *want) {
    StFile f;
    Err err;
    cr_assert_eq(st_open(&f, path, &err), -1, "opened %s", path);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    cr_assert(strstr(err.msg, path), "message '%s' lacks the path", err.msg);
}

Test(safetensors, round_trip) {
    float w[12], b[4];
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.37f - 2.f;
    for (int i = 0; i < 4; i++) b[i] = (float)i + 0.5f;
    int32_t ids[3] = {-1, 7, 1 << 30};
    uint16_t halves[5] = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x3555};  // 1, -2, 2^-24, inf, ~1/3
    const float halves_f[5] = {1.f, -2.f, 0x1p-24f, INFINITY, 0.333251953125f};
    StWriteEntry e[] = {
        {.name = "blocks.0.attn.qkv.weight", .dtype = SFT_F32, .ndim = 2, .shape = (int64_t[]){3, 4}, .f32 = w},
        {.name = "blocks.0.attn.qkv.bias", .dtype = SFT_BF16, .ndim = 1, .shape = (int64_t[]){4}, .f32 = b},
        {.name = "ids", .dtype = SFT_I32, .ndim = 1, .shape = (int64_t[]){3}, .data = ids},
        {.name = "halves", .dtype = SFT_F16, .ndim = 1, .shape = (int64_t[]){5}, .data = halves},
        {.name = "scalar", .dtype = SFT_F32, .ndim = 0, .shape = NULL, .f32 = w},
        {.name = "empty", .dtype = SFT_F32, .ndim = 2, .shape = (int64_t[]){0, 5}, .f32 = w},
    };
    StMeta meta[] = {{"format", "pt"}, {"source", "vnmtune test"}};
    char *p = scratch_path("m.safetensors");
    Err err;
    cr_assert_eq(st_write(p, e, 6, meta, 2, &err), 0, "%s", err.msg);
    cr_assert_eq(access(scratch_path("m.safetensors.tmp"), F_OK), -1);

    StFile f;
    cr_assert_eq(st_open(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n, 6);
    cr_assert_str_eq(st_metadata(&f, "format"), "pt");
    cr_assert_str_eq(st_metadata(&f, "source"), "vnmtune test");
    cr_assert_null(st_metadata(&f, "nope"));
    cr_assert_eq(f.entries[0].offset % 8, 0, "data not 8-byte aligned");
    const StEntry *q = st_find(&f, "blocks.0.attn.qkv.weight");
    cr_assert_not_null(q);
    cr_assert_eq(q->dtype, SFT_F32);
    cr_assert_eq(q->ndim, 2);
    cr_assert_eq(q->shape[1], 4);
    cr_assert_eq(q->nbytes, 48);
    cr_assert_eq(st_find(&f, "ids")->dtype, SFT_I32);
    cr_assert_eq(memcmp(f.map + st_find(&f, "ids")->offset, ids, 12), 0);

    float r[12];
    cr_assert_eq(st_read_f32(&f, "blocks.0.attn.qkv.weight", r, 2, (int64_t[]){3, 4}, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(r, w, sizeof w);
    cr_assert_eq(st_read_f32(&f, "blocks.0.attn.qkv.bias", r, 1, (int64_t[]){4}, &err), 0, "%s", err.msg);
    for (int i = 0; i < 4; i++) cr_assert_float_eq(r[i], bf16_to_f32(f32_to_bf16(b[i])), 0);
    cr_assert_eq(st_read_f32(&f, "halves", r, 1, (int64_t[]){5}, &err), 0, "%s", err.msg);
    for (int i = 0; i < 5; i++) cr_assert(r[i] == halves_f[i], "half %d: %g", i, r[i]);
    cr_assert_eq(st_read_f32(&f, "scalar", r, 0, NULL, &err), 0, "%s", err.msg);
    cr_assert_float_eq(r[0], w[0], 0);
    cr_assert_eq(st_read_f32(&f, "empty", r, 2, (int64_t[]){0, 5}, &err), 0, "%s", err.msg);

    // Into tensors: f32 <- F32, bf16 <- BF16 (bit copy), bf16 <- F32 (rounded).
    Arena a;
    arena_init(&a, "t", DEV_CPU, 1 << 14);
    Tensor *tw = tensor_new2(&a, DT_F32, 3, 4, "w");
    Tensor *tb = tensor_new1(&a, DT_BF16, 4, "b");
    Tensor *tw16 = tensor_new2(&a, DT_BF16, 3, 4, "w16");
    cr_assert_eq(st_read_tensor(&f, "blocks.0.attn.qkv.weight", tw, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(tw->data, w, sizeof w);
    cr_assert_eq(st_read_tensor(&f, "blocks.0.attn.qkv.bias", tb, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(tb->data, f.map + st_find(&f, "blocks.0.attn.qkv.bias")->offset, 8), 0);
    cr_assert_eq(st_read_tensor(&f, "blocks.0.attn.qkv.weight", tw16, &err), 0, "%s", err.msg);
    for (int i = 0; i < 12; i++) cr_assert_eq(((uint16_t *)tw16->data)[i], f32_to_bf16(w[i]));
    arena_free(&a);
    st_close(&f);
}

Test(safetensors, missing_tensor_wrong_shape_unsupported_dtype) {
    float w[12] = {0};
    int64_t i64[2] = {1, 2};
    StWriteEntry e[] = {
        {.name = "head.weight", .dtype = SFT_F32, .ndim = 2, .shape = (int64_t[]){3, 4}, .f32 = w},
        {.name = "pos", .dtype = SFT_I64, .ndim = 1, .shape = (int64_t[]){2}, .data = i64},
    };
    char *p = scratch_path("m.safetensors");
    Err err;
    cr_assert_eq(st_write(p, e, 2, NULL, 0, &err), 0, "%s", err.msg);
    StFile f;
    cr_assert_eq(st_open(&f, p, &err), 0, "%s", err.msg);
    float r[12];
    cr_assert_eq(st_read_f32(&f, "head.bias", r, 1, (int64_t[]){3}, &err), -1);
    cr_assert(strstr(err.msg, "missing tensor 'head.bias'") && strstr(err.msg, p), "%s", err.msg);
    cr_assert_eq(st_read_f32(&f, "head.weight", r, 2, (int64_t[]){3, 5}, &err), -1);
    cr_assert(strstr(err.msg, "tensor 'head.weight': expected [3, 5], file has [3, 4]"), "%s", err.msg);
    cr_assert_eq(st_read_f32(&f, "head.weight", r, 1, (int64_t[]){12}, &err), -1);
    cr_assert(strstr(err.msg, "expected [12], file has [3, 4]"), "%s", err.msg);
    cr_assert_eq(st_read_f32(&f, "pos", r, 1, (int64_t[]){2}, &err), -1);
    cr_assert(strstr(err.msg, "tensor 'pos': unsupported dtype I64"), "%s", err.msg);
    st_close(&f);

    // A dtype we list but cannot read (F64), written by hand.
    char *q = hand_file("f64.safetensors", "{\"x\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
    cr_assert_eq(st_open(&f, q, &err), 0, "%s", err.msg);
    cr_assert_eq(st_find(&f, "x")->dtype, SFT_OTHER);
    cr_assert_eq(st_read_f32(&f, "x", r, 1, (int64_t[]){2}, &err), -1);
    cr_assert(strstr(err.msg, "tensor 'x': unsupported dtype F64"), "%s", err.msg);
    st_close(&f);
}

// Hand-made headers that st_open must reject, with a piece of the message each.
static const struct {
    const char *file, *header;
    size_t data_len;
    const char *want;
} BAD_HEADERS[] = {
    {"nohead", "", 0, "malformed JSON header (0 bytes)"},  // only the length
    {"badjson", "{\"x\": {\"dtype\": \"F32\", ", 0, "malformed JSON header"},
    {"notobj", "[1, 2]", 0, "the JSON header is not an object"},
    {"noshape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'x': header entry needs"},
    {"baddt", "{\"x\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'x': unknown dtype 'Q4'"},
    {"negdim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'x': shape entry 0 is not a valid dimension"},
    {"badoffs", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
     "tensor 'x': data_offsets must be [begin, end]"},
    {"inconsistent", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
     "tensor 'x': data_offsets [0, 20] hold 20 bytes, but shape [2, 3] of F32 needs 24"},
    {"pastend", "{\"x\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 10,
     "tensor 'x': data_offsets [0, 12] go past the end of the data (10 bytes): truncated file?"},
    {"dup",
     "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     1, "tensor 'x' appears twice"},
    {"badmeta", "{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ 'a' is not a string"},
};

Test(safetensors, bad_files) {
    StFile f;
    Err err;
    cr_assert_eq(st_open(&f, scratch_path("absent.safetensors"), &err), -1);
    cr_assert(strstr(err.msg, "cannot open: No such file"), "%s", err.msg);
    char *tiny = scratch_path("tiny");
    write_bytes(tiny, "abc", 3);
    expect_open_error(tiny, "3 bytes, too short");
    expect_open_error(raw_file("biglen", 1000, "{}", 0), "header length 1000 is larger than the file (10 bytes)");
    for (size_t i = 0; i < ARRAY_LEN(BAD_HEADERS); i++)
        expect_open_error(hand_file(BAD_HEADERS[i].file, BAD_HEADERS[i].header, BAD_HEADERS[i].data_len),
                          BAD_HEADERS[i].want);
}

Test(safetensors, truncated_written_file) {
    float w[64];
    for (int i = 0; i < 64; i++) w[i] = (float)i;
    StWriteEntry e[] = {
        {.name = "a", .dtype = SFT_F32, .ndim = 2, .shape = (int64_t[]){8, 4}, .f32 = w},
        {.name = "b", .dtype = SFT_F32, .ndim = 1, .shape = (int64_t[]){32}, .f32 = w + 32},
    };
    char *p = scratch_path("m.safetensors");
    Err err;
    cr_assert_eq(st_write(p, e, 2, NULL, 0, &err), 0, "%s", err.msg);
    FILE *fp = fopen(p, "rb");
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    char *cut = scratch_path("cut.safetensors");
    fp = fopen(cut, "wb");
    fwrite(buf, 1, n - 10, fp);
    fclose(fp);
    expect_open_error(cut, "tensor 'b': data_offsets [128, 256] go past the end of the data (246 bytes)");
    fp = fopen(cut, "wb");
    fwrite(buf, 1, 30, fp);  // cut inside the header
    fclose(fp);
    expect_open_error(cut, "is larger than the file (30 bytes)");
}

Test(safetensors, failed_write_keeps_old_file) {
    float w[4] = {1, 2, 3, 4};
    StWriteEntry e = {.name = "a", .dtype = SFT_F32, .ndim = 1, .shape = (int64_t[]){4}, .f32 = w};
    Err err;
    cr_assert_eq(st_write(scratch_path("no/such/scratch/m.safetensors"), &e, 1, NULL, 0, &err), -1);
    cr_assert(strstr(err.msg, "m.safetensors.tmp: cannot create: No such file or directory"), "%s", err.msg);
    // Writing over an existing file replaces it atomically.
    char *p = scratch_path("m.safetensors");
    cr_assert_eq(st_write(p, &e, 1, NULL, 0, &err), 0, "%s", err.msg);
    w[0] = 9;
    cr_assert_eq(st_write(p, &e, 1, NULL, 0, &err), 0, "%s", err.msg);
    StFile f;
    float r[4];
    cr_assert_eq(st_open(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(st_read_f32(&f, "a", r, 1, (int64_t[]){4}, &err), 0, "%s", err.msg);
    cr_assert_float_eq(r[0], 9.f, 0);
    st_close(&f);
}
