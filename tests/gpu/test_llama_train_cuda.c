// Llama LoRA training on the GPU (bf16 storage, fp32 accumulation and masters): the embedded
// three-stage 64:2:8 job on the tiny fixture gives the CPU's losses to bf16 precision and ends with
// exact V:N:M masks.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "autograd/device.h"
#include "kernels/ops_cuda.h"
#include "tests/llama_fixture.h"
#include "tests/scratch_dir.h"
#include "train/trainer.h"

enum { STEPS = 12 };

static void train_losses(const char *device, float *losses) {
    char out[600], dev[64];
    snprintf(out, sizeof out, "%.300s/run_%s", scratch, device);
    snprintf(dev, sizeof dev, "train.device=%s", device);
    Config c = llama_lora_job(LLAMA_TOKENS, LLAMA_TOKENS, out, (const char *[]){dev, NULL});
    Err err = {0};
    c.lora.dropout = 0.0f;
    Trainer tr;
    cr_assert_eq(trainer_setup(&tr, &c, &err), 0, "%s", err.msg);
    for (int i = 0; i < STEPS; i++) losses[i] = trainer_step(&tr);
    cr_expect_eq(tr.sched.stage, 3);
    for (int i = 0; i < tr.sched.n_layers; i++) {
        const Linear *l = tr.sched.layers[i];
        cr_expect_eq(mask_check_vnm(tr.sched.host_mask[i], l->out, l->in, tr.sched.layer_pattern[i], &err), 0, "%s", err.msg);
    }
    float loss, ppl = trainer_evaluate(&tr, &loss);
    cr_expect(isfinite(ppl) && ppl > 1.0f, "%s: perplexity %g", device, ppl);
    trainer_free(&tr);
}

Test(llama_train_cuda, three_stage_steps_match_cpu) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    ops_cuda_register();
    scratch_make();
    float cpu[STEPS], gpu[STEPS];
    train_losses("cpu", cpu);
    train_losses("cuda", gpu);
    for (int i = 0; i < STEPS; i++) {
        printf("  step %d  loss cpu %.5f  gpu %.5f\n", i, cpu[i], gpu[i]);
        cr_expect(fabsf(gpu[i] - cpu[i]) < 3e-2f * fmaxf(1.0f, fabsf(cpu[i])), "step %d: gpu loss %g, cpu %g", i, gpu[i], cpu[i]);
    }
    scratch_remove();
}
