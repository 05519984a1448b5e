#include "pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/commands.h"
#include "train/lora.h"
#include "train/model_export.h"
#include "train/model_io.h"
#include "train/vnm_export.h"

// ---- export ----

int export_trainer_model(Trainer *tr, const char *path, Err *err) {
    TrainerModel *md = &tr->net;
    bool has_masks = tr->sched.sparse && tr->sched.masks_valid;  // else model_export_write reports the error
    for (int i = 0; i < md->n_linears && has_masks; i++) lora_merge(md->linears[i], md->params);
    return model_export_write(md->params, &tr->sched, &tr->cfg, path, err);
}

int model_load_export(Deit *m, const char *path, bool sparse, Err *err) {
    return model_export_load(&m->params, m->linears, m->n_linears, path, sparse, err);
}

// ---- commands ----

int cmd_export(int argc, char **argv) {
    Config c;
    int rc = job_from_args(argc, argv, "deit_fmnist_vnm",
                           "usage: vnmtune export [job.yaml] [section.key=value ...]\n\n"
                           "Loads the job's checkpoint (checkpoint.resume, or <train.out_dir>/checkpoint.h5), merges LoRA\n"
                           "into the weights under the V:N:M masks, compresses the sparse layers and writes export.path\n"
                           "(default <train.out_dir>/export.h5). `vnmtune inspect FILE` lists what was written.", &c);
    if (rc) return rc < 0;
    char path[CFG_STR + 16];
    Trainer tr = {0};  // freed on every path, also when setup never ran
    Err err = {0};
    rc = job_resume_default(&c, &err) ? -1
         : model_export_path(&c, path, sizeof path, &err) ? -1 : trainer_setup(&tr, &c, &err);
    if (rc == 0) rc = export_trainer_model(&tr, path, &err);
    if (rc == 0) {
        char metric[64];
        trainer_metric_str(&tr, trainer_evaluate(&tr, NULL), metric, sizeof metric);
        printf("wrote %s (step %lld, merged model %s)\n", path, (long long)tr.step, metric);
        rc = vnm_inspect(path, stdout, &err);
    }
    if (rc) fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    trainer_free(&tr);
    return rc ? 1 : 0;
}

typedef struct Variant {
    const char *mode;
    bool permute;
    float accuracy, export_accuracy;
    double seconds, flip_rate, permute_gain;
    int64_t steps;
} Variant;

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// The embedded dense job must build the model the sparse job loads (only model.init differs).
static bool same_model(const ModelConfig *a, const ModelConfig *b) {
    return !strcmp(a->arch, b->arch) && a->img_size == b->img_size && a->patch_size == b->patch_size &&
           a->in_chans == b->in_chans && a->num_classes == b->num_classes && a->embed_dim == b->embed_dim &&
           a->depth == b->depth && a->num_heads == b->num_heads && a->mlp_ratio == b->mlp_ratio &&
           a->qkv_bias == b->qkv_bias;
}

// Trains the dense model with the embedded deit_fmnist job when model.init does not exist yet.
static int ensure_dense(const Config *job, Err *err) {
    if (file_exists(job->model.init)) {
        printf("== dense model: reusing %s\n", job->model.init);
        return 0;
    }
    Config d;
    config_defaults(&d);
    if (config_load_string(&d, embedded_config("deit_fmnist"), "<embedded configs/deit_fmnist.yaml>", err)) return -1;
    if (!same_model(&d.model, &job->model))
        return err_set(err, "%s: model.init '%s' does not exist and the embedded dense job has another model", job->source, job->model.init);
    char dir[CFG_STR];
    snprintf(dir, sizeof dir, "%s", job->model.init);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    snprintf(d.train.out_dir, sizeof d.train.out_dir, "%s", slash ? dir : ".");
    printf("== dense model: %s not found, training it (embedded deit_fmnist job, out_dir %s)\n", job->model.init, d.train.out_dir);
    Trainer tr;
    int rc = trainer_setup(&tr, &d, err);
    if (rc == 0) rc = trainer_run(&tr, 0, err);
    if (rc == 0) rc = model_save_safetensors(&tr.model.params, job->model.init, false, err);
    trainer_free(&tr);
    return rc;
}

