#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fmnist.h"
#include "train/checkpoint.h"
#include "train/lora.h"
#include "train/model_io.h"

// ---- setup ----

static int make_dirs(const char *path, Err *err) {
    char buf[CFG_STR];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return err_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return err_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

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

static void batch_tensors(Trainer *tr, int b);

// Activation norms for wanda / ria: forward passes (no augmentation, no recording) over
// sparsity.calib_batches training batches while the sparse layers collect Σx² per input channel.
static void calibrate(Trainer *tr) {
    const Config *c = &tr->cfg;
    LoaderOptions lo = loader_options(c, true);
    lo.augment = false;
    lo.seed ^= 0xca11b;
    Loader cal;
    Err err;
    if (loader_init(&cal, &tr->train_set, &lo, &err)) fatal("%s", err.msg);
    schedule_begin_calibration(&tr->sched);
    tr->tape.record = tr->tape.training = false;
    for (int b = 0; b < c->sparsity.calib_batches; b++) {
        batch_tensors(tr, c->train.batch_size);
        loader_next_wrap(&cal, tensor_f32(tr->x), (int32_t *)tr->y->data);
        tape_reset(&tr->tape);
        deit_forward(&tr->model, &tr->tape, tr->x);
    }
    tape_reset(&tr->tape);
    schedule_end_calibration(&tr->sched);
    loader_free(&cal);
}

static size_t activation_budget(const Config *c) {
    int b = c->train.batch_size > c->eval.batch_size ? c->train.batch_size : c->eval.batch_size;
    return deit_activation_bytes(&c->model, b, c->train.device[0] == 'c' && c->train.device[1] == 'u' ? DT_BF16 : DT_F32);
}

int trainer_setup(Trainer *tr, const Config *cfg, Err *err) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    const Config *c = &tr->cfg;
    if (strcmp(c->train.device, "cpu") != 0)
        return err_set(err, "%s: train.device: '%s' is not available in this build path yet (use cpu)", c->source, c->train.device);
    if (strcmp(c->model.arch, "deit") != 0)
        return err_set(err, "%s: model.arch: '%s' is not supported by the trainer (deit)", c->source, c->model.arch);
    if (load_data(tr, err)) return -1;
    tr->total_steps = c->train.steps > 0 ? c->train.steps : (int64_t)c->train.epochs * tr->steps_per_epoch;

    arena_init(&tr->params, "params", DEV_CPU, deit_param_bytes(&c->model, DT_F32) * 2 + ((size_t)16 << 20));
    arena_init(&tr->grads, "grads", DEV_CPU, deit_param_bytes(&c->model, DT_F32) * 2 + ((size_t)16 << 20));
    arena_init(&tr->acts, "activations", DEV_CPU, activation_budget(c));
    size_t img = (size_t)c->model.in_chans * c->model.img_size * c->model.img_size;
    int bmax = c->train.batch_size > c->eval.batch_size ? c->train.batch_size : c->eval.batch_size;
    arena_init(&tr->inputs, "inputs", DEV_CPU, (size_t)bmax * (img + 1) * 4 + 4096);
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
    adamw_init(&tr->opt, &tr->model.params);
    tr->opt_ready = true;

    if (c->checkpoint.resume[0] && trainer_load(tr, c->checkpoint.resume, err)) return -1;
    if (make_dirs(c->train.out_dir, err)) return -1;
    return 0;
}

void trainer_free(Trainer *tr) {
    if (tr->metrics) fclose(tr->metrics);
    if (tr->opt_ready) adamw_free(&tr->opt);
    schedule_free(&tr->sched);
    deit_free(&tr->model);
    tape_free(&tr->tape);
    loader_free(&tr->loader);
    imageset_free(&tr->train_set);
    imageset_free(&tr->test_set);
    arena_free(&tr->params), arena_free(&tr->grads), arena_free(&tr->acts), arena_free(&tr->inputs);
}

// ---- one step ----

static void batch_tensors(Trainer *tr, int b) {
    arena_reset(&tr->inputs);
    const ModelConfig *m = &tr->cfg.model;
    int64_t shape[4] = {b, m->in_chans, m->img_size, m->img_size};
    tr->x = tensor_new(&tr->inputs, DT_F32, 4, shape, "images");
    tr->y = tensor_new1(&tr->inputs, DT_I32, b, "labels");
}

static Tensor *forward_loss(Trainer *tr, float smoothing) {
    Tensor *logits = deit_forward(&tr->model, &tr->tape, tr->x);
    return op_cross_entropy(&tr->tape, logits, tr->y, smoothing, "loss");
}

