// Channel permutation search for V:N:M sparsity. See vnm_permute.h.
//
// State: the permuted score matrix S' (in one of two layouts, below), and for every V×M block
// (r, c) its best kept score kept[r][c] and its 4 chosen columns choice[r][c]. The total kept
// score is Σ kept. Both phases propose a swap, estimate its gain with a cheap LOWER bound that
// holds the other blocks' choices fixed (so a positive estimate is a guaranteed improvement), and
// on acceptance re-solve the touched blocks exactly (which can only add to the gain).
//
// Column phase (P_i). Layout T = S'ᵀ (in, out): a channel is a contiguous row of T, so swapping
// channels between column blocks A and B swaps two rows of T and touches the 2R blocks (r, A),
// (r, B); the block solver reads the V-long column pieces directly (vectorised). Candidates: "victims" are channels with the most PRUNED score (their
// block has no room for them), paired with the "weakest" channels of other blocks (least KEPT
// score). The lower bound for a block whose position x changed: the old choice, and the choices
// that swap x in for one chosen column (x not chosen) or x out for one unchosen column (x chosen).
// When M is small, C(M,4) is about as cheap as that, and the exact solve is used instead.
//
// Row phase (P_o). Layout S' row-major. fit(i, R') = Σ_c top2 of row i over choice[R'][c] is what
// row i would keep in row block R' with that block's choices fixed. Rows are visited in order of
// their loss (Σ_c top2 of all M minus what they keep); row i in R1 goes to the block R2 with the
// best fit, swapping with the row j of R2 that fits R1 best; gain = fit(i,R2) - fit(i,R1) +
// fit(j,R1) - fit(j,R2) exactly, with the choices fixed.
#include "train/vnm_permute.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/vnm_mask.h"

VnmPermuteOptions vnm_permute_defaults(void) {
    return (VnmPermuteOptions){.time_budget_s = 2.0, .max_rounds = 50, .permute_rows = true,
                               .try_striped_start = true};
}

typedef struct Search {
    VnmPattern p;
    int V, M;
    int64_t out, in, R, C;
    const float *scores;   // original (out, in)
    int32_t *perm_in, *perm_out;
    float *buf;            // S' in the current phase's layout
    float *kept;           // (R, C)
    uint8_t (*choice)[4];  // (R, C) chosen positions, ascending
    VnmBlockSolver solver;
    double deadline;
    bool exact_eval;       // column phase: C(M,4) is small, solve exactly instead of bounding
    int tries;             // column phase: weak partners tried per victim (grows when stuck)
    VnmPermuteStats *st;
} Search;

static double total_kept(const Search *s) {
    double t = 0;
    for (int64_t b = 0; b < s->R * s->C; b++) t += s->kept[b];
    return t;
}

// Only accept gains above rounding noise of the touched blocks' sums.
static bool is_gain(double gain, double touched) { return gain > 1e-6 * touched + 1e-30; }

// ---- layouts ----

static const float *tile_T(const Search *s, int64_t r, int64_t c) {
    return s->buf + c * s->M * s->out + r * s->V;  // column-major block, column stride out
}
static const float *tile_rows(const Search *s, int64_t r, int64_t c) {
    return s->buf + r * s->V * s->in + c * s->M;
}

static void build_T(Search *s) {
    enum { ROWS = 32 };  // transpose in strips of rows to stay in cache
    for (int64_t i0 = 0; i0 < s->out; i0 += ROWS) {
        int64_t i1 = i0 + ROWS < s->out ? i0 + ROWS : s->out;
        for (int64_t k = 0; k < s->in; k++) {
            const float *src = s->scores + s->perm_in[k];
            float *dst = s->buf + k * s->out;
            for (int64_t i = i0; i < i1; i++) dst[i] = src[(int64_t)s->perm_out[i] * s->in];
        }
    }
}

static void build_rows(Search *s) {
    vnm_permute_apply(s->scores, s->out, s->in, s->perm_in, s->perm_out, s->buf);
}

