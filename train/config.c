// Job configuration (see config.h). One table of keys drives defaults, YAML parsing (libyaml
// events), `section.key=value` overrides, range checks, writing and `--help`.
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef enum { K_INT, K_INT64, K_UINT64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_LIST } KeyType;

typedef struct Key {
    const char *name;      // "section.key"
    KeyType type;
    size_t offset, size;   // the field in Config (size: bytes of a string / one list item)
    double min, max;       // inclusive range for numbers; checked only when min < max
    const char *def;       // default, as text (parsed like a YAML value)
    const char *allowed;   // K_ENUM: "a|b|c"
    const char *help;
    size_t count_offset;   // K_LIST: the int holding the number of items
} Key;

#define FIELD(sec, f) offsetof(Config, sec.f), sizeof(((Config *)0)->sec.f)
#define LIST(sec, f) offsetof(Config, sec.f), sizeof(((Config *)0)->sec.f[0])
#define NUM(type, sec, f, lo, hi, def, help) {#sec "." #f, type, FIELD(sec, f), lo, hi, def, NULL, help, 0}
#define INT(sec, f, lo, hi, def, help) NUM(K_INT, sec, f, lo, hi, def, help)
#define I64(sec, f, lo, hi, def, help) NUM(K_INT64, sec, f, lo, hi, def, help)
#define FLT(sec, f, lo, hi, def, help) NUM(K_FLOAT, sec, f, lo, hi, def, help)
#define BOOL(sec, f, def, help) {#sec "." #f, K_BOOL, FIELD(sec, f), 0, 0, def, NULL, help, 0}
#define STR(sec, f, def, help) {#sec "." #f, K_STR, FIELD(sec, f), 0, 0, def, NULL, help, 0}
#define ENUM(sec, f, allowed, def, help) {#sec "." #f, K_ENUM, FIELD(sec, f), 0, 0, def, allowed, help, 0}
#define LST(sec, f, count, def, help) \
    {#sec "." #f, K_LIST, LIST(sec, f), 0, 0, def, NULL, help, offsetof(Config, sec.count)}

static const Key KEYS[] = {
    ENUM(model, arch, "deit|llama", "deit", "model family"),
    STR(model, init, "", "safetensors file with initial weights (\"\" = random init)"),
    INT(model, img_size, 1, 8192, "224", "deit: input image side in pixels"),
    INT(model, patch_size, 1, 1024, "16", "deit: patch side in pixels"),
    INT(model, in_chans, 1, 64, "3", "deit: input channels"),
    INT(model, num_classes, 1, 1000000, "1000", "deit: classifier outputs"),
    INT(model, embed_dim, 1, 65536, "192", "deit: width"),
    INT(model, depth, 1, 1024, "12", "deit: transformer blocks"),
    INT(model, num_heads, 1, 1024, "3", "deit: attention heads"),
    FLT(model, mlp_ratio, 0.125, 64, "4", "deit: MLP hidden = mlp_ratio * embed_dim"),
    BOOL(model, qkv_bias, "true", "deit: bias in the qkv projection"),
    FLT(model, ln_eps, 0, 1, "1e-6", "deit: LayerNorm epsilon"),
    INT(model, vocab_size, 1, 10000000, "32000", "llama: vocabulary size"),
    INT(model, hidden_size, 1, 65536, "4096", "llama: width"),
    INT(model, intermediate_size, 1, 1000000, "11008", "llama: MLP hidden size"),
    INT(model, n_layers, 1, 1024, "32", "llama: decoder layers"),
    INT(model, n_heads, 1, 1024, "32", "llama: attention heads"),
    INT(model, n_kv_heads, 1, 1024, "32", "llama: key/value heads (GQA)"),
    INT(model, max_seq_len, 1, 10000000, "4096", "llama: longest sequence"),
    FLT(model, rope_theta, 1, 1e9, "10000", "llama: RoPE base"),
    FLT(model, rms_eps, 0, 1, "1e-5", "llama: RMSNorm epsilon"),

    ENUM(data, dataset, "fashion_mnist|hdf5|tokens", "fashion_mnist", "data source (tokens: llama, llm.c token files)"),
    STR(data, path, "/usr/share/datasets/fashion-mnist",
        "fashion_mnist: directory of idx .gz files; hdf5: the file; tokens: training token file (calibration)"),
    STR(data, test_path, "", "tokens: test token file (vnmtune eval: perplexity)"),
    INT(data, seq_len, 2, 10000000, "2048", "tokens: tokens per window (model input; seq_len - 1 predicted per window)"),
    BOOL(data, augment, "true", "random crop (pad 2) + horizontal flip for training"),
    FLT(data, mean, -1000, 1000, "0.2860", "normalisation mean (of x/255)"),
    FLT(data, std, 1e-6, 1000, "0.3530", "normalisation std (of x/255)"),
    I64(data, train_limit, 0, 1e15, "0", "use only the first N training samples (0 = all)"),
    I64(data, test_limit, 0, 1e15, "0", "use only the first N test samples (tokens: windows) (0 = all)"),

    BOOL(lora, enabled, "false", "train LoRA adapters on a frozen base (false: train all params)"),
    INT(lora, rank, 0, 65536, "16", "LoRA rank r"),
    FLT(lora, alpha, 0, 1e6, "32", "LoRA alpha (scale = alpha / rank)"),
    FLT(lora, dropout, 0, 0.99, "0", "dropout on the LoRA branch input"),
    LST(lora, targets, n_targets, "qkv,proj,fc1,fc2", "layer-name patterns that get adapters"),
    BOOL(lora, train_head, "true", "also train the classifier head"),

    FLT(optim, lr, 0, 10, "1e-3", "peak learning rate"),
    FLT(optim, min_lr, 0, 10, "1e-5", "learning rate at the end of the cosine decay"),
    FLT(optim, weight_decay, 0, 100, "0.05", "AdamW weight decay"),
    FLT(optim, beta1, 0, 0.9999999, "0.9", "AdamW beta1"),
    FLT(optim, beta2, 0, 0.9999999, "0.999", "AdamW beta2"),
    FLT(optim, eps, 0, 1, "1e-8", "AdamW epsilon"),
    FLT(optim, grad_clip, 0, 1e9, "1.0", "global gradient-norm clip (0 = off)"),
    FLT(optim, warmup, 0, 1e12, "0.05", "warmup: < 1 a fraction of the steps, >= 1 a step count"),
    FLT(optim, label_smoothing, 0, 0.999, "0", "label smoothing of the cross-entropy"),

    ENUM(train, device, "auto|cpu|cuda", "auto", "where to train (auto: cuda when a GPU is visible, else cpu)"),
    INT(train, batch_size, 1, 1000000, "128", "samples per optimizer step (all processes together: each of N dist processes takes 1/N)"),
    INT(train, grad_accum, 1, 1000000, "1",
        "micro-batches per optimizer step (gradient accumulation): each forward takes batch_size / grad_accum (per process)"),
    ENUM(train, recompute, "none|layers", "none",
         "activation recomputation: layers = llama keeps only each decoder layer's input and re-runs the layer in backward"),
    INT(train, epochs, 1, 1000000, "1", "epochs (used when train.steps = 0)"),
    I64(train, steps, 0, 1e15, "0", "optimizer steps (0 = derive from epochs)"),
    I64(train, until, 0, 1e15, "0", "stop after this step, checkpointed (0 = train to the end); continue with checkpoint.resume"),
    NUM(K_UINT64, train, seed, 0, 0, "42", "random seed"),
    INT(train, log_every, 1, INT_MAX, "20", "log metrics every N steps"),
    STR(train, out_dir, "runs/default", "directory for metrics, config, checkpoints, exports"),
    INT(train, threads, 0, 4096, "0", "CPU threads (0 = all cores)"),

    INT(eval, every, 0, INT_MAX, "0", "evaluate every N steps (0 = only at the end)"),
    INT(eval, batch_size, 1, 1000000, "256", "evaluation batch size"),

    INT(checkpoint, every, 0, INT_MAX, "0", "save a checkpoint every N steps (0 = only at the end)"),
    STR(checkpoint, resume, "", "checkpoint to resume from (\"\" = fresh start)"),

    BOOL(sparsity, enabled, "false", "prune the target layers to V:N:M"),
    STR(sparsity, pattern, "64:2:5", "\"V:N:M\" (e.g. 64:2:5) or \"N:M\" (2:4)"),
    ENUM(sparsity, score, "magnitude|wanda|ria|sparsegpt", "magnitude",
         "importance score for the mask (sparsegpt: one-shot pruning with weight reconstruction, mode one_shot without LoRA)"),
    FLT(sparsity, ria_alpha, 0, 10, "0.5", "ria: exponent of the activation norm"),
    BOOL(sparsity, permute, "false", "search an input-channel permutation per layer"),
    INT(sparsity, calib_batches, 0, 1000000, "4",
        "calibration for wanda / ria / sparsegpt: training batches (llama: windows of data.seq_len tokens)"),
    LST(sparsity, targets, n_targets, "qkv,proj,fc1,fc2", "layer-name patterns that get pruned"),

    ENUM(schedule, mode, "dense|one_shot|fixed_mask_lora|three_stage", "three_stage", "training schedule"),
    FLT(schedule, stage1, 0, 1e12, "0.05", "dense LoRA stage: < 1 a fraction of the steps, >= 1 steps"),
    FLT(schedule, stage2, 0, 1e12, "0.05", "mask search stage: < 1 a fraction of the steps, >= 1 steps"),
    INT(schedule, mask_update_every, 1, INT_MAX, "10", "recompute the mask every N steps in stage 2"),
    FLT(schedule, reg_lambda, 0, 1e9, "0", "weight of the pruned-weight regulariser (0 = off)"),

    STR(export, path, "", "V:N:M export file (\"\" = <out_dir>/export.h5)"),
    STR(export, speed_table, "", "speed table of `vnmtune bench spmm`: exported sparse layers run dense where sparse measured slower"),
    BOOL(export, fold_permutations, "true",
         "with sparsity.permute: fold fc2's / down_proj's input permutation into the rows of the layers that make its input"),

    ENUM(dist, backend, "none|mpi", "none",
         "data parallel: mpi under mpirun -np N (train.batch_size split over the N processes)"),
};
#define N_KEYS ((int)ARRAY_LEN(KEYS))

static const char *type_name(const Key *k) {
    static const char *names[] = {[K_INT] = "int",   [K_INT64] = "int64", [K_UINT64] = "uint64", [K_FLOAT] = "float",
                                  [K_BOOL] = "bool", [K_STR] = "string",  [K_ENUM] = "enum",     [K_LIST] = "list"};
    return names[k->type];
}

// ---- key lookup and "did you mean" ----

static size_t section_len(const char *name) { return (size_t)(strchr(name, '.') - name); }

static const Key *find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

static bool section_exists(const char *sec, size_t n) {
    for (int i = 0; i < N_KEYS; i++)
        if (section_len(KEYS[i].name) == n && strncmp(KEYS[i].name, sec, n) == 0) return true;
    return false;
}

static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[n][m];
}