float trainer_step(Trainer *tr) {
    const Config *c = &tr->cfg;
    schedule_before_step(&tr->sched, tr->step);
    batch_tensors(tr, c->train.batch_size);
    loader_next_wrap(&tr->loader, tensor_f32(tr->x), (int32_t *)tr->y->data);
    tape_reset(&tr->tape);
    tr->tape.record = tr->tape.training = true;
    tr->tape.counter = (uint64_t)tr->step << 24;  // dropout masks depend on the step only: exact resume
    adamw_zero_grad(&tr->opt, &tr->grads);
    Tensor *loss = forward_loss(tr, c->optim.label_smoothing);
    tape_backward(&tr->tape, loss);
    schedule_after_backward(&tr->sched);
    float lr = lr_schedule(&c->optim, tr->step, tr->total_steps);
    adamw_clip_grad_norm(&tr->opt, c->optim.grad_clip);
    adamw_step(&tr->opt, &c->optim, lr);
    tr->step++;
    return tensor_f32(loss)[0];
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
        batch_tensors(tr, c->eval.batch_size);
        n = loader_next(&ev, tensor_f32(tr->x), (int32_t *)tr->y->data);
        if (n <= 0) break;
        // a short last batch: mark the padding rows as ignored
        for (int i = n; i < c->eval.batch_size; i++) ((int32_t *)tr->y->data)[i] = -1;
        tape_reset(&tr->tape);
        Tensor *logits = deit_forward(&tr->model, &tr->tape, tr->x);
        Tensor *loss = op_cross_entropy(&tr->tape, logits, tr->y, 0.0f, "eval_loss");
        loss_sum += (double)tensor_f32(loss)[0] * n;
        const float *L = tensor_f32(logits);
        int64_t K = logits->shape[1];
        for (int i = 0; i < n; i++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (L[i * K + k] > L[i * K + best]) best = k;
            correct += best == ((int32_t *)tr->y->data)[i];
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

static int save_checkpoint(Trainer *tr, Err *err) {
    char path[CFG_STR + 32];
    snprintf(path, sizeof path, "%s/checkpoint.h5", tr->cfg.train.out_dir);
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
    return save_checkpoint(tr, err);
}

// ---- checkpoints: params, AdamW moments, masks, and the state that makes resume exact ----

enum { ST_STEP, ST_OPT_STEP, ST_STAGE, ST_MASK_UPDATES, ST_MASKS_VALID, ST_LOADER0 };
#define N_STATE (ST_LOADER0 + LOADER_STATE_WORDS)

static void state_names(CkptState *st) {
    static const char *names[] = {"step", "optimizer_step", "stage", "mask_updates", "masks_valid"};
    static char loader_names[LOADER_STATE_WORDS][16];
    for (int i = 0; i < ST_LOADER0; i++) st[i].name = names[i];
    for (int i = 0; i < LOADER_STATE_WORDS; i++) {
        snprintf(loader_names[i], sizeof loader_names[i], "loader%d", i);
        st[ST_LOADER0 + i].name = loader_names[i];
    }
}

static CkptMask *ckpt_masks(Trainer *tr) {
    CkptMask *m = xcalloc((size_t)tr->sched.n_layers + 1, sizeof *m);
    for (int i = 0; i < tr->sched.n_layers; i++) m[i] = (CkptMask){tr->sched.layers[i]->name, tr->sched.layers[i]->mask};
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
    for (int i = 0; i < LOADER_STATE_WORDS; i++) st[ST_LOADER0 + i].value = loader[i];
    char *yaml = config_to_yaml(&tr->cfg);
    CkptContent c = {.params = &tr->model.params, .m = tr->opt.m, .v = tr->opt.v, .optim_device = DEV_CPU,
                     .masks = ckpt_masks(tr), .n_masks = tr->sched.n_layers, .state = st, .n_state = N_STATE,
                     .config = yaml};
    int rc = ckpt_save(path, &c, err);
    free(yaml), free(c.masks);
    return rc;
}

int trainer_load(Trainer *tr, const char *path, Err *err) {
    CkptState st[N_STATE];
    state_names(st);
    CkptContent c = {.params = &tr->model.params, .m = tr->opt.m, .v = tr->opt.v, .optim_device = DEV_CPU,
                     .masks = ckpt_masks(tr), .n_masks = tr->sched.n_layers, .state = st, .n_state = N_STATE};
    int rc = ckpt_load(path, &c, err);
    free(c.masks);
    free(c.config_loaded);
    if (rc) return -1;
    tr->step = (int64_t)st[ST_STEP].value;
    tr->opt.step = (int64_t)st[ST_OPT_STEP].value;
    tr->sched.stage = (int)st[ST_STAGE].value;
    tr->sched.mask_updates = (int64_t)st[ST_MASK_UPDATES].value;
    tr->sched.masks_valid = st[ST_MASKS_VALID].value != 0;
    uint64_t loader[LOADER_STATE_WORDS];
    for (int i = 0; i < LOADER_STATE_WORDS; i++) loader[i] = st[ST_LOADER0 + i].value;
    if (loader_state_set(&tr->loader, loader, err)) return err_set(err, "%s: /state: %s", path, err->msg);
    return 0;
}
