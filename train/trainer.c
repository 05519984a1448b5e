#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/device.h"
#ifdef VNMTUNE_HAVE_CUDA
#include "kernels/adamw.h"
#include "kernels/ops_cuda.h"
#endif
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/lora.h"
#include "train/model_io.h"
#include "train/trainer_arch.h"
#include "train/vnm_linear.h"

// ---- setup ----

static const TrainerArch *arch_of(const Config *c, Err *err) {
    const TrainerArch *all[] = {&trainer_deit, &trainer_llama};
    for (int i = 0; i < 2; i++)
        if (!strcmp(c->model.arch, all[i]->name)) return all[i];
    err_set(err, "%s: model.arch: '%s' is not supported by the trainer (deit, llama)", c->source, c->model.arch);
    return NULL;
}

// Forward passes over training data for wanda / ria / sparsegpt (tape not recording).
static void calibrate(Trainer *tr) {
    tr->tape.record = tr->tape.training = false;
    tr->net.arch->calibrate(tr);
    tape_reset(&tr->tape);
}

int trainer_resolve_device(Config *c, Device *dev, Err *err) {
    *dev = DEV_CPU;
    if (!strcmp(c->train.device, "cpu")) return 0;  // no GPU probe for CPU jobs
    bool gpu = device_cuda_available();
    if (!strcmp(c->train.device, "auto")) snprintf(c->train.device, sizeof c->train.device, "%s", gpu ? "cuda" : "cpu");
    if (!strcmp(c->train.device, "cpu")) return 0;
    *dev = DEV_CUDA;
#ifdef VNMTUNE_HAVE_CUDA
    if (!gpu) return err_set(err, "%s: train.device: cuda, but no GPU is visible (use train.device=cpu)", c->source);
    ops_cuda_register();
    return 0;
#else
    return err_set(err, "%s: train.device: cuda, but this vnmtune was built without CUDA (VNMTUNE_CUDA=OFF)", c->source);
#endif
}

void trainer_arenas(Trainer *tr, size_t param_bytes, size_t grad_bytes, size_t act_bytes, size_t input_bytes) {
    arena_init(&tr->params, "params", tr->dev, param_bytes);
    arena_init(&tr->grads, "grads", tr->dev, grad_bytes);
    arena_init(&tr->acts, "activations", tr->dev, act_bytes);
    tr->acts.no_zero = tr->dev != DEV_CPU;  // GPU kernels write every output fully
    arena_init(&tr->inputs, "inputs", tr->dev, input_bytes);
}

// ---- the optimizer: AdamW on the CPU, the fused multi-tensor AdamW with fp32 masters on the GPU ----

static void optimizer_init(Trainer *tr) {
    adamw_init(&tr->opt, tr->net.params, tr->dev);
    tr->trainable = xcalloc((size_t)tr->opt.n + 1, sizeof *tr->trainable);
    for (int i = 0; i < tr->opt.n; i++) tr->trainable[i] = tr->opt.params[i]->value;
#ifdef VNMTUNE_HAVE_CUDA
    if (tr->dev == DEV_CUDA) {
        bool *decay = xcalloc((size_t)tr->opt.n + 1, sizeof *decay);
        for (int i = 0; i < tr->opt.n; i++) {
            decay[i] = tr->opt.params[i]->decay;
            tensor_ensure_grad(tr->trainable[i], &tr->grads);
        }
        tr->opt_cuda = adamw_cuda_create(tr->opt.n, tr->trainable, decay);
        free(decay);
    }
#endif
}

static void optimizer_step(Trainer *tr, float lr) {
    const OptimConfig *o = &tr->cfg.optim;
#ifdef VNMTUNE_HAVE_CUDA
    if (tr->opt_cuda) {
        tr->opt.step++;
        adamw_cuda_step(tr->opt_cuda, lr, o->beta1, o->beta2, o->eps, o->weight_decay, o->grad_clip, tr->opt.step, NULL);
        return;
    }
#endif
    adamw_clip_grad_norm(&tr->opt, o->grad_clip);
    adamw_step(&tr->opt, o, lr);
}

static void optimizer_free(Trainer *tr) {
#ifdef VNMTUNE_HAVE_CUDA
    if (tr->opt_cuda) adamw_cuda_free(tr->opt_cuda);
#endif
    free(tr->trainable);
    adamw_free(&tr->opt);
}

