// DeiT on images for the training loop (train/trainer_arch.h): Fashion-MNIST or HDF5 image sets
// through the shuffling, augmenting Loader; cross-entropy on the class; evaluation = accuracy.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/fmnist.h"
#include "train/model_io.h"
#include "train/trainer_arch.h"

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
    if (!strcmp(d->dataset, "tokens"))
        return err_set(err, "%s: data.dataset: tokens is for model.arch llama (deit trains on images)", tr->cfg.source);
    if (dataset_open(d, &tr->train_set, &tr->test_set, err)) return -1;
    const ModelConfig *m = &tr->cfg.model;
    if (tr->train_set.c != m->in_chans || tr->train_set.h != m->img_size || tr->train_set.w != m->img_size)
        return err_set(err, "%s: images are %dx%dx%d (HxWxC) but model.img_size=%d model.in_chans=%d", d->path,
                       tr->train_set.h, tr->train_set.w, tr->train_set.c, m->img_size, m->in_chans);
    if (tr->train_set.num_classes > m->num_classes)
        return err_set(err, "%s: %d classes but model.num_classes=%d", d->path, tr->train_set.num_classes, m->num_classes);
    LoaderOptions lo = loader_options(&tr->cfg, true);
    lo.shard = tr->rank, lo.shards = tr->ranks;  // data parallel: this rank's share of each batch
    if (loader_init(&tr->loader, &tr->train_set, &lo, err)) return -1;
    tr->steps_per_epoch = loader_batches_per_epoch(&tr->loader);
    if (tr->steps_per_epoch < 1) return err_set(err, "%s: fewer training images than train.batch_size", d->path);
    return 0;
}

static void allocate_arenas(Trainer *tr) {
    const Config *c = &tr->cfg;
    DType dt = tr->dev == DEV_CPU ? DT_F32 : DT_BF16;
    int bmax = trainer_input_batch(c), fmax = trainer_activation_batch(c);
    size_t img = (size_t)c->model.in_chans * c->model.img_size * c->model.img_size;
    size_t pbytes = deit_param_bytes(&c->model, DT_F32) * 2 + ((size_t)16 << 20);  // f32: room for LoRA and masks too
    trainer_arenas(tr, pbytes, pbytes, deit_activation_bytes(&c->model, fmax, dt), (size_t)bmax * (img + 1) * 4 + 4096);
    if (tr->dev != DEV_CPU) tr->host_x = xmalloc((size_t)bmax * img * sizeof(float));
    tr->host_y = xmalloc((size_t)bmax * sizeof(int32_t));
    tr->host_logits = xmalloc((size_t)bmax * (size_t)c->model.num_classes * sizeof(float));
}

static int deit_setup(Trainer *tr, Err *err) {
    const Config *c = &tr->cfg;
    if (strcmp(c->train.recompute, "none"))
        return err_set(err, "%s: train.recompute: %s is for model.arch llama (deit keeps its activations)", c->source,
                       c->train.recompute);
    if (load_data(tr, err)) return -1;
    tr->batch_items = c->train.batch_size;
    allocate_arenas(tr);
    deit_init(&tr->model, &c->model, &tr->params, c->train.seed);
    tr->net = (TrainerModel){&trainer_deit, &tr->model.params, tr->model.linears, tr->model.n_linears};
    if (c->model.init[0] && model_load_safetensors(&tr->model.params, c->model.init, false, err)) return -1;
    return 0;
}

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

static void deit_next_batch(Trainer *tr) { next_batch(tr, &tr->loader, tr->local_batch, true); }

static Tensor *deit_loss(Trainer *tr, float smoothing) {
    Tensor *logits = deit_forward(&tr->model, &tr->tape, tr->x);
    return op_cross_entropy(&tr->tape, logits, tr->y, smoothing, "loss");
}

static int64_t count_correct(const Trainer *tr, const Tensor *logits, int n) {
    float *L = tr->host_logits;
    tensor_get_f32(logits, L, logits->numel);
    int64_t K = logits->shape[1], correct = 0;
    for (int i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (L[i * K + k] > L[i * K + best]) best = k;
        correct += best == tr->host_y[i];
    }
    return correct;
}

static float deit_evaluate(Trainer *tr, float *loss_out) {
    const Config *c = &tr->cfg;
    LoaderOptions lo = loader_options(c, false);
    Loader ev;
    Err err;
    if (loader_init(&ev, &tr->test_set, &lo, &err)) fatal("%s", err.msg);
    int64_t correct = 0, seen = 0;
    double loss_sum = 0;
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
        correct += count_correct(tr, logits, n);
        seen += n;
    }
    loader_free(&ev);
    if (loss_out) *loss_out = seen ? (float)(loss_sum / (double)seen) : NAN;
    return seen ? (float)correct / (float)seen : 0.0f;
}

typedef struct Calibration {
    Trainer *tr;
    Loader loader;
} Calibration;

static void calibration_forward(void *ctx, int batch) {
    Calibration *cal = ctx;
    next_batch(cal->tr, &cal->loader, trainer_forward_batch(&cal->tr->cfg), true);
    tape_reset(&cal->tr->tape);
    deit_forward(&cal->tr->model, &cal->tr->tape, cal->tr->x);
}

// Activation statistics for wanda / ria / sparsegpt: forward passes (no augmentation) over
// sparsity.calib_batches training batches, each in train.grad_accum micro-batches.
static void deit_calibrate(Trainer *tr) {
    const Config *c = &tr->cfg;
    LoaderOptions lo = loader_options(c, true);
    lo.batch_size = trainer_forward_batch(c);
    lo.augment = false;
    lo.seed ^= 0xca11b;
    Calibration cal = {.tr = tr};
    Err err;
    if (loader_init(&cal.loader, &tr->train_set, &lo, &err)) fatal("%s", err.msg);
    schedule_calibrate(&tr->sched, c->sparsity.calib_batches * c->train.grad_accum, calibration_forward, &cal);
    loader_free(&cal.loader);
}

static void deit_data_state(const Trainer *tr, uint64_t out[LOADER_STATE_WORDS]) { loader_state_get(&tr->loader, out); }

static int deit_set_data_state(Trainer *tr, const uint64_t in[LOADER_STATE_WORDS], Err *err) {
    return loader_state_set(&tr->loader, in, err);
}

static void deit_release(Trainer *tr) {
    free(tr->host_x), free(tr->host_y), free(tr->host_logits);
    deit_free(&tr->model);
    loader_free(&tr->loader);
    imageset_free(&tr->train_set);
    imageset_free(&tr->test_set);
}

const TrainerArch trainer_deit = {
    .name = "deit", .unit = "img", .metric = "accuracy",
    .setup = deit_setup, .next_batch = deit_next_batch, .loss = deit_loss, .evaluate = deit_evaluate,
    .calibrate = deit_calibrate, .data_state = deit_data_state, .set_data_state = deit_set_data_state,
    .free = deit_release,
};
