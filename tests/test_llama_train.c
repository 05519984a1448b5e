// Llama LoRA training on token files (train/trainer_llama.c) with the tiny transformers fixture:
// the loss falls on a repetitive sequence, only LoRA trains (lm_head when configured), the
// three-stage schedule ends with exact V:N:M masks and an export whose perplexity is the merged
// model's, resume is exact (also inside the mask search and the fixed-mask stage), and a llama job
// on images is refused naming the file and the key.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/llama_eval.h"
#include "train/llama_export.h"
#include "train/pipeline.h"
#include "train/trainer.h"
#include "llama_fixture.h"
#include "scratch_dir.h"
#include "train_resume.h"

// A repetitive token sequence: 8 of the 64 ids in a fixed random order, over and over, so that each
// token determines the next one (and every window of 12 repeats itself).
static void write_tokens(const char *path, int64_t n) {
    int32_t cycle[64], *t = malloc((size_t)n * sizeof *t);
    Rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < 64; i++) cycle[i] = i;
    for (int i = 63; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1), x = cycle[i];
        cycle[i] = cycle[j], cycle[j] = x;
    }
    for (int64_t i = 0; i < n; i++) t[i] = cycle[i % 8];
    Err err = {0};
    cr_assert_eq(token_file_write(path, t, n, &err), 0, "%s", err.msg);
    free(t);
}

static void make_data(void) {
    scratch_make();
    write_tokens(scratch_path("train.bin"), 4096);
    write_tokens(scratch_path("test.bin"), 240);
}

TestSuite(llama_train, .init = make_data, .fini = scratch_remove);

// The embedded configs/llama_tiny_lora.yaml on the fixture and the scratch token files, with
// schedule.mode `mode` and `overrides` (NULL-terminated), validated.
static Config job(const char *mode, const char *const *overrides) {
    char set[64];
    const char *all[8] = {set};
    snprintf(set, sizeof set, "schedule.mode=%s", mode);
    for (int i = 0; overrides && overrides[i]; i++) all[i + 1] = overrides[i];
    return llama_lora_job(scratch_path("train.bin"), scratch_path("test.bin"), scratch_path("run"), all);
}

Test(llama_train, lora_lowers_the_loss_on_a_repetitive_sequence) {
    const char *o[] = {"train.steps=40", "optim.lr=1e-2", "lora.dropout=0", NULL};
    Config c = job("dense", o);
    Trainer tr;
    setup_quiet(&tr, &c);
    float loss0, ppl0 = trainer_evaluate(&tr, &loss0), first = 0, last = 0;
    for (int i = 0; i < 40; i++) {
        float l = trainer_step(&tr);
        if (i < 5) first += l / 5;
        if (i >= 35) last += l / 5;
    }
    float loss1, ppl1 = trainer_evaluate(&tr, &loss1);
    cr_expect(last < 0.5f * first, "training loss %.4f (first 5 steps) -> %.4f (last 5)", first, last);
    cr_expect(ppl1 < 0.5f * ppl0, "test perplexity %.3f -> %.3f", ppl0, ppl1);
    cr_expect_float_eq(logf(ppl1), loss1, 1e-4);
    trainer_free(&tr);
}

// Every parameter's values, to compare before / after training.
static float **snapshot(const ParamList *pl) {
    float **v = calloc((size_t)pl->n, sizeof *v);
    for (int i = 0; i < pl->n; i++) v[i] = tensor_to_host_f32(pl->items[i].value);
    return v;
}

static bool changed(const Param *p, const float *before) {
    float *now = tensor_to_host_f32(p->value);
    bool diff = memcmp(now, before, (size_t)p->value->numel * sizeof *now) != 0;
    free(now);
    return diff;
}

