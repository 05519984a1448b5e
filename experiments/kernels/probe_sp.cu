// Probe: which metadata bit layout does mma.sp m16n8k32 bf16 use? One warp, one instruction,
// small-integer data (exact), several candidate layouts; prints the max error of each.
// Build: nvcc -arch=sm_90a -o probe_sp probe_sp.cu
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

__global__ void probe(const unsigned *afrag, const unsigned *bfrag, const unsigned *meta, float *d) {
    int lane = threadIdx.x;
    unsigned a0 = afrag[lane * 4], a1 = afrag[lane * 4 + 1], a2 = afrag[lane * 4 + 2], a3 = afrag[lane * 4 + 3];
    unsigned b0 = bfrag[lane * 4], b1 = bfrag[lane * 4 + 1], b2 = bfrag[lane * 4 + 2], b3 = bfrag[lane * 4 + 3];
    float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;"
        : "+f"(c0), "+f"(c1), "+f"(c2), "+f"(c3)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(b2), "r"(b3), "r"(meta[lane]));
    int g = lane >> 2, tig = lane & 3;
    d[g * 8 + 2 * tig] = c0, d[g * 8 + 2 * tig + 1] = c1, d[(g + 8) * 8 + 2 * tig] = c2, d[(g + 8) * 8 + 2 * tig + 1] = c3;
}

static unsigned short bf(float f) { __nv_bfloat16 h = __float2bfloat16(f); return *(unsigned short *)&h; }

int main() {
    static const int codes[6][2] = {{0, 1}, {0, 2}, {1, 2}, {0, 3}, {1, 3}, {2, 3}};
    int code[16][8], pos[16][8][2];
    float val[16][8][2], A[16][32] = {{0}}, B[32][8], ref[16][8];
    srand(1);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 8; c++) {
            int k = rand() % 6;
            pos[r][c][0] = codes[k][0], pos[r][c][1] = codes[k][1];
            code[r][c] = codes[k][0] | (codes[k][1] << 2);
            for (int v = 0; v < 2; v++) val[r][c][v] = (float)(rand() % 7 - 3), A[r][4 * c + pos[r][c][v]] = val[r][c][v];
        }
    for (int k = 0; k < 32; k++)
        for (int n = 0; n < 8; n++) B[k][n] = (float)(rand() % 5 - 2);
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 8; n++) {
            ref[r][n] = 0;
            for (int k = 0; k < 32; k++) ref[r][n] += A[r][k] * B[k][n];
        }
    unsigned af[128], bfr[128], meta[32];
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, tig = lane & 3;
        int rows[4] = {g, g + 8, g, g + 8}, chunks[4] = {tig, tig, tig + 4, tig + 4};
        for (int i = 0; i < 4; i++)
            af[lane * 4 + i] = bf(val[rows[i]][chunks[i]][0]) | ((unsigned)bf(val[rows[i]][chunks[i]][1]) << 16);
        for (int i = 0; i < 4; i++)
            bfr[lane * 4 + i] = bf(B[8 * i + 2 * tig][g]) | ((unsigned)bf(B[8 * i + 2 * tig + 1][g]) << 16);
    }
    unsigned *da, *db, *dm;
    float *dd, out[128];
    cudaMalloc(&da, 512), cudaMalloc(&db, 512), cudaMalloc(&dm, 128), cudaMalloc(&dd, 512);
    cudaMemcpy(da, af, 512, cudaMemcpyHostToDevice), cudaMemcpy(db, bfr, 512, cudaMemcpyHostToDevice);
    const char *names[] = {"H1 (notes: h=0 chunks0-3/h=1 chunks4-7; lo=row g, hi=row g+8)",
                           "H2 (h=0 row g chunks 0-7, h=1 row g+8 chunks 0-7)",
                           "H3 (h=0: chunk j row g at 8j, row g+8 at 8j+4, chunks 0-3; h=1 chunks 4-7)"};
    for (int h = 0; h < 3; h++) {
        for (int lane = 0; lane < 32; lane++) {
            int g = lane >> 2, p = lane & 1;
            unsigned w = 0;
            for (int j = 0; j < 4; j++) {
                if (h == 0) w |= (unsigned)code[g][4 * p + j] << (4 * j) | (unsigned)code[g + 8][4 * p + j] << (16 + 4 * j);
                if (h == 1) w |= (unsigned)code[p ? g + 8 : g][j] << (4 * j) | (unsigned)code[p ? g + 8 : g][4 + j] << (16 + 4 * j);
                if (h == 2) w |= (unsigned)code[g][4 * p + j] << (8 * j) | (unsigned)code[g + 8][4 * p + j] << (8 * j + 4);
            }
            meta[lane] = w;
        }
        cudaMemcpy(dm, meta, 128, cudaMemcpyHostToDevice);
        probe<<<1, 32>>>(da, db, dm, dd);
        cudaError_t e = cudaMemcpy(out, dd, 512, cudaMemcpyDeviceToHost);
        float worst = 0;
        for (int i = 0; i < 128; i++) {
            float dlt = out[i] - ref[i / 8][i % 8];
            if (dlt < 0) dlt = -dlt;
            if (dlt > worst) worst = dlt;
        }
        printf("probe mma.sp meta %s: max err %g (%s)\n", names[h], worst, cudaGetErrorString(e));
    }
    return 0;
}
