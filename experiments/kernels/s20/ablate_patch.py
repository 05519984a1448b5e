#!/usr/bin/env python3
"""Adds VNM_DECODE_ABLATE=bits to kernels/vnm_spmm_decode.cu as of commit e519049 (the B-tile kernel of
Session 19; session 20 call 1) in place (experiments only; restore the
file after). Results are wrong under it; it only times what a phase costs end to end:
  1: no B build (the B tiles keep whatever they held), 2: x not staged (no copies, no wait),
  4: pull-mode reduction reads only the CTA's own partial sums (no DSMEM loads)."""
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "kernels/vnm_spmm_decode.cu"
s = open(path).read()


def rep(a, b):
    global s
    if s.count(a) != 1:
        sys.exit(f"ablate_patch: anchor found {s.count(a)} times: {a[:70]!r}")
    s = s.replace(a, b)


rep("    int a_first;\n};", "    int a_first;\n    int ablate;\n};")
rep("    if (cfg.xbulk) {  // (only with xw > 0)", "    if (cfg.xbulk && !(cfg.ablate & 2)) {  // (only with xw > 0)")
rep("    if (cfg.xbulk) mbar_wait(xbar, 0);", "    if (cfg.xbulk && !(cfg.ablate & 2)) mbar_wait(xbar, 0);")
rep("        for (int q = tid; q < triples * reps; q += 128) {", "        for (int q = tid; !(cfg.ablate & 1) && q < triples * reps; q += 128) {")
rep("v[r] = r0 + r < S ? ld_dsmem_f32(smem_u32(mine + i), r0 + r) : 0.0f;",
    "v[r] = r0 + r < S ? ((cfg.ablate & 4) ? mine[i] : ld_dsmem_f32(smem_u32(mine + i), r0 + r)) : 0.0f;")
rep("    c.xp = c.xw + 8 * env.xpad;", "    c.xp = c.xw + 8 * env.xpad;\n    c.ablate = env_int(\"VNM_DECODE_ABLATE\", 0, 0, 7);")
open(path, "w").write(s)