// After a few steps exactly the trainable parameters changed: the LoRA factors, and lm_head only
// with lora.train_head.
static void check_frozen(bool train_head) {
    const char *o[] = {"train.steps=6", train_head ? "lora.train_head=true" : "lora.train_head=false", NULL};
    Config c = job("dense", o);
    Trainer tr;
    setup_quiet(&tr, &c);
    ParamList *pl = tr.net.params;
    float **before = snapshot(pl);
    for (int i = 0; i < 6; i++) trainer_step(&tr);
    int lora = 0;
    for (int i = 0; i < pl->n; i++) {
        const Param *p = &pl->items[i];
        bool head = !strcmp(p->value->name, "lm_head.weight");
        bool should = p->kind == PARAM_LORA || (head && train_head);
        cr_expect_eq(p->trainable, should, "%s trainable", p->value->name);
        cr_expect_eq(changed(p, before[i]), should, "%s changed", p->value->name);
        lora += p->kind == PARAM_LORA;
        free(before[i]);
    }
    cr_expect_eq(lora, 2 * 7 * 2, "A and B of 7 projections in 2 layers");
    free(before);
    trainer_free(&tr);
}

Test(llama_train, only_lora_trains) { check_frozen(false); }
Test(llama_train, lm_head_trains_with_train_head) { check_frozen(true); }

// The sparse layers' weights rounded to bf16 (what the export stores of the kept values).
static void round_to_bf16(Schedule *s) {
    for (int i = 0; i < s->n_layers; i++) {
        float *w = tensor_f32(s->layers[i]->w);
        for (int64_t e = 0; e < s->layers[i]->w->numel; e++) w[e] = bf16_to_f32(f32_to_bf16(w[e]));
    }
}

static double export_perplexity(const char *path, const Config *c) {
    ModelConfig mc;
    Err err = {0};
    cr_assert_eq(llama_export_config(path, &mc, &err), 0, "%s", err.msg);
    LlamaRun r;
    llama_run_init(&r, &mc, DEV_CPU, c->eval.batch_size, c->data.seq_len);
    cr_assert_eq(llama_run_load(&r, path, &err), 0, "%s", err.msg);
    for (int i = 0; i < r.m.n_linears - 1; i++) cr_expect(r.m.linears[i]->vnm != NULL, "%s is sparse", r.m.linears[i]->name);
    TokenFile f;
    cr_assert_eq(token_file_open(&f, c->data.test_path, mc.vocab_size, &err), 0, "%s", err.msg);
    Perplexity p;
    cr_assert_eq(llama_perplexity(&r, &f, 0, NULL, &p, &err), 0, "%s", err.msg);
    token_file_close(&f);
    llama_run_free(&r);
    return p.ppl;
}

Test(llama_train, three_stage_ends_with_vnm_masks_and_a_matching_export) {
    const char *o[] = {"sparsity.pattern=128:2:8", NULL};  // 128 rows for gate / up, V lowered to 64 elsewhere
    Config c = job("three_stage", o);
    Trainer tr;
    setup_quiet(&tr, &c);
    Err err = {0};
    for (int i = 0; i < 12; i++) {
        trainer_step(&tr);
        cr_expect_eq(tr.sched.stage, i < 4 ? 1 : i < 8 ? 2 : 3, "step %d", i);
    }
    cr_expect_eq(tr.sched.mask_updates, 2);  // steps 4 and 6
    cr_assert_eq(tr.sched.n_layers, 14);
    for (int i = 0; i < tr.sched.n_layers; i++) {
        Linear *l = tr.sched.layers[i];
        cr_expect_eq(tr.sched.layer_pattern[i].V, l->out >= 128 ? 128 : 64, "%s", l->name);
        cr_expect_eq(mask_check_vnm(l->mask->data, l->out, l->in, tr.sched.layer_pattern[i], &err), 0, "%s", err.msg);
        cr_expect_float_eq(mask_density(l->mask->data, l->mask->numel), 0.25, 1e-9);
    }
    char *path = scratch_path("export.h5");
    cr_assert_eq(export_trainer_model(&tr, path, &err), 0, "%s", err.msg);
    round_to_bf16(&tr.sched);
    double merged = trainer_evaluate(&tr, NULL), exported = export_perplexity(path, &c);
    cr_expect(fabs(exported - merged) < 1e-4 * merged, "export perplexity %.6f, merged masked model %.6f", exported, merged);
    trainer_free(&tr);
}

