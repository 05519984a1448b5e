// DeiT on the GPU (bf16 storage, fp32 accumulation): forward and backward against timm and PEFT (the
// fixture of tests/test_deit.c), and a few training steps against the same steps on the CPU.
// Errors are relative L2; bf16 rounding of every activation makes ~1e-2 normal.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "kernels/ops_cuda.h"
#include "tests/deit_fixture.h"
#include "tests/fixture_check.h"
#include "tests/scratch_dir.h"
#include "tests/synthetic_set.h"
#include "train/deit.h"
#include "train/lora.h"
#include "train/model_io.h"
#include "train/trainer.h"

#define NEED_GPU()                                                          \
    do {                                                                    \
        if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible"); \
        ops_cuda_register();                                                \
    } while (0)

// Forward + backward of the fixture batch on the GPU; with `lora`, PEFT's r = 4 adapters on every
// block linear first. Checks logits, loss and the gradients against the fixture tensors prefix*.
static void fixture_case(bool lora) {
    StFile st;
    Err err = {0};
    cr_assert_eq(st_open(&st, DEIT_FIXTURE, &err), 0, "%s", err.msg);
    ModelConfig c = deit_fixture_config();
    Arena params, grads, acts;
    arena_init(&params, "params", DEV_CUDA, 8 << 20);
    arena_init(&grads, "grads", DEV_CUDA, 8 << 20);
    arena_init(&acts, "acts", DEV_CUDA, 64 << 20);
    Deit m;
    deit_init(&m, &c, &params, 1);
    cr_assert_eq(model_load_safetensors(&m.params, DEIT_FIXTURE, false, &err), 0, "%s", err.msg);
    if (lora) {
        LoraConfig lc = {.enabled = true, .rank = 4, .alpha = 8, .n_targets = 4};
        const char *targets[] = {"qkv", "proj", "fc1", "fc2"};
        for (int i = 0; i < 4; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", targets[i]);
        cr_assert_eq(lora_attach(m.linears, m.n_linears, &m.params, &params, &lc, 3), 8);
        cr_assert_eq(model_load_safetensors(&m.params, DEIT_FIXTURE, true, &err), 0, "%s", err.msg);
    }
    int64_t n;
    float *x = fixture_read(&st, "input", &n), *y = fixture_read(&st, "labels", &n);
    Tensor *img = tensor_new(&params, DT_BF16, 4, (int64_t[]){4, 3, 32, 32}, "input");
    tensor_set_f32(img, x, img->numel);
    int32_t labels[4];
    for (int i = 0; i < 4; i++) labels[i] = (int32_t)y[i];
    Tensor *lab = tensor_new1(&params, DT_I32, 4, "labels");
    tensor_write_host(lab, labels);
    free(x), free(y);

    for (int i = 0; i < m.params.n; i++)
        if (m.params.items[i].trainable) tensor_zero(tensor_ensure_grad(m.params.items[i].value, &grads));
    Tape t;
    tape_init(&t, &acts);
    Tensor *logits = deit_forward(&m, &t, img);
    Tensor *loss = op_cross_entropy(&t, logits, lab, 0.0f, "loss");
    tape_backward(&t, loss);
    device_synchronize();
    fixture_expect_near(&st, lora ? "lora_logits" : "logits", logits, 2e-2);
    fixture_expect_near(&st, lora ? "lora_loss" : "loss", loss, 1e-2);
    int checked = 0;
    for (int i = 0; i < m.params.n; i++) {
        Param *p = &m.params.items[i];
        if (!p->trainable || (lora && p->kind != PARAM_LORA)) continue;
        char ref[160];
        snprintf(ref, sizeof ref, "%s%s", lora ? "lora_grad." : "grad.", p->value->name);
        if (!st_find(&st, ref)) continue;  // the plain fixture holds 10 of the gradients
        fixture_expect_near(&st, ref, p->value->grad, 5e-2);
        checked++;
    }
    cr_expect_eq(checked, lora ? 16 : 10);
    st_close(&st);
    deit_free(&m);
    tape_free(&t);
    arena_free(&params), arena_free(&grads), arena_free(&acts);
}

Test(deit_cuda, matches_timm_forward_and_gradients) {
    NEED_GPU();
    fixture_case(false);
}

Test(deit_cuda, lora_matches_peft) {
    NEED_GPU();
    fixture_case(true);
}

// The same small job (head dim 64: the flash attention kernels; LoRA r = 4 + trainable head, AdamW)
// for 8 steps on the CPU and on the GPU, from the same initial weights and batches: the losses agree
// to bf16 precision, and the GPU run repeats itself exactly.
static void train_losses(const char *device, float *losses, int steps) {
    Config c;
    config_defaults(&c);
    ModelConfig *m = &c.model;
    m->img_size = 8, m->patch_size = 4, m->in_chans = 1, m->num_classes = 4;
    m->embed_dim = 128, m->depth = 2, m->num_heads = 2, m->mlp_ratio = 2;
    snprintf(c.data.dataset, sizeof c.data.dataset, "hdf5");
    snprintf(c.data.path, sizeof c.data.path, "%s", scratch);
    c.data.mean = 0.3f, c.data.std = 0.3f, c.data.augment = false;
    c.train.batch_size = 32, c.train.steps = steps;
    c.optim.lr = 2e-3f, c.optim.warmup = 2;
    c.lora.enabled = true, c.lora.rank = 4, c.lora.dropout = 0.0f;
    snprintf(c.train.device, sizeof c.train.device, "%s", device);
    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%.200s/run_%s", scratch, device);
    Trainer tr;
    Err err = {0};
    cr_assert_eq(trainer_setup(&tr, &c, &err), 0, "%s", err.msg);
    for (int i = 0; i < steps; i++) losses[i] = trainer_step(&tr);
    trainer_free(&tr);
}

Test(deit_cuda, training_steps_match_cpu) {
    NEED_GPU();
    scratch_make();
    synthetic_set_write(scratch);
    enum { STEPS = 8 };
    float cpu[STEPS], gpu[STEPS], again[STEPS];
    train_losses("cpu", cpu, STEPS);
    train_losses("cuda", gpu, STEPS);
    train_losses("cuda", again, STEPS);
    for (int i = 0; i < STEPS; i++) {
        printf("  step %d  loss cpu %.5f  gpu %.5f\n", i, cpu[i], gpu[i]);
        cr_expect(fabsf(gpu[i] - cpu[i]) < 2e-2f * fmaxf(1.0f, fabsf(cpu[i])), "step %d: gpu loss %g, cpu %g", i, gpu[i],
                  cpu[i]);
        cr_expect_eq(gpu[i], again[i], "step %d: the GPU run is not deterministic (%g then %g)", i, gpu[i], again[i]);
    }
    cr_expect(cpu[STEPS - 1] < cpu[0], "no learning on the CPU (%g -> %g)", cpu[0], cpu[STEPS - 1]);
    scratch_remove();
}
