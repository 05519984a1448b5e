#include "schedule.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu_gemm.h"
#include "train/lora.h"
#include "train/sparsegpt.h"
#include "train/vnm_permute.h"

#define SDDMM_MIN_M 12

static bool is_target(const Linear *l, const SparsityConfig *sc) {
    if (!strcmp(l->name, "head") || !strcmp(l->name, "lm_head")) return false;  // classifiers stay dense (DESIGN.md §2)
    for (int i = 0; i < sc->n_targets; i++)
        if (linear_name_matches(l, sc->targets[i])) return true;
    return false;
}

static int64_t steps_of(float v, int64_t total) { return v < 1.0f ? (int64_t)llroundf(v * (float)total) : (int64_t)v; }

void schedule_masks_loaded(Schedule *s) {
    for (int i = 0; i < s->n_layers; i++) {
        s->layers[i]->masked = s->masks_valid;
        tensor_read_host(s->layers[i]->mask, s->host_mask[i]);
    }
}

static int layer_pattern(const MaskSpec *spec, const Linear *l, VnmPattern *p, Err *err) {
    *p = spec->vnm;
    if (spec->kind != MASK_VNM) return 0;
    while (p->V > 16 && l->out % p->V) p->V /= 2;  // documented adaptation: halve V until it divides out
    return vnm_pattern_fits(*p, l->out, l->in, l->name, err);
}

int schedule_init(Schedule *s, const Config *c, Linear **linears, int n, int64_t total, Arena *arena, Err *err) {
    memset(s, 0, sizeof *s);
    s->cfg = c->schedule;
    s->total = total;
    s->stage = 1;
    s->sparse = c->sparsity.enabled && strcmp(c->schedule.mode, "dense") != 0;
    if (!s->sparse) return 0;
    if (mask_spec_parse(c->sparsity.pattern, &s->spec, err)) return err_set(err, "%s: sparsity.pattern: %s", c->source, err->msg);
    s->sparsegpt = !strcmp(c->sparsity.score, "sparsegpt");
    if (!s->sparsegpt && score_kind_parse(c->sparsity.score, &s->score, err))
        return err_set(err, "%s: sparsity.score: %s", c->source, err->msg);
    s->ria_alpha = c->sparsity.ria_alpha;
    s->permute = c->sparsity.permute;
    s->layers = xcalloc((size_t)n, sizeof *s->layers);
    for (int i = 0; i < n; i++)
        if (is_target(linears[i], &c->sparsity)) s->layers[s->n_layers++] = linears[i];
    if (!s->n_layers) return err_set(err, "%s: sparsity.targets match no layer", c->source);
    s->layer_pattern = xcalloc((size_t)s->n_layers, sizeof *s->layer_pattern);
    s->act_norm = xcalloc((size_t)s->n_layers, sizeof *s->act_norm);
    s->gram = xcalloc((size_t)s->n_layers, sizeof *s->gram);
    s->host_mask = xcalloc((size_t)s->n_layers, sizeof *s->host_mask);
    s->perm_in = xcalloc((size_t)s->n_layers, sizeof *s->perm_in);
    s->perm_out = xcalloc((size_t)s->n_layers, sizeof *s->perm_out);
    s->permute_budget_s = 1.0;
    size_t perm_bytes = 0;  // host-side index maps (used on the CPU whatever the model's device)
    for (int i = 0; i < s->n_layers; i++) perm_bytes += (size_t)(s->layers[i]->in + s->layers[i]->out) * 4 + 256;
    if (s->permute) arena_init(&s->host_arena, "permutations", DEV_CPU, perm_bytes);
    for (int i = 0; i < s->n_layers; i++) {
        Linear *l = s->layers[i];
        if (layer_pattern(&s->spec, l, &s->layer_pattern[i], err)) return err_set(err, "%s: sparsity.pattern: %s", c->source, err->msg);
        char nm[TENSOR_NAME_LEN];
        snprintf(nm, sizeof nm, "%s.mask", l->name);
        l->mask = tensor_new2(arena, DT_U8, l->out, l->in, nm);  // on the model's device
        // the SDDMM computes 4/M of dyᵀx; on the CPU it measured faster only for large M
        // (`vnmtune bench sddmm`: 64:2:16 1.24-1.55x, 64:2:8 0.85-1.12x of the dense G path)
        if (s->spec.kind == MASK_VNM && !s->permute && s->layer_pattern[i].M >= SDDMM_MIN_M)
            l->mask_V = s->layer_pattern[i].V, l->mask_M = s->layer_pattern[i].M;
        s->host_mask[i] = xmalloc((size_t)l->mask->numel);
        memset(s->host_mask[i], 1, (size_t)l->mask->numel);     // dense until the first mask is computed
        tensor_write_host(l->mask, s->host_mask[i]);
        if (s->permute && s->spec.kind == MASK_VNM) {
            snprintf(nm, sizeof nm, "%s.perm_in", l->name);
            s->perm_in[i] = tensor_new1(&s->host_arena, DT_I32, l->in, nm);
            snprintf(nm, sizeof nm, "%s.perm_out", l->name);
            s->perm_out[i] = tensor_new1(&s->host_arena, DT_I32, l->out, nm);
        }
    }
    if (!strcmp(s->cfg.mode, "three_stage")) {
        s->stage1_end = steps_of(s->cfg.stage1, total);
        s->stage2_end = s->stage1_end + steps_of(s->cfg.stage2, total);
        if (s->stage2_end > total) return err_set(err, "%s: schedule.stage1 + schedule.stage2 exceed the %lld training steps", c->source, (long long)total);
    }  // fixed_mask_lora and one_shot: stage 3 from step 0 (stage ends stay 0)
    return 0;
}

