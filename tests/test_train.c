// The training loop on a tiny synthetic image set (class = brightness level): exact resume (a run of 2N steps and a run of
// N steps + checkpoint + resume + N steps give bit-identical losses), also inside the V:N:M
// mask-search stage, and learning actually happens.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/rng.h"
#include "data/imageset.h"
#include "scratch_dir.h"
#include "synthetic_set.h"
#include "train/checkpoint.h"
#include "train/pipeline.h"
#include "train/trainer.h"
#include "train/vnm_export.h"
#include "train/vnm_linear.h"
#include "train_resume.h"


// The synthetic image set (and the run outputs) live in the test's scratch directory.
static void make_dataset(void) {
    scratch_make();
    synthetic_set_write(scratch);
}

TestSuite(train, .init = make_dataset, .fini = scratch_remove);

static Config tiny_job(const char *mode) {
    Config c;
    config_defaults(&c);
    ModelConfig *m = &c.model;
    m->img_size = 8, m->patch_size = 4, m->in_chans = 1, m->num_classes = 4;
    m->embed_dim = 16, m->depth = 1, m->num_heads = 2, m->mlp_ratio = 2;
    snprintf(c.data.dataset, sizeof c.data.dataset, "hdf5");
    snprintf(c.data.path, sizeof c.data.path, "%s", scratch);
    c.data.mean = 0.3f, c.data.std = 0.3f, c.data.augment = false;
    c.train.batch_size = 16, c.train.steps = 12, c.eval.batch_size = 32;
    c.optim.lr = 3e-3f, c.optim.warmup = 2;
    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%.200s/run", scratch);
    if (mode) {
        c.lora.enabled = true, c.lora.rank = 2, c.lora.dropout = 0.1f;
        c.sparsity.enabled = true;
        snprintf(c.sparsity.pattern, sizeof c.sparsity.pattern, "16:2:8");
        snprintf(c.schedule.mode, sizeof c.schedule.mode, "%s", mode);
        c.schedule.stage1 = 3, c.schedule.stage2 = 4, c.schedule.mask_update_every = 2, c.schedule.reg_lambda = 0.1f;
    }
    return c;
}

Test(train, resume_is_exact) { check_resume_exact(tiny_job(NULL), 5); }
Test(train, resume_inside_mask_search_is_exact) { check_resume_exact(tiny_job("three_stage"), 5); }
Test(train, resume_inside_fixed_mask_stage_is_exact) { check_resume_exact(tiny_job("three_stage"), 9); }
Test(train, resume_with_permutation_is_exact) {
    Config c = tiny_job("three_stage");
    c.sparsity.permute = true;
    check_resume_exact(c, 6);
}

// Gradient accumulation: 2 or 4 micro-batches a step train as the whole batch does (LoRA dropout 0).
// LoRA, not full fine-tuning: the key bias has a zero gradient in exact arithmetic (softmax ignores a
// shift), so under AdamW it follows rounding noise, which differs with the summation order.
Test(train, grad_accum_agrees_with_the_whole_batch) {
    Config c = tiny_job(NULL);
    c.lora.enabled = true, c.lora.rank = 2, c.lora.dropout = 0;
    check_accum_agrees(c, 4, 1e-5);
}
Test(train, grad_accum_agrees_in_three_stage_lora) {
    Config c = tiny_job("three_stage");
    c.lora.dropout = 0;
    check_accum_agrees(c, 2, 1e-5);
}
Test(train, resume_with_grad_accum_is_exact) {
    Config c = tiny_job("three_stage");
    c.train.grad_accum = 2;
    check_resume_exact(c, 5);
}
// trainer_setup of c fails with an error naming `key` and `detail`.
static void check_refused(Config c, const char *key, const char *detail) {
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), -1);
    cr_expect(strstr(err.msg, key) && strstr(err.msg, detail), "%s", err.msg);
    trainer_free(&tr);
}

Test(train, grad_accum_not_dividing_the_batch_is_refused) {
    Config c = tiny_job(NULL);
    c.train.grad_accum = 3;
    check_refused(c, "train.grad_accum=3", "train.batch_size=16");
}

Test(train, recompute_is_refused_for_deit) {
    Config c = tiny_job(NULL);
    snprintf(c.train.recompute, sizeof c.train.recompute, "layers");
    check_refused(c, "train.recompute", "llama");
}

Test(train, three_stage_masks_have_vnm_structure) {
    Config c = tiny_job("three_stage");
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), 0, "%s", err.msg);
    for (int i = 0; i < 12; i++) {
        trainer_step(&tr);
        cr_expect_eq(tr.sched.stage, i < 3 ? 1 : i < 7 ? 2 : 3, "step %d", i);
    }
    cr_expect_eq(tr.sched.mask_updates, 2);  // steps 3 and 5
    for (int i = 0; i < tr.sched.n_layers; i++) {
        Linear *l = tr.sched.layers[i];
        cr_expect_eq(mask_check_vnm(l->mask->data, l->out, l->in, tr.sched.layer_pattern[i], &err), 0, "%s", err.msg);
        cr_expect_float_eq(mask_density(l->mask->data, l->mask->numel), 0.25, 1e-9);
    }
    trainer_free(&tr);
}

Test(train, loss_goes_down) {
    Config c = tiny_job(NULL);
    c.train.steps = 100;
    c.optim.lr = 1e-2f;
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), 0, "%s", err.msg);
    tr.quiet = 1;
    cr_assert_eq(trainer_run(&tr, 0, &err), 0, "%s", err.msg);
    float acc = trainer_evaluate(&tr, NULL);
    cr_expect(acc > 0.9f, "accuracy %.2f after 100 steps on an easy synthetic task", acc);
    trainer_free(&tr);
}

