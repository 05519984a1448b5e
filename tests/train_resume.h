// The checks shared by the DeiT and Llama trainer tests. Needs scratch_dir.h and criterion.
//   check_resume_exact  12 steps straight equal `cut` steps + checkpoint + resume + the rest, bit for bit
//   check_accum_agrees  12 steps with train.grad_accum = k equal 12 steps without, up to summation
//                       order: per-step losses and final parameters within `tol` relative
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train/trainer.h"

static void run_steps(Trainer *tr, int n, float *losses) {
    for (int i = 0; i < n; i++) losses[i] = trainer_step(tr);
}

static void setup_quiet(Trainer *tr, const Config *c) {
    Err err = {0};
    cr_assert_eq(trainer_setup(tr, c, &err), 0, "%s", err.msg);
    tr->quiet = 1;
}

static void check_resume_exact(Config c, int cut) {
    float full[12], part[12];
    Trainer tr;
    Err err = {0};
    setup_quiet(&tr, &c);
    run_steps(&tr, 12, full);
    trainer_free(&tr);

    setup_quiet(&tr, &c);
    run_steps(&tr, cut, part);
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%.200s", scratch_path("cut.h5"));
    cr_assert_eq(trainer_save(&tr, ckpt, &err), 0, "%s", err.msg);
    trainer_free(&tr);

    snprintf(c.checkpoint.resume, sizeof c.checkpoint.resume, "%s", ckpt);
    setup_quiet(&tr, &c);
    cr_assert_eq(tr.step, cut);
    run_steps(&tr, 12 - cut, part + cut);
    for (int i = 0; i < 12; i++)
        cr_expect_eq(full[i], part[i], "step %d: %.9g (straight) vs %.9g (resumed at %d)", i, full[i], part[i], cut);
    trainer_free(&tr);
}

// |a - b| / max(|a|, floor), the largest over n values.
static double worst_relative(const float *a, const float *b, int64_t n, double floor) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double m = fabs((double)a[i]) > floor ? fabs((double)a[i]) : floor, r = fabs((double)a[i] - (double)b[i]) / m;
        if (r > worst) worst = r;
    }
    return worst;
}

// Losses of 12 steps and the final parameters (fp32 copies) of job c.
static float **train_12(const Config *c, float *losses) {
    Trainer tr;
    setup_quiet(&tr, c);
    run_steps(&tr, 12, losses);
    const ParamList *pl = tr.net.params;
    float **values = calloc((size_t)pl->n + 1, sizeof *values);
    for (int i = 0; i < pl->n; i++) values[i] = tensor_to_host_f32(pl->items[i].value);
    trainer_free(&tr);
    return values;
}

// LoRA dropout must be off in c: its draws index the elements of each forward's input, so the
// micro-batches of a step draw other masks than the whole batch does.
static void check_accum_agrees(Config c, int accum, double tol) {
    float one[12], many[12];
    Trainer probe;
    setup_quiet(&probe, &c);  // the parameters' sizes
    const ParamList *pl = probe.net.params;
    float **a = train_12(&c, one);
    c.train.grad_accum = accum;
    float **b = train_12(&c, many);
    cr_expect(worst_relative(one, many, 12, 1e-3) <= tol, "losses: largest relative difference %.3g",
              worst_relative(one, many, 12, 1e-3));
    for (int i = 0; i < pl->n; i++) {
        double w = worst_relative(a[i], b[i], pl->items[i].value->numel, 1e-2);
        cr_expect(w <= tol, "%s: largest relative difference %.3g (grad_accum %d vs 1)", pl->items[i].value->name, w, accum);
        free(a[i]), free(b[i]);
    }
    free(a), free(b);
    trainer_free(&probe);
}
