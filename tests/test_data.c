// Data layer: Fashion-MNIST idx reader, HDF5 image sets, batch loader.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/convert.h"
#include "data/fmnist.h"
#include "data/imageset.h"
#include "data/loader.h"
#include "train/h5io.h"

// ---------------------------------------------------------------------------------------------
// helpers

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vnm_test_data_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert(system(cmd) == 0);
}

static const char *tmp_path(char *buf, const char *name) {
    snprintf(buf, 512, "%s/%s", tmpdir, name);
    return buf;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

// Writes a gzipped idx file: magic, ndim dims, then `len` data bytes.
static void write_idx_gz(const char *path, uint32_t magic, int ndim, const uint32_t *dims, const uint8_t *data,
                         size_t len) {
    gzFile g = gzopen(path, "wb");
    cr_assert(g != NULL);
    uint8_t hdr[16];
    put_be32(hdr, magic);
    for (int i = 0; i < ndim; i++) put_be32(hdr + 4 * (i + 1), dims[i]);
    cr_assert(gzwrite(g, hdr, 4 * (1 + ndim)) == 4 * (1 + ndim));
    if (len) cr_assert(gzwrite(g, data, (unsigned)len) == (int)len);
    cr_assert(gzclose(g) == Z_OK);
}

enum { SMALL_N = 5, SMALL_H = 4, SMALL_W = 3 };
static uint8_t small_pixels[SMALL_N * SMALL_H * SMALL_W];
static uint8_t small_labels[SMALL_N];

// Writes images.gz (n_images announced, n_pixel_images' worth of data) and labels.gz (n_labels).
static void write_small(int n_images, int n_pixel_images, int n_labels, uint32_t image_magic) {
    for (size_t i = 0; i < sizeof small_pixels; i++) small_pixels[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < SMALL_N; i++) small_labels[i] = (uint8_t)(9 - i);
    char p[512];
    uint32_t idims[3] = {(uint32_t)n_images, SMALL_H, SMALL_W}, ldims[1] = {(uint32_t)n_labels};
    write_idx_gz(tmp_path(p, "images.gz"), image_magic, 3, idims, small_pixels,
                 (size_t)n_pixel_images * SMALL_H * SMALL_W);
    write_idx_gz(tmp_path(p, "labels.gz"), 2049, 1, ldims, small_labels, (size_t)n_labels);
}

static int read_small(ImageSet *s, Err *err) {
    char pi[512], pl[512];
    return fmnist_read(tmp_path(pi, "images.gz"), tmp_path(pl, "labels.gz"), s, err);
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST idx reader

TestSuite(fmnist, .init = make_tmpdir, .fini = remove_tmpdir);

Test(fmnist, reads_good_file) {
    write_small(SMALL_N, SMALL_N, SMALL_N, 2051);
    ImageSet s;
    Err err = {{0}};
    cr_assert_eq(read_small(&s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n, SMALL_N);
    cr_assert_eq(s.h, SMALL_H);
    cr_assert_eq(s.w, SMALL_W);
    cr_assert_eq(s.c, 1);
    cr_assert_eq(s.num_classes, 10);
    cr_assert_str_eq(s.name, "fashion_mnist");
    cr_assert_arr_eq(s.pixels, small_pixels, sizeof small_pixels);
    for (int i = 0; i < SMALL_N; i++) cr_assert_eq(s.labels[i], 9 - i);
    imageset_free(&s);
}

static void expect_error(const char *needle1, const char *needle2) {
    ImageSet s;
    Err err = {{0}};
    cr_assert_eq(read_small(&s, &err), -1);
    cr_assert_null(s.pixels);
    cr_assert(strstr(err.msg, needle1) != NULL, "message '%s' lacks '%s'", err.msg, needle1);
    cr_assert(strstr(err.msg, needle2) != NULL, "message '%s' lacks '%s'", err.msg, needle2);
}

Test(fmnist, wrong_magic) {
    write_small(SMALL_N, SMALL_N, SMALL_N, 2049);
    expect_error("images.gz", "bad magic number 2049 at byte offset 0");
}

Test(fmnist, truncated_images) {
    write_small(SMALL_N, 3, SMALL_N, 2051);
    // 16-byte header + 3 images of 12 bytes present, 60 announced
    expect_error("images.gz: truncated", "expected 60 bytes of pixel data at byte offset 16, the data ends at "
                 "byte offset 52");
}

Test(fmnist, label_count_mismatch) {
    write_small(SMALL_N, SMALL_N, 4, 2051);
    expect_error("5 images", "labels.gz holds 4 labels");
}

Test(fmnist, trailing_bytes) {
    write_small(3, SMALL_N, 3, 2051);
    expect_error("images.gz: unexpected data after byte offset 52", "announces");
}

Test(fmnist, label_out_of_range) {
    write_small(SMALL_N, SMALL_N, SMALL_N, 2051);
    small_labels[2] = 10;
    char p[512];
    uint32_t ldims[1] = {SMALL_N};
    write_idx_gz(tmp_path(p, "labels.gz"), 2049, 1, ldims, small_labels, SMALL_N);
    expect_error("labels.gz: label 10 at byte offset 10", "out of range");
}

Test(fmnist, corrupt_gzip) {
    // A longer file, so the deflate stream has bytes to damage; then flip bits in its middle.
    enum { N = 64 };
    static uint8_t pix[N * 28 * 28], lab[N];
    for (size_t i = 0; i < sizeof pix; i++) pix[i] = (uint8_t)((i * i) >> 3);
    char pi[512], pl[512];
    uint32_t idims[3] = {N, 28, 28}, ldims[1] = {N};
    write_idx_gz(tmp_path(pi, "images.gz"), 2051, 3, idims, pix, sizeof pix);
    write_idx_gz(tmp_path(pl, "labels.gz"), 2049, 1, ldims, lab, N);
    FILE *f = fopen(pi, "r+b");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, size / 2, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
    ImageSet s;
    Err err = {{0}};
    cr_assert_eq(fmnist_read(pi, pl, &s, &err), -1);
    cr_assert(strstr(err.msg, "images.gz") && strstr(err.msg, "byte offset"), "%s", err.msg);
}

Test(fmnist, missing_file) {
    ImageSet s;
    Err err = {{0}};
    cr_assert_eq(fmnist_load(tmpdir, "train", &s, &err), -1);
    cr_assert(strstr(err.msg, "train-images-idx3-ubyte.gz: cannot open"), "%s", err.msg);
    cr_assert_eq(fmnist_load(tmpdir, "valid", &s, &err), -1);
    cr_assert(strstr(err.msg, "unknown split"), "%s", err.msg);
}

Test(fmnist, real_test_set) {
    if (access(FMNIST_DEFAULT_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("no Fashion-MNIST in " FMNIST_DEFAULT_DIR);
    ImageSet s;
    Err err = {{0}};
    cr_assert_eq(fmnist_load(FMNIST_DEFAULT_DIR, "test", &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n, 10000);
    cr_assert_eq(s.h, 28);
    cr_assert_eq(s.w, 28);
    int per_class[10] = {0};
    for (int64_t i = 0; i < s.n; i++) {
        cr_assert(s.labels[i] >= 0 && s.labels[i] < 10);
        per_class[s.labels[i]]++;
    }
    for (int k = 0; k < 10; k++) cr_assert_eq(per_class[k], 1000);
    imageset_free(&s);
}

// n images of h x w x c with pseudo-random pixels; label i % num_classes.
static ImageSet synthetic_set(int64_t n, int h, int w, int c, int num_classes) {
    ImageSet s;
    imageset_alloc(&s, n, h, w, c, num_classes, "synthetic");
    Rng r;
    rng_seed(&r, 1234);
    for (int64_t i = 0; i < n * h * w * c; i++) s.pixels[i] = (uint8_t)rng_next(&r);
    for (int64_t i = 0; i < n; i++) s.labels[i] = (int32_t)(i % num_classes);
    return s;
}

// ---------------------------------------------------------------------------------------------
// HDF5 image sets

TestSuite(imageset, .init = make_tmpdir, .fini = remove_tmpdir);

static void assert_same_images(const ImageSet *a, int64_t a_start, const ImageSet *b) {
    cr_assert_eq(a->h, b->h);
    cr_assert_eq(a->w, b->w);
    cr_assert_eq(a->c, b->c);
    cr_assert_eq(a->num_classes, b->num_classes);
    cr_assert_str_eq(a->name, b->name);
    int64_t per = imageset_image_bytes(a);
    cr_assert_arr_eq(a->pixels + a_start * per, b->pixels, (size_t)(b->n * per));
    cr_assert_arr_eq(a->labels + a_start, b->labels, (size_t)b->n * sizeof(int32_t));
}

Test(imageset, round_trip_and_range) {
    ImageSet s = synthetic_set(23, 5, 4, 3, 7), r;
    char path[512];
    Err err = {{0}};
    imageset_split_path(path, sizeof path, tmpdir, "train");
    cr_assert(strstr(path, "/train.h5"));
    cr_assert_eq(imageset_write_h5(path, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(imageset_read_h5(path, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n, 23);
    assert_same_images(&s, 0, &r);
    imageset_free(&r);
    cr_assert_eq(imageset_read_h5_range(path, 5, 9, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n, 9);
    assert_same_images(&s, 5, &r);
    imageset_free(&r);
    cr_assert_eq(imageset_read_h5_range(path, 20, -1, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n, 3);
    assert_same_images(&s, 20, &r);
    imageset_free(&r);
    cr_assert_eq(imageset_info_h5(path, &r, &err), 0, "%s", err.msg);
    cr_assert(r.n == 23 && r.h == 5 && r.w == 4 && r.c == 3 && r.num_classes == 7 && r.pixels == NULL);
    cr_assert_eq(imageset_read_h5_range(path, 20, 4, &r, &err), -1);
    cr_assert(strstr(err.msg, "images 20..24: the file holds 23"), "%s", err.msg);
    imageset_free(&s);
}

// Writes a file with /images and, optionally, /labels of the given dtype and attributes.
static void write_partial(const char *path, bool labels, DType label_dt, bool attrs) {
    ImageSet s = synthetic_set(4, 3, 3, 1, 5);
    H5File f;
    Err err = {{0}};
    cr_assert_eq(h5_create(&f, path, &err), 0, "%s", err.msg);
    int64_t ishape[4] = {4, 3, 3, 1}, n = 4;
    cr_assert_eq(h5_write(&f, "/images", DT_U8, 4, ishape, s.pixels, &err), 0, "%s", err.msg);
    float fl[4] = {0, 1, 2, 3};
    if (labels)
        cr_assert_eq(h5_write(&f, "/labels", label_dt, 1, &n, label_dt == DT_F32 ? (void *)fl : s.labels, &err), 0);
    if (attrs) {
        cr_assert_eq(h5_set_attr_i64(&f, "/", "num_classes", 5, &err), 0);
        cr_assert_eq(h5_set_attr_str(&f, "/", "name", "partial", &err), 0);
    }
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);
    imageset_free(&s);
}

static void expect_read_error(const char *path, const char *needle) {
    ImageSet r;
    Err err = {{0}};
    cr_assert_eq(imageset_read_h5(path, &r, &err), -1);
    cr_assert_null(r.pixels);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
}

Test(imageset, errors) {
    char path[512];
    tmp_path(path, "bad.h5");
    write_partial(path, false, DT_I32, true);
    expect_read_error(path, "missing dataset '/labels'");
    write_partial(path, true, DT_F32, true);
    expect_read_error(path, "'/labels': stored as float32, expected int32");
    write_partial(path, true, DT_U8, true);
    expect_read_error(path, "'/labels': stored as uint8, expected int32");
    write_partial(path, true, DT_I32, false);
    expect_read_error(path, "num_classes");
    write_partial(path, true, DT_I32, true);
    ImageSet r;
    Err err = {{0}};
    cr_assert_eq(imageset_read_h5(path, &r, &err), 0, "%s", err.msg);
    imageset_free(&r);
    // a label out of range is refused by the writer
    ImageSet s = synthetic_set(4, 3, 3, 1, 5);
    s.labels[2] = 5;
    cr_assert_eq(imageset_write_h5(path, &s, &err), -1);
    cr_assert(strstr(err.msg, "label 5 of image 2"), "%s", err.msg);
    imageset_free(&s);
    // not an HDF5 file
    FILE *f = fopen(path, "wb");
    fputs("hello", f);
    fclose(f);
    expect_read_error(path, "not an HDF5 file");
}

Test(imageset, convert_fmnist) {
    // tiny idx files under the Debian names, converted to train.h5 / test.h5
    write_small(SMALL_N, SMALL_N, SMALL_N, 2051);
    char a[512], b[512], out[512];
    const char *prefixes[2] = {"train", "t10k"};
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefixes[i]);
        cr_assert(link(tmp_path(a, "images.gz"), tmp_path(b, name)) == 0);
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefixes[i]);
        cr_assert(link(tmp_path(a, "labels.gz"), tmp_path(b, name)) == 0);
    }
    tmp_path(out, "h5");
    char *argv[] = {"convert", "fashion_mnist", tmpdir, out};
    cr_assert_eq(data_convert_main(4, argv), 0);
    ImageSet r;
    Err err = {{0}};
    const char *splits[2] = {"train", "test"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(imageset_read_h5(imageset_split_path(a, sizeof a, out, splits[i]), &r, &err), 0, "%s", err.msg);
        cr_assert_eq(r.n, SMALL_N);
        cr_assert_arr_eq(r.pixels, small_pixels, sizeof small_pixels);
        cr_assert_eq(r.labels[1], 8);
        cr_assert_str_eq(r.name, "fashion_mnist");
        imageset_free(&r);
    }
    char *bad[] = {"convert", "cifar", tmpdir, out};
    cr_assert_eq(data_convert_main(4, bad), 2);
}

// ---------------------------------------------------------------------------------------------
// loader

static void init_ok(Loader *L, const ImageSet *s, const LoaderOptions *o) {
    Err err = {{0}};
    cr_assert_eq(loader_init(L, s, o, &err), 0, "%s", err.msg);
}

// A recorded run: every loader_next result (count, then x and labels), for equality checks.
typedef struct Record {
    int calls;
    int counts[256];
    float *x;       // calls * batch floats
    int32_t *y;     // calls * B
} Record;

static void record(Loader *L, int calls, Record *rec) {
    const int B = L->opt.batch_size;
    const int64_t floats = (int64_t)B * imageset_image_bytes(L->set);
    cr_assert(calls <= 256);
    rec->calls = calls;
    rec->x = calloc((size_t)(calls * floats), sizeof(float));
    rec->y = calloc((size_t)calls * B, sizeof(int32_t));
    for (int i = 0; i < calls; i++) rec->counts[i] = loader_next(L, rec->x + i * floats, rec->y + i * B);
}

static void assert_same_records(const Record *a, int a_from, const Record *b, int64_t floats, int B) {
    for (int i = 0; i < b->calls; i++) {
        cr_assert_eq(a->counts[a_from + i], b->counts[i], "call %d", i);
        cr_assert_arr_eq(a->x + (a_from + i) * floats, b->x + i * floats, floats * sizeof(float), "call %d", i);
        cr_assert_arr_eq(a->y + (a_from + i) * B, b->y + i * B, B * sizeof(int32_t), "call %d", i);
    }
}

static void free_record(Record *r) {
    free(r->x);
    free(r->y);
}

Test(loader, deterministic_for_a_seed) {
    ImageSet s = synthetic_set(50, 6, 5, 3, 7);
    LoaderOptions o = loader_train_options(8, 42);
    Loader a, b, c;
    init_ok(&a, &s, &o);
    init_ok(&b, &s, &o);
    o.seed = 43;
    init_ok(&c, &s, &o);
    Record ra, rb, rc;
    record(&a, 20, &ra);
    record(&b, 20, &rb);
    record(&c, 20, &rc);
    int64_t floats = 8 * imageset_image_bytes(&s);
    assert_same_records(&ra, 0, &rb, floats, 8);
    cr_assert(memcmp(ra.y, rc.y, 20 * 8 * sizeof(int32_t)) != 0, "another seed gives another order");
    free_record(&ra), free_record(&rb), free_record(&rc);
    loader_free(&a), loader_free(&b), loader_free(&c);
    imageset_free(&s);
}

// Data parallel: the shards of 2 loaders (augmenting, crossing epochs) are the halves of each batch.
Test(loader, shards_split_each_batch) {
    ImageSet s = synthetic_set(50, 6, 5, 3, 7);
    LoaderOptions o = loader_train_options(8, 42);
    Loader whole, part[2];
    init_ok(&whole, &s, &o);
    Record rw, rp[2];
    record(&whole, 20, &rw);
    o.shards = 2;
    for (int r = 0; r < 2; r++) {
        o.shard = r;
        init_ok(&part[r], &s, &o);
        record(&part[r], 20, &rp[r]);
    }
    int64_t floats = 8 * imageset_image_bytes(&s), half = floats / 2;
    for (int i = 0; i < 20; i++)
        for (int r = 0; r < 2; r++) {
            cr_assert_eq(rp[r].counts[i], rw.counts[i] / 2, "call %d", i);
            cr_assert_arr_eq(rp[r].x + i * floats, rw.x + i * floats + r * half, (size_t)half * sizeof(float), "call %d", i);
            cr_assert_arr_eq(rp[r].y + i * 8, rw.y + i * 8 + r * 4, 4 * sizeof(int32_t), "call %d", i);
        }
    free_record(&rw), free_record(&rp[0]), free_record(&rp[1]);
    loader_free(&whole), loader_free(&part[0]), loader_free(&part[1]);
    imageset_free(&s);
}

// Collects the sample indices of one epoch (until loader_next returns 0).
static int collect_epoch(Loader *L, float *x, int32_t *y, int64_t *seen, int *batches) {
    int total = 0, count;
    *batches = 0;
    while ((count = loader_next(L, x, y)) > 0) {
        int k;
        const int64_t *idx = loader_batch_indices(L, &k);
        cr_assert_eq(k, count);
        for (int i = 0; i < count; i++) {
            cr_assert_eq(y[i], L->set->labels[idx[i]]);
            seen[total++] = idx[i];
        }
        (*batches)++;
    }
    return total;
}

Test(loader, every_sample_once_per_epoch) {
    ImageSet s = synthetic_set(50, 4, 4, 1, 10);
    float x[8 * 16];
    int32_t y[8];
    int64_t seen[64], prev[64];
    int batches;
    // eval: all 50 in order, last batch of 2 kept
    Loader L;
    LoaderOptions o = loader_eval_options(8);
    init_ok(&L, &s, &o);
    cr_assert_eq(loader_batches_per_epoch(&L), 7);
    for (int epoch = 0; epoch < 2; epoch++) {
        cr_assert_eq(collect_epoch(&L, x, y, seen, &batches), 50);
        cr_assert_eq(batches, 7);
        for (int i = 0; i < 50; i++) cr_assert_eq(seen[i], i);
    }
    loader_free(&L);
    // train: 6 full batches of distinct samples, a new order every epoch
    o = loader_train_options(8, 7);
    init_ok(&L, &s, &o);
    cr_assert_eq(loader_batches_per_epoch(&L), 6);
    for (int epoch = 0; epoch < 3; epoch++) {
        cr_assert_eq(collect_epoch(&L, x, y, seen, &batches), 48);
        cr_assert_eq(batches, 6);
        bool used[50] = {false};
        for (int i = 0; i < 48; i++) {
            cr_assert(seen[i] >= 0 && seen[i] < 50 && !used[seen[i]]);
            used[seen[i]] = true;
        }
        if (epoch > 0) cr_assert(memcmp(seen, prev, 48 * sizeof(int64_t)) != 0, "reshuffled each epoch");
        memcpy(prev, seen, sizeof prev);
    }
    loader_free(&L);
    // limit: only the first 20 samples
    o = loader_eval_options(8);
    o.limit = 20;
    o.shuffle = true;
    init_ok(&L, &s, &o);
    cr_assert_eq(collect_epoch(&L, x, y, seen, &batches), 20);
    bool used[20] = {false};
    for (int i = 0; i < 20; i++) {
        cr_assert(seen[i] < 20 && !used[seen[i]]);
        used[seen[i]] = true;
    }
    loader_free(&L);
    imageset_free(&s);
}

// Runs 2+ epochs straight, and the same from a state saved after `cut` calls in a fresh loader.
static void check_resume(const LoaderOptions *o, int cut) {
    ImageSet s = synthetic_set(37, 6, 6, 2, 5);
    const int B = o->batch_size, calls = 14;
    const int64_t floats = (int64_t)B * imageset_image_bytes(&s);
    Loader straight, first, second;
    Record all, head, tail;
    init_ok(&straight, &s, o);
    record(&straight, calls, &all);
    init_ok(&first, &s, o);
    record(&first, cut, &head);
    uint64_t state[LOADER_STATE_WORDS];
    loader_state_get(&first, state);
    loader_free(&first);
    init_ok(&second, &s, o);
    Err err = {{0}};
    cr_assert_eq(loader_state_set(&second, state, &err), 0, "%s", err.msg);
    record(&second, calls - cut, &tail);
    assert_same_records(&all, 0, &head, floats, B);
    assert_same_records(&all, cut, &tail, floats, B);
    free_record(&all), free_record(&head), free_record(&tail);
    loader_free(&straight), loader_free(&second);
    imageset_free(&s);
}

Test(loader, exact_resume) {
    // train: 37 samples, B 8 -> 4 batches + the 0 at the end of each epoch: 5 calls per epoch
    LoaderOptions o = loader_train_options(8, 99);
    for (int cut = 0; cut <= 12; cut++) check_resume(&o, cut);  // mid-epoch, at the 0, in epoch 2
    o = loader_eval_options(8);                                  // 5 batches + 0 per epoch
    o.shuffle = true;
    o.seed = 5;
    check_resume(&o, 3);
    check_resume(&o, 8);
}

Test(loader, state_errors) {
    ImageSet s = synthetic_set(20, 4, 4, 1, 10);
    LoaderOptions o = loader_train_options(4, 1);
    Loader a, b;
    init_ok(&a, &s, &o);
    uint64_t st[LOADER_STATE_WORDS];
    loader_state_get(&a, st);
    o.seed = 2;
    init_ok(&b, &s, &o);
    Err err = {{0}};
    cr_assert_eq(loader_state_set(&b, st, &err), -1);
    cr_assert(strstr(err.msg, "another seed"), "%s", err.msg);
    st[0] ^= 1;
    cr_assert_eq(loader_state_set(&a, st, &err), -1);
    cr_assert(strstr(err.msg, "bad tag"), "%s", err.msg);
    loader_free(&a), loader_free(&b);
    imageset_free(&s);
}

Test(loader, options_errors) {
    ImageSet s = synthetic_set(6, 4, 4, 1, 10);
    Loader L;
    Err err = {{0}};
    LoaderOptions o = loader_train_options(8, 1);
    cr_assert_eq(loader_init(&L, &s, &o, &err), -1);
    cr_assert(strstr(err.msg, "fewer than one batch"), "%s", err.msg);
    o = loader_eval_options(8);  // eval keeps the partial batch: fine
    init_ok(&L, &s, &o);
    loader_free(&L);
    o.std[0] = 0.0f;
    cr_assert_eq(loader_init(&L, &s, &o, &err), -1);
    o = loader_eval_options(0);
    cr_assert_eq(loader_init(&L, &s, &o, &err), -1);
    imageset_free(&s);
}

Test(loader, normalisation_and_chw_layout) {
    ImageSet s = synthetic_set(10, 3, 5, 3, 10);
    LoaderOptions o = loader_eval_options(4);
    float mean[3] = {0.5f, 0.25f, 0.0f}, std[3] = {0.25f, 0.5f, 2.0f};
    memcpy(o.mean, mean, sizeof mean);
    memcpy(o.std, std, sizeof std);
    Loader L;
    init_ok(&L, &s, &o);
    float x[4 * 3 * 3 * 5];
    int32_t y[4];
    cr_assert_eq(loader_next(&L, x, y), 4);
    for (int b = 0; b < 4; b++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 5; j++) {
                    uint8_t p = s.pixels[((b * 3 + i) * 5 + j) * 3 + c];
                    float want = ((float)p / 255.0f - mean[c]) / std[c];
                    cr_assert_float_eq(x[((b * 3 + c) * 3 + i) * 5 + j], want, 1e-6f);
                }
    loader_free(&L);
    imageset_free(&s);
}

// L: an augmenting train loader over s (batch B, seed), normalised with (mean, std).
// Returns a buffer for one batch of x (free it).
static float *init_train_ok(Loader *L, const ImageSet *s, int B, uint64_t seed, float mean, float std) {
    LoaderOptions o = loader_train_options(B, seed);
    loader_options_set_norm(&o, mean, std);
    init_ok(L, s, &o);
    return malloc((size_t)(B * imageset_image_bytes(s)) * sizeof(float));
}

// Does out (C,H,W) equal src (H,W,C) shifted by (dy, dx), zero padded, mirrored when flip?
static bool matches_shift(const ImageSet *s, const Loader *L, const uint8_t *src, const float *out, int dy, int dx,
                          bool flip) {
    for (int c = 0; c < s->c; c++)
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++) {
                int sy = y + dy, sx = (flip ? s->w - 1 - x : x) + dx;
                uint8_t p = sy >= 0 && sy < s->h && sx >= 0 && sx < s->w ? src[(sy * s->w + sx) * s->c + c] : 0;
                if (out[(c * s->h + y) * s->w + x] != L->lut[c][p]) return false;
            }
    return true;
}

Test(loader, augmentation_only_shifts_and_flips) {
    ImageSet s = synthetic_set(64, 8, 7, 2, 10);
    Loader L;
    float *x = init_train_ok(&L, &s, 16, 3, 0.3f, 0.2f);
    const int64_t per = imageset_image_bytes(&s);
    int32_t y[16];
    int flips = 0, shifted = 0, total = 0;
    for (int batch = 0; batch < 4; batch++) {
        cr_assert_eq(loader_next(&L, x, y), 16);
        int count;
        const int64_t *idx = loader_batch_indices(&L, &count);
        for (int b = 0; b < count; b++) {
            const uint8_t *src = s.pixels + idx[b] * per;
            bool found = false;
            for (int dy = -2; dy <= 2 && !found; dy++)
                for (int dx = -2; dx <= 2 && !found; dx++)
                    for (int f = 0; f < 2 && !found; f++)
                        if (matches_shift(&s, &L, src, x + b * per, dy, dx, f)) {
                            found = true;
                            flips += f;
                            shifted += dy != 0 || dx != 0;
                        }
            cr_assert(found, "batch %d sample %d is not a shift/flip of its source", batch, b);
            total++;
        }
    }
    cr_assert(flips > total / 4 && flips < 3 * total / 4, "%d flips of %d", flips, total);
    cr_assert(shifted > total / 2, "%d shifted of %d", shifted, total);
    free(x);
    loader_free(&L);
    imageset_free(&s);
}

Test(loader, speed_fmnist_batch) {
    ImageSet s = synthetic_set(2048, 28, 28, 1, 10);
    Loader L;
    float *x = init_train_ok(&L, &s, 128, 1, 0.286f, 0.353f);
    int32_t y[128];
    int batches = 0;
    double t0 = now_seconds();
    while (batches < 500)
        if (loader_next(&L, x, y)) batches++;
    double ms = (now_seconds() - t0) * 1e3 / batches;
    printf("loader: %.3f ms per augmented 128 x 28 x 28 batch\n", ms);
    cr_assert(ms < 5.0, "%.3f ms per batch", ms);  // typically ~0.1 ms; loose for a busy machine
    free(x);
    loader_free(&L);
    imageset_free(&s);
}
