// V:N:M compressed format: parsing, compression, the kernels' metadata layout, CPU reference SpMM.
//
// ---- meta: the layout the sparse MMA kernels read (vnm_pack_meta) ----
// The sparse tensor-core instructions (mma.sp m16n8k32 and wgmma.mma_async.sp m64nNk32, bf16) take
// 2:4 metadata per warp for 16 rows × 32 logical K. In a V:N:M matrix the logical K of a row is the
// concatenation over column blocks c of the 4 kept columns of that block, so one k-step of 32
// logical K covers 8 column blocks and each column block is one 4-wide chunk whose 4-bit code is
// the row's idx nibble (bits 1:0 = first kept position, bits 3:2 = second, first < second: the
// "ordered metadata" form).
//
// With G16 = ceil(out/16) groups of 16 rows and KT = ceil(C/8) k-steps:
//   meta[(q*KT + s)*16 + w],  q = 16-row group, s = k-step, w = 2*g + h (g = 0..7, h = 0..1)
// is the 32-bit word that thread lane 4*g + h of the warp passes as metadata (sparsity selector 0):
//   bits [4j+3 : 4j]       code of row 16q+g   for column block 8s+4h+j  (j = 0..3)
//   bits [16+4j+3 : 16+4j] code of row 16q+g+8 for column block 8s+4h+j
// i.e. thread h = 0 of a pair describes logical columns 0..15 of the k-step, h = 1 columns 16..31;
// low half-word row g, high half-word row g+8. Rows >= out and column blocks >= C (padding) get
// code 0b0100 (positions 0 and 1, a valid ordered code; their values are zero). The GPU upload
// (kernels/vnm_spmm.cu) may reorder these words further; it documents its own device layout.
#include "vnm_format.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "autograd/tensor.h"

#define VNM_PAD_CODE 0x4u  // positions (0, 1)

// vnm_pattern_parse and vnm_pattern_fits live in vnm_pattern.c.

static void vnm_alloc(VnmMatrix *m, VnmPattern p, int64_t out, int64_t in) {
    memset(m, 0, sizeof *m);
    m->p = p;
    m->out = out, m->in = in;
    m->R = out / p.V, m->C = in / p.M;
    m->values = xcalloc((size_t)(out * 2 * m->C), sizeof(uint16_t));
    m->columns = xcalloc((size_t)(m->R * m->C * 4), sizeof(uint16_t));
    m->idx = xcalloc((size_t)(out * m->C), 1);
}

int64_t vnm_meta_ksteps(const VnmMatrix *m) { return (m->C + 7) / 8; }

// The 4-bit ordered code of (row, column block), padding included.
static uint32_t code_at(const VnmMatrix *m, int64_t row, int64_t cb) {
    if (row >= m->out || cb >= m->C) return VNM_PAD_CODE;
    return m->idx[row * m->C + cb] & 0xFu;
}

// 16-row groups [q0, q1) of vnm_pack_meta.
static void pack_meta_groups(void *arg, int64_t q0, int64_t q1) {
    VnmMatrix *m = arg;
    const int64_t KT = vnm_meta_ksteps(m);
    for (int64_t q = q0; q < q1; q++)
        for (int64_t s = 0; s < KT; s++)
            for (int w = 0; w < 16; w++) {
                int g = w >> 1, h = w & 1;
                uint32_t word = 0;
                for (int j = 0; j < 4; j++) {
                    int64_t cb = 8 * s + 4 * h + j;
                    word |= code_at(m, 16 * q + g, cb) << (4 * j);
                    word |= code_at(m, 16 * q + g + 8, cb) << (16 + 4 * j);
                }
                m->meta[(q * KT + s) * 16 + w] = word;
            }
}

void vnm_pack_meta(VnmMatrix *m) {
    int64_t G16 = (m->out + 15) / 16, KT = vnm_meta_ksteps(m);
    free(m->meta);
    m->meta_words = G16 * KT * 16;
    m->meta = xcalloc((size_t)m->meta_words, sizeof(uint32_t));
    parallel_for(G16, 64, pack_meta_groups, m);
}