static int run_variant(const Config *job, Variant *v, Err *err) {
    Config c = *job;
    snprintf(c.schedule.mode, sizeof c.schedule.mode, "%s", v->mode);
    c.sparsity.permute = v->permute;
    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%.200s/%s%s", job->train.out_dir, v->mode, v->permute ? "_perm" : "");
    snprintf(c.export.path, sizeof c.export.path, "%.200s/export.h5", c.train.out_dir);
    printf("\n== %s%s (%s, score %s) -> %s\n", v->mode, v->permute ? " + permutation" : "", c.sparsity.pattern, c.sparsity.score, c.train.out_dir);
    double t0 = now_seconds();
    Trainer tr;
    int rc = trainer_setup(&tr, &c, err);
    if (rc == 0) {
        for (int i = 0; i < tr.sched.n_layers; i++)
            if (tr.sched.layer_pattern[i].V != tr.sched.spec.vnm.V)
                printf("   %s: %lld rows, V lowered to %d\n", tr.sched.layers[i]->name, (long long)tr.sched.layers[i]->out, tr.sched.layer_pattern[i].V);
        rc = trainer_run(&tr, 0, err);
    }
    if (rc == 0) rc = export_trainer_model(&tr, c.export.path, err);
    if (rc == 0) {
        v->accuracy = trainer_evaluate(&tr, NULL);
        v->steps = tr.step;
        v->flip_rate = tr.sched.last_flip_rate;
        v->permute_gain = tr.sched.n_layers ? tr.sched.permute_gain / tr.sched.n_layers : 0;
        // the exported file, loaded into a fresh copy of the model, must score the same
        // GPU: through the sparse tensor-core SpMM; CPU: the decompressed export (the CPU SpMM is the
        // slow reference, which `vnmtune eval --model=` and the tests run)
        rc = model_load_export(&tr.model, c.export.path, tr.dev == DEV_CUDA, err);
        if (rc == 0) v->export_accuracy = trainer_evaluate(&tr, NULL);
    }
    trainer_free(&tr);
    v->seconds = now_seconds() - t0;
    return rc;
}

// Training-free baselines: one-shot pruning of the dense model (no LoRA) per score and pattern.
static const char *BASELINE_SCORES[] = {"magnitude", "wanda", "ria", "sparsegpt"};
static const char *BASELINE_PATTERNS[] = {"2:4", "64:2:5", "64:2:8"};
#define N_BASE_SCORES 4
#define N_BASE_PATTERNS 3

static int one_shot_baselines(const Config *job, float acc[N_BASE_PATTERNS][N_BASE_SCORES], Err *err) {
    for (int p = 0; p < N_BASE_PATTERNS; p++)
        for (int s = 0; s < N_BASE_SCORES; s++) {
            Config c = *job;
            c.lora.enabled = false, c.sparsity.permute = false;
            snprintf(c.schedule.mode, sizeof c.schedule.mode, "one_shot");
            snprintf(c.sparsity.score, sizeof c.sparsity.score, "%s", BASELINE_SCORES[s]);
            snprintf(c.sparsity.pattern, sizeof c.sparsity.pattern, "%s", BASELINE_PATTERNS[p]);
            Trainer tr;
            if (trainer_setup(&tr, &c, err)) return err_set(err, "one-shot %s %s: %s", BASELINE_PATTERNS[p], BASELINE_SCORES[s], err->msg);
            acc[p][s] = trainer_evaluate(&tr, NULL);
            printf("   one-shot %-7s %-9s test accuracy %.2f%%\n", BASELINE_PATTERNS[p], BASELINE_SCORES[s], 100 * acc[p][s]);
            trainer_free(&tr);
        }
    return 0;
}