// " (did you mean 'x'?)" for an unknown "section.key" or section name, or "".
static void suggest(const char *name, bool whole_key, char *out, size_t n) {
    out[0] = 0;
    const char *best = NULL;
    size_t best_len = 0;
    int best_d = 99;
    const char *dot = strchr(name, '.');
    for (int i = 0; i < N_KEYS; i++) {
        const char *cand = KEYS[i].name;
        char sec[64];
        size_t len = whole_key ? strlen(cand) : section_len(cand);
        snprintf(sec, sizeof sec, "%.*s", (int)len, cand);
        int d = edit_distance(name, sec);
        // the same key name in another section counts as close ("train.lr" -> "optim.lr")
        if (whole_key && dot && strcmp(dot, strchr(cand, '.')) == 0) d = d < 2 ? d : 2;
        if (d < best_d) best_d = d, best = cand, best_len = len;
    }
    int limit = (int)strlen(name) / 3 > 2 ? (int)strlen(name) / 3 : 2;
    if (best && best_d <= limit) snprintf(out, n, " (did you mean '%.*s'?)", (int)best_len, best);
}

// ---- parsing one value into the config ----

static void *field(Config *c, const Key *k) { return (char *)c + k->offset; }

static bool parse_i64(const char *s, long long *v) {
    if (!*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return errno == 0 && *end == 0;
}

static bool parse_bool(const char *s, bool *v) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) return *v = true, true;
        if (strcasecmp(s, no[i]) == 0) return *v = false, true;
    }
    return false;
}

