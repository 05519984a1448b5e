// Parsing of sparsity patterns: V:N:M (vnm_format.h) and the mask specs used for comparisons.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/vnm_format.h"
#include "train/vnm_mask.h"

// Splits s at ':' into up to 3 positive decimal integers (no signs, spaces or empty fields).
// Returns the number of fields, or -1 when a field is not a plain integer or there are more than 3.
static int parse_int_fields(const char *s, long v[3]) {
    int n = 0;
    const char *p = s;
    for (;;) {
        if (n == 3 || *p < '0' || *p > '9') return -1;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || x > 1000000) return -1;
        v[n++] = x;
        if (*end == '\0') return n;
        if (*end != ':') return -1;
        p = end + 1;
    }
}

int vnm_pattern_parse(const char *s, VnmPattern *p, Err *err) {
    long v[3];
    int n = parse_int_fields(s, v);
    if (n == 2 && v[0] == 2 && v[1] == 4) {
        *p = (VnmPattern){VNM_DEFAULT_V_FOR_24, 2, 4};
        return 0;
    }
    if (n != 3)
        return err_set(err, "sparsity pattern '%s': expected V:N:M (e.g. 64:2:5) or 2:4", s);
    if (v[1] != 2) return err_set(err, "sparsity pattern '%s': N must be 2 (2:4 sparse tensor cores)", s);
    if (v[0] < 1) return err_set(err, "sparsity pattern '%s': V must be >= 1", s);
    if (v[2] < 4 || v[2] > VNM_MAX_M)
        return err_set(err, "sparsity pattern '%s': M must be in 4..%d", s, VNM_MAX_M);
    *p = (VnmPattern){(int)v[0], 2, (int)v[2]};
    return 0;
}

int vnm_pattern_fits(VnmPattern p, int64_t out, int64_t in, const char *layer, Err *err) {
    if (out <= 0 || in <= 0 || out % p.V != 0 || in % p.M != 0)
        return err_set(err,
                       "layer '%s' of shape (%lld, %lld) does not split into whole %d:%d:%d blocks "
                       "(out must be a multiple of V=%d and in a multiple of M=%d)",
                       layer ? layer : "?", (long long)out, (long long)in, p.V, p.N, p.M, p.V, p.M);
    if (in > 65536)
        return err_set(err, "layer '%s': in=%lld is too large for uint16 column indices",
                       layer ? layer : "?", (long long)in);
    return 0;
}

static int parse_unstructured(const char *s, const char *arg, MaskSpec *spec, Err *err) {
    char *end;
    errno = 0;
    double d = strtod(arg, &end);
    if (errno || end == arg || *end != '\0' || !(d > 0.0 && d <= 1.0))
        return err_set(err, "mask spec '%s': unstructured density must be a number in (0, 1]", s);
    *spec = (MaskSpec){.kind = MASK_UNSTRUCTURED, .density = d};
    return 0;
}

int mask_spec_parse(const char *s, MaskSpec *spec, Err *err) {
    static const char unstructured[] = "unstructured:";
    if (strncmp(s, unstructured, sizeof unstructured - 1) == 0)
        return parse_unstructured(s, s + sizeof unstructured - 1, spec, err);
    long v[3];
    int n = parse_int_fields(s, v);
    if (n == 3 || (n == 2 && v[0] == 2 && v[1] == 4)) {
        VnmPattern p;
        if (vnm_pattern_parse(s, &p, err)) return -1;
        *spec = (MaskSpec){.kind = MASK_VNM, .vnm = p, .n = 2, .m = p.M, .density = 2.0 / p.M};
        return 0;
    }
    if (n == 2) {
        if (v[0] < 1 || v[0] >= v[1])
            return err_set(err, "mask spec '%s': plain N:M needs 1 <= N < M", s);
        *spec = (MaskSpec){.kind = MASK_NM, .n = (int)v[0], .m = (int)v[1],
                           .density = (double)v[0] / (double)v[1]};
        return 0;
    }
    return err_set(err, "mask spec '%s': expected V:2:M, N:M (e.g. 2:8) or unstructured:<density>", s);
}

const char *mask_spec_str(const MaskSpec *spec, char *buf, int n) {
    switch (spec->kind) {
    case MASK_VNM: snprintf(buf, n, "%d:%d:%d", spec->vnm.V, spec->vnm.N, spec->vnm.M); break;
    case MASK_NM: snprintf(buf, n, "%d:%d", spec->n, spec->m); break;
    case MASK_UNSTRUCTURED: snprintf(buf, n, "unstructured:%g", spec->density); break;
    }
    return buf;
}
