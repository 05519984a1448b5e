// Test helper: a fresh scratch directory per test (use scratch_make / scratch_remove as the
// suite's .init / .fini) and paths of files inside it.
#pragma once
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static char scratch[256];

static void scratch_make(void) {
    snprintf(scratch, sizeof scratch, "/tmp/vnmtest_XXXXXX");
    cr_assert_not_null(mkdtemp(scratch));
}

static void scratch_remove(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    cr_assert_eq(system(cmd), 0);
}

// "<scratch>/<name>" in one of 4 rotating buffers (so a call can use several paths at once).
__attribute__((unused)) static char *scratch_path(const char *name) {
    static char buf[4][400];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", scratch, name);
    return p;
}
