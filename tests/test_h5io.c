// h5io: round trips of every dtype, attributes, listing, and the errors a user can hit.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/h5io.h"
#include "scratch_dir.h"
#include "test_helpers.h"

TestSuite(h5io, .init = scratch_make, .fini = scratch_remove);

// One file with a dataset of every dtype.
static float f32v[6] = {1.5f, -2.25f, 3e-8f, 0.f, 1e30f, -7.f};
static uint16_t bf16v[6] = {0x3f80, 0xbf80, 0x0001, 0x7f80, 0x4049, 0};
static uint8_t u8v[6] = {0, 1, 2, 200, 254, 255};
static int32_t i32v[6] = {-5, 0, 7, 2147483647, -2147483647, 42};
static uint16_t u16v[6] = {0, 1, 65535, 300, 4, 5};
static uint64_t u64v[3] = {0, 0xfedcba9876543210ull, 42};
static const int64_t shape23[2] = {2, 3};

static void write_sample(const char *path) {
    H5File f;
    Err err;
    cr_assert_eq(h5_create(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/model/a.weight", DT_F32, 2, shape23, f32v, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/model/b", DT_BF16, 2, shape23, bf16v, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/mask/deep/x", DT_U8, 1, (int64_t[]){6}, u8v, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/i", DT_I32, 3, (int64_t[]){1, 2, 3}, i32v, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write_u16(&f, "/u16", 2, shape23, u16v, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write_u64(&f, "/state/words", 3, u64v, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);
}

Test(h5io, round_trip_all_dtypes) {
    char *p = scratch_path("a.h5");
    write_sample(p);
    cr_assert_neq(access(p, F_OK), -1);
    cr_assert_eq(access(scratch_path("a.h5.tmp"), F_OK), -1, "tmp file left behind");

    H5File f;
    Err err;
    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    float f32r[6];
    uint16_t bf16r[6], u16r[6];
    uint8_t u8r[6];
    int32_t i32r[6];
    uint64_t u64r[3];
    cr_assert_eq(h5_read(&f, "/model/a.weight", DT_F32, 2, shape23, f32r, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/model/b", DT_BF16, 2, shape23, bf16r, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/mask/deep/x", DT_U8, 1, (int64_t[]){6}, u8r, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/i", DT_I32, 3, (int64_t[]){1, 2, 3}, i32r, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read_u16(&f, "/u16", 2, shape23, u16r, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read_u64(&f, "/state/words", 3, u64r, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(f32r, f32v, sizeof f32v);
    cr_assert_arr_eq(bf16r, bf16v, sizeof bf16v);
    cr_assert_arr_eq(u8r, u8v, sizeof u8v);
    cr_assert_arr_eq(i32r, i32v, sizeof i32v);
    cr_assert_arr_eq(u16r, u16v, sizeof u16v);
    cr_assert_arr_eq(u64r, u64v, sizeof u64v);

    int64_t shape[TENSOR_MAX_DIMS];
    cr_assert_eq(h5_shape(&f, "/i", shape, &err), 3);
    cr_assert(shape[0] == 1 && shape[1] == 2 && shape[2] == 3);
    cr_assert(h5_exists(&f, "/mask/deep/x"));
    cr_assert(h5_exists(&f, "/mask/deep"));
    cr_assert(h5_exists(&f, "/"));
    cr_assert_not(h5_exists(&f, "/mask/nope/x"));
    cr_assert_not(h5_exists(&f, "/nope"));
    // bf16 is tagged: reading it as plain u16 (or u16 as bf16) is a dtype error.
    cr_assert_eq(h5_read_u16(&f, "/model/b", 2, shape23, u16r, &err), -1);
    cr_assert(strstr(err.msg, "stored as bf16, expected u16"), "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/u16", DT_BF16, 2, shape23, bf16r, &err), -1);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);
}

Test(h5io, tensors) {
    Arena a;
    arena_init(&a, "t", DEV_CPU, 1 << 16);
    Tensor *t = tensor_new2(&a, DT_F32, 4, 5, "w");
    for (int i = 0; i < 20; i++) tensor_f32(t)[i] = (float)i * 0.5f;
    H5File f;
    Err err;
    char *p = scratch_path("t.h5");
    cr_assert_eq(h5_create(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write_tensor(&f, "/model/w", t, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);

    Tensor *r = tensor_new2(&a, DT_F32, 4, 5, "w");
    Tensor *wrong = tensor_new2(&a, DT_F32, 5, 4, "w");
    Tensor *wrong_dt = tensor_new2(&a, DT_BF16, 4, 5, "w");
    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read_tensor(&f, "/model/w", r, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(r->data, t->data, 80);
    cr_assert_eq(h5_read_tensor(&f, "/model/w", wrong, &err), -1);
    cr_assert(strstr(err.msg, "expected shape [5, 4], file has [4, 5]"), "%s", err.msg);
    cr_assert(strstr(err.msg, "/model/w") && strstr(err.msg, p), "%s", err.msg);
    cr_assert_eq(h5_read_tensor(&f, "/model/w", wrong_dt, &err), -1);
    cr_assert(strstr(err.msg, "stored as f32, expected bf16"), "%s", err.msg);
    h5_close_commit(&f, &err);
    arena_free(&a);
}

Test(h5io, attributes) {
    H5File f;
    Err err;
    char *p = scratch_path("attr.h5");
    // A big attribute (> 64 KiB, like a long config) must work too.
    size_t big_n = 100000;
    char *big = malloc(big_n + 1);
    for (size_t i = 0; i < big_n; i++) big[i] = (char)('a' + i % 26);
    big[big_n] = 0;
    cr_assert_eq(h5_create(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write_u64(&f, "/state/step", 1, (uint64_t[]){3}, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_set_attr_str(&f, "/", "config", "model:\n  arch: deit\n", &err), 0, "%s", err.msg);
    cr_assert_eq(h5_set_attr_str(&f, "/", "config", "model:\n  arch: llama\n", &err), 0, "%s", err.msg);  // replaces
    cr_assert_eq(h5_set_attr_str(&f, "/", "empty", "", &err), 0, "%s", err.msg);
    cr_assert_eq(h5_set_attr_str(&f, "/state", "big", big, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_set_attr_i64(&f, "/state/step", "version", -12345678901LL, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_set_attr_i64(&f, "/nope", "x", 1, &err), -1);
    cr_assert(strstr(err.msg, "missing object '/nope'"), "%s", err.msg);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);

    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    char *s = h5_get_attr_str(&f, "/", "config", &err);
    cr_assert_str_eq(s, "model:\n  arch: llama\n");
    free(s);
    s = h5_get_attr_str(&f, "/", "empty", &err);
    cr_assert_str_eq(s, "");
    free(s);
    s = h5_get_attr_str(&f, "/state", "big", &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_str_eq(s, big);
    free(s);
    int64_t v = 0;
    cr_assert_eq(h5_get_attr_i64(&f, "/state/step", "version", &v, &err), 0, "%s", err.msg);
    cr_assert_eq(v, -12345678901LL);
    cr_assert_null(h5_get_attr_str(&f, "/", "missing", &err));
    cr_assert(strstr(err.msg, "missing attribute 'missing'"), "%s", err.msg);
    cr_assert_eq(h5_get_attr_i64(&f, "/", "config", &v, &err), -1);
    cr_assert(strstr(err.msg, "not a single integer"), "%s", err.msg);
    h5_close_commit(&f, &err);
    free(big);
}

Test(h5io, list) {
    H5File f;
    Err err;
    char *p = scratch_path("list.h5");
    float x = 1;
    cr_assert_eq(h5_create(&f, p, &err), 0, "%s", err.msg);
    const char *names[] = {"/g/zeta", "/g/alpha", "/g/sub/inner", "/g/mid"};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(h5_write(&f, names[i], DT_F32, 1, (int64_t[]){1}, &x, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);

    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    char **list;
    int n;
    cr_assert_eq(h5_list(&f, "/g", &list, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(list[0], "alpha");
    cr_assert_str_eq(list[1], "mid");
    cr_assert_str_eq(list[2], "sub");
    cr_assert_str_eq(list[3], "zeta");
    h5_free_list(list, n);
    cr_assert_eq(h5_list(&f, "/", &list, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    h5_free_list(list, n);
    cr_assert_eq(h5_list(&f, "/g/alpha", &list, &n, &err), -1);
    cr_assert(strstr(err.msg, "not a group"), "%s", err.msg);
    cr_assert_eq(h5_list(&f, "/none", &list, &n, &err), -1);
    cr_assert(strstr(err.msg, "missing object '/none'"), "%s", err.msg);
    h5_close_commit(&f, &err);
}

Test(h5io, missing_dataset_and_wrong_shape) {
    char *p = scratch_path("a.h5");
    write_sample(p);
    H5File f;
    Err err;
    float buf[16];
    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/model/missing", DT_F32, 2, shape23, buf, &err), -1);
    cr_assert(strstr(err.msg, p) && strstr(err.msg, "missing dataset '/model/missing'"), "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/model/a.weight", DT_F32, 2, (int64_t[]){3, 2}, buf, &err), -1);
    cr_assert(strstr(err.msg, "dataset '/model/a.weight': expected shape [3, 2], file has [2, 3]"), "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/model/a.weight", DT_F32, 1, (int64_t[]){6}, buf, &err), -1);
    cr_assert(strstr(err.msg, "expected shape [6], file has [2, 3]"), "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/model/a.weight", DT_I32, 2, shape23, buf, &err), -1);
    cr_assert(strstr(err.msg, "stored as f32, expected i32"), "%s", err.msg);
    cr_assert_eq(h5_read(&f, "/model", DT_F32, 2, shape23, buf, &err), -1);
    cr_assert(strstr(err.msg, "'/model' is not a readable dataset"), "%s", err.msg);
    cr_assert_eq(h5_shape(&f, "/nope", (int64_t[4]){0}, &err), -1);
    cr_assert(strstr(err.msg, "missing dataset '/nope'"), "%s", err.msg);
    h5_close_commit(&f, &err);
}

Test(h5io, not_hdf5_missing_and_truncated_files) {
    H5File f;
    Err err;
    cr_assert_eq(h5_open_read(&f, scratch_path("absent.h5"), &err), -1);
    cr_assert(strstr(err.msg, "absent.h5: cannot open: No such file"), "%s", err.msg);

    char *garbage = scratch_path("garbage.h5");
    write_bytes(garbage, "this is not an HDF5 file, just text\n", 36);
    cr_assert_eq(h5_open_read(&f, garbage, &err), -1);
    cr_assert(strstr(err.msg, "garbage.h5: not an HDF5 file"), "%s", err.msg);

    char *empty = scratch_path("empty.h5");
    write_bytes(empty, "", 0);
    cr_assert_eq(h5_open_read(&f, empty, &err), -1);
    cr_assert(strstr(err.msg, "not an HDF5 file"), "%s", err.msg);

    // A good file cut in half: opening or reading must fail with a message, never crash.
    char *good = scratch_path("good.h5");
    write_sample(good);
    size_t n;
    char *bytes = read_bytes(good, &n);
    char *cut = scratch_path("cut.h5");
    write_bytes(cut, bytes, n / 2);
    free(bytes);
    int rc = h5_open_read(&f, cut, &err);
    if (rc == 0) {
        float buf[6];
        uint64_t w[3];
        int r1 = h5_read(&f, "/model/a.weight", DT_F32, 2, shape23, buf, &err);
        int r2 = h5_read_u64(&f, "/state/words", 3, w, &err);
        cr_assert(r1 == -1 || r2 == -1, "truncated file read fully");
        h5_abort(&f);
    } else {
        cr_assert(strstr(err.msg, "cut.h5: cannot open HDF5 file"), "%s", err.msg);
    }
}

Test(h5io, failed_write_keeps_previous_file) {
    char *p = scratch_path("keep.h5");
    write_sample(p);
    size_t n0;
    char *before = read_bytes(p, &n0);

    // A writer that fails half-way (duplicate dataset) and is aborted.
    H5File f;
    Err err;
    float x = 9;
    cr_assert_eq(h5_create(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/model/a.weight", DT_F32, 1, (int64_t[]){1}, &x, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/model/a.weight", DT_F32, 1, (int64_t[]){1}, &x, &err), -1);
    cr_assert(strstr(err.msg, "cannot create dataset '/model/a.weight'"), "%s", err.msg);
    h5_abort(&f);
    cr_assert_eq(access(scratch_path("keep.h5.tmp"), F_OK), -1, "tmp file left behind");

    size_t n1;
    char *after = read_bytes(p, &n1);
    cr_assert_eq(n0, n1);
    cr_assert_arr_eq(before, after, n0);
    free(before);
    free(after);

    // A writer into a directory that does not exist fails at create time.
    cr_assert_eq(h5_create(&f, scratch_path("no/such/scratch/x.h5"), &err), -1);
    cr_assert(strstr(err.msg, "x.h5.tmp: cannot create: No such file or directory"), "%s", err.msg);

    // Read-only helpers refuse to write.
    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write(&f, "/z", DT_F32, 1, (int64_t[]){1}, &x, &err), -1);
    cr_assert(strstr(err.msg, "open for reading"), "%s", err.msg);
    h5_close_commit(&f, &err);
}