static bool in_allowed(const char *allowed, const char *s) {
    size_t n = strlen(s);
    for (const char *p = allowed; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

static int check_range(const Key *k, double v, const char *text, char *problem, size_t n) {
    if (k->min < k->max && !(v >= k->min && v <= k->max)) {
        snprintf(problem, n, "%s is out of range [%.10g, %.10g]", text, k->min, k->max);
        return -1;
    }
    return 0;
}

static int set_string(char *dst, size_t size, const char *s, char *problem, size_t n) {
    if (strlen(s) >= size) {
        snprintf(problem, n, "'%.40s...' is too long (at most %zu characters)", s, size - 1);
        return -1;
    }
    memset(dst, 0, size);
    memcpy(dst, s, strlen(s));
    return 0;
}

// Appends one item to a list key (the caller clears the list first).
static int list_append(Config *c, const Key *k, const char *item, char *problem, size_t n) {
    int *count = (int *)((char *)c + k->count_offset);
    while (isspace((unsigned char)*item)) item++;
    size_t len = strlen(item);
    while (len && isspace((unsigned char)item[len - 1])) len--;
    if (len == 0) return snprintf(problem, n, "empty list item"), -1;
    if (*count >= CFG_MAX_TARGETS) return snprintf(problem, n, "more than %d items", CFG_MAX_TARGETS), -1;
    if (len >= k->size) return snprintf(problem, n, "item '%.*s' is too long (at most %zu characters)", (int)len, item, k->size - 1), -1;
    char *dst = (char *)field(c, k) + (size_t)*count * k->size;
    memset(dst, 0, k->size);
    memcpy(dst, item, len);
    (*count)++;
    return 0;
}

static void list_clear(Config *c, const Key *k) {
    memset(field(c, k), 0, CFG_MAX_TARGETS * k->size);
    *(int *)((char *)c + k->count_offset) = 0;
}

// A comma-separated list ("qkv, proj"); "" and "[]" are the empty list.
static int set_list_text(Config *c, const Key *k, const char *s, char *problem, size_t n) {
    list_clear(c, k);
    char buf[1024];
    if (strlen(s) >= sizeof buf) return snprintf(problem, n, "list too long"), -1;
    snprintf(buf, sizeof buf, "%s", s);
    char *p = buf;
    size_t len = strlen(p);
    if (len >= 2 && p[0] == '[' && p[len - 1] == ']') p[len - 1] = 0, p++;  // "[a, b]" from the command line
    bool blank = true;
    for (char *q = p; *q; q++) blank &= isspace((unsigned char)*q) != 0;
    if (blank) return 0;
    for (char *tok = p;;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        if (list_append(c, k, tok, problem, n) < 0) return -1;
        if (!comma) return 0;
        tok = comma + 1;
    }
}

// Parses text `s` for key k into c. On failure writes the problem (without file/key) and returns -1.
static int set_value(Config *c, const Key *k, const char *s, char *problem, size_t n) {
    void *dst = field(c, k);
    long long i;
    switch (k->type) {
    case K_INT:
    case K_INT64:
        if (!parse_i64(s, &i)) return snprintf(problem, n, "expected an integer, got '%s'", s), -1;
        if (k->type == K_INT && (i < INT_MIN || i > INT_MAX))
            return snprintf(problem, n, "%s does not fit in an int", s), -1;
        if (check_range(k, (double)i, s, problem, n) < 0) return -1;
        if (k->type == K_INT) *(int *)dst = (int)i;
        else *(int64_t *)dst = i;
        return 0;
    case K_UINT64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(s, &end, 0);
        if (!*s || *s == '-' || isspace((unsigned char)*s) || errno || *end)
            return snprintf(problem, n, "expected a non-negative integer, got '%s'", s), -1;
        *(uint64_t *)dst = u;
        return 0;
    }
    case K_FLOAT: {
        char *end;
        errno = 0;
        double v = *s && !isspace((unsigned char)*s) ? strtod(s, &end) : NAN;
        if (isnan(v) || *end) return snprintf(problem, n, "expected a number, got '%s'", s), -1;
        if (!isfinite(v)) return snprintf(problem, n, "expected a finite number, got '%s'", s), -1;
        if (check_range(k, v, s, problem, n) < 0) return -1;
        *(float *)dst = (float)v;
        return 0;
    }
    case K_BOOL:
        if (!parse_bool(s, dst)) return snprintf(problem, n, "expected true or false, got '%s'", s), -1;
        return 0;
    case K_ENUM:
        if (!in_allowed(k->allowed, s)) return snprintf(problem, n, "'%s' is not one of %s", s, k->allowed), -1;
        return set_string(dst, k->size, s, problem, n);
    case K_STR: return set_string(dst, k->size, s, problem, n);
    case K_LIST: return set_list_text(c, k, s, problem, n);
    }
    fatal("config: bad key type");
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    char problem[256];
    for (int i = 0; i < N_KEYS; i++)
        if (set_value(c, &KEYS[i], KEYS[i].def, problem, sizeof problem) < 0)
            fatal("config: bad default for %s: %s", KEYS[i].name, problem);
}

// ---- YAML ----

typedef struct Parser {
    yaml_parser_t yp;
    const char *source;
    Config *c;
    Err *err;
    int first_line[ARRAY_LEN(KEYS)];  // where each key was set in this document (duplicates are errors)
} Parser;

static int line_of(const yaml_event_t *ev) { return (int)ev->start_mark.line + 1; }

static int fail(Parser *p, int line, const char *key, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(Parser *p, int line, const char *key, const char *fmt, ...) {
    char problem[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return err_set(p->err, "%s:%d: %s: %s", p->source, line, key, problem);
}

// Next event; a libyaml error becomes "<file>:<line>: yaml: <problem>".
static int next(Parser *p, yaml_event_t *ev) {
    if (yaml_parser_parse(&p->yp, ev)) return 0;
    int line = (int)p->yp.problem_mark.line + 1;
    if (p->yp.context)
        return fail(p, line, "yaml", "syntax error: %s %s started on line %d", p->yp.problem, p->yp.context,
                    (int)p->yp.context_mark.line + 1);
    return fail(p, line, "yaml", "syntax error: %s", p->yp.problem ? p->yp.problem : "unknown error");
}

static const char *scalar(const yaml_event_t *ev) { return (const char *)ev->data.scalar.value; }

// A plain (unquoted) empty / "~" / "null" scalar.
static bool is_null(const yaml_event_t *ev) {
    const char *s = scalar(ev);
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (s[0] == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0);
}

// The items of a YAML sequence, up to its end.
static int read_list(Parser *p, const Key *k) {
    list_clear(p->c, k);
    for (;;) {
        yaml_event_t ev;
        if (next(p, &ev) < 0) return -1;
        int rc = 0;
        char problem[300];
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT)
            rc = fail(p, line_of(&ev), k->name, "list items must be plain values");
        else if (list_append(p->c, k, scalar(&ev), problem, sizeof problem) < 0)
            rc = fail(p, line_of(&ev), k->name, "%s", problem);
        yaml_event_delete(&ev);
        if (rc < 0) return -1;
    }
}

// The value of `section.key` (the next event).
static int read_value(Parser *p, const Key *k) {
    yaml_event_t ev;
    if (next(p, &ev) < 0) return -1;
    int rc = 0, line = line_of(&ev);
    char problem[300];
    if (ev.type == YAML_SEQUENCE_START_EVENT && k->type == K_LIST) {
        rc = read_list(p, k);
    } else if (ev.type != YAML_SCALAR_EVENT) {
        rc = fail(p, line, k->name, "expected a single %s value, got a %s", type_name(k),
                  ev.type == YAML_SEQUENCE_START_EVENT ? "list" : ev.type == YAML_MAPPING_START_EVENT ? "mapping" : "non-scalar");
    } else {
        const char *s = (k->type == K_STR || k->type == K_LIST) && is_null(&ev) ? "" : scalar(&ev);
        if (set_value(p->c, k, s, problem, sizeof problem) < 0) rc = fail(p, line, k->name, "%s", problem);
    }
    yaml_event_delete(&ev);
    return rc;
}

// The mapping (or null) that follows a section name.
static int read_section(Parser *p, const char *sec) {
    yaml_event_t ev;
    if (next(p, &ev) < 0) return -1;
    int rc = 0;
    if (ev.type == YAML_SCALAR_EVENT && is_null(&ev)) {
        yaml_event_delete(&ev);
        return 0;  // "lora:" with nothing under it
    }
    if (ev.type != YAML_MAPPING_START_EVENT) rc = fail(p, line_of(&ev), sec, "expected a mapping of keys under the section");
    yaml_event_delete(&ev);
    while (rc == 0) {
        if (next(p, &ev) < 0) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) break;
        int line = line_of(&ev);
        char name[160];
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = fail(p, line, sec, "expected a key name");
        } else {
            snprintf(name, sizeof name, "%s.%s", sec, scalar(&ev));
            const Key *k = find_key(name);
            char hint[160];
            if (!k) {
                suggest(name, true, hint, sizeof hint);
                rc = fail(p, line, name, "unknown key%s", hint);
            } else if (p->first_line[k - KEYS]) {
                rc = fail(p, line, name, "set twice (first on line %d)", p->first_line[k - KEYS]);
            } else {
                p->first_line[k - KEYS] = line;
                rc = read_value(p, k);
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_event_delete(&ev);
    return rc;
}

static int read_document(Parser *p) {
    yaml_event_t ev;
    if (next(p, &ev) < 0) return -1;
    if (ev.type == YAML_SCALAR_EVENT && is_null(&ev)) {  // an empty document ("---")
        yaml_event_delete(&ev);
        return 0;
    }
    if (ev.type != YAML_MAPPING_START_EVENT) {
        int line = line_of(&ev);
        yaml_event_delete(&ev);
        return fail(p, line, "yaml", "expected a mapping of sections (model:, data:, train:, ...)");
    }
    yaml_event_delete(&ev);
    bool seen[ARRAY_LEN(KEYS)] = {0};  // sections seen, indexed by their first key
    for (;;) {
        if (next(p, &ev) < 0) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) break;
        int line = line_of(&ev), rc = 0;
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = fail(p, line, "yaml", "expected a section name");
        } else {
            const char *sec = scalar(&ev);
            char hint[160];
            if (!section_exists(sec, strlen(sec))) {
                suggest(sec, false, hint, sizeof hint);
                rc = fail(p, line, sec, "unknown section%s", hint);
            } else {
                int first = 0;
                while (section_len(KEYS[first].name) != strlen(sec) || strncmp(KEYS[first].name, sec, strlen(sec)))
                    first++;
                if (seen[first]) rc = fail(p, line, sec, "section appears twice");
                seen[first] = true;
                if (rc == 0) rc = read_section(p, sec);
            }
        }
        yaml_event_delete(&ev);
        if (rc < 0) return -1;
    }
    yaml_event_delete(&ev);
    return 0;
}

int config_load_string(Config *c, const char *yaml, const char *source, Err *err) {
    Config work = *c;  // a bad file leaves *c untouched
    Parser *p = xcalloc(1, sizeof *p);
    p->source = source;
    p->c = &work;
    p->err = err;
    yaml_parser_initialize(&p->yp);
    yaml_parser_set_input_string(&p->yp, (const unsigned char *)yaml, strlen(yaml));
    int rc = 0, docs = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (next(p, &ev) < 0) {
            rc = -1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) rc = fail(p, line_of(&ev), "yaml", "only one YAML document is allowed");
            else rc = read_document(p);
            break;
        default: break;  // stream start, document end
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p->yp);
    free(p);
    if (rc == 0) {
        *c = work;
        snprintf(c->source, sizeof c->source, "%s", source);
    }
    return rc;
}