static void check_resume(const char *mode, int cut) { check_resume_exact(job(mode, NULL), cut); }

Test(llama_train, resume_is_exact) { check_resume("dense", 5); }
Test(llama_train, resume_inside_mask_search_is_exact) { check_resume("three_stage", 5); }
Test(llama_train, resume_inside_fixed_mask_stage_is_exact) { check_resume("three_stage", 9); }
Test(llama_train, resume_of_fixed_mask_lora_is_exact) { check_resume("fixed_mask_lora", 7); }

// Gradient accumulation: the same 12 steps in 2 or 3 micro-batches (LoRA dropout 0, see train_resume.h).
static Config accum_job(const char *mode, const char *accum) {
    const char *o[] = {"lora.dropout=0", "train.batch_size=6", accum, NULL};
    return job(mode, o);
}
Test(llama_train, grad_accum_agrees_with_the_whole_batch) { check_accum_agrees(accum_job("dense", "train.grad_accum=1"), 3, 1e-5); }
Test(llama_train, grad_accum_agrees_in_three_stage) { check_accum_agrees(accum_job("three_stage", "train.grad_accum=1"), 2, 1e-5); }
Test(llama_train, resume_with_grad_accum_is_exact) { check_resume_exact(accum_job("three_stage", "train.grad_accum=2"), 5); }
Test(llama_train, grad_accum_not_dividing_the_batch_is_refused) {
    Config c = accum_job("dense", "train.grad_accum=4");
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), -1);
    cr_expect(strstr(err.msg, "train.grad_accum=4") && strstr(err.msg, "train.batch_size=6"), "%s", err.msg);
    trainer_free(&tr);
}

// Activation recomputation (train.recompute layers): 9 steps of three-stage LoRA (dense, then
// masked), LoRA dropout on, re-running every decoder layer in backward give the very losses, last
// gradients and weights of keeping the activations - bit for bit on the CPU (the same ops in the same
// order; the recomputation replays the forward's dropout masks) - and a lower activation peak (the
// activation arena plus the segment arena).
typedef struct Run {
    float loss[12];
    float **values, **grads;
    size_t peak;
} Run;

static Run run_9(const char *recompute) {
    Config c = job("three_stage", (const char *[]){recompute, NULL});
    Trainer tr;
    setup_quiet(&tr, &c);
    Run r = {.values = snapshot(tr.net.params)};
    run_steps(&tr, 9, r.loss);
    const ParamList *pl = tr.net.params;
    r.grads = calloc((size_t)pl->n, sizeof *r.grads);
    for (int i = 0; i < pl->n; i++) {
        free(r.values[i]);
        r.values[i] = tensor_to_host_f32(pl->items[i].value);
        if (pl->items[i].value->grad) r.grads[i] = tensor_to_host_f32(pl->items[i].value->grad);
    }
    r.peak = tr.acts.high_water + tr.segments.high_water;
    trainer_free(&tr);
    return r;
}

