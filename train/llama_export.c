#include "llama_export.h"

#include <stdio.h>
#include <string.h>

#include "train/commands.h"
#include "train/llama_eval.h"
#include "train/model_export.h"
#include "train/model_io.h"
#include "train/schedule.h"
#include "train/vnm_export.h"

static bool needs_calibration(const Config *c) { return strcmp(c->sparsity.score, "magnitude") != 0; }

static int check_prune_job(const Config *c, Err *err) {
    const char *src = c->source;
    if (strcmp(c->model.arch, "llama"))
        return err_set(err, "%s: model.arch '%s': prune is for llama (DeiT: vnmtune pipeline, or export with "
                            "schedule.mode one_shot)", src, c->model.arch);
    if (!c->model.init[0]) return err_set(err, "%s: model.init is empty: prune needs the Llama safetensors file", src);
    if (!c->sparsity.enabled) return err_set(err, "%s: sparsity.enabled is false: nothing to prune", src);
    if (needs_calibration(c) && strcmp(c->data.dataset, "tokens"))
        return err_set(err, "%s: sparsity.score %s needs calibration windows of token data: data.dataset tokens and "
                            "data.path = a token file (data.dataset is %s; sparsity.score magnitude needs no data)", src,
                       c->sparsity.score, c->data.dataset);
    return llama_check_config(&c->model, err);
}

// Masks of the target projections (one-shot: the weights are pruned in place; wanda / ria / sparsegpt
// after calibration on sparsity.calib_batches random windows of data.path) -> export.
static int prune_model(LlamaRun *r, const Config *c, Arena *masks, const char *path, Err *err) {
    Schedule s;
    int rc = schedule_init(&s, c, r->m.linears, r->m.n_linears, 0, masks, err);
    if (rc == 0 && schedule_needs_calibration(&s))
        rc = llama_calibrate(r, &s, c->data.path, c->sparsity.calib_batches, c->train.seed, err);
    if (rc == 0) {
        schedule_update_masks(&s);
        rc = model_export_write(&r->m.params, &s, c, path, err);
    }
    schedule_free(&s);
    return rc;
}

int llama_prune_export(const Config *job, const char *path, Err *err) {
    if (check_prune_job(job, err)) return -1;
    Config c = *job;  // what the export records: one-shot pruning, no LoRA
    c.lora.enabled = false;
    snprintf(c.schedule.mode, sizeof c.schedule.mode, "one_shot");
    int batch = c.eval.batch_size < c.sparsity.calib_batches ? c.eval.batch_size : c.sparsity.calib_batches;
    LlamaRun r;  // on the CPU in fp32: the export keeps fp32 dense parameters
    llama_run_init(&r, &c.model, DEV_CPU, needs_calibration(&c) ? batch : 0, c.data.seq_len);
    Arena masks;
    arena_init(&masks, "masks", DEV_CPU, llama_param_bytes(&c.model, DT_U8));  // a byte per weight bounds them
    int rc = model_load_safetensors(&r.m.params, c.model.init, false, err);
    if (rc == 0) rc = prune_model(&r, &c, &masks, path, err);
    llama_run_free(&r);
    arena_free(&masks);
    return rc;
}

int llama_load_export(Llama *m, const char *path, bool sparse, Err *err) {
    return model_export_load(&m->params, m->linears, m->n_linears, path, sparse, err);
}

int llama_export_config(const char *path, ModelConfig *mc, Err *err) {
    Config c;
    if (model_export_config(path, &c, err)) return -1;
    if (strcmp(c.model.arch, "llama")) return err_set(err, "%s: the export is of a '%s' model, not llama", path, c.model.arch);
    *mc = c.model;
    if (llama_check_config(mc, err)) return err_set(err, "%s: %s", path, err->msg);
    return 0;
}

// ---- vnmtune prune ----

static int prune_to(const Config *c, const char *path, Err *err) {
    char dir[CFG_STR + 16];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) *slash = 0;
    if (slash && slash != dir && make_dirs(dir, err)) return -1;
    printf("pruning %s (llama: %d layers, dim %d, ffn %d, vocab %d) to %s, score %s -> %s\n", c->model.init,
           c->model.n_layers, c->model.hidden_size, c->model.intermediate_size, c->model.vocab_size,
           c->sparsity.pattern, c->sparsity.score, path);
    if (needs_calibration(c))
        printf("calibration: %d random windows of %d tokens of %s (seed %llu)\n", c->sparsity.calib_batches,
               c->data.seq_len, c->data.path, (unsigned long long)c->train.seed);
    double t0 = now_seconds();
    if (llama_prune_export(c, path, err)) return -1;
    printf("wrote %s in %.1f s\n", path, now_seconds() - t0);
    return vnm_inspect(path, stdout, err);
}

int cmd_prune(int argc, char **argv) {
    Config c;
    int rc = job_from_args(argc, argv, "llama_tiny_prune",
                           "usage: vnmtune prune [job.yaml] [section.key=value ...]\n\n"
                           "One-shot V:N:M pruning of a Hugging Face Llama (model.arch llama, model.init = its safetensors\n"
                           "file or its shards, comma-separated; the model sizes): the projections sparsity.targets names\n"
                           "(lm_head and the embedding stay dense) get the sparsity.pattern masks of sparsity.score\n"
                           "(V lowered per layer where it does not divide the rows; sparsity.permute searches channel\n"
                           "permutations), and the model is written as a V:N:M export to export.path (default\n"
                           "<train.out_dir>/export.h5). wanda / ria (activation norms) and sparsegpt (Gram matrices of the\n"
                           "projection inputs, weights reconstructed) calibrate on sparsity.calib_batches random windows\n"
                           "of data.seq_len tokens of data.path (data.dataset tokens), eval.batch_size windows a forward,\n"
                           "on the CPU. Evaluate the export with `vnmtune eval job.yaml --model=FILE` (perplexity), time\n"
                           "it with `vnmtune bench infer --export FILE`.", &c);
    if (rc) return rc < 0;
    char path[CFG_STR + 16];
    Err err = {0};
    rc = model_export_path(&c, path, sizeof path, &err) ? -1 : prune_to(&c, path, &err);
    if (rc) fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    return rc ? 1 : 0;
}