void vnm_unpack_meta(const VnmMatrix *m, uint8_t *idx) {
    int64_t KT = vnm_meta_ksteps(m);
    for (int64_t row = 0; row < m->out; row++)
        for (int64_t cb = 0; cb < m->C; cb++) {
            int64_t q = row / 16, s = cb / 8;
            int g = (int)(row % 16) % 8, hi = (int)(row % 16) / 8;
            int h = (int)(cb % 8) / 4, j = (int)(cb % 4);
            uint32_t word = m->meta[(q * KT + s) * 16 + 2 * g + h];
            idx[row * m->C + cb] = (uint8_t)((word >> (16 * hi + 4 * j)) & 0xFu);
        }
}

// a[i] = i, then shuffled when rng is given.
static void shuffled_identity(int32_t *a, int64_t n, Rng *rng) {
    for (int64_t i = 0; i < n; i++) a[i] = (int32_t)i;
    if (!rng) return;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t k = (int64_t)rng_below(rng, (uint64_t)i + 1);
        int32_t t = a[i];
        a[i] = a[k], a[k] = t;
    }
}

static int check_row_perm(const int32_t *row_perm, int64_t out, Err *err) {
    uint8_t *seen = xcalloc((size_t)out, 1);
    int rc = 0;
    for (int64_t r = 0; r < out && rc == 0; r++) {
        int32_t t = row_perm[r];
        if (t < 0 || t >= out || seen[t])
            rc = err_set(err, "vnm_compress: row_perm[%lld] = %d is not part of a permutation of 0..%lld",
                         (long long)r, t, (long long)out - 1);
        else
            seen[t] = 1;
    }
    free(seen);
    return rc;
}

// Finds the 4 kept columns of block (rb, cb) from the mask (the union of the rows' kept columns,
// padded with the lowest unused columns when the rows use fewer than 4) and each row's 2 of them.
static int compress_block(const float *W, const uint8_t *mask, VnmMatrix *m, int64_t rb, int64_t cb, Err *err) {
    int V = m->p.V, M = m->p.M;
    int64_t c0 = cb * M, in = m->in;
    int used[64] = {0};  // M <= 64 enforced by the caller
    for (int64_t row = rb * V; row < (rb + 1) * V; row++) {
        int kept = 0;
        for (int j = 0; j < M; j++)
            if (mask[row * in + c0 + j]) used[j] = 1, kept++;
        if (kept != 2)
            return err_set(err, "vnm_compress: row %lld keeps %d values in column block %lld (cols %lld..%lld), "
                           "expected 2", (long long)row, kept, (long long)cb, (long long)c0, (long long)c0 + M - 1);
    }
    int cols[4], n = 0;
    for (int j = 0; j < M; j++)
        if (used[j]) {
            if (n == 4)
                return err_set(err, "vnm_compress: row block %lld (rows %lld..%lld), column block %lld "
                               "(cols %lld..%lld): rows use more than 4 distinct columns",
                               (long long)rb, (long long)rb * V, (long long)(rb + 1) * V - 1, (long long)cb,
                               (long long)c0, (long long)c0 + M - 1);
            cols[n++] = j;
        }
    for (int j = 0; j < M && n < 4; j++)  // pad: lowest unused columns, then keep ascending order
        if (!used[j]) used[j] = 2, n++;
    n = 0;
    for (int j = 0; j < M; j++)
        if (used[j]) cols[n++] = j;
    uint16_t *colout = m->columns + (rb * m->C + cb) * 4;
    for (int k = 0; k < 4; k++) colout[k] = (uint16_t)(c0 + cols[k]);
    for (int64_t row = rb * V; row < (rb + 1) * V; row++) {
        int pos[2], np = 0;
        for (int k = 0; k < 4; k++)
            if (mask[row * in + c0 + cols[k]]) pos[np++] = k;
        m->idx[row * m->C + cb] = (uint8_t)(pos[0] | (pos[1] << 2));
        for (int k = 0; k < 2; k++)
            m->values[row * 2 * m->C + 2 * cb + k] = f32_to_bf16(W[row * in + c0 + cols[pos[k]]]);
    }
    return 0;
}