int config_load_file(Config *c, const char *path, Err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, fp)) > 0;) {
        n += got;
        if (n + 1 == cap) buf = xrealloc(buf, cap *= 2);
    }
    bool bad = ferror(fp);
    fclose(fp);
    buf[n] = 0;
    int rc = bad ? err_set(err, "%s: read error", path) : 0;
    if (rc == 0 && strlen(buf) != n) rc = err_set(err, "%s:%d: yaml: file contains a NUL byte", path, 1);
    if (rc == 0) rc = config_load_string(c, buf, path, err);
    free(buf);
    return rc;
}

int config_override(Config *c, const char *assignment, Err *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return err_set(err, "override '%s': expected section.key=value", assignment);
    char name[160], problem[400], hint[160];
    snprintf(name, sizeof name, "%.*s", (int)(eq - assignment), assignment);
    const Key *k = find_key(name);
    if (!k) {
        suggest(name, true, hint, sizeof hint);
        return err_set(err, "override '%s': %s: unknown key%s", assignment, name, hint);
    }
    Config work = *c;
    if (set_value(&work, k, eq + 1, problem, sizeof problem) < 0)
        return err_set(err, "override '%s': %s: %s", assignment, name, problem);
    *c = work;
    return 0;
}

// ---- cross-field checks ----

