#!/usr/bin/env python3
"""Adds VNM_DECODE_ABLATE=bits to kernels/vnm_spmm_decode.cu as of commit e519049 (the B-tile kernel
of Session 19; Session 20, call 1), in place (experiments only; restore the file after). Results
are wrong under it; it only times what a phase costs end to end:
  1: no B build (the B tiles keep whatever they held), 2: x not staged (no copies, no wait),
  4: pull-mode reduction reads only the CTA's own partial sums (no DSMEM loads)."""
import sys

EDITS = [  # (anchor, replacement); each anchor must occur exactly once
    ("    int a_first;\n};", "    int a_first;\n    int ablate;\n};"),
    ("    if (cfg.xbulk) {  // (only with xw > 0)", "    if (cfg.xbulk && !(cfg.ablate & 2)) {  // (only with xw > 0)"),
    ("    if (cfg.xbulk) mbar_wait(xbar, 0);", "    if (cfg.xbulk && !(cfg.ablate & 2)) mbar_wait(xbar, 0);"),
    ("        for (int q = tid; q < triples * reps; q += 128) {",
     "        for (int q = tid; !(cfg.ablate & 1) && q < triples * reps; q += 128) {"),
    ("v[r] = r0 + r < S ? ld_dsmem_f32(smem_u32(mine + i), r0 + r) : 0.0f;",
     "v[r] = r0 + r < S ? ((cfg.ablate & 4) ? mine[i] : ld_dsmem_f32(smem_u32(mine + i), r0 + r)) : 0.0f;"),
    ("    c.xp = c.xw + 8 * env.xpad;", "    c.xp = c.xw + 8 * env.xpad;\n    c.ablate = env_int(\"VNM_DECODE_ABLATE\", 0, 0, 7);"),
]

path = sys.argv[1] if len(sys.argv) > 1 else "kernels/vnm_spmm_decode.cu"
with open(path) as f:
    text = f.read()
for anchor, replacement in EDITS:
    if text.count(anchor) != 1:
        sys.exit(f"ablate_patch: anchor found {text.count(anchor)} times: {anchor[:70]!r}")
    text = text.replace(anchor, replacement)
with open(path, "w") as f:
    f.write(text)