int vnm_compress(const float *W, const uint8_t *mask, int64_t out, int64_t in, VnmPattern p,
                 const int32_t *row_perm, VnmMatrix *m, Err *err) {
    memset(m, 0, sizeof *m);
    if (p.N != 2 || p.M < 4 || p.M > 64 || p.V < 1)
        return err_set(err, "vnm_compress: unsupported pattern %d:%d:%d (N must be 2, 4 <= M <= 64)", p.V, p.N, p.M);
    if (vnm_pattern_fits(p, out, in, "vnm_compress", err)) return -1;
    if (in > 65536) return err_set(err, "vnm_compress: in = %lld exceeds the uint16 column index range", (long long)in);
    if (row_perm && check_row_perm(row_perm, out, err)) return -1;
    vnm_alloc(m, p, out, in);
    for (int64_t rb = 0; rb < m->R; rb++)
        for (int64_t cb = 0; cb < m->C; cb++)
            if (compress_block(W, mask, m, rb, cb, err)) {
                vnm_free(m);
                return -1;
            }
    if (row_perm) {
        m->row_perm = xmalloc((size_t)out * sizeof(int32_t));
        memcpy(m->row_perm, row_perm, (size_t)out * sizeof(int32_t));
    }
    vnm_pack_meta(m);
    return 0;
}

// Column (original input index) and value of the k-th (0/1) kept value of `row` in block cb.
static inline int64_t kept_col(const VnmMatrix *m, int64_t row, int64_t cb, int k) {
    int pos = (m->idx[row * m->C + cb] >> (2 * k)) & 3;
    return m->columns[((row / m->p.V) * m->C + cb) * 4 + pos];
}

void vnm_decompress(const VnmMatrix *m, float *W) {
    memset(W, 0, (size_t)(m->out * m->in) * sizeof(float));
    for (int64_t row = 0; row < m->out; row++)
        for (int64_t cb = 0; cb < m->C; cb++)
            for (int k = 0; k < 2; k++)
                W[row * m->in + kept_col(m, row, cb, k)] = bf16_to_f32(m->values[row * 2 * m->C + 2 * cb + k]);
}

// The 2:4 code (bits 1:0 first position, 3:2 second) of a group of 4 whose kept positions are
// the set bits of `mask`; groups with fewer than 2 fill up with the lowest free positions (their
// values stay 0); 0xFF for 3 or 4 kept positions (not 2:4).
static uint8_t code_of_mask(unsigned mask) {
    int ps[4], n = 0;
    for (int p = 0; p < 4; p++)
        if (mask >> p & 1) ps[n++] = p;
    if (n > 2) return 0xFF;
    for (int p = 0; n < 2; p++)
        if (!(mask >> p & 1)) ps[n++] = p;
    if (ps[0] > ps[1]) n = ps[0], ps[0] = ps[1], ps[1] = n;
    return (uint8_t)(ps[0] | ps[1] << 2);
}

typedef struct To24 {
    const VnmMatrix *m;
    VnmMatrix *o;
    uint8_t table[16];
    atomic_int bad;
} To24;

// Rows [r0, r1) of vnm_to_24: per group the mask of kept positions (and their values by position),
// then its code from the table (no data-dependent branches: they took most of the time).
static void to24_rows(void *arg, int64_t r0, int64_t r1) {
    To24 *c = arg;
    const VnmMatrix *m = c->m;
    const int64_t G = m->in / 4;
    uint8_t *mask = xmalloc((size_t)G);
    uint16_t *by_pos = xmalloc((size_t)(4 * G) * sizeof(uint16_t));  // value at (group, position), 0 if not kept
    uint8_t bad = 0;
    for (int64_t row = r0; row < r1; row++) {
        const uint16_t *cols = m->columns + (row / m->p.V) * m->C * 4, *v = m->values + row * 2 * m->C;
        const uint8_t *idx = m->idx + row * m->C;
        memset(mask, 0, (size_t)G);
        memset(by_pos, 0, (size_t)(4 * G) * sizeof(uint16_t));
        for (int64_t cb = 0; cb < m->C; cb++)
            for (int k = 0; k < 2; k++) {
                const int ch = cols[cb * 4 + ((idx[cb] >> (2 * k)) & 3)];
                mask[ch >> 2] |= (uint8_t)(1u << (ch & 3));
                by_pos[ch] = v[2 * cb + k];
            }
        const int64_t dst = m->row_perm ? m->row_perm[row] : row;  // rows in output order (no row blocks to keep)
        uint16_t *val = c->o->values + dst * 2 * G;
        uint8_t *code = c->o->idx + dst * G;
        for (int64_t q = 0; q < G; q++) {
            const uint8_t cd = c->table[mask[q]];
            bad |= (uint8_t)(cd == 0xFF);
            code[q] = cd;
            val[2 * q] = by_pos[4 * q + (cd & 3)], val[2 * q + 1] = by_pos[4 * q + ((cd >> 2) & 3)];
        }
    }
    if (bad) atomic_store(&c->bad, 1);
    free(mask), free(by_pos);
}