static void store(Search *s, int64_t r, int64_t c, float kept, const int cols[4]) {
    s->kept[r * s->C + c] = kept;
    for (int k = 0; k < 4; k++) s->choice[r * s->C + c][k] = (uint8_t)cols[k];
}

static void solve_T(Search *s, int64_t r, int64_t c) {
    int cols[4];
    store(s, r, c, vnm_solver_best_cm(&s->solver, tile_T(s, r, c), s->out, cols), cols);
}

static void solve_rows(Search *s, int64_t r, int64_t c) {
    int cols[4];
    store(s, r, c, vnm_solver_best(&s->solver, tile_rows(s, r, c), s->in, cols), cols);
}

static void solve_all_T(Search *s) {
    for (int64_t c = 0; c < s->C; c++)  // column block outer: walks T contiguously
        for (int64_t r = 0; r < s->R; r++) solve_T(s, r, c);
}

static void copy_choice(const uint8_t src[4], int dst[4]) {
    for (int k = 0; k < 4; k++) dst[k] = src[k];
}

// ---- column phase ----

// Lower bound (or exact value) of block (r, c) in layout T after position x got new data.
static float bound_after_change(Search *s, int64_t r, int64_t c, int x) {
    const float *t = tile_T(s, r, c);
    if (s->exact_eval) return vnm_solver_best_cm(&s->solver, t, s->out, NULL);
    int ch[4], alt[4];
    copy_choice(s->choice[r * s->C + c], ch);
    float best = vnm_block_kept_cm(t, s->out, s->V, ch);
    int x_at = -1;
    for (int k = 0; k < 4; k++)
        if (ch[k] == x) x_at = k;
    if (x_at < 0) {  // x not chosen: try it in place of each chosen column
        for (int k = 0; k < 4; k++) {
            memcpy(alt, ch, sizeof alt);
            alt[k] = x;
            float v = vnm_block_kept_cm(t, s->out, s->V, alt);
            if (v > best) best = v;
        }
    } else {  // x chosen: try each unchosen column in its place
        for (int u = 0; u < s->M; u++) {
            bool chosen = u == ch[0] || u == ch[1] || u == ch[2] || u == ch[3];
            if (chosen) continue;
            memcpy(alt, ch, sizeof alt);
            alt[x_at] = u;
            float v = vnm_block_kept_cm(t, s->out, s->V, alt);
            if (v > best) best = v;
        }
    }
    return best;
}

// Swaps the n-float slices i and j of buf, and entries i and j of perm.
static void swap_slices(float *buf, int64_t n, int32_t *perm, int64_t i, int64_t j) {
    float *a = buf + i * n, *b = buf + j * n;
    for (int64_t k = 0; k < n; k++) {
        float t = a[k];
        a[k] = b[k];
        b[k] = t;
    }
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
}

// Swaps channel positions ka and kb (in different column blocks) in T and perm_in.
static void swap_columns_T(Search *s, int64_t ka, int64_t kb) { swap_slices(s->buf, s->out, s->perm_in, ka, kb); }

// Tries swapping positions ka and kb; keeps the swap when it provably gains. Returns the gain.
static double try_column_swap(Search *s, int64_t ka, int64_t kb) {
    int64_t A = ka / s->M, B = kb / s->M;
    swap_columns_T(s, ka, kb);
    double gain = 0, touched = 0;
    for (int64_t r = 0; r < s->R; r++) {
        gain += bound_after_change(s, r, A, (int)(ka % s->M)) - s->kept[r * s->C + A];
        gain += bound_after_change(s, r, B, (int)(kb % s->M)) - s->kept[r * s->C + B];
        touched += s->kept[r * s->C + A] + s->kept[r * s->C + B];
    }
    s->st->col_tries++;
    if (!is_gain(gain, touched)) {
        swap_columns_T(s, ka, kb);
        return 0;
    }
    double before = touched, after = 0;
    for (int64_t r = 0; r < s->R; r++) {
        solve_T(s, r, A);
        solve_T(s, r, B);
        after += s->kept[r * s->C + A] + s->kept[r * s->C + B];
    }
    s->st->col_swaps++;
    return after - before;
}

