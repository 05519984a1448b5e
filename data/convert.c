// `vnmtune convert`: source data sets -> HDF5 image sets.
#include "data/convert.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fmnist.h"
#include "data/imageset.h"
#include "data/tokens.h"

static int ensure_dir(const char *dir, Err *err) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 0;
        return err_set(err, "%s: exists and is not a directory", dir);
    }
    return err_set(err, "%s: cannot create directory: %s", dir, strerror(errno));
}

int imageset_convert_fmnist(const char *dir, const char *out_dir, Err *err) {
    if (ensure_dir(out_dir, err)) return -1;
    const char *splits[2] = {"train", "test"};
    for (int i = 0; i < 2; i++) {
        ImageSet s;
        char path[1024];
        if (fmnist_load(dir, splits[i], &s, err)) return -1;
        imageset_split_path(path, sizeof path, out_dir, splits[i]);
        int rc = imageset_write_h5(path, &s, err);
        if (rc == 0)
            printf("wrote %s: %lld images %dx%dx%d, %d classes (%s)\n", path, (long long)s.n, s.h, s.w, s.c,
                   s.num_classes, s.name);
        imageset_free(&s);
        if (rc) return -1;
    }
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: vnmtune convert fashion_mnist <idx_dir> <out_dir>\n"
                    "       vnmtune convert tokens <ids.txt> <out.bin>\n"
                    "  writes <out_dir>/train.h5 and <out_dir>/test.h5 (HDF5 image sets: /images uint8\n"
                    "  (N,H,W,C), /labels int32 (N), attributes num_classes, name). Debian's\n"
                    "  dataset-fashion-mnist installs the idx files in " FMNIST_DEFAULT_DIR ".\n"
                    "  For ImageFolder trees (ImageNet) use data/images_to_h5.py.\n"
                    "  tokens: token ids (whitespace or commas between them) -> a token file in llm.c's\n"
                    "  format (256 int32 header, uint16 tokens; data/tokens.h) for data.dataset tokens.\n");
    return 2;
}

int data_convert_main(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) return usage();
    Err err = {{0}};
    if (strcmp(argv[1], "fashion_mnist") == 0) {
        if (imageset_convert_fmnist(argv[2], argv[3], &err) == 0) return 0;
    } else if (strcmp(argv[1], "tokens") == 0) {
        if (tokens_convert_text(argv[2], argv[3], &err) == 0) return 0;
    } else {
        fprintf(stderr, "vnmtune convert: unknown data set kind '%s' (known: fashion_mnist, tokens)\n", argv[1]);
        return usage();
    }
    fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    return 1;
}
