#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "train/trainer.h"

static bool is_override(const char *a) { return strchr(a, '=') != NULL; }

int job_from_args(int argc, char **argv, const char *default_job, Config *c, bool *help) {
    Err err = {0};
    config_defaults(c);
    *help = false;
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) *help = true;
        else if (!is_override(argv[i]) && argv[i][0] != '-') {
            if (file) {
                fprintf(stderr, "vnmtune: error: two job files given ('%s' and '%s')\n", file, argv[i]);
                return -1;
            }
            file = argv[i];
        }
    }
    if (*help) return 0;
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

static void print_job_help(const char *cmd, const char *what) {
    printf("usage: vnmtune %s [job.yaml] [section.key=value ...]\n\n%s\n\n"
           "Without a job file the embedded configs/deit_fmnist.yaml is used. Keys (type, default):\n",
           cmd, what);
    config_print_keys(stdout);
}

static void print_resolved(const Config *c) {
    printf("# resolved job (%s)\n", c->source);
    config_write_yaml(c, stdout);
    printf("\n");
}

int cmd_train(int argc, char **argv) {
    Config c;
    bool help;
    if (job_from_args(argc, argv, "deit_fmnist", &c, &help)) return 1;
    if (help) {
        print_job_help("train", "Trains the job's model: progress every train.log_every steps, metrics as JSONL,\n"
                                "the resolved config and checkpoints in train.out_dir, test accuracy at the end.\n"
                                "checkpoint.resume=FILE continues a run exactly.");
        return 0;
    }
    print_resolved(&c);
    Trainer tr;
    Err err = {0};
    int rc = trainer_setup(&tr, &c, &err);
    if (rc == 0) {
        printf("model: %lld parameters, %lld trainable | %lld steps (%lld per epoch)\n",
               (long long)params_count(&tr.model.params, false), (long long)params_count(&tr.model.params, true),
               (long long)tr.total_steps, (long long)tr.steps_per_epoch);
        double t0 = now_seconds();
        rc = trainer_run(&tr, 0, &err);
        if (rc == 0) printf("done in %.1f s; outputs in %s\n", now_seconds() - t0, c.train.out_dir);
    }
    if (rc) fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    trainer_free(&tr);
    return rc ? 1 : 0;
}

int cmd_eval(int argc, char **argv) {
    Config c;
    bool help;
    if (job_from_args(argc, argv, "deit_fmnist", &c, &help)) return 1;
    if (help) {
        print_job_help("eval", "Evaluates the job's model on its test set: the checkpoint named by checkpoint.resume,\n"
                               "or <train.out_dir>/checkpoint.h5.");
        return 0;
    }
    if (!c.checkpoint.resume[0] &&
        snprintf(c.checkpoint.resume, sizeof c.checkpoint.resume, "%s/checkpoint.h5", c.train.out_dir) >= (int)sizeof c.checkpoint.resume) {
        fprintf(stderr, "vnmtune: error: train.out_dir is too long\n");
        return 1;
    }
    Trainer tr;
    Err err = {0};
    int rc = trainer_setup(&tr, &c, &err);
    if (rc == 0) {
        float loss, acc = trainer_evaluate(&tr, &loss);
        printf("%s: step %lld | test loss %.4f | test accuracy %.2f%%\n", c.checkpoint.resume, (long long)tr.step, loss, 100 * acc);
    } else {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    }
    trainer_free(&tr);
    return rc ? 1 : 0;
}