// Per channel position: score pruned and score kept under the current choices.
static void column_usage(const Search *s, double *pruned, double *kept) {
    memset(pruned, 0, (size_t)s->in * sizeof(double));
    memset(kept, 0, (size_t)s->in * sizeof(double));
    for (int64_t c = 0; c < s->C; c++)
        for (int64_t r = 0; r < s->R; r++) {
            const uint8_t *ch = s->choice[r * s->C + c];
            const float *t = tile_T(s, r, c);
            for (int i = 0; i < s->V; i++) {
                float x[VNM_MAX_M];
                for (int m = 0; m < s->M; m++) x[m] = t[m * s->out + i];
                // the two largest of the 4 chosen (ties: lowest position), like mask_compute
                int k1 = 0, k2 = -1;
                for (int k = 1; k < 4; k++)
                    if (x[ch[k]] > x[ch[k1]]) k1 = k;
                for (int k = 0; k < 4; k++)
                    if (k != k1 && (k2 < 0 || x[ch[k]] > x[ch[k2]])) k2 = k;
                for (int m = 0; m < s->M; m++) {
                    bool keep = m == ch[k1] || m == ch[k2];
                    (keep ? kept : pruned)[c * s->M + m] += x[m];
                }
            }
        }
}

typedef struct Keyed {
    double key;
    int64_t idx;
} Keyed;

static int by_key_desc(const void *pa, const void *pb) {
    const Keyed *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return a->idx < b->idx ? -1 : 1;  // ties: lowest index first
}

// Indices 0..n-1 ordered by key (descending, or ascending when !descending; ties by index).
static int64_t *sorted_positions(const double *key, int64_t n, bool descending) {
    Keyed *k = xmalloc((size_t)n * sizeof(Keyed));
    for (int64_t i = 0; i < n; i++) k[i] = (Keyed){descending ? key[i] : -key[i], i};
    qsort(k, (size_t)n, sizeof(Keyed), by_key_desc);
    int64_t *idx = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) idx[i] = k[i].idx;
    free(k);
    return idx;
}

// One pass of victim/weak swaps. Returns the number of accepted swaps.
static int64_t column_phase(Search *s) {
    build_T(s);
    double *pruned = xmalloc((size_t)s->in * sizeof(double));
    double *kept = xmalloc((size_t)s->in * sizeof(double));
    column_usage(s, pruned, kept);
    int64_t *victims = sorted_positions(pruned, s->in, true);
    int64_t *weak = sorted_positions(kept, s->in, false);
    int64_t accepted = 0, w = 0;
    // The victims with the most pruned score first; each tries the next few weakest channels.
    for (int64_t v = 0; v < s->in && now_seconds() < s->deadline; v++) {
        int64_t kv = victims[v];
        for (int t = 0; t < s->tries; t++, w = (w + 1) % s->in) {
            int64_t kw = weak[w];
            if (kw / s->M == kv / s->M) continue;
            if (try_column_swap(s, kv, kw) > 0) {
                accepted++;
                w = (w + 1) % s->in;
                break;
            }
        }
    }
    free(pruned);
    free(kept);
    free(victims);
    free(weak);
    return accepted;
}

// ---- row phase ----

// top2 of row x over the block choices of row block R' for all column blocks.
static double row_fit(const Search *s, const float *x, int64_t Rp) {
    double sum = 0;
    for (int64_t c = 0; c < s->C; c++) {
        const uint8_t *ch = s->choice[Rp * s->C + c];
        const float *y = x + c * s->M;
        float a = y[ch[0]], b = y[ch[1]], cc = y[ch[2]], d = y[ch[3]];
        float hi1 = fmaxf(a, b), lo1 = fminf(a, b), hi2 = fmaxf(cc, d), lo2 = fminf(cc, d);
        sum += fmaxf(hi1, hi2) + fmaxf(fminf(hi1, hi2), fmaxf(lo1, lo2));
    }
    return sum;
}