// Export after three-stage training (with permutation): the file reloaded into the model (sparse
// layers computed by the V:N:M SpMM of the compressed weights) gives the logits of the merged,
// masked model up to bf16 rounding of the kept values, and the same accuracy.
Test(train, export_round_trip_matches_masked_model) {
    Config c = tiny_job("three_stage");
    c.sparsity.permute = true;
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), 0, "%s", err.msg);
    for (int i = 0; i < 12; i++) trainer_step(&tr);
    char path[128];
    snprintf(path, sizeof path, "%s", scratch_path("export.h5"));
    cr_assert_eq(export_trainer_model(&tr, path, &err), 0, "%s", err.msg);
    float acc_merged = trainer_evaluate(&tr, NULL);
    tr.tape.record = false;
    tape_reset(&tr.tape);
    Tensor *a = deit_forward(&tr.model, &tr.tape, tr.x);
    int64_t n = a->numel;
    float *before = malloc((size_t)n * sizeof *before);
    memcpy(before, a->data, (size_t)n * sizeof *before);
    cr_assert_eq(model_load_export(&tr.model, path, true, &err), 0, "%s", err.msg);
    tape_reset(&tr.tape);
    Tensor *b = deit_forward(&tr.model, &tr.tape, tr.x);
    for (int64_t i = 0; i < n; i++) cr_expect(fabsf(before[i] - tensor_f32(b)[i]) < 2e-2f * (1 + fabsf(before[i])), "logit %lld", (long long)i);
    cr_expect_float_eq(trainer_evaluate(&tr, NULL), acc_merged, 1e-6);
    for (int i = 0; i < tr.sched.n_layers; i++)  // the sparse layers ran the V:N:M SpMM
        cr_expect(tr.sched.layers[i]->vnm && !strcmp(tr.sched.layers[i]->vnm->kernel, "cpu"), "%s", tr.sched.layers[i]->name);
    // honest dispatch: a speed table saying fc1's sparse kernel is slower sends fc1 to the dense GEMM
    Linear *fc1 = &tr.model.blocks[0].fc1;
    char table[128], line[128];
    snprintf(table, sizeof table, "%s", scratch_path("speed.txt"));
    FILE *f = fopen(table, "w");
    snprintf(line, sizeof line, "%lld %lld 64 %d %d 0.40\n", (long long)fc1->out, (long long)fc1->in, fc1->vnm->m.p.V, fc1->vnm->m.p.M);
    fputs("# out in n V M speedup\n", f), fputs(line, f), fclose(f);
    SpeedTable st;
    cr_assert_eq(speed_table_load(table, &st, &err), 0, "%s", err.msg);
    vnm_dispatch_set_table(&st);
    cr_expect_float_eq(trainer_evaluate(&tr, NULL), acc_merged, 1e-6);
    cr_expect_str_eq(fc1->vnm->kernel, "dense");
    cr_expect_float_eq(fc1->vnm->measured, 0.40, 1e-9);
    cr_expect_str_eq(tr.model.blocks[0].qkv.vnm->kernel, "cpu");  // not in the table: sparse
    vnm_dispatch_set_table(NULL);
    speed_table_free(&st);
    VnmExport e;
    cr_assert_eq(vnm_export_read(path, &e, &err), 0, "%s", err.msg);
    cr_expect_eq(e.n_layers, 4);  // qkv, proj, fc1, fc2 of the one block
    for (int k = 0; k < e.n_layers; k++)  // fc2's input permutation folded into fc1's rows (the logits above agree)
        if (strstr(e.layer_names[k], "mlp.fc2")) cr_expect(!vnm_has_col_perm(&e.layers[k]), "%s", e.layer_names[k]);
        else cr_expect(vnm_has_col_perm(&e.layers[k]) || e.layers[k].row_perm, "%s", e.layer_names[k]);
    vnm_export_free(&e);
    free(before);
    trainer_free(&tr);
}

// Bad input: a checkpoint whose mask for a sparse layer has the wrong shape is refused with the
// file, the dataset and both shapes named; nothing is half-loaded into a running job.
Test(train, mask_of_wrong_shape_is_refused) {
    Config c = tiny_job("three_stage");
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), 0, "%s", err.msg);
    Arena a;
    arena_init(&a, "bad", DEV_CPU, 1 << 16);
    Tensor *bad = tensor_new2(&a, DT_U8, 3, 3, "bad");
    CkptMask masks[4];
    for (int i = 0; i < tr.sched.n_layers; i++) masks[i] = (CkptMask){tr.sched.layers[i]->name, i ? tr.sched.layers[i]->mask : bad};
    CkptContent cc = {.params = &tr.model.params, .masks = masks, .n_masks = tr.sched.n_layers};
    char path[128];
    snprintf(path, sizeof path, "%s", scratch_path("badmask.h5"));
    cr_assert_eq(ckpt_save(path, &cc, &err), 0, "%s", err.msg);
    trainer_free(&tr);
    snprintf(c.checkpoint.resume, sizeof c.checkpoint.resume, "%s", path);
    cr_assert_eq(trainer_setup(&tr, &c, &err), -1);
    cr_expect(strstr(err.msg, "badmask.h5") && strstr(err.msg, "/mask/blocks.0.attn.qkv") && strstr(err.msg, "[3, 3]"), "%s", err.msg);
    trainer_free(&tr);
    arena_free(&a);
}
