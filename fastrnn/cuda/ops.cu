// Non-recurrent ops: embedding gather / scatter-add, softmax cross-entropy, dropout.
//
// Compiled through fastrnn/cuda/compile.py with -DFASTRNN_REAL=float|double. No standard headers
// (NVRTC has none). Shapes: M rows (= N*T), D embedding width, V vocabulary / classes.
// Index arrays arrive as int64 (the host converts once).

#ifndef FASTRNN_REAL
#define FASTRNN_REAL float
#endif
typedef FASTRNN_REAL real;

#define RED_THREADS 256

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }

// ---------------------------------------------------------------------------------- embedding
// out (M, D) = W[idx] ; grid-stride over the M*D outputs, one row's D values contiguous.
extern "C" __global__ void embedding_gather(const real* __restrict__ W, const long long* __restrict__ idx,
                                            real* __restrict__ out, long long M, long long D) {
    const long long total = M * D;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long m = i / D, d = i - m * D;
        out[i] = W[idx[m] * D + d];
    }
}

// dW (V, D) += dout rows by idx; dW zeroed by the host first. Repeated ids collide, hence atomics
// (the summation order, and so the last bits, vary between runs).
extern "C" __global__ void embedding_scatter_add(const real* __restrict__ dout, const long long* __restrict__ idx,
                                                 real* dW, long long M, long long D) {
    const long long total = M * D;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long m = i / D, d = i - m * D;
        atomicAdd(dW + idx[m] * D + d, dout[i]);
    }
}

// ------------------------------------------------------------------------ softmax cross-entropy
// Number of labels != -1, written to count[0]. One block.
extern "C" __global__ void xent_count(const long long* __restrict__ t, long long M, long long* count) {
    __shared__ long long part[RED_THREADS];
    long long c = 0;
    for (long long i = threadIdx.x; i < M; i += blockDim.x) c += t[i] != -1;
    part[threadIdx.x] = c;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) count[0] = part[0];
}

// Merge two (max, sum of exp(x - max)) pairs.
__device__ __forceinline__ void lse_merge(real& m, real& s, real m2, real s2) {
    if (m2 > m) {
        s = s * exp_(m - m2) + s2;
        m = m2;
    } else if (m2 == m) {
        s = s + s2;  // also the case m = m2 = -inf, where exp(m - m2) would be NaN
    } else {
        s = s + s2 * exp_(m2 - m);
    }
}

// One block per row: online max / sum over the row, block reduction, then the row's loss share
// (already divided by the valid count) into rowloss[m] and, when grad, the gradient row.
extern "C" __global__ void __launch_bounds__(RED_THREADS) xent_rows(
        const real* __restrict__ x, const long long* __restrict__ t, const long long* __restrict__ count,
        real* __restrict__ dx, double* __restrict__ rowloss, long long M, long long V, int grad) {
    __shared__ real sm[RED_THREADS / 32], ss[RED_THREADS / 32];
    const real neg_inf = -real(1) / real(0);
    for (long long row = blockIdx.x; row < M; row += gridDim.x) {
        const real* xr = x + row * V;
        real m = neg_inf, s = real(0);
        for (long long v = threadIdx.x; v < V; v += blockDim.x) lse_merge(m, s, xr[v], real(1));
        for (int off = 16; off > 0; off >>= 1) {
            const real m2 = __shfl_xor_sync(0xffffffffu, m, off);
            const real s2 = __shfl_xor_sync(0xffffffffu, s, off);
            lse_merge(m, s, m2, s2);
        }
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        if (lane == 0) { sm[warp] = m; ss[warp] = s; }
        __syncthreads();
        m = sm[0];
        s = ss[0];
        for (int w = 1; w < RED_THREADS / 32; ++w) lse_merge(m, s, sm[w], ss[w]);
        __syncthreads();  // sm/ss are rewritten by the next row

        const long long label = t[row];
        const bool valid = label != -1;
        const long long cnt = count[0] > 0 ? count[0] : 1;
        if (threadIdx.x == 0)
            rowloss[row] = valid ? -((double)(xr[label] - m) - (double)log_(s)) / (double)cnt : 0.0;
        if (grad) {
            // Same order of operations as the reference: (e / s - onehot) * (valid / count).
            const real scale = valid ? (real)(1.0 / (double)cnt) : real(0);
            for (long long v = threadIdx.x; v < V; v += blockDim.x) {
                real p = exp_(xr[v] - m) / s;
                if (v == label) p -= real(1);
                dx[row * V + v] = p * scale;
            }
        }
    }
}

// loss[0] = sum(rowloss), in a fixed order (deterministic). One block.
extern "C" __global__ void xent_sum(const double* __restrict__ rowloss, long long M, real* loss) {
    __shared__ double part[RED_THREADS];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < M; i += blockDim.x) acc += rowloss[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = (real)part[0];
}

// -------------------------------------------------------------------------------------- dropout
// The reference's counter hash (fastrnn/reference/ops.py): the draw for flat index k is
// splitmix64(seed + (k + 1) * golden) >> 40; drop when the draw is below `threshold`.
// Unsigned 64-bit arithmetic wraps exactly like NumPy's uint64, so masks are bit-identical.
extern "C" __global__ void dropout_forward(const real* __restrict__ x, real* __restrict__ y,
                                           real* __restrict__ mask, long long n, unsigned long long seed,
                                           unsigned long long threshold, double scale) {
    const real keep_value = (real)scale;  // the reference casts 1/(1-ratio) to x.dtype
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        const real mk = (z >> 40) >= threshold ? keep_value : real(0);
        mask[i] = mk;
        y[i] = x[i] * mk;
    }
}
