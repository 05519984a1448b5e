#!/usr/bin/env bash
# Libraries the GPU machine lacks (Criterion, libyaml, cJSON, HDF5 headers), as Debian packages.
#   scripts/deps.sh download        here (has network): fetch the .deb files into .deps/ (git-ignored)
#   scripts/deps.sh unpack [PREFIX] there (no network): dpkg -x each into PREFIX (default /opt/vnmdeps)
# Then configure with -DVNMTUNE_DEPS_PREFIX=PREFIX (headers and rpath come from there); scripts/gpu-test.sh
# does all of it on the GPU machine (run `scripts/deps.sh download` here and carry .deps).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="libcriterion-dev libcriterion3 libgit2-1.5 libnanomsg5 libhttp-parser2.9 libmbedtls14 libmbedcrypto7
      libmbedx509-1 libssh2-1 libyaml-dev libyaml-0-2 libcjson-dev libcjson1
      libhdf5-dev libhdf5-103-1 libhdf5-hl-100 libaec0 libsz2"
case "${1:-}" in
  download)
    mkdir -p .deps
    (cd .deps && apt-get download $PKGS)
    ls -la .deps ;;
  unpack)
    prefix="${2:-/opt/vnmdeps}"
    mkdir -p "$prefix"
    for f in .deps/*.deb; do dpkg -x "$f" "$prefix"; done
    # the -dev packages ship .so links that point at the runtime packages' files: both are here now
    echo "unpacked $(ls .deps/*.deb | wc -l) packages into $prefix" ;;
  *) echo "usage: $0 download | unpack [PREFIX]" >&2; exit 2 ;;
esac
