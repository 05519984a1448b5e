#!/usr/bin/env python3
"""Summary of an ncu source page (ncu_source.sh's CSV, SASS with warp-stall samples): the share of
samples at each mbarrier try_wait (with the branch that retries it, keyed by the barrier's shared
offset), at HGMMA issue, and the top instructions with their main stall reasons.
    python3 experiments/kernels/ncu_source_summary.py FILE.csv [--top N]"""
import csv
import re
import sys


def summary(path, top):
    rows = list(csv.reader(open(path)))
    kernel, hdr, data = rows[0][1] if len(rows[0]) > 1 else "?", rows[1], rows[2:]
    col = {h: i for i, h in enumerate(hdr)}
    S = col["Warp Stall Sampling (All Samples)"]
    samples = lambda r: int(r[S] or 0)
    total = sum(samples(r) for r in data) or 1
    print(f"## {kernel}  ({total} samples)")
    waits, hgmma = {}, 0
    for i, r in enumerate(data):
        if "TRYWAIT" in r[1]:
            m = re.search(r"\+(0x[0-9a-f]+)\]", r[1])
            key = m.group(1) if m else "?"
            waits[key] = waits.get(key, 0) + samples(r) + (samples(data[i + 1]) if i + 1 < len(data) else 0)
        if "HGMMA" in r[1]:
            hgmma += samples(r)
    shares = ", ".join(f"+{k}: {v / total * 100:.1f} %" for k, v in sorted(waits.items()))
    print(f"barrier waits (try_wait + its branch): {shares}; HGMMA issue {hgmma / total * 100:.1f} %")
    reasons = [i for i, h in enumerate(hdr) if h.startswith("stall_") and "Not Issued" not in h]
    for r in sorted(data, key=lambda r: -samples(r))[:top]:
        main = [(hdr[i][6:], int(r[i] or 0)) for i in reasons if int(r[i] or 0) > 0.2 * samples(r)]
        print(f"{samples(r) / total * 100:5.1f} %  {r[1].strip()[:64]:64s} {main[:3]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    top = 12
    if "--top" in args:
        k = args.index("--top")
        top = int(args[k + 1])
        del args[k : k + 2]
    if not args:
        sys.exit(__doc__)
    for f in args:
        summary(f, top)
