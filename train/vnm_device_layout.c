// Device layouts of the GPU SpMM kernels (see vnm_device_layout.h).
#include <math.h>

#include "vnm_device_layout.h"

#define PAD_META 0x44444444u  // code 0b0100 in every nibble

void vnm_pack_fragments(void *arg, int64_t q0, int64_t q1) {
    const VnmLayoutPack *f = (const VnmLayoutPack *)arg;
    const VnmMatrix *m = f->m;
    const uint32_t *v32 = (const uint32_t *)m->values;  // the 2 kept values of (row, block) as one word
    for (int64_t q = q0; q < q1; q++)
        for (int64_t s = 0; s < f->KT; s++)
            for (int lane = 0; lane < 32; lane++) {
                int g = lane >> 2, tig = lane & 3;
                uint32_t *w = f->vals + vnm_frag_index(q, s, f->KT, lane) * 4;
                for (int k = 0; k < 4; k++) {
                    int64_t row = 16 * q + g + ((k & 1) ? 8 : 0), cb = 8 * s + tig + ((k & 2) ? 4 : 0);
                    w[k] = (row < m->out && cb < m->C) ? v32[row * m->C + cb] : 0;
                }
                f->meta[vnm_frag_index(q, s, f->KT, lane)] =
                    (s < f->kt_host && 16 * q < m->out) ? m->meta[(q * f->kt_host + s) * 16 + 2 * g + (tig & 1)] : PAD_META;
            }
}

void vnm_pack_ss(void *arg, int64_t q0, int64_t q1) {
    const VnmLayoutPack *f = (const VnmLayoutPack *)arg;
    const VnmMatrix *m = f->m;
    const uint32_t *v32 = (const uint32_t *)m->values;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t rt = q / 16, qq = q % 16;
        for (int64_t s = 0; s < f->KT; s++) {
            uint32_t *block = f->vals + vnm_ss_block(rt, s / 2, f->KT);
            for (int r = 0; r < 16; r++) {
                const int64_t row = 16 * q + r;
                for (int j = 0; j < 8; j++) {
                    const int64_t cb = 8 * s + j;
                    block[vnm_ss_value_word((int)(16 * qq + r), s, j)] = (row < m->out && cb < m->C) ? v32[row * m->C + cb] : 0;
                }
            }
        }
        for (int64_t jp = 0; jp < f->KT / 2; jp++)
            for (int lane = 0; lane < 32; lane++) {
                const int g = lane >> 2, tig = lane & 3;
                const int64_t ks = 2 * jp + (tig >> 1);
                f->vals[vnm_ss_block(rt, jp, f->KT) + vnm_ss_meta_word((int)qq, lane)] =
                    (ks < f->kt_host && 16 * q < m->out) ? m->meta[(q * f->kt_host + ks) * 16 + 2 * g + (tig & 1)] : PAD_META;
            }
    }
}

int64_t vnm_tile_band(int64_t row_tiles, int64_t token_tiles, double w_tile, double x_tile, int64_t G, double l2,
                      int pair, int64_t forced) {
    int64_t band = forced > 0 ? forced : row_tiles;
    const double w_all = w_tile * (double)row_tiles, x_all = x_tile * (double)token_tiles;
    if (forced < 0 && w_all > l2 / 2) {
        // row-first: one pass over W per round that reaches new token tiles
        const double cols_per_round = (double)G / (double)row_tiles > 1.0 ? (double)G / (double)row_tiles : 1.0;
        const double row_first = x_all + w_all * ceil((double)token_tiles / cols_per_round);
        int64_t band_max = (int64_t)(l2 / 2 / w_tile);
        if (band_max < 1) band_max = 1;
        const int64_t bands = (row_tiles + band_max - 1) / band_max, b = (row_tiles + bands - 1) / bands;
        int64_t round_tokens = (G + b - 1) / b;
        if (round_tokens > token_tiles) round_tokens = token_tiles;
        if (w_all + x_all * (double)bands < row_first && (double)round_tokens * x_tile <= l2 / 2) band = b;
    }
    if (pair) band += band & 1;
    if (band > row_tiles) band = row_tiles;
    return band < 1 ? 1 : band;
}