// GPU moments <-> the host arrays (tr->opt.m / v) that checkpoints read and write.
static void optimizer_sync(Trainer *tr, bool to_host) {
#ifdef VNMTUNE_HAVE_CUDA
    for (int i = 0; tr->opt_cuda && i < tr->opt.n; i++) {
        if (to_host) adamw_cuda_get_state(tr->opt_cuda, i, NULL, tr->opt.m[i], tr->opt.v[i]);
        else adamw_cuda_set_state(tr->opt_cuda, i, NULL, tr->opt.m[i], tr->opt.v[i]);
    }
#else
    (void)tr, (void)to_host;
#endif
}

// This process's part of the data-parallel job (one process: rank 0 of 1): its share of each batch,
// its GPU and NCCL communicator.
static int setup_ranks(Trainer *tr, Err *err) {
    const Config *c = &tr->cfg;
    tr->rank = dist_rank(), tr->ranks = dist_size();
    tr->quiet = tr->rank > 0;
    if (c->train.batch_size % tr->ranks)
        return err_set(err, "%s: train.batch_size=%d is not divisible by the %d processes (each takes an equal share)",
                       c->source, c->train.batch_size, tr->ranks);
    tr->local_batch = c->train.batch_size / tr->ranks;
    if (tr->local_batch % c->train.grad_accum)
        return err_set(err, "%s: train.grad_accum=%d does not divide train.batch_size=%d (%d items per process, %d processes): "
                            "each step runs grad_accum equal micro-batches", c->source, c->train.grad_accum,
                       c->train.batch_size, tr->local_batch, tr->ranks);
    tr->micro_batch = tr->local_batch / c->train.grad_accum;
    if (tr->ranks > 1 && strcmp(c->train.device, "cpu") && dist_cuda_select_device(err)) return -1;
    if (trainer_resolve_device(&tr->cfg, &tr->dev, err)) return -1;
    return tr->dev == DEV_CUDA ? dist_cuda_init(err) : 0;
}

// Rank 0's masks (and permutations) on every rank after a mask update. Every rank computes them from
// the same weights, but the permutation search runs on a time budget: rank 0's result is the one.
static void share_masks(Trainer *tr) {
    const Schedule *s = &tr->sched;
    for (int i = 0; tr->ranks > 1 && i < s->n_layers; i++) {
        Linear *l = s->layers[i];
        dist_broadcast(s->host_mask[i], (size_t)(l->out * l->in), 0);
        tensor_write_host(l->mask, s->host_mask[i]);
        if (s->perm_in[i]) dist_broadcast(s->perm_in[i]->data, (size_t)s->perm_in[i]->numel * sizeof(int32_t), 0);
        if (s->perm_out[i]) dist_broadcast(s->perm_out[i]->data, (size_t)s->perm_out[i]->numel * sizeof(int32_t), 0);
        if (!l->lora_A) linear_apply_mask(l);
    }
}

static void schedule_step(Trainer *tr, int64_t step) {
    int64_t updates = tr->sched.mask_updates;
    schedule_before_step(&tr->sched, step);
    if (tr->sched.mask_updates != updates) share_masks(tr);
}

int trainer_setup(Trainer *tr, const Config *cfg, Err *err) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    const Config *c = &tr->cfg;
    if (setup_ranks(tr, err)) return -1;
    if (!(tr->net.arch = arch_of(c, err)) || tr->net.arch->setup(tr, err)) return -1;
    tr->total_steps = c->train.steps > 0 ? c->train.steps : (int64_t)c->train.epochs * tr->steps_per_epoch;
    tape_init(&tr->tape, &tr->acts);
    if (tr->segments.base) tr->tape.segment = &tr->segments;  // train.recompute layers
    tr->tape.seed = c->train.seed + (uint64_t)tr->rank * 0x9e3779b97f4a7c15ull;  // ranks drop out independently

    TrainerModel *m = &tr->net;
    if (c->lora.enabled) lora_attach(m->linears, m->n_linears, m->params, &tr->params, &c->lora, c->train.seed);
    if (!strcmp(c->schedule.mode, "one_shot") && c->sparsity.enabled) tr->total_steps = 0;
    if (schedule_init(&tr->sched, c, m->linears, m->n_linears, tr->total_steps, &tr->params, err)) return -1;
    if (schedule_needs_calibration(&tr->sched)) calibrate(tr);
    if (tr->sched.sparse && tr->sched.stage1_end == 0) schedule_step(tr, 0);  // prune before training
    optimizer_init(tr);
    tr->opt_ready = true;

    if (c->checkpoint.resume[0] && trainer_load(tr, c->checkpoint.resume, err)) return -1;
    if (c->export.speed_table[0]) {
        if (speed_table_load(c->export.speed_table, &tr->speed, err)) return err_set(err, "export.speed_table: %s", err->msg);
        vnm_dispatch_set_table(&tr->speed);
    }
    if (make_dirs(c->train.out_dir, err)) return -1;
    return 0;
}

