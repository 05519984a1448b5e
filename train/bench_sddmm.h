// `vnmtune bench sddmm` (CPU): masked-LoRA weight gradient, dense dyᵀx vs the V:N:M SDDMM.
#pragma once

int bench_sddmm_main(int argc, char **argv);
