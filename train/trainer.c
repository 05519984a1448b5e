#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/device.h"
#include "data/fmnist.h"
#ifdef VNMTUNE_HAVE_CUDA
#include "kernels/adamw.h"
#include "kernels/ops_cuda.h"
#endif
#include "train/checkpoint.h"
#include "train/lora.h"
#include "train/model_io.h"
#include "train/vnm_linear.h"

// ---- setup ----

// data.dataset fashion_mnist: the idx .gz files in data.path; hdf5: <data.path>/{train,test}.h5
static int dataset_open(const DataConfig *d, ImageSet *train, ImageSet *test, Err *err) {
    if (!strcmp(d->dataset, "fashion_mnist"))
        return fmnist_load(d->path, "train", train, err) || fmnist_load(d->path, "test", test, err) ? -1 : 0;
    char path[CFG_STR + 16];
    if (imageset_read_h5(imageset_split_path(path, sizeof path, d->path, "train"), train, err)) return -1;
    return imageset_read_h5(imageset_split_path(path, sizeof path, d->path, "test"), test, err);
}

static LoaderOptions loader_options(const Config *c, bool train) {
    LoaderOptions lo = train ? loader_train_options(c->train.batch_size, c->train.seed) : loader_eval_options(c->eval.batch_size);
    lo.augment = train && c->data.augment;
    lo.limit = train ? c->data.train_limit : c->data.test_limit;
    loader_options_set_norm(&lo, c->data.mean, c->data.std);
    return lo;
}

static int load_data(Trainer *tr, Err *err) {
    const DataConfig *d = &tr->cfg.data;
    if (dataset_open(d, &tr->train_set, &tr->test_set, err)) return -1;
    const ModelConfig *m = &tr->cfg.model;
    if (tr->train_set.c != m->in_chans || tr->train_set.h != m->img_size || tr->train_set.w != m->img_size)
        return err_set(err, "%s: images are %dx%dx%d (HxWxC) but model.img_size=%d model.in_chans=%d", d->path,
                       tr->train_set.h, tr->train_set.w, tr->train_set.c, m->img_size, m->in_chans);
    if (tr->train_set.num_classes > m->num_classes)
        return err_set(err, "%s: %d classes but model.num_classes=%d", d->path, tr->train_set.num_classes, m->num_classes);
    LoaderOptions lo = loader_options(&tr->cfg, true);
    if (loader_init(&tr->loader, &tr->train_set, &lo, err)) return -1;
    tr->steps_per_epoch = loader_batches_per_epoch(&tr->loader);
    if (tr->steps_per_epoch < 1) return err_set(err, "%s: fewer training images than train.batch_size", d->path);
    return 0;
}

static int next_batch(Trainer *tr, Loader *L, int b, bool wrap);

typedef struct Calibration {
    Trainer *tr;
    Loader loader;
} Calibration;

static void calibration_forward(void *ctx, int batch) {
    Calibration *cal = ctx;
    next_batch(cal->tr, &cal->loader, cal->tr->cfg.train.batch_size, true);
    tape_reset(&cal->tr->tape);
    deit_forward(&cal->tr->model, &cal->tr->tape, cal->tr->x);
}