// Rows in parallel (a 7B model has 224 such matrices to convert at load time).
int vnm_to_24(const VnmMatrix *m, VnmMatrix *o) {
    if (m->in % 4) return -1;
    const int64_t G = m->in / 4;
    VnmPattern p = {m->p.V, 2, 4};
    vnm_alloc(o, p, m->out, m->in);
    for (int64_t i = 0; i < o->R * G * 4; i++) o->columns[i] = (uint16_t)(i % (G * 4));
    To24 c = {.m = m, .o = o};
    for (unsigned mk = 0; mk < 16; mk++) c.table[mk] = code_of_mask(mk);
    atomic_init(&c.bad, 0);
    parallel_for(m->out, 256, to24_rows, &c);
    const int ok = !atomic_load(&c.bad);
    if (!ok) {
        vnm_free(o);
        return -1;
    }
    vnm_pack_meta(o);
    return 0;
}

int vnm_to_24_gathered(const VnmMatrix *m, VnmMatrix *o, int32_t **src, int64_t *n_src) {
    // Slots: per block the ascending union u of its kept channels over the row blocks, in groups of
    // 4. A row keeps 2 values per block, so any 4 of a block's channels hold at most 2 of them: every
    // whole group is 2:4. A lone leftover channel (|u| % 4 == 1, as M = 5 gives) shares a group with
    // the lone leftover of another block (1 + 1 values at most) and 2 padding slots: M = 5 takes
    // 1.2·in slots instead of 1.6·in (8 per block). Leftovers of 2 or 3 channels get a group each.
    int64_t n = 0, cap = m->C * ((m->p.M + 3) / 4 * 4) + 64, open_pair = -1;  // open_pair: a group with one leftover
    int32_t *slot_src = xmalloc((size_t)cap * sizeof(int32_t));
    uint16_t *cols = xmalloc((size_t)(m->R * m->C * 4) * sizeof(uint16_t));  // kept columns as slot indices
    int ok = 1;
    for (int64_t cb = 0; cb < m->C && ok; cb++) {
        int32_t u[64];
        int64_t slot_of[64];
        int nu = 0;
        for (int64_t rb = 0; rb < m->R && ok; rb++)
            for (int k = 0; k < 4; k++) {
                const int32_t ch = m->columns[(rb * m->C + cb) * 4 + k];
                int at = 0;
                while (at < nu && u[at] < ch) at++;
                if (at < nu && u[at] == ch) continue;
                if (nu == m->p.M || nu == 64) {
                    ok = 0;
                    break;
                }
                memmove(u + at + 1, u + at, (size_t)(nu - at) * sizeof *u);
                u[at] = ch, nu++;
            }
        if (!ok) break;
        const int whole = nu / 4 * 4;
        for (int j = 0; j < whole; j++) slot_of[j] = n + j, slot_src[n + j] = u[j];
        n += whole;
        if (nu - whole == 1 && open_pair >= 0) {  // the second leftover of an open group
            slot_of[whole] = open_pair + 1, slot_src[open_pair + 1] = u[whole];
            open_pair = -1;
        } else if (nu > whole) {  // a new group: the leftovers, then padding
            if (nu - whole == 1) open_pair = n;
            for (int j = 0; j < 4; j++) slot_src[n + j] = whole + j < nu ? u[whole + j] : -1;
            for (int j = whole; j < nu; j++) slot_of[j] = n + j - whole;
            n += 4;
        }
        for (int64_t rb = 0; rb < m->R; rb++)
            for (int k = 0; k < 4; k++) {
                int at = 0;
                while (u[at] != m->columns[(rb * m->C + cb) * 4 + k]) at++;
                cols[(rb * m->C + cb) * 4 + k] = (uint16_t)slot_of[at];
            }
    }
    // Padding slots up to a multiple of 64: rows of the gathered x' 128-byte aligned, as the TMA
    // boxes of the SS kernel read them best (a row straddling 128-byte lines cost up to 16 %, and
    // 25 % in the wide tiles: experiments/kernels/NOTES.md, Session 16).
    while (ok && n % 64) slot_src[n++] = -1;
    if (ok && n > 65535) ok = 0;
    if (ok) {
        VnmMatrix view = *m;  // the same values, codes and row_perm over the slots
        view.in = n, view.columns = cols;
        ok = vnm_to_24(&view, o) == 0;
    }
    free(cols);
    if (!ok) {
        free(slot_src);
        return -1;
    }
    *src = slot_src, *n_src = n;
    return 0;
}

