// Standalone driver for kernels/bench_spmm.cu (the same code as `vnmtune bench spmm`).
int bench_spmm_main(int argc, char **argv);
int main(int argc, char **argv) { return bench_spmm_main(argc, argv); }
