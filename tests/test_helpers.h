// Test helpers shared by several test files: whole files written and read back as bytes.
#pragma once
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

// Writes the n bytes at data to path, replacing the file.
__attribute__((unused)) static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

// The whole file at path (malloc'ed: free it); its size into *n.
__attribute__((unused)) static char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc(*n);
    cr_assert_eq(fread(buf, 1, *n, fp), *n);
    fclose(fp);
    return buf;
}
