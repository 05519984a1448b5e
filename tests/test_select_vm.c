// select-vm: speed-up table, diversity, decision (train/select_vm.c).
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/select_vm.h"
#include "scratch_dir.h"

TestSuite(select_vm, .init = scratch_make, .fini = scratch_remove);

// Writes text to scratch/name and returns the path (static buffer).
static const char *write_file(const char *name, const char *text) {
    const char *path = scratch_path(name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *good_table =
    "# test table: out in n V M speedup\n"
    "\n"
    "64 120 2048 16 4 1.5\n"
    "128 240 2048 16 4 1.4   # dense-ish\n"
    "64 120 2048 16 5 2.1\n"
    "128 240 2048 16 5 1.0\n"
    "128 240 2048 16 5 2.2\n"  // re-measured: the last line wins
    "64 120 2048 16 6 2.5\n"
    "128 240 2048 16 6 2.6\n"
    "64 120 2048 64 5 2.3\n"
    "128 240 2048 64 5 2.4\n"
    "64 120 2048 32 5 2.9\n"  // 128x240 missing for 32:2:5
    "64 120 512 16 4 9.9\n";  // another n

Test(select_vm, diversity) {
    cr_assert_float_eq(vnm_log_diversity(1, 4), log(6.0), 1e-12);
    cr_assert_float_eq(vnm_log_diversity(64, 5), log(5.0) + 64 * log(6.0), 1e-9);
    cr_assert_float_eq(vnm_log_diversity(16, 8), log(70.0) + 16 * log(6.0), 1e-9);
    // more diversity per element for smaller M and for smaller V
    cr_assert_gt(vnm_diversity_per_element(16, 5), vnm_diversity_per_element(16, 8));
    cr_assert_gt(vnm_diversity_per_element(16, 8), vnm_diversity_per_element(64, 8));
}

Test(select_vm, chooses_most_diverse_pair_meeting_target) {
    SpeedTable t;
    Err err = {{0}};
    cr_assert_eq(speed_table_load(write_file("t.txt", good_table), &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.count, 11);
    cr_assert_eq(speed_table_lookup(&t, 128, 240, 2048, 16, 5), 2.2);
    cr_assert_eq(speed_table_lookup(&t, 128, 240, 2048, 32, 5), -1);
    char *argv[] = {"select-vm", "--target", "2.0", "--table", "t.txt", "--shapes", "64x120,128x240"};
    SelectVmArgs a;
    cr_assert_eq(select_vm_parse_args(7, argv, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n, 2048);
    cr_assert_eq(a.n_shapes, 2);
    VmCandidate c[SELECT_VM_N_CANDIDATES];
    int k = select_vm(&t, &a, c);
    cr_assert_geq(k, 0);
    cr_assert(c[k].V == 16 && c[k].M == 5, "chose %d:2:%d", c[k].V, c[k].M);
    cr_assert_eq(c[k].min_speedup, 2.1);
    // 16:2:4 measured but too slow; 32:2:5 misses a shape; M = 7 does not divide 120
    for (int i = 0; i < SELECT_VM_N_CANDIDATES; i++) {
        if (c[i].V == 16 && c[i].M == 4) cr_assert(!c[i].meets_target && c[i].min_speedup == 1.4);
        if (c[i].V == 32 && c[i].M == 5) cr_assert(!c[i].meets_target && c[i].min_speedup < 0);
        if (c[i].M == 7) cr_assert(!c[i].fits);
    }
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    select_vm_print(f, &a, c, k);
    fclose(f);
    cr_assert(strstr(buf, "   16   5   0.4000  2.50x      2.100x      2.200x   2.100x"), "%s", buf);
    cr_assert(strstr(buf, "<== chosen"));
    cr_assert(strstr(buf, "excluded: not measured"));
    cr_assert(strstr(buf, "chosen: 16:2:5"));
    free(buf);

    // a higher target: nothing qualifies
    a.target = 3.0;
    cr_assert_eq(select_vm(&t, &a, c), -1);
    speed_table_free(&t);
}

Test(select_vm, main_exit_codes) {
    cr_redirect_stdout();  // keep the printed tables out of the test log
    cr_redirect_stderr();
    const char *path = write_file("t.txt", good_table);
    char *ok[] = {"select-vm", "--target", "2", "--table", (char *)path, "--shapes", "64x120,128x240"};
    cr_assert_eq(select_vm_main(7, ok), 0);
    char *none[] = {"select-vm", "--target", "5", "--table", (char *)path, "--shapes", "64x120"};
    cr_assert_eq(select_vm_main(7, none), 1);
    char *other_n[] = {"select-vm", "--target", "5", "--table", (char *)path, "--shapes", "64x120", "--n", "512"};
    cr_assert_eq(select_vm_main(9, other_n), 0);  // 16:2:4 at n=512 measured 9.9x
    char *usage[] = {"select-vm", "--target", "2", "--shapes", "64x120"};
    cr_assert_eq(select_vm_main(5, usage), 2);
    char *missing[] = {"select-vm", "--target", "2", "--table", "/nonexistent/t.txt", "--shapes", "64x120"};
    cr_assert_eq(select_vm_main(7, missing), 1);
}

Test(select_vm, table_errors_name_file_and_line) {
    struct {
        const char *text, *want;
    } cases[] = {
        {"64 120 2048 16 4 1.5\n64 120 2048 16 4\n", ":2: expected 6 fields"},
        {"# c\n64 120 2048 16 4 1.5 7\n", ":2: expected 6 fields 'out in n V M speedup', found 7"},
        {"\n\n64 120 2048 16 4 fast\n", ":3: field 'speedup' = 'fast'"},
        {"64 120 2048 16 4 -1\n", ":1: field 'speedup' = '-1'"},
        {"64 120 2048 16 4 nan\n", ":1: field 'speedup'"},
        {"64 1.5e2 2048 16 4 2\n", ":1: field 'in' = '1.5e2'"},
        {"64 120 0 16 4 2\n", ":1: field 'n' = '0'"},
        {"# only comments\n\n", "no measurements"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const char *path = write_file("bad.txt", cases[i].text);
        SpeedTable t;
        Err err = {{0}};
        cr_assert_eq(speed_table_load(path, &t, &err), -1, "case %zu accepted", i);
        cr_assert(strstr(err.msg, path) && strstr(err.msg, cases[i].want), "case %zu: %s", i, err.msg);
    }
    SpeedTable t;
    Err err = {{0}};
    cr_assert_eq(speed_table_load("/nonexistent/table.txt", &t, &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/table.txt"), "%s", err.msg);
}

Test(select_vm, argument_errors) {
    const char *bad_shapes[] = {"4096x", "x4096", "4096*4096", "4096x4096,", "0x5", "-4x4", "4x4x4", ""};
    for (size_t i = 0; i < ARRAY_LEN(bad_shapes); i++) {
        int64_t shapes[4][2];
        int n;
        Err err = {{0}};
        cr_assert_eq(parse_shapes(bad_shapes[i], shapes, 4, &n, &err), -1, "accepted '%s'", bad_shapes[i]);
        cr_assert(strstr(err.msg, "--shapes"), "%s", err.msg);
    }
    SelectVmArgs a;
    Err err = {{0}};
    char *unknown[] = {"select-vm", "--targte", "2"};
    cr_assert_eq(select_vm_parse_args(3, unknown, &a, &err), -1);
    cr_assert(strstr(err.msg, "--targte"), "%s", err.msg);
    char *no_value[] = {"select-vm", "--target"};
    cr_assert_eq(select_vm_parse_args(2, no_value, &a, &err), -1);
    cr_assert(strstr(err.msg, "--target"), "%s", err.msg);
    char *bad_target[] = {"select-vm", "--target", "two", "--table", "t", "--shapes", "4x4"};
    cr_assert_eq(select_vm_parse_args(7, bad_target, &a, &err), -1);
    cr_assert(strstr(err.msg, "two"), "%s", err.msg);
}
