// The exact-resume check shared by the DeiT and Llama trainer tests: 12 steps straight equal `cut`
// steps + checkpoint + resume + the rest, bit for bit. Needs scratch_dir.h and criterion.
#pragma once
#include <stdio.h>

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