void schedule_free(Schedule *s) {
    for (int i = 0; i < s->n_layers; i++) {
        free(s->act_norm[i]), free(s->host_mask[i]), free(s->gram[i]);
        s->layers[i]->mask = NULL;
        s->layers[i]->masked = false;
        s->layers[i]->mask_V = s->layers[i]->mask_M = 0;
    }
    arena_free(&s->host_arena);
    free(s->layers), free(s->layer_pattern), free(s->act_norm), free(s->host_mask), free(s->gram), free(s->perm_in), free(s->perm_out);
    memset(s, 0, sizeof *s);
}

// W + s·B A on the host (fp32), the weight whose mask stages 2-3 search.
static float *effective_weight(const Linear *l) {
    float *W = tensor_to_host_f32(l->w);
    if (!l->lora_A) return W;
    int64_t r = l->lora_A->shape[0];
    float *A = tensor_to_host_f32(l->lora_A), *B = tensor_to_host_f32(l->lora_B);
    cpu_gemm(false, false, (int)l->out, (int)l->in, (int)r, l->lora_scale, B, (int)r, A, (int)l->in, 1.0f, W, (int)l->in);
    free(A), free(B);
    return W;
}

// With sparsity.permute the channel permutation is searched once per layer (at its first mask)
// and kept; later mask updates search the mask of the permuted scores under that permutation.
static int permuted_mask(Schedule *s, int i, const float *scores, uint8_t *mask, Err *err) {
    Linear *l = s->layers[i];
    VnmPattern p = s->layer_pattern[i];
    int32_t *perm_in = s->perm_in[i]->data, *perm_out = s->perm_out[i]->data;
    if (!s->perms_valid) {
        VnmPermuteOptions opt = vnm_permute_defaults();
        opt.time_budget_s = s->permute_budget_s;
        VnmPermuteStats st;
        if (vnm_permute_search(scores, l->out, l->in, p, &opt, l->name, perm_in, perm_out, &st, err)) return -1;
        s->permute_gain += st.kept_final / (st.kept_identity > 0 ? st.kept_identity : 1) - 1;
    }
    int64_t n = l->out * l->in;
    float *ps = xmalloc((size_t)n * sizeof *ps);
    uint8_t *pm = xmalloc((size_t)n);
    vnm_permute_apply(scores, l->out, l->in, perm_in, perm_out, ps);
    MaskSpec spec = s->spec;
    spec.vnm = p;
    int rc = mask_compute(ps, l->out, l->in, &spec, l->name, pm, err);
    if (rc == 0) vnm_unpermute_mask(pm, l->out, l->in, perm_in, perm_out, mask);
    free(ps), free(pm);
    return rc;
}

// SparseGPT: mask and reconstructed weights at once (one-shot, no LoRA: w itself is rewritten).
static void layer_sparsegpt(Schedule *s, int i) {
    Linear *l = s->layers[i];
    if (!s->gram[i]) fatal("sparsegpt for '%s' needs calibration", l->name);
    float *W = effective_weight(l);
    MaskSpec spec = s->spec;
    spec.vnm = s->layer_pattern[i];
    Err err;
    if (sparsegpt_prune(W, s->gram[i], l->out, l->in, &spec, l->name, s->host_mask[i], &err)) fatal("%s", err.msg);
    tensor_set_f32(l->w, W, l->w->numel);
    tensor_write_host(l->mask, s->host_mask[i]);
    free(W);
}