void trainer_free(Trainer *tr) {
    if (tr->metrics) fclose(tr->metrics);
    if (tr->opt_ready) optimizer_free(tr);
    schedule_free(&tr->sched);
    if (tr->speed.rows) vnm_dispatch_set_table(NULL);
    speed_table_free(&tr->speed);
    if (tr->net.arch) tr->net.arch->free(tr);
    tape_free(&tr->tape);
    arena_free(&tr->params), arena_free(&tr->grads), arena_free(&tr->acts), arena_free(&tr->inputs);
    arena_free(&tr->segments);
}

// ---- one step ----

// Forward and backward of micro-batch j of the batch (x, y): rows [j·b, (j+1)·b) of b = micro_batch.
// Its loss's gradient is seeded with 1/grad_accum, so the gradients summed over the micro-batches
// are those of the mean loss over the whole batch (every micro-batch has as many labelled rows).
static float micro_step(Trainer *tr, Tensor *x, Tensor *y, int j) {
    int64_t b = tr->micro_batch;
    tape_reset(&tr->tape);
    tr->x = tensor_rows(&tr->inputs, x, j * b, b, x->name);
    tr->y = tensor_rows(&tr->inputs, y, j * b, b, y->name);
    Tensor *loss = tr->net.arch->loss(tr, tr->cfg.optim.label_smoothing);
    tape_backward_seeded(&tr->tape, loss, 1.0f / (float)tr->cfg.train.grad_accum);
    float value;
    tensor_get_f32(loss, &value, 1);
    return value;
}

float trainer_step(Trainer *tr) {
    const Config *c = &tr->cfg;
    schedule_step(tr, tr->step);
    tr->net.arch->next_batch(tr);
    tr->tape.record = tr->tape.training = true;
    tr->tape.counter = (uint64_t)tr->step << 24;  // dropout masks depend on the step only: exact resume
    if (tr->dev == DEV_CPU) adamw_zero_grad(&tr->opt, &tr->grads);  // (the GPU step zeroes them itself)
    Tensor *x = tr->x, *y = tr->y;
    double loss_sum = 0;
    for (int j = 0; j < c->train.grad_accum; j++) loss_sum += micro_step(tr, x, y, j);
    tr->x = x, tr->y = y;
    schedule_after_backward(&tr->sched);
    dist_allreduce_grads(tr->trainable, tr->opt.n);  // the global batch's gradient on every rank
    float lr = lr_schedule(&c->optim, tr->step, tr->total_steps);
    optimizer_step(tr, lr);
    tr->step++;
    float value = (float)(loss_sum / c->train.grad_accum);
    dist_allreduce_mean(&value, 1);
    return value;
}

float trainer_evaluate(Trainer *tr, float *loss_out) {
    bool rec = tr->tape.record;
    tr->tape.record = tr->tape.training = false;
    float metric = tr->net.arch->evaluate(tr, loss_out);
    tr->tape.record = rec;
    tape_reset(&tr->tape);
    return metric;
}

const char *trainer_metric_str(const Trainer *tr, float metric, char *buf, size_t n) {
    if (!strcmp(tr->net.arch->metric, "accuracy")) snprintf(buf, n, "test accuracy %.2f%%", 100 * metric);
    else snprintf(buf, n, "test %s %.4f", tr->net.arch->metric, metric);
    return buf;
}

// ---- the loop ----

static void format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    int h = (int)(s / 3600), m = (int)(fmod(s, 3600) / 60), sec = (int)fmod(s, 60);
    if (h) snprintf(buf, n, "%dh%02dm", h, m);
    else snprintf(buf, n, "%dm%02ds", m, sec);
}

static void log_eval(Trainer *tr) {
    float loss, metric = trainer_evaluate(tr, &loss);
    char text[64];
    if (!tr->quiet) printf("eval  step %lld | test loss %.4f | %s\n", (long long)tr->step, loss, trainer_metric_str(tr, metric, text, sizeof text));
    if (tr->metrics) {
        fprintf(tr->metrics, "{\"step\": %lld, \"stage\": %d, \"eval_loss\": %.6f, \"eval_%s\": %.6f}\n",
                (long long)tr->step, tr->sched.stage, loss, tr->net.arch->metric, metric);
        fflush(tr->metrics);
    }
}

