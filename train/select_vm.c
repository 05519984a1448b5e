// `vnmtune select-vm`: pick V and M from measured kernel speed-ups. See select_vm.h.
#include "train/select_vm.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int candidate_V[] = {16, 32, 64, 128};
enum { MIN_M = 4, MAX_M = 16 };

// ---- the speed-up table ----

static int parse_i64(const char *tok, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(tok, &end, 10);
    if (errno || end == tok || *end || x <= 0) return -1;
    *v = x;
    return 0;
}

static int parse_row(const SpeedTable *t, char *line, int lineno, SpeedRow *row, Err *err) {
    static const char *names[] = {"out", "in", "n", "V", "M", "speedup"};
    char *tok[6], *save = NULL;
    int n = 0;
    for (char *p = strtok_r(line, " \t\r\n", &save); p; p = strtok_r(NULL, " \t\r\n", &save)) {
        if (n < 6) tok[n] = p;
        n++;
    }
    if (n != 6)
        return err_set(err, "%s:%d: expected 6 fields 'out in n V M speedup', found %d", t->path,
                       lineno, n);
    int64_t v[5];
    for (int k = 0; k < 5; k++)
        if (parse_i64(tok[k], &v[k]))
            return err_set(err, "%s:%d: field '%s' = '%s' is not a positive integer", t->path, lineno,
                           names[k], tok[k]);
    if (v[3] > 1 << 20 || v[4] > 1 << 20)
        return err_set(err, "%s:%d: V or M out of range", t->path, lineno);
    char *end;
    errno = 0;
    double s = strtod(tok[5], &end);
    if (errno || end == tok[5] || *end || !isfinite(s) || s <= 0)
        return err_set(err, "%s:%d: field 'speedup' = '%s' is not a positive number", t->path,
                       lineno, tok[5]);
    *row = (SpeedRow){v[0], v[1], v[2], (int)v[3], (int)v[4], s, lineno};
    return 0;
}

int speed_table_load(const char *path, SpeedTable *t, Err *err) {
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, "cannot open speed-up table '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, capacity = 0, rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        if (t->count == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            t->rows = xrealloc(t->rows, (size_t)capacity * sizeof(SpeedRow));
        }
        if ((rc = parse_row(t, line, lineno, &t->rows[t->count], err))) break;
        t->count++;
    }
    if (rc == 0 && ferror(f)) rc = err_set(err, "%s: read error", path);
    if (rc == 0 && t->count == 0) rc = err_set(err, "%s: no measurements in the speed-up table", path);
    free(line);
    fclose(f);
    if (rc) speed_table_free(t);
    return rc;
}

void speed_table_free(SpeedTable *t) {
    free(t->rows);
    t->rows = NULL;
    t->count = 0;
}

double speed_table_lookup(const SpeedTable *t, int64_t out, int64_t in, int64_t n, int V, int M) {
    for (int k = t->count - 1; k >= 0; k--) {  // the last line wins
        const SpeedRow *r = &t->rows[k];
        if (r->out == out && r->in == in && r->n == n && r->V == V && r->M == M) return r->speedup;
    }
    return -1;
}

double speed_table_nearest(const SpeedTable *t, int64_t out, int64_t in, int64_t n, int V, int M) {
    double best = -1, best_dist = INFINITY;
    for (int k = t->count - 1; k >= 0; k--) {
        const SpeedRow *r = &t->rows[k];
        if (r->out != out || r->in != in || r->V != V || r->M != M) continue;
        double dist = fabs(log((double)r->n / (double)n));
        if (dist < best_dist) best = r->speedup, best_dist = dist;
    }
    return best;
}

// ---- diversity ----

double vnm_log_diversity(int V, int M) {
    double log_choose_m_4 = lgamma(M + 1.0) - lgamma(5.0) - lgamma(M - 3.0);
    return log_choose_m_4 + V * log(6.0);
}

double vnm_diversity_per_element(int V, int M) { return vnm_log_diversity(V, M) / ((double)V * M); }

// ---- decision ----

int select_vm(const SpeedTable *t, const SelectVmArgs *a, VmCandidate *cands) {
    int chosen = -1, k = 0;
    for (size_t iv = 0; iv < ARRAY_LEN(candidate_V); iv++)
        for (int M = MIN_M; M <= MAX_M; M++, k++) {
            VmCandidate *c = &cands[k];
            *c = (VmCandidate){.V = candidate_V[iv], .M = M, .fits = true,
                               .diversity = vnm_diversity_per_element(candidate_V[iv], M)};
            c->min_speedup = INFINITY;
            for (int s = 0; s < a->n_shapes; s++) {
                int64_t out = a->shapes[s][0], in = a->shapes[s][1];
                c->fits &= out % c->V == 0 && in % M == 0;
                c->speedup[s] = speed_table_lookup(t, out, in, a->n, c->V, M);
                c->min_speedup = c->speedup[s] < 0 || c->min_speedup < 0
                                     ? -1
                                     : fmin(c->min_speedup, c->speedup[s]);
            }
            c->meets_target = c->fits && c->min_speedup >= a->target;
            if (c->meets_target && (chosen < 0 || c->diversity > cands[chosen].diversity)) chosen = k;
        }
    return chosen;
}