// Σ over column blocks of the 2 largest of all M values of row x: what the row keeps at best.
static double row_ideal(const Search *s, const float *x) {
    double sum = 0;
    for (int64_t c = 0; c < s->C; c++) {
        const float *y = x + c * s->M;
        float t1 = -INFINITY, t2 = -INFINITY;
        for (int m = 0; m < s->M; m++) {
            if (y[m] > t1) t2 = t1, t1 = y[m];
            else if (y[m] > t2) t2 = y[m];
        }
        sum += t1 + t2;
    }
    return sum;
}

static void swap_rows(Search *s, int64_t i, int64_t j) { swap_slices(s->buf, s->in, s->perm_out, i, j); }

static int64_t row_phase(Search *s) {
    build_rows(s);
    double *loss = xmalloc((size_t)s->out * sizeof(double));
    for (int64_t i = 0; i < s->out; i++) {
        const float *x = s->buf + i * s->in;
        loss[i] = row_ideal(s, x) - row_fit(s, x, i / s->V);
    }
    int64_t *order = sorted_positions(loss, s->out, true);
    double *fit = xmalloc((size_t)s->R * sizeof(double));
    int64_t accepted = 0, misses = 0;
    // Rows in order of loss; give up after a run of rows that found nothing (the rest lose less).
    const int64_t max_misses = s->V > 32 ? s->V : 32;
    for (int64_t n = 0; n < s->out && misses < max_misses && now_seconds() < s->deadline; n++) {
        int64_t i = order[n], R1 = i / s->V;
        misses++;
        const float *xi = s->buf + i * s->in;
        for (int64_t Rp = 0; Rp < s->R; Rp++) fit[Rp] = row_fit(s, xi, Rp);
        int64_t R2 = -1;
        for (int64_t Rp = 0; Rp < s->R; Rp++)
            if (Rp != R1 && (R2 < 0 || fit[Rp] > fit[R2])) R2 = Rp;
        if (R2 < 0 || fit[R2] <= fit[R1]) continue;
        double gain_i = fit[R2] - fit[R1];
        int64_t best_j = -1;
        double best_gain = 0;
        for (int64_t j = R2 * s->V; j < (R2 + 1) * s->V; j++) {
            const float *xj = s->buf + j * s->in;
            double g = gain_i + row_fit(s, xj, R1) - row_fit(s, xj, R2);
            if (best_j < 0 || g > best_gain) best_j = j, best_gain = g;
        }
        s->st->row_tries++;
        double touched = 0;
        for (int64_t c = 0; c < s->C; c++) touched += s->kept[R1 * s->C + c] + s->kept[R2 * s->C + c];
        if (!is_gain(best_gain, touched)) continue;
        swap_rows(s, i, best_j);
        for (int64_t c = 0; c < s->C; c++) {
            solve_rows(s, R1, c);
            solve_rows(s, R2, c);
        }
        s->st->row_swaps++;
        accepted++;
        misses = 0;
    }
    free(loss);
    free(order);
    free(fit);
    return accepted;
}

// ---- striped start ----

// Channels sorted by total score, dealt round-robin over the column blocks: block b gets the
// channels of rank b, b + C, b + 2C, ... so that the strongest channels never share a block.
static void striped_perm(const float *scores, int64_t out, int64_t in, int M, int32_t *perm) {
    double *imp = xcalloc((size_t)in, sizeof(double));
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) imp[j] += scores[i * in + j];
    int64_t *rank = sorted_positions(imp, in, true);
    int64_t C = in / M;
    for (int64_t k = 0; k < in; k++) perm[(k % C) * M + k / C] = (int32_t)rank[k];
    free(imp);
    free(rank);
}