// "V:N:M" or "N:M" (V = 1); returns false on a malformed pattern.
static bool parse_pattern(const char *s, long long v[3], int *count) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    *count = 0;
    for (char *tok = buf;;) {
        char *colon = strchr(tok, ':');
        if (colon) *colon = 0;
        if (*count == 3 || !parse_i64(tok, &v[*count]) || v[*count] <= 0) return false;
        (*count)++;
        if (!colon) break;
        tok = colon + 1;
    }
    if (*count == 2) v[2] = v[1], v[1] = v[0], v[0] = 1;
    return *count >= 2;
}

// A stage length in steps: fractions of total (when known), step counts as they are.
static double stage_steps(float s, int64_t total) { return s < 1 ? (double)s * (double)total : (double)s; }

#define INVALID(...) return err_set(err, "%s: " __VA_ARGS__)

int config_validate(const Config *c, Err *err) {
    const char *src = c->source[0] ? c->source : "config";
    const ModelConfig *m = &c->model;
    if (strcmp(m->arch, "deit") == 0) {
        if (m->img_size % m->patch_size)
            INVALID("model.img_size: %d is not divisible by model.patch_size %d", src, m->img_size, m->patch_size);
        if (m->embed_dim % m->num_heads)
            INVALID("model.embed_dim: %d is not divisible by model.num_heads %d", src, m->embed_dim, m->num_heads);
    } else {
        if (m->hidden_size % m->n_heads)
            INVALID("model.hidden_size: %d is not divisible by model.n_heads %d", src, m->hidden_size, m->n_heads);
        if ((m->hidden_size / m->n_heads) % 2)
            INVALID("model.hidden_size: head size %d must be even for RoPE", src, m->hidden_size / m->n_heads);
        if (m->n_heads % m->n_kv_heads)
            INVALID("model.n_kv_heads: model.n_heads %d is not a multiple of %d", src, m->n_heads, m->n_kv_heads);
    }
    if (strcmp(c->data.dataset, "hdf5") == 0 && !c->data.path[0]) INVALID("data.path: empty (the hdf5 file)", src);
    bool tokens = strcmp(c->data.dataset, "tokens") == 0, llama = strcmp(m->arch, "llama") == 0;
    if (tokens && !llama) INVALID("data.dataset: tokens with model.arch %s: token files are for llama", src, m->arch);
    if (tokens && c->data.seq_len > m->max_seq_len)
        INVALID("data.seq_len: %d is longer than model.max_seq_len %d", src, c->data.seq_len, m->max_seq_len);
    if (c->lora.enabled && c->lora.rank <= 0) INVALID("lora.rank: must be > 0 when lora.enabled", src);
    if (c->lora.enabled && c->lora.n_targets == 0 && !c->lora.train_head)
        INVALID("lora.targets: empty and lora.train_head is false: nothing to train", src);
    if (c->optim.min_lr > c->optim.lr)
        INVALID("optim.min_lr: %g is larger than optim.lr %g", src, c->optim.min_lr, c->optim.lr);
    if (c->optim.warmup >= 1 && c->optim.warmup != floorf(c->optim.warmup))
        INVALID("optim.warmup: %g is neither a fraction (< 1) nor a whole step count", src, c->optim.warmup);
    if (c->train.steps > 0 && stage_steps(c->optim.warmup, c->train.steps) > (double)c->train.steps)
        INVALID("optim.warmup: %g steps is more than train.steps %lld", src, c->optim.warmup, (long long)c->train.steps);
    if (!c->sparsity.enabled) return 0;

    long long v[3];
    int count;
    if (!c->sparsity.pattern[0]) INVALID("sparsity.pattern: empty while sparsity.enabled", src);
    if (!parse_pattern(c->sparsity.pattern, v, &count))
        INVALID("sparsity.pattern: '%s' is not V:N:M or N:M with positive integers", src, c->sparsity.pattern);
    if (v[1] != 2 || v[2] < 4)
        INVALID("sparsity.pattern: '%s': N must be 2 and M at least 4 (2:4 inside 4 kept columns of M)", src,
                c->sparsity.pattern);
    if (c->sparsity.n_targets == 0) INVALID("sparsity.targets: empty while sparsity.enabled", src);
    if ((strcmp(c->sparsity.score, "wanda") == 0 || strcmp(c->sparsity.score, "ria") == 0 ||
         strcmp(c->sparsity.score, "sparsegpt") == 0) && c->sparsity.calib_batches == 0)
        INVALID("sparsity.calib_batches: must be > 0 for score %s", src, c->sparsity.score);
    if (c->sparsity.enabled && strcmp(c->sparsity.score, "sparsegpt") == 0 &&
        (strcmp(c->schedule.mode, "one_shot") != 0 || c->lora.enabled))
        INVALID("sparsity.score: sparsegpt rewrites the weights: it needs schedule.mode one_shot and lora.enabled false%s", src, "");
    const ScheduleConfig *s = &c->schedule;
    bool lora_mode = strcmp(s->mode, "three_stage") == 0 || strcmp(s->mode, "fixed_mask_lora") == 0;
    if (lora_mode && !c->lora.enabled) INVALID("schedule.mode: %s needs lora.enabled: true", src, s->mode);
    if (strcmp(s->mode, "three_stage") == 0) {
        const float st[2] = {s->stage1, s->stage2};
        for (int i = 0; i < 2; i++)
            if (st[i] >= 1 && st[i] != floorf(st[i]))
                INVALID("schedule.stage%d: %g is neither a fraction (< 1) nor a whole step count", src, i + 1, st[i]);
        if (s->stage1 < 1 && s->stage2 < 1 && s->stage1 + s->stage2 >= 1)
            INVALID("schedule.stage2: stage1 + stage2 = %g leaves no steps for stage 3 (must be < 1)", src,
                    s->stage1 + s->stage2);
        if (c->train.steps > 0 &&
            stage_steps(s->stage1, c->train.steps) + stage_steps(s->stage2, c->train.steps) >= (double)c->train.steps)
            INVALID("schedule.stage2: stages 1 and 2 take all %lld steps of train.steps", src, (long long)c->train.steps);
    }
    return 0;
}