// Activation statistics for wanda / ria / sparsegpt: forward passes (no augmentation, no recording)
// over sparsity.calib_batches training batches.
static void calibrate(Trainer *tr) {
    const Config *c = &tr->cfg;
    LoaderOptions lo = loader_options(c, true);
    lo.augment = false;
    lo.seed ^= 0xca11b;
    Calibration cal = {.tr = tr};
    Err err;
    if (loader_init(&cal.loader, &tr->train_set, &lo, &err)) fatal("%s", err.msg);
    tr->tape.record = tr->tape.training = false;
    schedule_calibrate(&tr->sched, c->sparsity.calib_batches, calibration_forward, &cal);
    tape_reset(&tr->tape);
    loader_free(&cal.loader);
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

static void allocate_arenas(Trainer *tr) {
    const Config *c = &tr->cfg;
    DType dt = tr->dev == DEV_CPU ? DT_F32 : DT_BF16;
    int bmax = c->train.batch_size > c->eval.batch_size ? c->train.batch_size : c->eval.batch_size;
    size_t pbytes = deit_param_bytes(&c->model, DT_F32);  // f32: room for LoRA factors and masks too
    arena_init(&tr->params, "params", tr->dev, pbytes * 2 + ((size_t)16 << 20));
    arena_init(&tr->grads, "grads", tr->dev, pbytes * 2 + ((size_t)16 << 20));
    arena_init(&tr->acts, "activations", tr->dev, deit_activation_bytes(&c->model, bmax, dt));
    tr->acts.no_zero = tr->dev != DEV_CPU;  // GPU kernels write every output fully
    size_t img = (size_t)c->model.in_chans * c->model.img_size * c->model.img_size;
    arena_init(&tr->inputs, "inputs", tr->dev, (size_t)bmax * (img + 1) * 4 + 4096);
    if (tr->dev != DEV_CPU) tr->host_x = xmalloc((size_t)bmax * img * sizeof(float));
    tr->host_y = xmalloc((size_t)bmax * sizeof(int32_t));
    tr->host_logits = xmalloc((size_t)bmax * (size_t)c->model.num_classes * sizeof(float));
}

// ---- the optimizer: AdamW on the CPU, the fused multi-tensor AdamW with fp32 masters on the GPU ----

static void optimizer_init(Trainer *tr) {
    adamw_init(&tr->opt, &tr->model.params, tr->dev);
#ifdef VNMTUNE_HAVE_CUDA
    if (tr->dev == DEV_CUDA) {
        Tensor **values = xcalloc((size_t)tr->opt.n + 1, sizeof *values);
        bool *decay = xcalloc((size_t)tr->opt.n + 1, sizeof *decay);
        for (int i = 0; i < tr->opt.n; i++) {
            values[i] = tr->opt.params[i]->value;
            decay[i] = tr->opt.params[i]->decay;
            tensor_ensure_grad(values[i], &tr->grads);
        }
        tr->opt_cuda = adamw_cuda_create(tr->opt.n, values, decay);
        free(values), free(decay);
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

int trainer_setup(Trainer *tr, const Config *cfg, Err *err) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    const Config *c = &tr->cfg;
    if (trainer_resolve_device(&tr->cfg, &tr->dev, err)) return -1;
    if (strcmp(c->model.arch, "deit") != 0)
        return err_set(err, "%s: model.arch: '%s' is not supported by the trainer (deit)", c->source, c->model.arch);
    if (load_data(tr, err)) return -1;
    tr->total_steps = c->train.steps > 0 ? c->train.steps : (int64_t)c->train.epochs * tr->steps_per_epoch;

    allocate_arenas(tr);
    tape_init(&tr->tape, &tr->acts);
    tr->tape.seed = c->train.seed;

    deit_init(&tr->model, &c->model, &tr->params, c->train.seed);
    if (c->model.init[0] && model_load_safetensors(&tr->model.params, c->model.init, false, err)) return -1;
    if (c->lora.enabled)
        lora_attach(tr->model.linears, tr->model.n_linears, &tr->model.params, &tr->params, &c->lora, c->train.seed);
    if (!strcmp(c->schedule.mode, "one_shot") && c->sparsity.enabled) tr->total_steps = 0;
    if (schedule_init(&tr->sched, c, tr->model.linears, tr->model.n_linears, tr->total_steps, &tr->params, err)) return -1;
    if (schedule_needs_calibration(&tr->sched)) calibrate(tr);
    if (tr->sched.sparse && tr->sched.stage1_end == 0) schedule_before_step(&tr->sched, 0);  // prune before training
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
    free(tr->host_x), free(tr->host_y), free(tr->host_logits);
    schedule_free(&tr->sched);
    if (tr->speed.rows) vnm_dispatch_set_table(NULL);
    speed_table_free(&tr->speed);
    deit_free(&tr->model);
    tape_free(&tr->tape);
    loader_free(&tr->loader);
    imageset_free(&tr->train_set);
    imageset_free(&tr->test_set);
    arena_free(&tr->params), arena_free(&tr->grads), arena_free(&tr->acts), arena_free(&tr->inputs);
}

// ---- one step ----

// The next batch from L into tr->x (images) and tr->y (labels) on the model's device (on the GPU
// through the host staging buffer, uploaded as bf16). Rows past the batch's count get label -1.
static int next_batch(Trainer *tr, Loader *L, int b, bool wrap) {
    arena_reset(&tr->inputs);
    const ModelConfig *m = &tr->cfg.model;
    int64_t shape[4] = {b, m->in_chans, m->img_size, m->img_size};
    tr->x = tensor_new(&tr->inputs, tr->dev == DEV_CPU ? DT_F32 : DT_BF16, 4, shape, "images");
    tr->y = tensor_new1(&tr->inputs, DT_I32, b, "labels");
    float *images = tr->dev == DEV_CPU ? tensor_f32(tr->x) : tr->host_x;  // the CPU loads into the batch itself
    int n = wrap ? loader_next_wrap(L, images, tr->host_y) : loader_next(L, images, tr->host_y);
    for (int i = n > 0 ? n : 0; i < b; i++) tr->host_y[i] = -1;
    if (tr->dev != DEV_CPU) tensor_set_f32(tr->x, tr->host_x, tr->x->numel);
    tensor_write_host(tr->y, tr->host_y);
    return n;
}

static Tensor *forward_loss(Trainer *tr, float smoothing) {
    Tensor *logits = deit_forward(&tr->model, &tr->tape, tr->x);
    return op_cross_entropy(&tr->tape, logits, tr->y, smoothing, "loss");
}

float trainer_step(Trainer *tr) {
    const Config *c = &tr->cfg;
    schedule_before_step(&tr->sched, tr->step);
    next_batch(tr, &tr->loader, c->train.batch_size, true);
    tape_reset(&tr->tape);
    tr->tape.record = tr->tape.training = true;
    tr->tape.counter = (uint64_t)tr->step << 24;  // dropout masks depend on the step only: exact resume
    if (tr->dev == DEV_CPU) adamw_zero_grad(&tr->opt, &tr->grads);  // (the GPU step zeroes them itself)
    Tensor *loss = forward_loss(tr, c->optim.label_smoothing);
    tape_backward(&tr->tape, loss);
    schedule_after_backward(&tr->sched);
    float lr = lr_schedule(&c->optim, tr->step, tr->total_steps);
    optimizer_step(tr, lr);
    tr->step++;
    float value;
    tensor_get_f32(loss, &value, 1);
    return value;
}

float trainer_evaluate(Trainer *tr, float *loss_out) {
    const Config *c = &tr->cfg;
    LoaderOptions lo = loader_options(c, false);
    Loader ev;
    Err err;
    if (loader_init(&ev, &tr->test_set, &lo, &err)) fatal("%s", err.msg);
    int64_t correct = 0, seen = 0;
    double loss_sum = 0;
    bool rec = tr->tape.record;
    tr->tape.record = tr->tape.training = false;
    int n;
    for (int64_t b = 0; b < loader_batches_per_epoch(&ev); b++) {
        n = next_batch(tr, &ev, c->eval.batch_size, false);  // a short last batch: padding rows ignored
        if (n <= 0) break;
        tape_reset(&tr->tape);
        Tensor *logits = deit_forward(&tr->model, &tr->tape, tr->x);
        Tensor *loss = op_cross_entropy(&tr->tape, logits, tr->y, 0.0f, "eval_loss");
        float lv;
        tensor_get_f32(loss, &lv, 1);
        loss_sum += (double)lv * n;
        float *L = tr->host_logits;
        tensor_get_f32(logits, L, logits->numel);
        int64_t K = logits->shape[1];
        for (int i = 0; i < n; i++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (L[i * K + k] > L[i * K + best]) best = k;
            correct += best == tr->host_y[i];
        }
        seen += n;
    }
    loader_free(&ev);
    tr->tape.record = rec;
    tape_reset(&tr->tape);
    if (loss_out) *loss_out = seen ? (float)(loss_sum / (double)seen) : NAN;
    return seen ? (float)correct / (float)seen : 0.0f;
}

// ---- the loop ----

static void format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    int h = (int)(s / 3600), m = (int)(fmod(s, 3600) / 60), sec = (int)fmod(s, 60);
    if (h) snprintf(buf, n, "%dh%02dm", h, m);
    else snprintf(buf, n, "%dm%02ds", m, sec);
}

static void log_eval(Trainer *tr) {
    float loss, acc = trainer_evaluate(tr, &loss);
    if (!tr->quiet) printf("eval  step %lld | test loss %.4f | test accuracy %.2f%%\n", (long long)tr->step, loss, 100 * acc);
    if (tr->metrics) {
        fprintf(tr->metrics, "{\"step\": %lld, \"stage\": %d, \"eval_loss\": %.6f, \"eval_accuracy\": %.6f}\n",
                (long long)tr->step, tr->sched.stage, loss, acc);
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
    if (open_outputs(tr, err)) return -1;
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
            double ips = (double)(tr->step - window_step) * c->train.batch_size / (t - window_t);
            double per_step = (t - tr->t_start) / (double)(tr->step - tr->step_at_start);
            char eta[32];
            format_duration(per_step * (double)(tr->total_steps - tr->step), eta, sizeof eta);
            float lr = lr_schedule(&c->optim, tr->step - 1, tr->total_steps);
            float mean = (float)(loss_sum / loss_n);
            if (!tr->quiet)
                printf("step %5lld/%lld | stage %d | epoch %.2f | loss %.4f | lr %.2e | %.0f img/s | ETA %s\n",
                       (long long)tr->step, (long long)tr->total_steps, tr->sched.stage,
                       (double)tr->step / (double)tr->steps_per_epoch, mean, lr, ips, eta);
            fprintf(tr->metrics,
                    "{\"step\": %lld, \"stage\": %d, \"loss\": %.6f, \"lr\": %.6e, \"img_per_s\": %.1f, \"mask_flip_rate\": %.6f}\n",
                    (long long)tr->step, tr->sched.stage, mean, lr, ips, tr->sched.last_flip_rate);
            fflush(tr->metrics);
            fflush(stdout);
            window_t = t, window_step = tr->step, loss_sum = 0, loss_n = 0;
        }
        if (c->eval.every > 0 && tr->step % c->eval.every == 0 && !last) log_eval(tr);
        if (c->checkpoint.every > 0 && tr->step % c->checkpoint.every == 0 && !last && save_checkpoint(tr, err)) return -1;
    }
    if (end == tr->total_steps) log_eval(tr);
    if (save_checkpoint(tr, err)) return -1;
    // the weights alone, with timm names, for other tools and as model.init of later jobs
    char path[CFG_STR + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", c->train.out_dir);
    return model_save_safetensors(&tr->model.params, path, false, err);
}

// ---- checkpoints: params, AdamW moments, masks, and the state that makes resume exact ----

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
    loader_state_get(&tr->loader, loader);
    st[ST_STEP].value = (uint64_t)tr->step;
    st[ST_OPT_STEP].value = (uint64_t)tr->opt.step;
    st[ST_STAGE].value = (uint64_t)tr->sched.stage;
    st[ST_MASK_UPDATES].value = (uint64_t)tr->sched.mask_updates;
    st[ST_MASKS_VALID].value = tr->sched.masks_valid;
    st[ST_PERMS_VALID].value = tr->sched.perms_valid;
    for (int i = 0; i < LOADER_STATE_WORDS; i++) st[ST_LOADER0 + i].value = loader[i];
    optimizer_sync(tr, true);
    char *yaml = config_to_yaml(&tr->cfg);
    CkptContent c = {.params = &tr->model.params, .m = tr->opt.m, .v = tr->opt.v, .optim_device = DEV_CPU,
                     .state = st, .n_state = N_STATE, .config = yaml};
    c.masks = ckpt_masks(tr, &c.n_masks);
    int rc = ckpt_save(path, &c, err);
    free(yaml), free(c.masks);
    return rc;
}

int trainer_load(Trainer *tr, const char *path, Err *err) {
    CkptState st[N_STATE];
    state_names(st);
    CkptContent c = {.params = &tr->model.params, .m = tr->opt.m, .v = tr->opt.v, .optim_device = DEV_CPU,
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
    if (loader_state_set(&tr->loader, loader, err)) return err_set(err, "%s: /state: %s", path, err->msg);
    return 0;
}