static double layer_update_mask(Schedule *s, int i) {
    Linear *l = s->layers[i];
    if (s->sparsegpt) {
        layer_sparsegpt(s, i);
        return 0.0;
    }
    int64_t n = l->out * l->in;
    float *W = effective_weight(l), *scores = xmalloc((size_t)n * sizeof *scores);
    vnm_scores(W, l->out, l->in, s->score, s->act_norm[i], s->ria_alpha, scores);
    MaskSpec spec = s->spec;
    spec.vnm = s->layer_pattern[i];
    uint8_t *mask = xmalloc((size_t)n);
    Err err;
    int rc = s->permute && spec.kind == MASK_VNM ? permuted_mask(s, i, scores, mask, &err)
                                                  : mask_compute(scores, l->out, l->in, &spec, l->name, mask, &err);
    if (rc) fatal("mask of '%s': %s", l->name, err.msg);
    double flips = s->masks_valid ? mask_flip_rate(s->host_mask[i], mask, n) : 0.0;
    memcpy(s->host_mask[i], mask, (size_t)n);
    tensor_write_host(l->mask, mask);
    if (!l->lora_A) linear_apply_mask(l);  // no LoRA to train through the mask: prune W itself
    free(W), free(scores), free(mask);
    return flips;
}

float schedule_update_masks(Schedule *s) {
    double t0 = now_seconds(), flips = 0;
    for (int i = 0; i < s->n_layers; i++) flips += layer_update_mask(s, i);
    s->masks_valid = true;
    for (int i = 0; i < s->n_layers; i++) s->layers[i]->masked = true;
    if (s->permute) s->perms_valid = true;
    s->mask_updates++;
    s->last_flip_rate = (float)(flips / s->n_layers);
    s->mask_seconds += now_seconds() - t0;
    return s->last_flip_rate;
}

void schedule_before_step(Schedule *s, int64_t step) {
    if (!s->sparse) return;
    if (step < s->stage1_end) {
        s->stage = 1;
        return;
    }
    s->stage = step < s->stage2_end ? 2 : 3;
    int64_t into = step - s->stage1_end;
    bool update = !s->masks_valid || (s->stage == 2 && s->cfg.mask_update_every > 0 && into % s->cfg.mask_update_every == 0);
    if (update) schedule_update_masks(s);
}

// The regulariser's gradient is formed on the host (one layer at a time) and added to the LoRA
// gradients wherever they live (CPU, or f32 on the GPU).
void schedule_after_backward(Schedule *s) {
    if (!s->sparse || s->stage != 2 || s->cfg.reg_lambda <= 0) return;
    for (int i = 0; i < s->n_layers; i++) {
        Linear *l = s->layers[i];
        if (!l->lora_A || !l->lora_A->grad) continue;
        // P = (W + s·BA) ⊙ (1 − mask);  dB += λ·s·P Aᵀ;  dA += λ·s·Bᵀ P
        float *P = effective_weight(l);
        const uint8_t *m = s->host_mask[i];
        for (int64_t k = 0; k < l->out * l->in; k++)
            if (m[k]) P[k] = 0.0f;
        int r = (int)l->lora_A->shape[0], out = (int)l->out, in = (int)l->in;
        float c = s->cfg.reg_lambda * l->lora_scale;
        float *A = tensor_to_host_f32(l->lora_A), *B = tensor_to_host_f32(l->lora_B);
        float *dA = tensor_to_host_f32(l->lora_A->grad), *dB = tensor_to_host_f32(l->lora_B->grad);
        cpu_gemm(false, true, out, r, in, c, P, in, A, in, 1.0f, dB, r);
        cpu_gemm(true, false, r, in, out, c, B, r, P, in, 1.0f, dA, in);
        tensor_set_f32(l->lora_A->grad, dA, l->lora_A->numel);
        tensor_set_f32(l->lora_B->grad, dB, l->lora_B->numel);
        free(P), free(A), free(B), free(dA), free(dB);
    }
}

bool schedule_needs_calibration(const Schedule *s) { return s->sparse && (s->sparsegpt || s->score != SCORE_MAGNITUDE); }

void schedule_begin_calibration(Schedule *s) {
    for (int i = 0; i < s->n_layers; i++) {
        Linear *l = s->layers[i];
        l->act_sq = xcalloc((size_t)l->in, sizeof(double));
        if (s->sparsegpt) l->act_gram = xcalloc((size_t)(l->in * l->in), sizeof(double));
    }
}

void schedule_end_calibration(Schedule *s) {
    for (int i = 0; i < s->n_layers; i++) {
        Linear *l = s->layers[i];
        free(s->act_norm[i]);
        s->act_norm[i] = xmalloc((size_t)l->in * sizeof(float));
        for (int64_t j = 0; j < l->in; j++) s->act_norm[i][j] = (float)sqrt(l->act_sq[j]);
        free(l->act_sq);
        l->act_sq = NULL;
        free(s->gram[i]);
        s->gram[i] = l->act_gram;  // XᵀX for sparsegpt (NULL otherwise)
        l->act_gram = NULL;
    }
}

void schedule_calibrate(Schedule *s, int n_batches, CalibrationForward forward, void *ctx) {
    schedule_begin_calibration(s);
    for (int b = 0; b < n_batches; b++) forward(ctx, b);
    schedule_end_calibration(s);
}