void vnm_free(VnmMatrix *m) {
    free(m->values);
    free(m->columns);
    free(m->idx);
    free(m->meta);
    free(m->row_perm);
    memset(m, 0, sizeof *m);
}

void vnm_spmm_cpu(const VnmMatrix *m, const float *x, int64_t n, const float *bias, float *y) {
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * m->in;
        for (int64_t row = 0; row < m->out; row++) {
            const uint16_t *v = m->values + row * 2 * m->C;
            float acc = 0.0f;
            for (int64_t cb = 0; cb < m->C; cb++)
                for (int k = 0; k < 2; k++) acc += bf16_to_f32(v[2 * cb + k]) * xt[kept_col(m, row, cb, k)];
            int64_t o = m->row_perm ? m->row_perm[row] : row;
            y[t * m->out + o] = acc + (bias ? bias[o] : 0.0f);
        }
    }
}

// Random valid V:N:M matrix for tests and benchmarks: per block 4 random distinct columns of the
// block (all 4 when M = 4), per row 2 random of them, values ~ N(0, 1) rounded to bf16.
// VNM_RANDOM_PERMUTE_COLS draws an input-channel permutation P first: block c then holds the
// original channels P[cM .. cM+M) (as the channel-permutation search produces).
// VNM_RANDOM_PERMUTE_ROWS adds a random row_perm.
void vnm_random(VnmPattern p, int64_t out, int64_t in, uint64_t seed, unsigned flags, VnmMatrix *m) {
    CHECK(p.N == 2 && p.M >= 4 && p.M <= 64 && out % p.V == 0 && in % p.M == 0 && in <= 65536,
          "vnm_random: bad pattern %d:%d:%d for (%lld, %lld)", p.V, p.N, p.M, (long long)out, (long long)in);
    vnm_alloc(m, p, out, in);
    Rng rng;
    rng_seed(&rng, seed);
    int32_t *chan = xmalloc((size_t)in * sizeof(int32_t));
    shuffled_identity(chan, in, (flags & VNM_RANDOM_PERMUTE_COLS) ? &rng : NULL);
    for (int64_t rb = 0; rb < m->R; rb++)
        for (int64_t cb = 0; cb < m->C; cb++) {
            int perm[64];
            for (int j = 0; j < p.M; j++) perm[j] = j;
            for (int j = 0; j < 4; j++) {  // partial Fisher-Yates: the first 4 are the kept columns
                int k = j + (int)rng_below(&rng, (uint64_t)(p.M - j));
                int t = perm[j];
                perm[j] = perm[k], perm[k] = t;
            }
            uint16_t *col = m->columns + (rb * m->C + cb) * 4;
            for (int j = 0; j < 4; j++) col[j] = (uint16_t)chan[cb * p.M + perm[j]];
            for (int j = 1; j < 4; j++)  // ascending
                for (int k = j; k > 0 && col[k - 1] > col[k]; k--) {
                    uint16_t t = col[k];
                    col[k] = col[k - 1], col[k - 1] = t;
                }
        }
    free(chan);
    static const uint8_t codes[6] = {0x4, 0x8, 0x9, 0xC, 0xD, 0xE};  // (0,1) (0,2) (1,2) (0,3) (1,3) (2,3)
    for (int64_t row = 0; row < out; row++)
        for (int64_t cb = 0; cb < m->C; cb++) {
            m->idx[row * m->C + cb] = codes[rng_below(&rng, 6)];
            for (int k = 0; k < 2; k++) m->values[row * 2 * m->C + 2 * cb + k] = f32_to_bf16(rng_normal(&rng));
        }
    if (flags & VNM_RANDOM_PERMUTE_ROWS) {
        m->row_perm = xmalloc((size_t)out * sizeof(int32_t));
        shuffled_identity(m->row_perm, out, &rng);
    }
    vnm_pack_meta(m);
}
