#!/usr/bin/env python3
"""Convert ImageFolder-style trees (e.g. ImageNet) to vnmtune's HDF5 image set format.

Input: SRC/<split>/<class>/<image>, for each split given (default: train and val). Class
indices are the sorted class folder names of the first split (as torchvision's ImageFolder);
the other splits must use the same folder names.

Each image is converted to RGB (or L with --channels 1), resized so that its short side is
--size S (bilinear, antialiased), then center cropped to S x S.

Output, one file per split, OUT_DIR/<split>.h5 (the format of data/imageset.h):
  /images  uint8 (N, S, S, C)
  /labels  int32 (N)
  root attributes: num_classes (int64), name (string), class_names (newline-joined folder
  names; extra, ignored by the C reader)
Files are written to OUT_DIR/<split>.h5.tmp and renamed when complete.

Examples:
  python data/images_to_h5.py /data/imagenet /data/imagenet-h5 --size 224 --name imagenet
  python data/images_to_h5.py /data/imagenet /tmp/in-small --size 64 --limit-per-class 10 --shuffle 0

Needs numpy, h5py and Pillow.
"""
import argparse
import multiprocessing as mp
import os
import sys

import h5py
import numpy as np
from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def list_classes(split_dir):
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        sys.exit(f"{split_dir}: no class folders")
    return classes


def list_samples(split_dir, class_index, limit_per_class):
    """(path, label) pairs in class order, then sorted file name order."""
    samples = []
    for name in sorted(e.name for e in os.scandir(split_dir) if e.is_dir()):
        if name not in class_index:
            sys.exit(f"{split_dir}/{name}: class folder not in the first split's classes")
        files = []
        for root, _, names in sorted(os.walk(os.path.join(split_dir, name), followlinks=True)):
            files += [os.path.join(root, f) for f in sorted(names) if f.lower().endswith(IMG_EXTENSIONS)]
        if limit_per_class:
            files = files[:limit_per_class]
        samples += [(f, class_index[name]) for f in files]
    return samples


def resize_center_crop(img, size):
    """Short side to `size`, then the central size x size square (torchvision's rounding)."""
    w, h = img.size
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    img = img.resize((nw, nh), Image.BILINEAR)
    left = int(round((nw - size) / 2.0))
    top = int(round((nh - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def load_image(job):
    path, size, channels = job
    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            arr = np.asarray(resize_center_crop(img, size), dtype=np.uint8)
    except Exception as e:  # report which file, then stop
        raise RuntimeError(f"{path}: cannot read image: {e}") from e
    return arr.reshape(size, size, channels)


def write_split(samples, out_path, args, classes):
    n, s, c = len(samples), args.size, args.channels
    tmp = out_path + ".tmp"
    block = 256
    opts = {"compression": "gzip", "compression_opts": 4} if args.compression else {}
    with h5py.File(tmp, "w") as f:
        images = f.create_dataset("images", (n, s, s, c), dtype=np.uint8,
                                  chunks=(min(n, 64), s, s, c), **opts)
        f.create_dataset("labels", data=np.array([lab for _, lab in samples], dtype=np.int32).reshape(n))
        f.attrs["num_classes"] = np.int64(len(classes))
        # Fixed-length byte strings: what vnmtune's own writer stores (h5py's default, variable
        # length UTF-8, needs a charset-aware reader).
        f.attrs["name"] = np.bytes_(args.name.encode())
        f.attrs["class_names"] = np.bytes_("\n".join(classes).encode())
        jobs = [(p, s, c) for p, _ in samples]
        buf = np.empty((block, s, s, c), dtype=np.uint8)
        with mp.Pool(args.workers) as pool:
            for i, arr in enumerate(pool.imap(load_image, jobs, chunksize=16)):
                buf[i % block] = arr
                if i % block == block - 1 or i == n - 1:
                    start = i - i % block
                    images[start:i + 1] = buf[:i + 1 - start]
                if args.verbose and (i + 1) % 10000 == 0:
                    print(f"  {out_path}: {i + 1}/{n}", flush=True)
    os.replace(tmp, out_path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="root holding one ImageFolder tree per split")
    ap.add_argument("out_dir", help="where <split>.h5 files are written (created if missing)")
    ap.add_argument("--size", type=int, required=True, help="S: short side resize and square crop size")
    ap.add_argument("--splits", default="train,val", help="comma separated split folders (default train,val)")
    ap.add_argument("--name", default=None, help="data set name attribute (default: basename of src)")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3, help="3 = RGB, 1 = grayscale")
    ap.add_argument("--limit-per-class", type=int, default=0, help="keep only the first K images per class")
    ap.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                    help="store samples in a random order (so that the first N are a random subset)")
    ap.add_argument("--compression", action="store_true", help="gzip-compress /images (smaller, slower)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.size < 1:
        ap.error("--size must be >= 1")
    args.name = args.name or os.path.basename(os.path.normpath(args.src))
    splits = [s for s in args.splits.split(",") if s]
    classes = list_classes(os.path.join(args.src, splits[0]))
    class_index = {name: i for i, name in enumerate(classes)}
    os.makedirs(args.out_dir, exist_ok=True)
    for split in splits:
        samples = list_samples(os.path.join(args.src, split), class_index, args.limit_per_class)
        if not samples:
            sys.exit(f"{os.path.join(args.src, split)}: no images")
        if args.shuffle is not None:
            order = np.random.default_rng(args.shuffle).permutation(len(samples))
            samples = [samples[i] for i in order]
        out_path = os.path.join(args.out_dir, split + ".h5")
        write_split(samples, out_path, args, classes)
        print(f"wrote {out_path}: {len(samples)} images {args.size}x{args.size}x{args.channels}, "
              f"{len(classes)} classes ({args.name})")


if __name__ == "__main__":
    main()