void select_vm_print(FILE *f, const SelectVmArgs *a, const VmCandidate *cands, int chosen) {
    fprintf(f, "select-vm: target speed-up %.3g at n = %lld tokens, table %s\n", a->target,
            (long long)a->n, a->table);
    fprintf(f, "diversity = log(C(M,4) * 6^V) / (V*M) per weight element (nats)\n\n");
    fprintf(f, "%5s %3s %8s %6s", "V", "M", "density", "ideal");
    for (int s = 0; s < a->n_shapes; s++) {
        char name[48];
        snprintf(name, sizeof name, "%lldx%lld", (long long)a->shapes[s][0], (long long)a->shapes[s][1]);
        fprintf(f, " %11s", name);
    }
    fprintf(f, " %8s %9s  %s\n", "min", "diversity", "status");
    int missing = 0;
    for (int k = 0; k < SELECT_VM_N_CANDIDATES; k++) {
        const VmCandidate *c = &cands[k];
        fprintf(f, "%5d %3d %8.4f %5.2fx", c->V, c->M, 2.0 / c->M, c->M / 2.0);
        for (int s = 0; s < a->n_shapes; s++) {
            if (c->speedup[s] < 0) fprintf(f, " %11s", "-");
            else fprintf(f, " %10.3fx", c->speedup[s]);
        }
        if (c->min_speedup < 0) fprintf(f, " %8s", "-");
        else fprintf(f, " %7.3fx", c->min_speedup);
        fprintf(f, " %9.5f  ", c->diversity);
        if (!c->fits) fprintf(f, "excluded: a shape does not split into %dx%d blocks", c->V, c->M);
        else if (c->min_speedup < 0) fprintf(f, "excluded: not measured"), missing++;
        else if (!c->meets_target) fprintf(f, "below target");
        else fprintf(f, "meets target");
        fprintf(f, "%s\n", k == chosen ? "  <== chosen" : "");
    }
    if (missing)
        fprintf(f, "\nnote: %d candidate(s) lack a measurement for some shape at n = %lld and were "
                   "excluded; run `vnmtune bench spmm` for them.\n", missing, (long long)a->n);
    if (chosen >= 0)
        fprintf(f, "\nchosen: %d:2:%d (density %.4f, measured speed-up >= %.3fx on all shapes)\n",
                cands[chosen].V, cands[chosen].M, 2.0 / cands[chosen].M, cands[chosen].min_speedup);
    else
        fprintf(f, "\nno measured V:2:M pair reaches speed-up %.3g on all shapes\n", a->target);
}

// ---- command line ----

// A positive decimal integer at *p (digits only), advancing p.
static int take_positive(const char **p, long long *v) {
    if (**p < '0' || **p > '9') return -1;
    char *end;
    errno = 0;
    *v = strtoll(*p, &end, 10);
    *p = end;
    return errno || *v <= 0 ? -1 : 0;
}

int parse_shapes(const char *s, int64_t shapes[][2], int max_shapes, int *n_shapes, Err *err) {
    *n_shapes = 0;
    const char *p = s;
    for (;;) {
        long long out, in;
        if (take_positive(&p, &out) || *p++ != 'x' || take_positive(&p, &in) || (*p != ',' && *p))
            return err_set(err, "--shapes '%s': expected OUTxIN[,OUTxIN...] e.g. 4096x4096,11008x4096", s);
        if (*n_shapes == max_shapes) return err_set(err, "--shapes '%s': at most %d shapes", s, max_shapes);
        shapes[*n_shapes][0] = out, shapes[*n_shapes][1] = in;
        (*n_shapes)++;
        if (*p++ == '\0') return 0;
    }
}

int select_vm_parse_args(int argc, char **argv, SelectVmArgs *a, Err *err) {
    *a = (SelectVmArgs){.target = -1, .n = 2048};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) return err_set(err, "option '%s' needs a value", opt);
        const char *val = argv[++i];
        char *end;
        if (strcmp(opt, "--target") == 0) {
            a->target = strtod(val, &end);
            if (end == val || *end || !isfinite(a->target) || a->target <= 0)
                return err_set(err, "--target '%s': expected a positive number", val);
        } else if (strcmp(opt, "--table") == 0) {
            a->table = val;
        } else if (strcmp(opt, "--shapes") == 0) {
            if (parse_shapes(val, a->shapes, SELECT_VM_MAX_SHAPES, &a->n_shapes, err)) return -1;
        } else if (strcmp(opt, "--n") == 0) {
            if (parse_i64(val, &a->n)) return err_set(err, "--n '%s': expected a positive integer", val);
        } else {
            return err_set(err, "unknown option '%s'", opt);
        }
    }
    if (a->target < 0) return err_set(err, "missing --target");
    if (!a->table) return err_set(err, "missing --table");
    if (a->n_shapes == 0) return err_set(err, "missing --shapes");
    return 0;
}

static const char select_vm_usage[] =
    "usage: vnmtune select-vm --target S --table FILE --shapes OUTxIN[,OUTxIN...] [--n TOKENS]\n"
    "  Picks V (16, 32, 64, 128) and M (4..16) for V:2:M sparsity: among the pairs whose measured\n"
    "  kernel speed-up (dense_time / sparse_time, from `vnmtune bench spmm`) reaches S on every\n"
    "  shape at n = TOKENS (default 2048), the one with the largest mask diversity per weight.\n"
    "  Table lines: 'out in n V M speedup', '#' comments.\n";

int select_vm_main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(select_vm_usage, stdout);
            return 0;
        }
    SelectVmArgs a;
    Err err;
    if (select_vm_parse_args(argc, argv, &a, &err)) {
        fprintf(stderr, "vnmtune select-vm: %s\n%s", err.msg, select_vm_usage);
        return 2;
    }
    SpeedTable t;
    if (speed_table_load(a.table, &t, &err)) {
        fprintf(stderr, "vnmtune select-vm: error: %s\n", err.msg);
        return 1;
    }
    VmCandidate cands[SELECT_VM_N_CANDIDATES];
    int chosen = select_vm(&t, &a, cands);
    select_vm_print(stdout, &a, cands, chosen);
    speed_table_free(&t);
    return chosen >= 0 ? 0 : 1;
}
