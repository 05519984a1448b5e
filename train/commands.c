#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "train/dist.h"
#include "train/llama_eval.h"
#include "train/pipeline.h"
#include "train/trainer.h"
#include "train/vnm_export.h"
#include "train/vnm_linear.h"

static bool is_override(const char *a) { return a[0] != '-' && strchr(a, '=') != NULL; }

int job_from_args(int argc, char **argv, const char *default_job, const char *usage, Config *c) {
    Err err = {0};
    config_defaults(c);
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s\n\nWithout a job file the embedded configs/%s.yaml is used. Keys (type, default):\n", usage, default_job);
            config_print_keys(stdout);
            return 1;
        }
        if (argv[i][0] == '-' && strncmp(argv[i], "--model=", 8)) {
            fprintf(stderr, "vnmtune: error: unknown option '%s' (see --help)\n", argv[i]);
            return -1;
        }
        if (!is_override(argv[i]) && argv[i][0] != '-') {
            if (file) {
                fprintf(stderr, "vnmtune: error: two job files given ('%s' and '%s')\n", file, argv[i]);
                return -1;
            }
            file = argv[i];
        }
    }
    int rc;
    if (file) {
        rc = config_load_file(c, file, &err);
    } else {
        const char *text = embedded_config(default_job);
        if (!text) fatal("no embedded job '%s'", default_job);
        char source[64];
        snprintf(source, sizeof source, "<embedded configs/%s.yaml>", default_job);
        rc = config_load_string(c, text, source, &err);
    }
    for (int i = 0; i < argc && rc == 0; i++)
        if (is_override(argv[i])) rc = config_override(c, argv[i], &err);
    if (rc == 0) rc = config_validate(c, &err);
    if (rc) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void print_resolved(const Config *c) {
    printf("# resolved job (%s)\n", c->source);
    config_write_yaml(c, stdout);
    printf("\n");
}

static void print_model(const Trainer *tr) {
    printf("model: %lld parameters, %lld trainable | %lld steps (%lld per epoch)\n",
           (long long)params_count(tr->net.params, false), (long long)params_count(tr->net.params, true),
           (long long)tr->total_steps, (long long)tr->steps_per_epoch);
    if (tr->ranks > 1)
        printf("data parallel: %d processes, %d of the %d samples of every batch each; gradients averaged\n",
               tr->ranks, tr->local_batch, tr->cfg.train.batch_size);
}

// With several processes an error ends them all: the others may be waiting for this one.
static void train_error(const Err *err) {
    if (dist_size() < 2) {
        fprintf(stderr, "vnmtune: error: %s\n", err->msg);
        return;
    }
    fprintf(stderr, "vnmtune: error (rank %d): %s\n", dist_rank(), err->msg);
    dist_abort(1);
}

int cmd_train(int argc, char **argv) {
    Config c;
    int rc = job_from_args(argc, argv, "deit_fmnist",
                           "usage: vnmtune train [job.yaml] [section.key=value ...]\n\n"
                           "Trains the job's model: progress every train.log_every steps, metrics as JSONL, the resolved\n"
                           "config, checkpoints and model.safetensors in train.out_dir, test accuracy at the end.\n"
                           "checkpoint.resume=FILE continues a run exactly.\n"
                           "model.arch llama: LoRA on token data (data.dataset tokens): train.batch_size windows of\n"
                           "data.seq_len tokens of data.path at seeded random offsets a step, perplexity on data.test_path\n"
                           "(example: configs/llama_tiny_lora.yaml).", &c);
    if (rc) return rc < 0;
    Trainer tr = {0};
    Err err = {0};
    if ((rc = dist_init(c.dist.backend, &err)) == 0) {
        bool lead = dist_rank() == 0;  // rank 0 prints (and, in trainer_run, writes the outputs)
        if (lead) print_resolved(&c);
        rc = trainer_setup(&tr, &c, &err);
        if (rc == 0 && lead) print_model(&tr);
        double t0 = now_seconds();
        if (rc == 0) rc = trainer_run(&tr, c.train.until, &err);
        if (rc == 0 && lead) printf("done in %.1f s; outputs in %s\n", now_seconds() - t0, c.train.out_dir);
    }
    if (rc) train_error(&err);
    trainer_free(&tr);
    dist_finalize();
    return rc ? 1 : 0;
}

static const char *model_arg(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "--model=", 8)) return argv[i] + 8;
    return NULL;
}

int cmd_eval(int argc, char **argv) {
    Config c;
    int rc = job_from_args(argc, argv, "deit_fmnist",
                           "usage: vnmtune eval [job.yaml] [--model=FILE] [section.key=value ...]\n\n"
                           "Evaluates the job's model on its test set. FILE is a checkpoint or a V:N:M export (vnmtune\n"
                           "export); without --model: checkpoint.resume, or <train.out_dir>/checkpoint.h5.\n"
                           "model.arch llama: perplexity on data.test_path (data.dataset tokens, a token file in llm.c's\n"
                           "format) in windows of data.seq_len tokens, eval.batch_size windows at a time, the first\n"
                           "data.test_limit windows (0 = all); FILE is a HF safetensors file (shards comma-separated) or\n"
                           "a V:N:M export of vnmtune prune (sizes from the export); without --model: model.init.", &c);
    if (rc) return rc < 0;
    const char *model = model_arg(argc, argv);
    if (!strcmp(c.model.arch, "llama")) return llama_eval_main(&c, model);
    bool is_export = model && vnm_export_is_export(model);
    if (is_export) {  // an export holds merged dense + V:N:M weights: no LoRA, no masks to build
        c.lora.enabled = c.sparsity.enabled = false;
        c.checkpoint.resume[0] = 0;
    } else if (model) {
        snprintf(c.checkpoint.resume, sizeof c.checkpoint.resume, "%s", model);
    }
    Trainer tr = {0};  // freed on every path, also when setup never ran
    Err err = {0};
    rc = !model && job_resume_default(&c, &err) ? -1 : trainer_setup(&tr, &c, &err);
    if (rc == 0 && is_export) rc = model_load_export(&tr.model, model, true, &err);
    if (rc == 0) {
        float loss, acc = trainer_evaluate(&tr, &loss);
        printf("%s: test loss %.4f | test accuracy %.2f%%\n", model ? model : c.checkpoint.resume, loss, 100 * acc);
        linear_print_kernels(stdout, tr.model.linears, tr.model.n_linears);  // which kernel each sparse layer ran
    } else {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    }
    trainer_free(&tr);
    return rc ? 1 : 0;
}