// Switches to the striped channel order when it keeps more than the current (identity) one.
static void try_striped_start(Search *s) {
    float *kept_id = s->kept;
    uint8_t(*choice_id)[4] = s->choice;
    s->kept = xmalloc((size_t)(s->R * s->C) * sizeof(float));
    s->choice = xmalloc((size_t)(s->R * s->C) * sizeof *s->choice);
    striped_perm(s->scores, s->out, s->in, s->M, s->perm_in);
    build_T(s);
    solve_all_T(s);
    if (is_gain(total_kept(s) - s->st->kept_identity, s->st->kept_identity)) {
        s->st->striped_start = true;
        free(kept_id);
        free(choice_id);
        return;
    }
    for (int64_t k = 0; k < s->in; k++) s->perm_in[k] = (int32_t)k;  // back to the identity
    free(s->kept);
    free(s->choice);
    s->kept = kept_id, s->choice = choice_id;
}

// ---- driver ----

int vnm_permute_search(const float *scores, int64_t out, int64_t in, VnmPattern p,
                       const VnmPermuteOptions *opt, const char *layer, int32_t *perm_in,
                       int32_t *perm_out, VnmPermuteStats *stats, Err *err) {
    const char *name = layer ? layer : "?";
    if (p.N != 2 || p.M < 4 || p.M > VNM_MAX_M || p.V < 1)
        return err_set(err, "layer '%s': bad pattern %d:%d:%d", name, p.V, p.N, p.M);
    if (vnm_pattern_fits(p, out, in, name, err)) return -1;
    for (int64_t k = 0; k < out * in; k++)
        if (!isfinite(scores[k]))
            return err_set(err, "layer '%s': non-finite score at (%lld, %lld)", name,
                           (long long)(k / in), (long long)(k % in));
    double t0 = now_seconds();
    VnmPermuteStats local = {0};
    Search s = {.p = p, .V = p.V, .M = p.M, .out = out, .in = in, .R = out / p.V, .C = in / p.M,
                .scores = scores, .perm_in = perm_in, .deadline = t0 + opt->time_budget_s,
                .st = stats ? stats : &local};
    *s.st = (VnmPermuteStats){0};
    s.perm_out = xmalloc((size_t)out * sizeof(int32_t));
    for (int64_t i = 0; i < out; i++) s.perm_out[i] = (int32_t)i;
    for (int64_t k = 0; k < in; k++) perm_in[k] = (int32_t)k;
    s.buf = xmalloc((size_t)(out * in) * sizeof(float));
    s.kept = xmalloc((size_t)(s.R * s.C) * sizeof(float));
    s.choice = xmalloc((size_t)(s.R * s.C) * sizeof *s.choice);
    vnm_solver_init(&s.solver, p.V, p.M);
    int bound_evals = 1 + (p.M - 4 > 4 ? p.M - 4 : 4);
    s.exact_eval = s.solver.n_subsets <= bound_evals;
    s.tries = 4;

    build_T(&s);
    solve_all_T(&s);
    s.st->kept_identity = total_kept(&s);
    if (opt->try_striped_start) try_striped_start(&s);
    for (int round = 0; round < opt->max_rounds && now_seconds() < s.deadline; round++) {
        int64_t changes = column_phase(&s);
        if (opt->permute_rows && s.R > 1 && now_seconds() < s.deadline) changes += row_phase(&s);
        s.st->rounds++;
        if (changes == 0) {  // stuck: widen the column neighbourhood, stop when it is all tried
            if (s.tries >= s.in) break;
            s.tries *= 4;
        }
    }
    s.st->kept_final = total_kept(&s);
    s.st->seconds = now_seconds() - t0;
    if (perm_out) memcpy(perm_out, s.perm_out, (size_t)out * sizeof(int32_t));
    free(s.perm_out);
    free(s.buf);
    free(s.kept);
    free(s.choice);
    vnm_solver_free(&s.solver);
    return 0;
}

// ---- applying permutations ----