// ---- writing ----

static void write_quoted(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if (*s == '\n') fputs("\\n", f);
        else if (*s == '\t') fputs("\\t", f);
        else fputc(*s, f);
    }
    fputc('"', f);
}

// The shortest "%.Ng" text that reads back as exactly v (at most 9 digits, always enough for fp32).
static void write_float(FILE *f, float v) {
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    fputs(buf, f);
}

// One value in YAML syntax.
static void write_value(FILE *f, const Config *c, const Key *k) {
    const void *p = (const char *)c + k->offset;
    switch (k->type) {
    case K_INT: fprintf(f, "%d", *(const int *)p); break;
    case K_INT64: fprintf(f, "%lld", (long long)*(const int64_t *)p); break;
    case K_UINT64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case K_FLOAT: write_float(f, *(const float *)p); break;
    case K_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
    case K_STR:
    case K_ENUM: write_quoted(f, p); break;
    case K_LIST: {
        int n = *(const int *)((const char *)c + k->count_offset);
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            write_quoted(f, (const char *)p + (size_t)i * k->size);
        }
        fputc(']', f);
        break;
    }
    }
}

void config_write_yaml(const Config *c, FILE *f) {
    for (int i = 0; i < N_KEYS; i++) {
        const char *name = KEYS[i].name;
        size_t sl = section_len(name);
        if (i == 0 || section_len(KEYS[i - 1].name) != sl || strncmp(KEYS[i - 1].name, name, sl) != 0)
            fprintf(f, "%.*s:\n", (int)sl, name);
        fprintf(f, "  %s: ", name + sl + 1);
        write_value(f, c, &KEYS[i]);
        fputc('\n', f);
    }
}

char *config_to_yaml(const Config *c) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) fatal("open_memstream failed");
    config_write_yaml(c, f);
    fclose(f);
    return buf;
}

void config_print_keys(FILE *f) {
    Config d;
    config_defaults(&d);
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &KEYS[i];
        char def[300];
        FILE *m = fmemopen(def, sizeof def, "w");
        write_value(m, &d, k);
        fclose(m);
        fprintf(f, "  %-26s %-7s %-22s %s", k->name, type_name(k), def, k->help);
        if (k->type == K_ENUM) fprintf(f, " (%s)", k->allowed);
        else if (k->min < k->max) fprintf(f, " [%.10g, %.10g]", k->min, k->max);
        fputc('\n', f);
    }
}
