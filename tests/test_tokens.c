// Token files in llm.c's format (data/tokens.h): a good file, the errors of bad ones (naming the file
// and the byte offset / token index), windows, and `vnmtune convert tokens`.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "data/tokens.h"
#include "scratch_dir.h"

TestSuite(tokens, .init = scratch_make, .fini = scratch_remove);

// A file of raw bytes: the header ints, then `n_tokens` uint16 tokens i·7 mod 50.
static const char *raw_file(const char *name, int32_t magic, int32_t version, int32_t count, int n_tokens) {
    const char *path = scratch_path(name);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    int32_t header[TOKENS_HEADER_INTS] = {magic, version, count};
    fwrite(header, sizeof header, 1, f);
    for (int i = 0; i < n_tokens; i++) {
        uint16_t t = (uint16_t)(i * 7 % 50);
        fwrite(&t, 2, 1, f);
    }
    fclose(f);
    return path;
}

static void expect_open_error(const char *path, int vocab, const char *a, const char *b) {
    TokenFile f;
    Err err = {0};
    cr_expect_eq(token_file_open(&f, path, vocab, &err), -1);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, a) && strstr(err.msg, b), "%s", err.msg);
    cr_expect_null(f.map);
}

Test(tokens, reads_a_good_file) {
    const char *path = raw_file("good.bin", TOKENS_MAGIC, 1, 100, 100);
    TokenFile f;
    Err err = {0};
    cr_assert_eq(token_file_open(&f, path, 50, &err), 0, "%s", err.msg);
    cr_expect_eq(f.n, 100);
    for (int i = 0; i < 100; i++) cr_expect_eq(f.tokens[i], i * 7 % 50);
    token_file_close(&f);
}

Test(tokens, write_then_read_round_trips) {
    int32_t t[5] = {0, 1, 65535, 300, 7};
    Err err = {0};
    const char *path = scratch_path("w.bin");
    cr_assert_eq(token_file_write(path, t, 5, &err), 0, "%s", err.msg);
    TokenFile f;
    cr_assert_eq(token_file_open(&f, path, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n, 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(f.tokens[i], t[i]);
    token_file_close(&f);
    t[1] = 65536;
    cr_expect_eq(token_file_write(path, t, 5, &err), -1);
    cr_expect(strstr(err.msg, "token 1 is 65536"), "%s", err.msg);
}

Test(tokens, bad_magic_and_version_are_named) {
    expect_open_error(raw_file("magic.bin", 20240521, 1, 10, 10), 50, "bad magic 20240521", "byte offset 0");
    expect_open_error(raw_file("version.bin", TOKENS_MAGIC, 2, 10, 10), 50, "version 2", "byte offset 4");
}

Test(tokens, truncated_files_are_named) {
    expect_open_error(raw_file("short.bin", TOKENS_MAGIC, 1, 10, 7), 50, "truncated", "end at byte offset 1044");
    const char *tiny = scratch_path("tiny.bin");
    FILE *f = fopen(tiny, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_open_error(tiny, 50, "truncated: 3 bytes", "header");
    expect_open_error(raw_file("long.bin", TOKENS_MAGIC, 1, 10, 12), 50, "4 bytes after the last", "byte offset 1044");
    expect_open_error(scratch_path("none.bin"), 50, "cannot open", "No such file");
}

Test(tokens, out_of_vocabulary_token_is_named) {
    // token i is i·7 mod 50: token 5 = 35 is the first >= 32
    expect_open_error(raw_file("vocab.bin", TOKENS_MAGIC, 1, 100, 100), 32, "token 5 (byte offset 1034) is 35",
                      "model.vocab_size 32");
}

Test(tokens, sequential_windows_are_contiguous_and_do_not_overlap) {
    TokenFile f;
    Err err = {0};
    cr_assert_eq(token_file_open(&f, raw_file("w.bin", TOKENS_MAGIC, 1, 100, 100), 50, &err), 0, "%s", err.msg);
    TokenWindows w;
    cr_assert_eq(token_windows_init(&w, &f, 30, false, 0, &err), 0, "%s", err.msg);
    cr_expect_eq(w.count, 3);  // 100 / 30; the last 10 tokens are not used
    int32_t ids[4 * 30];
    cr_expect_eq(token_windows_next(&w, 2, ids), 2);
    cr_expect_eq(token_windows_next(&w, 2, ids + 60), 1);
    cr_expect_eq(token_windows_next(&w, 2, ids), 0);
    for (int i = 0; i < 90; i++) cr_expect_eq(ids[i], f.tokens[i], "token %d", i);
    cr_expect_eq(token_windows_init(&w, &f, 101, false, 0, &err), -1);
    cr_expect(strstr(err.msg, "100 tokens, fewer than one window"), "%s", err.msg);
    token_file_close(&f);
}

// Random windows: consecutive tokens of the file, at offsets that depend only on the seed.
Test(tokens, random_windows_are_seeded) {
    TokenFile f;
    Err err = {0};
    cr_assert_eq(token_file_open(&f, raw_file("r.bin", TOKENS_MAGIC, 1, 100, 100), 50, &err), 0, "%s", err.msg);
    TokenWindows a, b, c;
    cr_assert_eq(token_windows_init(&a, &f, 20, true, 5, &err), 0);
    cr_assert_eq(token_windows_init(&b, &f, 20, true, 5, &err), 0);
    cr_assert_eq(token_windows_init(&c, &f, 20, true, 6, &err), 0);
    int32_t x[8 * 20], y[8 * 20], z[8 * 20];
    cr_expect_eq(token_windows_next(&a, 8, x), 8);
    token_windows_next(&b, 8, y), token_windows_next(&c, 8, z);
    cr_expect(!memcmp(x, y, sizeof x));
    cr_expect(memcmp(x, z, sizeof x));
    for (int k = 0; k < 8; k++) {
        int start = -1;  // tokens are i·7 mod 50: the first two tokens find the start (up to the period)
        for (int s = 0; s <= 80 && start < 0; s++)
            if (f.tokens[s] == x[k * 20] && f.tokens[s + 1] == x[k * 20 + 1]) start = s;
        cr_assert(start >= 0, "window %d is not in the file", k);
        for (int i = 0; i < 20; i++) cr_expect_eq(x[k * 20 + i], f.tokens[start + i]);
    }
    token_file_close(&f);
}

Test(tokens, convert_text) {
    const char *txt = scratch_path("ids.txt"), *bin = scratch_path("ids.bin");
    FILE *f = fopen(txt, "w");
    fputs("3 1, 4\n1 5\t9\n", f);
    fclose(f);
    Err err = {0};
    cr_assert_eq(tokens_convert_text(txt, bin, &err), 0, "%s", err.msg);
    TokenFile tf;
    cr_assert_eq(token_file_open(&tf, bin, 10, &err), 0, "%s", err.msg);
    const int want[6] = {3, 1, 4, 1, 5, 9};
    cr_assert_eq(tf.n, 6);
    for (int i = 0; i < 6; i++) cr_expect_eq(tf.tokens[i], want[i]);
    token_file_close(&tf);
    f = fopen(txt, "w");
    fputs("3 x 4\n", f);
    fclose(f);
    cr_expect_eq(tokens_convert_text(txt, bin, &err), -1);
    cr_expect(strstr(err.msg, txt) && strstr(err.msg, "item 1"), "%s", err.msg);
}