static void print_baselines(FILE *o, float acc[N_BASE_PATTERNS][N_BASE_SCORES], float dense_acc) {
    fprintf(o, "\nTraining-free one-shot pruning (calibration: sparsity.calib_batches training batches), dense %.2f%%\n\n", 100 * dense_acc);
    fprintf(o, "| pattern |");
    for (int s = 0; s < N_BASE_SCORES; s++) fprintf(o, " %s |", BASELINE_SCORES[s]);
    fprintf(o, "\n|---|");
    for (int s = 0; s < N_BASE_SCORES; s++) fprintf(o, "---|");
    fprintf(o, "\n");
    for (int p = 0; p < N_BASE_PATTERNS; p++) {
        fprintf(o, "| %s |", BASELINE_PATTERNS[p]);
        for (int s = 0; s < N_BASE_SCORES; s++) fprintf(o, " %.2f%% |", 100 * acc[p][s]);
        fprintf(o, "\n");
    }
}

int cmd_pipeline(int argc, char **argv) {
    Config job;
    int rc = job_from_args(argc, argv, "deit_fmnist_vnm",
                           "usage: vnmtune pipeline [job.yaml] [section.key=value ...]\n\n"
                           "The V:N:M pipeline: the dense model (model.init; trained with the embedded deit_fmnist job if\n"
                           "the file does not exist), one-shot baselines (magnitude / wanda / ria), then one-shot pruning,\n"
                           "fixed-mask LoRA and three-stage LoRA to sparsity.pattern, each without and with channel\n"
                           "permutation; each is merged, exported (V:N:M HDF5), re-loaded from the export and evaluated.\n"
                           "Prints the accuracy tables (also <train.out_dir>/results.md).", &job);
    if (rc) return rc < 0;
    Err err = {0};
    double t0 = now_seconds();
    if (ensure_dense(&job, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    Config dense = job;
    dense.sparsity.enabled = false, dense.lora.enabled = false;
    Trainer tr;
    if (trainer_setup(&tr, &dense, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    float dense_acc = trainer_evaluate(&tr, NULL);
    trainer_free(&tr);
    printf("== dense model test accuracy %.2f%%\n== training-free baselines\n", 100 * dense_acc);
    float base_acc[N_BASE_PATTERNS][N_BASE_SCORES];
    if (one_shot_baselines(&job, base_acc, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    Variant v[] = {{.mode = "one_shot"}, {.mode = "fixed_mask_lora"}, {.mode = "three_stage"},
                   {.mode = "one_shot", .permute = true}, {.mode = "fixed_mask_lora", .permute = true},
                   {.mode = "three_stage", .permute = true}};
    int n = (int)(sizeof v / sizeof *v);
    for (int i = 0; i < n; i++)
        if (run_variant(&job, &v[i], &err)) {
            fprintf(stderr, "vnmtune: error: %s\n", err.msg);
            return 1;
        }
    char path[CFG_STR + 16];
    snprintf(path, sizeof path, "%.200s/results.md", job.train.out_dir);
    FILE *files[2] = {stdout, fopen(path, "w")};
    for (int f = 0; f < 2 && files[f]; f++) {
        FILE *o = files[f];
        fprintf(o, "\n%s, %s, score %s, %s\n\n", job.data.dataset, job.sparsity.pattern, job.sparsity.score, job.source);
        fprintf(o, "| method | permutation | steps | test acc. (merged) | test acc. (export) | vs dense | kept-score gain | time |\n");
        fprintf(o, "|---|---|---|---|---|---|---|---|\n");
        fprintf(o, "| dense | - | - | %.2f%% | - | - | - | - |\n", 100 * dense_acc);
        for (int i = 0; i < n; i++)
            fprintf(o, "| %s | %s | %lld | %.2f%% | %.2f%% | %+.2f | %s%.1f%% | %.0f s |\n", v[i].mode, v[i].permute ? "yes" : "no",
                    (long long)v[i].steps, 100 * v[i].accuracy, 100 * v[i].export_accuracy, 100 * (v[i].accuracy - dense_acc),
                    v[i].permute ? "+" : "", 100 * v[i].permute_gain, v[i].seconds);
        print_baselines(o, base_acc, dense_acc);
        fprintf(o, "\ntotal %.0f s\n", now_seconds() - t0);
    }
    if (files[1]) fclose(files[1]);
    printf("table written to %s\n", path);
    return 0;
}