static int open_outputs(Trainer *tr, Err *err) {
    char path[CFG_STR + 32];
    snprintf(path, sizeof path, "%s/config.yaml", tr->cfg.train.out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return err_set(err, "%s: cannot write: %s", path, strerror(errno));
    config_write_yaml(&tr->cfg, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.jsonl", tr->cfg.train.out_dir);
    // a resumed run appends to the metrics of the run it continues
    tr->metrics = fopen(path, tr->step > 0 ? "a" : "w");
    if (!tr->metrics) return err_set(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

int job_resume_default(Config *c, Err *err) {
    if (c->checkpoint.resume[0]) return 0;
    if (snprintf(c->checkpoint.resume, sizeof c->checkpoint.resume, "%s/checkpoint.h5", c->train.out_dir) >=
        (int)sizeof c->checkpoint.resume)
        return err_set(err, "%s: train.out_dir is too long for a checkpoint path", c->source);
    return 0;
}

static int save_checkpoint(Trainer *tr, Err *err) {
    if (tr->rank > 0) return 0;  // rank 0 writes
    Config c = tr->cfg;
    c.checkpoint.resume[0] = 0;
    if (job_resume_default(&c, err)) return -1;
    const char *path = c.checkpoint.resume;
    if (trainer_save(tr, path, err)) return -1;
    if (!tr->quiet) printf("saved %s (step %lld)\n", path, (long long)tr->step);
    return 0;
}

int trainer_run(Trainer *tr, int64_t until, Err *err) {
    const Config *c = &tr->cfg;
    int64_t end = until > 0 && until < tr->total_steps ? until : tr->total_steps;
    if (tr->rank == 0 && open_outputs(tr, err)) return -1;
    tr->t_start = now_seconds();
    tr->step_at_start = tr->step;
    double window_t = tr->t_start;
    int64_t window_step = tr->step;
    double loss_sum = 0;
    int loss_n = 0;
    while (tr->step < end) {
        float loss = trainer_step(tr);
        if (!isfinite(loss)) return err_set(err, "step %lld: loss is %f (diverged); try a lower optim.lr", (long long)tr->step, loss);
        loss_sum += loss, loss_n++;
        bool last = tr->step == end;
        if (tr->step % c->train.log_every == 0 || last) {
            double t = now_seconds();
            double ips = (double)(tr->step - window_step) * (double)tr->batch_items / (t - window_t);
            double per_step = (t - tr->t_start) / (double)(tr->step - tr->step_at_start);
            char eta[32];
            format_duration(per_step * (double)(tr->total_steps - tr->step), eta, sizeof eta);
            float lr = lr_schedule(&c->optim, tr->step - 1, tr->total_steps);
            float mean = (float)(loss_sum / loss_n);
            if (!tr->quiet)
                printf("step %5lld/%lld | stage %d | epoch %.2f | loss %.4f | lr %.2e | %.0f %s/s | ETA %s\n",
                       (long long)tr->step, (long long)tr->total_steps, tr->sched.stage,
                       (double)tr->step / (double)tr->steps_per_epoch, mean, lr, ips, tr->net.arch->unit, eta);
            if (tr->metrics) {  // rank 0
                fprintf(tr->metrics,
                        "{\"step\": %lld, \"stage\": %d, \"loss\": %.6f, \"lr\": %.6e, \"%s_per_s\": %.1f, \"mask_flip_rate\": %.6f}\n",
                        (long long)tr->step, tr->sched.stage, mean, lr, tr->net.arch->unit, ips, tr->sched.last_flip_rate);
                fflush(tr->metrics);
            }
            fflush(stdout);
            window_t = t, window_step = tr->step, loss_sum = 0, loss_n = 0;
        }
        if (c->eval.every > 0 && tr->step % c->eval.every == 0 && !last && tr->rank == 0) log_eval(tr);
        if (c->checkpoint.every > 0 && tr->step % c->checkpoint.every == 0 && !last && save_checkpoint(tr, err)) return -1;
    }
    if (end == tr->total_steps && tr->rank == 0) log_eval(tr);
    if (save_checkpoint(tr, err)) return -1;
    if (tr->rank > 0) return 0;
    // the weights alone, with timm / HF names, for other tools and as model.init of later jobs
    char path[CFG_STR + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", c->train.out_dir);
    return model_save_safetensors(tr->net.params, path, false, err);
}

// ---- checkpoints: params, AdamW moments, masks, and the state that makes resume exact ----

// /state/loader0.. hold the training data position: the image Loader's state (DeiT) or the token
// windows' tag, fingerprint and Rng words (Llama); see each TrainerArch's data_state.
enum { ST_STEP, ST_OPT_STEP, ST_STAGE, ST_MASK_UPDATES, ST_MASKS_VALID, ST_PERMS_VALID, ST_LOADER0 };
#define N_STATE (ST_LOADER0 + LOADER_STATE_WORDS)

static void state_names(CkptState *st) {
    static const char *names[] = {"step", "optimizer_step", "stage", "mask_updates", "masks_valid", "perms_valid"};
    static char loader_names[LOADER_STATE_WORDS][16];
    for (int i = 0; i < ST_LOADER0; i++) st[i].name = names[i];
    for (int i = 0; i < LOADER_STATE_WORDS; i++) {
        snprintf(loader_names[i], sizeof loader_names[i], "loader%d", i);
        st[ST_LOADER0 + i].name = loader_names[i];
    }
}

// Masks, and the permutations (i32) when sparsity.permute is on, as named /mask entries.
static CkptMask *ckpt_masks(Trainer *tr, int *n) {
    const Schedule *s = &tr->sched;
    CkptMask *m = xcalloc((size_t)3 * s->n_layers + 1, sizeof *m);
    *n = 0;
    for (int i = 0; i < s->n_layers; i++) {
        m[(*n)++] = (CkptMask){s->layers[i]->name, s->layers[i]->mask};
        if (s->perm_in[i]) m[(*n)++] = (CkptMask){s->perm_in[i]->name, s->perm_in[i]};
        if (s->perm_out[i]) m[(*n)++] = (CkptMask){s->perm_out[i]->name, s->perm_out[i]};
    }
    return m;
}

int trainer_save(Trainer *tr, const char *path, Err *err) {
    CkptState st[N_STATE];
    state_names(st);
    uint64_t loader[LOADER_STATE_WORDS];
    tr->net.arch->data_state(tr, loader);
    st[ST_STEP].value = (uint64_t)tr->step;
    st[ST_OPT_STEP].value = (uint64_t)tr->opt.step;
    st[ST_STAGE].value = (uint64_t)tr->sched.stage;
    st[ST_MASK_UPDATES].value = (uint64_t)tr->sched.mask_updates;
    st[ST_MASKS_VALID].value = tr->sched.masks_valid;
    st[ST_PERMS_VALID].value = tr->sched.perms_valid;
    for (int i = 0; i < LOADER_STATE_WORDS; i++) st[ST_LOADER0 + i].value = loader[i];
    optimizer_sync(tr, true);
    char *yaml = config_to_yaml(&tr->cfg);
    CkptContent c = {.params = tr->net.params, .m = tr->opt.m, .v = tr->opt.v, .optim_device = DEV_CPU,
                     .state = st, .n_state = N_STATE, .config = yaml};
    c.masks = ckpt_masks(tr, &c.n_masks);
    int rc = ckpt_save(path, &c, err);
    free(yaml), free(c.masks);
    return rc;
}

int trainer_load(Trainer *tr, const char *path, Err *err) {
    CkptState st[N_STATE];
    state_names(st);
    CkptContent c = {.params = tr->net.params, .m = tr->opt.m, .v = tr->opt.v, .optim_device = DEV_CPU,
                     .state = st, .n_state = N_STATE};
    c.masks = ckpt_masks(tr, &c.n_masks);
    int rc = ckpt_load(path, &c, err);
    free(c.masks);
    free(c.config_loaded);
    if (rc) return -1;
    optimizer_sync(tr, false);
    tr->step = (int64_t)st[ST_STEP].value;
    tr->opt.step = (int64_t)st[ST_OPT_STEP].value;
    tr->sched.stage = (int)st[ST_STAGE].value;
    tr->sched.mask_updates = (int64_t)st[ST_MASK_UPDATES].value;
    tr->sched.masks_valid = st[ST_MASKS_VALID].value != 0;
    tr->sched.perms_valid = st[ST_PERMS_VALID].value != 0;
    if (tr->sched.sparse) schedule_masks_loaded(&tr->sched);
    uint64_t loader[LOADER_STATE_WORDS];
    for (int i = 0; i < LOADER_STATE_WORDS; i++) loader[i] = st[ST_LOADER0 + i].value;
    if (tr->net.arch->set_data_state(tr, loader, err)) return err_set(err, "%s: /state: %s", path, err->msg);
    return 0;
}