Test(llama_train, recompute_gives_the_same_gradients_with_less_activation_memory) {
    Run keep = run_9("train.recompute=none"), re = run_9("train.recompute=layers");
    Config c = job("three_stage", NULL);
    Trainer tr;
    setup_quiet(&tr, &c);  // the parameters' names and sizes
    const ParamList *pl = tr.net.params;
    for (int i = 0; i < 9; i++) cr_expect_eq(keep.loss[i], re.loss[i], "step %d: %.9g vs %.9g", i, keep.loss[i], re.loss[i]);
    int with_grad = 0;
    for (int i = 0; i < pl->n; i++) {
        size_t bytes = (size_t)pl->items[i].value->numel * sizeof(float);
        cr_expect(!memcmp(keep.values[i], re.values[i], bytes), "%s differs", pl->items[i].value->name);
        cr_expect_eq(keep.grads[i] != NULL, re.grads[i] != NULL, "%s", pl->items[i].value->name);
        if (keep.grads[i] && re.grads[i]) {
            cr_expect(!memcmp(keep.grads[i], re.grads[i], bytes), "%s: gradient differs", pl->items[i].value->name);
            with_grad++;
        }
        free(keep.values[i]), free(re.values[i]), free(keep.grads[i]), free(re.grads[i]);
    }
    cr_expect_eq(with_grad, 2 * 7 * 2, "the LoRA factors' gradients were compared");
    cr_expect(re.peak < keep.peak, "activation peak %zu bytes with recomputation, %zu without", re.peak, keep.peak);
    cr_log_info("activation peak: %zu bytes without recomputation, %zu with (tiny Llama, 2 × 12 tokens)", keep.peak, re.peak);
    free(keep.values), free(re.values), free(keep.grads), free(re.grads);
    trainer_free(&tr);
}

// A checkpoint of another token file (other size) does not resume silently with other windows.
Test(llama_train, resume_with_other_data_is_refused) {
    Config c = job("dense", NULL);
    Trainer tr;
    Err err = {0};
    setup_quiet(&tr, &c);
    trainer_step(&tr);
    cr_assert_eq(trainer_save(&tr, scratch_path("one.h5"), &err), 0, "%s", err.msg);
    trainer_free(&tr);
    write_tokens(scratch_path("other.bin"), 1000);
    snprintf(c.data.path, sizeof c.data.path, "%.200s", scratch_path("other.bin"));
    snprintf(c.checkpoint.resume, sizeof c.checkpoint.resume, "%.200s", scratch_path("one.h5"));
    cr_assert_eq(trainer_setup(&tr, &c, &err), -1);
    cr_expect(strstr(err.msg, "one.h5") && strstr(err.msg, "data.path"), "%s", err.msg);
    trainer_free(&tr);
}

Test(llama_train, one_shot_prunes_without_training) {
    Config c = job("one_shot", (const char *[]){"lora.enabled=false", NULL});
    Trainer tr;
    setup_quiet(&tr, &c);
    cr_expect_eq(tr.total_steps, 0);
    Err err = {0};
    for (int i = 0; i < tr.sched.n_layers; i++)
        cr_expect_eq(mask_check_vnm(tr.sched.layers[i]->mask->data, tr.sched.layers[i]->out, tr.sched.layers[i]->in,
                                    tr.sched.layer_pattern[i], &err), 0, "%s", err.msg);
    trainer_free(&tr);
}

Test(llama_train, missing_test_tokens_are_refused_naming_the_key) {
    const char *o[] = {"data.test_path=", NULL};
    Config c = job("dense", o);
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), -1);
    cr_expect(strstr(err.msg, "data.test_path: empty"), "%s", err.msg);
    trainer_free(&tr);
}

Test(llama_train, llama_on_images_is_refused_naming_file_and_key) {
    char *path = scratch_path("bad.yaml");
    FILE *f = fopen(path, "w");
    fputs("model:\n  arch: llama\n  vocab_size: 64\n  hidden_size: 64\n  intermediate_size: 128\n  n_layers: 2\n"
          "  n_heads: 4\n  n_kv_heads: 4\n  max_seq_len: 64\ndata:\n  dataset: hdf5\n  path: images.h5\n", f);
    fclose(f);
    Config c;
    Err err = {0};
    config_defaults(&c);
    cr_assert_eq(config_load_file(&c, path, &err), 0, "%s", err.msg);
    cr_assert_eq(config_validate(&c, &err), 0, "%s", err.msg);
    Trainer tr;
    cr_assert_eq(trainer_setup(&tr, &c, &err), -1);
    cr_expect(strstr(err.msg, "bad.yaml") && strstr(err.msg, "data.dataset") && strstr(err.msg, "hdf5"), "%s", err.msg);
    trainer_free(&tr);
}