void vnm_permute_apply(const float *src, int64_t out, int64_t in, const int32_t *perm_in,
                       const int32_t *perm_out, float *dst) {
    for (int64_t r = 0; r < out; r++) {
        const float *row = src + (perm_out ? perm_out[r] : r) * in;
        if (!perm_in) memcpy(dst + r * in, row, (size_t)in * sizeof *dst);
        else
            for (int64_t k = 0; k < in; k++) dst[r * in + k] = row[perm_in[k]];
    }
}

void vnm_unpermute_mask(const uint8_t *mask_perm, int64_t out, int64_t in, const int32_t *perm_in,
                        const int32_t *perm_out, uint8_t *mask_orig) {
    for (int64_t r = 0; r < out; r++) {
        uint8_t *row = mask_orig + (perm_out ? perm_out[r] : r) * in;
        for (int64_t k = 0; k < in; k++) row[perm_in[k]] = mask_perm[r * in + k];
    }
}

int vnm_check_perm(const int32_t *perm, int64_t n, const char *what, Err *err) {
    uint8_t *seen = xcalloc((size_t)n, 1);
    int rc = 0;
    for (int64_t k = 0; k < n && rc == 0; k++) {
        if (perm[k] < 0 || perm[k] >= n)
            rc = err_set(err, "%s: entry %lld = %d is outside 0..%lld", what, (long long)k, perm[k],
                         (long long)(n - 1));
        else if (seen[perm[k]]++)
            rc = err_set(err, "%s: %d appears twice (entry %lld), not a permutation", what, perm[k],
                         (long long)k);
    }
    free(seen);
    return rc;
}

// ---- compression of a permuted layer ----

// Maps the block's 4 columns from permuted positions to original channels, sorts them ascending
// (the format's order) and renumbers the rows' 2:4 positions and values to match.
static void remap_block(VnmMatrix *m, int64_t rb, int64_t cb, const int32_t *perm_in) {
    uint16_t *col = m->columns + (rb * m->C + cb) * 4;
    int order[4] = {0, 1, 2, 3};  // order[new] = old slot, by original channel
    int32_t orig[4];
    for (int k = 0; k < 4; k++) orig[k] = perm_in[col[k]];
    for (int i = 1; i < 4; i++)
        for (int k = i; k > 0 && orig[order[k - 1]] > orig[order[k]]; k--) {
            int t = order[k];
            order[k] = order[k - 1], order[k - 1] = t;
        }
    int rank[4];  // rank[old slot] = new slot
    for (int k = 0; k < 4; k++) col[k] = (uint16_t)orig[order[k]], rank[order[k]] = k;
    for (int64_t row = rb * m->p.V; row < (rb + 1) * m->p.V; row++) {
        uint8_t *code = m->idx + row * m->C + cb;
        uint16_t *v = m->values + row * 2 * m->C + 2 * cb;
        int p0 = rank[*code & 3], p1 = rank[(*code >> 2) & 3];
        if (p0 > p1) {  // keep first < second, values in the same order
            int t = p0;
            p0 = p1, p1 = t;
            uint16_t tv = v[0];
            v[0] = v[1], v[1] = tv;
        }
        *code = (uint8_t)(p0 | (p1 << 2));
    }
}

int vnm_compress_permuted(const float *W, const uint8_t *mask_perm, int64_t out, int64_t in,
                          VnmPattern p, const int32_t *perm_in, const int32_t *perm_out,
                          VnmMatrix *m, Err *err) {
    if (vnm_check_perm(perm_in, in, "vnm_compress_permuted: perm_in", err)) return -1;
    if (perm_out && vnm_check_perm(perm_out, out, "vnm_compress_permuted: perm_out", err)) return -1;
    float *Wp = xmalloc((size_t)(out * in) * sizeof(float));
    vnm_permute_apply(W, out, in, perm_in, perm_out, Wp);
    int rc = vnm_compress(Wp, mask_perm, out, in, p, perm_out, m, err);
    free(Wp);
    if (rc) return -1;
    for (int64_t rb = 0; rb < m->R; rb++)
        for (int64_t cb = 0; cb < m->C; cb++) remap_block(m, rb, cb, perm_in);
    vnm_pack_meta(m);
    return 0;
}
