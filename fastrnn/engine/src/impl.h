/* One instruction set and one precision of the engine; engine.c includes this file once per
 * (ISA, dtype) after defining:
 *   REAL      float or double          VL     lanes of one SIMD vector of REAL
 *   SFX       name suffix, e.g. f32_avx512
 *   ATTR      the function attribute that selects the instruction set (may be empty)
 *   MR1..MR4  rows of the register tile for 1..4 vectors of columns
 *   NV_MAX    the widest register tile worth calling (2 or 4 vectors): a recurrence's tiles
 *             of 4 run in halves where it is 2, the products' tiles are NV_MAX wide
 *   IS_F64    1 for double
 *
 * Everything here is one register-blocked microkernel (mr rows x nv vectors of columns) fed
 * from packed panels, used three ways:
 *
 * - the recurrence (the same decomposition as the CUDA persistent kernel): hidden units are
 *   cut into "unit vectors" of VL consecutive units; a tile is U unit vectors with all G gate
 *   columns of those units, so the gate math of a tile needs no data from other tiles. Each
 *   tile's columns of Wh (forward) or rows of Wh (backward, for dA @ Wh^T) are packed once per
 *   call into a panel [k][g][u] with zeros past H. Per step a tile multiplies all N rows of the
 *   shared operand (h_prev, r*h_prev or dA) by its panel into a small block in L1, applies the
 *   gate epilogue from there and writes its units of the outputs. Forward, a step is one phase
 *   (two for the reset-before GRU, whose candidate product needs every r*h_prev unit); backward,
 *   a tile computes its units of dh_{t+1} = dA_{t+1} @ Wh^T and then their gate gradients of
 *   step t, so a step is one phase too (two for the reset-before GRU). Where one thread's
 *   panels fit its L2, threads take whole rows through every step instead (rows_apart).
 * - the matrix products around it (gemm below): the same microkernel over kc-deep
 *   blocks of a packed A (any row gather, transposed or not) and a packed B, with a store / add
 *   / bias epilogue. A layer op runs its products and its recurrence in one parallel region.
 * - plain matrix products (fr_matmul).
 *
 * Work is cut into items (tiles, column groups, row blocks) that threads claim, their own range
 * first (engine.c has the scheduler); threads meet when every item of a phase is done. Every
 * output element is summed in an order fixed by the shapes alone, so results do not depend on
 * the thread count or on which thread did an item.
 */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

typedef REAL FN(vec) __attribute__((vector_size(VL * sizeof(REAL)), aligned(VL * sizeof(REAL))));
#define V FN(vec)

/* ---------------------------------------------------------------------------- math
 * Branch-free exp: x = k ln2 + r, a polynomial for exp(r), 2^k from exponent bits. Each
 * function exists for one REAL and for a vector V of VL of them, from one body: the epilogues
 * below run whole vectors and finish a row's last H % VL units with the scalar twin, which
 * computes bit-identical values.
 * - Clamping selects on `x < lo`, which is false for NaN, so a NaN input stays NaN (min/max
 *   idioms would replace it with the bound); inf clamps to the range and saturates.
 * - k is read from the bits of t = x log2(e) + 1.5*2^m (m = mantissa bits), whose last bits
 *   hold round(x log2(e)): no float-to-int conversion, which would not vectorize for double
 *   without AVX-512DQ.
 * - tanh(x) = 2/(1+exp(-2x)) - 1 and sigmoid(x) = (tanh(x/2) + 1)/2 round to exactly +-1 and
 *   0/1 at the same inputs as NumPy's tanh-based reference, so saturated gates give the
 *   reference's exact zeros in (1 - f) and friends, not tiny values that a huge gradient would
 *   blow up. */
#if IS_F64
typedef long long FN(ibits);
#define EXP_LO (-708.0)
#define EXP_HI 709.0
#define EXP_RND 6755399441055744.0 /* 1.5 * 2^52 */
#define EXP_LN2HI 6.93147180369123816490e-01
#define EXP_LN2LO 1.90821492927058770002e-10
#define EXP_BIAS 1023
#define EXP_MANT 52
/* Taylor to degree 12 on |r| <= ln2/2: truncation error below 2e-16 */
#define EXP_POLY(T, r)                                                                        \
    T p = SPLAT(T, 1.0 / 479001600.0);                                                        \
    p = p * r + 1.0 / 39916800.0;                                                             \
    p = p * r + 1.0 / 3628800.0;                                                              \
    p = p * r + 1.0 / 362880.0;                                                               \
    p = p * r + 1.0 / 40320.0;                                                                \
    p = p * r + 1.0 / 5040.0;                                                                 \
    p = p * r + 1.0 / 720.0;                                                                  \
    p = p * r + 1.0 / 120.0;                                                                  \
    p = p * r + 1.0 / 24.0;                                                                   \
    p = p * r + 1.0 / 6.0;                                                                    \
    p = p * r + 0.5;
#else
typedef int FN(ibits);
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#define EXP_RND 12582912.0f /* 1.5 * 2^23 */
#define EXP_LN2HI 0.693359375f
#define EXP_LN2LO (-2.12194440e-4f)
#define EXP_BIAS 127
#define EXP_MANT 23
/* Cephes expf minimax polynomial, about 1 ulp on |r| <= ln2/2 */
#define EXP_POLY(T, r) /* Estrin's form: three levels of multiply-adds instead of five */    \
    T r2_ = r * r;                                                                            \
    T p45_ = r * 1.9875691500e-4f + 1.3981999507e-3f;                                         \
    T p23_ = r * 8.3334519073e-3f + 4.1665795894e-2f;                                         \
    T p01_ = r * 1.6666665459e-1f + 5.0000001201e-1f;                                         \
    T p = p01_ + r2_ * (p23_ + r2_ * p45_);
#endif
typedef FN(ibits) FN(ivec) __attribute__((vector_size(VL * sizeof(REAL))));

#define SPLAT(T, c) ((T){0} + (c))

static inline ATTR REAL FN(s_sel)(int m, REAL a, REAL b) { return m ? a : b; }
static inline ATTR FN(ibits) FN(s_bits)(REAL x) {
    FN(ibits) i;
    __builtin_memcpy(&i, &x, sizeof x);
    return i;
}
static inline ATTR REAL FN(s_real)(FN(ibits) i) {
    REAL x;
    __builtin_memcpy(&x, &i, sizeof x);
    return x;
}
static inline ATTR V FN(v_sel)(FN(ivec) m, V a, V b) {
    return (V)((m & (FN(ivec))a) | (~m & (FN(ivec))b));
}
static inline ATTR FN(ivec) FN(v_bits)(V x) { return (FN(ivec))x; }
static inline ATTR V FN(v_real)(FN(ivec) i) { return (V)i; }
static inline ATTR V FN(vld)(const REAL *p) {
    V v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
static inline ATTR void FN(vst)(REAL *p, V v) { __builtin_memcpy(p, &v, sizeof v); }
/* Horizontal max and sum by halving: log2(VL) shuffles rather than a chain of VL scalar steps
 * (which cost a short softmax row more than its exps). */
static inline ATTR V FN(vrot)(V v, int w) {
    FN(ivec) idx;
    _Pragma("GCC unroll 16") for (int l = 0; l < VL; l++) idx[l] = (l + w) % VL;
    return __builtin_shuffle(v, idx);
}
static inline ATTR REAL FN(hmax)(V v) {
    _Pragma("GCC unroll 4") for (int w = VL / 2; w >= 1; w /= 2) {
        V s = FN(vrot)(v, w);
        v = FN(v_sel)(s > v, s, v);
    }
    return v[0];
}
static inline ATTR REAL FN(hsum)(V v) {
    _Pragma("GCC unroll 4") for (int w = VL / 2; w >= 1; w /= 2) v += FN(vrot)(v, w);
    return v[0];
}
#define SLD(p) (*(p))
#define SST(p, v) (*(p) = (v))

/* exp(x) = (1 + q) * s with s = 2^k, returned as q and *s so that callers fuse the last steps.
 * tanh and sigmoid are 2 / (1 + exp(x)) - 1 (t1) at -2x and -x: exactly +-1 and 0 / 1 where
 * it saturates, and the shortest chain of dependent operations (the forward recurrence's gate
 * math waits on two of them per row: the char LM's forward recurrence, 32x35x28x256, took
 * 2.83-2.85 ms before, 2.76-2.79 after on 2 threads, with the polynomial in Estrin's form). */
#define MATH_DEFS(T, pre)                                                                     \
    static inline ATTR T FN(pre##exp_parts)(T x, T *s) {                                      \
        x = FN(pre##_sel)(x < EXP_LO, SPLAT(T, EXP_LO), x);                                   \
        x = FN(pre##_sel)(x > EXP_HI, SPLAT(T, EXP_HI), x);                                   \
        T t = x * (REAL)1.4426950408889634 + EXP_RND;                                         \
        T kf = t - EXP_RND;                                                                   \
        T r = x - kf * EXP_LN2HI;                                                             \
        r = r - kf * EXP_LN2LO;                                                               \
        EXP_POLY(T, r)                                                                        \
        /* a NaN gives garbage bits here, but p is already NaN */                             \
        *s = FN(pre##_real)((FN(pre##_bits)(t) - FN(s_bits)(EXP_RND) + EXP_BIAS) << EXP_MANT); \
        return p * (r * r) + r;                                                               \
    }                                                                                         \
    static inline ATTR T FN(pre##exp)(T x) {                                                  \
        T s, q = FN(pre##exp_parts)(x, &s);                                                   \
        return q * s + s;                                                                     \
    }                                                                                         \
    static inline ATTR T FN(pre##t1)(T x) {                                                   \
        T s, q = FN(pre##exp_parts)(x, &s);                                                   \
        return (REAL)2 / (q * s + (s + (REAL)1)) - (REAL)1;                                   \
    }                                                                                         \
    static inline ATTR T FN(pre##tanh)(T x) { return FN(pre##t1)((REAL)-2 * x); }            \
    static inline ATTR T FN(pre##sigmoid)(T x) {                                              \
        return (REAL)0.5 * FN(pre##t1)(-x) + (REAL)0.5;                                       \
    }

MATH_DEFS(REAL, s)
MATH_DEFS(V, v)
#undef MATH_DEFS

/* A row loop: whole vectors of VL units, then the remaining units one by one. STEP(T, LD,
 * ST, SIG, TANH) is a statement over unit u of type T (REAL or V). */
#define ROW_LOOP(cnt, STEP)                                                                   \
    do {                                                                                      \
        int u = 0;                                                                            \
        for (; u + VL <= (cnt); u += VL) STEP(V, FN(vld), FN(vst), FN(vsigmoid), FN(vtanh));  \
        for (; u < (cnt); u++) STEP(REAL, SLD, SST, FN(ssigmoid), FN(stanh));                 \
    } while (0)


/* ---------------------------------------------------------------------------- microkernel
 * C[r*ldc + coff[v] + l] = init + sum_k A(r, k) * B[k*ldb + off[v] + l], r < MRv, v < NVv, l <
 * VL: MRv*NVv accumulator registers, one broadcast of A per row and one panel load per vector
 * per k. A(r, k) is A[r*lda + k] (rows of A in place, or a packed block). init: MK_ZERO, MK_LOAD
 * (what C holds: a later block of k) or MK_BIAS (bias[coff[v] + l], the same for every row).
 * A packed panel has ldb = NVv*VL and off[v] = v*VL; a direct one reads Wh's rows in place
 * (off[v] = that vector's column). C is a block of a product's output (a tile's gate columns
 * at coff[v]) or a scratch block (ldc = NVv*VL, coff[v] = v*VL). */
#ifndef FR_PF_LEVEL
#define FR_PF_LEVEL 2 /* the prefetch's locality hint: 2 is into L2 (1 and 3 measured the same) */
#endif
static inline __attribute__((always_inline)) ATTR void FN(mk_body)(
    int K, const REAL *restrict A, long lda, const REAL *restrict B, long ldb,
    const long *restrict off, REAL *restrict C, long ldc, const long *restrict coff, int init,
    const REAL *restrict bias, const char *pf, const int NVv, const int MRv, const int PF) {
    V acc[32]; /* MRv * NVv <= 24: fully unrolled, so only the used ones live (in registers) */
    if (init == MK_LOAD) {
        _Pragma("GCC unroll 12") for (int r = 0; r < MRv; r++)
            _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++)
                acc[r * NVv + v] = FN(vld)(C + r * ldc + coff[v]);
    } else if (init == MK_BIAS) {
        _Pragma("GCC unroll 12") for (int r = 0; r < MRv; r++)
            _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++)
                acc[r * NVv + v] = FN(vld)(bias + coff[v]);
    } else {
        _Pragma("GCC unroll 32") for (int i = 0; i < MRv * NVv; i++) acc[i] = (V){0};
    }
    const REAL *b[4];
    _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++) b[v] = B + off[v];
    for (int k = 0; k < K; k++) {
        V p[4];
        if (PF) __builtin_prefetch(pf + (long)k * 64, 0, FR_PF_LEVEL);
        _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++) {
            p[v] = FN(vld)(b[v]);
            b[v] += ldb;
        }
        _Pragma("GCC unroll 12") for (int r = 0; r < MRv; r++) {
            REAL a = A[r * lda + k];
            _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++) acc[r * NVv + v] += a * p[v];
        }
    }
    _Pragma("GCC unroll 12") for (int r = 0; r < MRv; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++)
            FN(vst)(C + r * ldc + coff[v], acc[r * NVv + v]);
}

typedef void (*FN(mk_fn))(int, const REAL *restrict, long, const REAL *restrict, long,
                         const long *restrict, REAL *restrict, long, const long *restrict, int,
                         const REAL *restrict, const char *);

/* Every (nv, mr) shape of the microkernel: X(NVv, MRv). */
#if MR2 > 6
#define MK_SHAPES_MR2(X) X(2, 7) X(2, 8) X(2, 9) X(2, 10) X(2, 11) X(2, 12)
#else
#define MK_SHAPES_MR2(X)
#endif
#if MR3 > 4
#define MK_SHAPES_MR3(X) X(3, 5) X(3, 6) X(3, 7) X(3, 8)
#else
#define MK_SHAPES_MR3(X)
#endif
#if MR4 > 3
#define MK_SHAPES_MR4(X) X(4, 4) X(4, 5) X(4, 6)
#else
#define MK_SHAPES_MR4(X)
#endif
#define MK_SHAPES(X)                                                                          \
    X(1, 1) X(1, 2) X(1, 3) X(1, 4) X(1, 5) X(1, 6) X(1, 7) X(1, 8)                           \
    X(2, 1) X(2, 2) X(2, 3) X(2, 4) X(2, 5) X(2, 6)                                           \
    X(3, 1) X(3, 2) X(3, 3) X(3, 4)                                                           \
    X(4, 1) X(4, 2) X(4, 3)                                                                   \
    MK_SHAPES_MR2(X) MK_SHAPES_MR3(X) MK_SHAPES_MR4(X)

/* Each shape twice: mk_ ignores pf; mkp_ also prefetches one cache line from pf + 64 k into L2
 * per k (a recurrence's next panel slice, see tile_product). */
#define MK(NVv, MRv)                                                                          \
    static ATTR void CAT(FN(mk), NVv##x##MRv)(                                                \
        int K, const REAL *restrict A, long lda, const REAL *restrict B, long ldb,            \
        const long *restrict off, REAL *restrict C, long ldc, const long *restrict coff,      \
        int init, const REAL *restrict bias, const char *pf) {                                \
        FN(mk_body)(K, A, lda, B, ldb, off, C, ldc, coff, init, bias, pf, NVv, MRv, 0);        \
    }                                                                                         \
    static ATTR void CAT(FN(mkp), NVv##x##MRv)(                                               \
        int K, const REAL *restrict A, long lda, const REAL *restrict B, long ldb,            \
        const long *restrict off, REAL *restrict C, long ldc, const long *restrict coff,      \
        int init, const REAL *restrict bias, const char *pf) {                                \
        FN(mk_body)(K, A, lda, B, ldb, off, C, ldc, coff, init, bias, pf, NVv, MRv, 1);        \
    }
MK_SHAPES(MK)
#undef MK

/* The microkernel for nv vectors and mr rows, prefetching when pf. */
static FN(mk_fn) FN(mk_table)(int nv, int mr, int pf) {
    switch (nv * 16 + mr) {
#define E(NVv, MRv)                                                                           \
    case NVv * 16 + MRv: return pf ? CAT(FN(mkp), NVv##x##MRv) : CAT(FN(mk), NVv##x##MRv);
        MK_SHAPES(E)
#undef E
    }
    return 0;
}

static const int FN(mr_of)[5] = {0, MR1, MR2, MR3, MR4};
static const long FN(packed_off)[4] = {0, VL, 2 * VL, 3 * VL};
#define MR_MAX (MR1 > MR2 ? MR1 : MR2)

/* Rows [0, n) cut into near-equal blocks of at most mrmax rows (N = 20 with 6: 5+5+5+5, not
 * 6+6+6+2): block b of nblk starting at row r0 has this many rows. */
static inline int FN(block_rows)(int n, int r0, int b, int nblk) {
    return (n - r0 + (nblk - b) - 1) / (nblk - b);
}

/* One tile's panel: its k-th row of vector v starts at b + k*ldb + off[v]. */
typedef struct {
    const REAL *b;
    long ldb, off[4];
    const REAL *nx; /* the panel of the tile likely to come next, or NULL */
    /* pre(pre_arg, r0, r1) prefetches what the tile's gate math will read and write for rows
     * [r0, r1), or is NULL (see tile_product_at) */
    void (*pre)(const void *, long, long);
    const void *pre_arg;
    int apart; /* each thread takes whole rows through every tile (run_steps) */
} FN(panel);

/* C (N, nv*VL) (+)= A (N, K; row stride lda) @ panel (K, nv*VL) for one step of a recurrence.
 * k runs in blocks whose panel slice takes kcb bytes, each block serving every row block
 * before the next: with a slice that fits in L1 (FR_L1), the panel streams from L2/L3 once per
 * step instead of once per row block. Deeper blocks reload C less often and stream the slice
 * from L2 per row block instead, which wins where the L1 block could not stay there anyway:
 * backward (dA is G*H wide) and forward with many rows (TILE_KCB). A packed panel's next slice
 * (or the first of pv.nx) is prefetched into L2 meanwhile: a thread's panels may not fit its L2
 * (H = 650 on 2 threads), and without it only the first row block of a slice read memory while
 * the others left the memory idle. `acc` adds to what C holds. */
#ifndef FR_DIRECT_T
#define FR_DIRECT_T 3 /* forward calls of at most this many steps read Wh in place */
#endif
#ifndef FR_L1
#define FR_L1 32768
#endif
#define TILE_KCB_BWD (2 * FR_L1)
#define TILE_KCB_FWD(N) ((N) >= 48 ? 2 * FR_L1 : FR_L1)
static ATTR void FN(tile_product_at)(int N, int K, const REAL *A, long lda, FN(panel) pv, int nv,
                                    REAL *C, long ldc, const long *coff, int acc, int kcb) {
    /* a tile of 4 vectors where NV_MAX is 2 runs as two halves over each row block, of twice
     * the rows (AVX2: 2 x 6, not 4 x 3; a tile of 3 stays whole, 3 x 4: its split 2 + 1 made
     * the reset-after GRU 20x30x128x1024 6% slower) */
    int nvp = nv > NV_MAX && nv % NV_MAX == 0 ? NV_MAX : nv, npc = nv / nvp;
    int mrmax = FN(mr_of)[nvp];
    int nblk = (N + mrmax - 1) / mrmax;
    long ldp = (long)nv * VL; /* a packed panel's row */
    int kc = kcb / (int)(ldp * sizeof(REAL));
    int nkb = (K + kc - 1) / kc;
    for (int k0 = 0, kb = 0; k0 < K; k0 += kc, kb++) {
        int kn = K - k0 < kc ? K - k0 : kc;
        int n0 = 0;
        /* the gate math's rows, a share before each depth block: where its data comes from
         * memory, the rows then wait for it no longer (the epilogue of LSTM 20x30x128x1024
         * took 190 ns a row vector, 104 with its lines prefetched) */
        if (pv.pre) pv.pre(pv.pre_arg, (long)N * kb / nkb, (long)N * (kb + 1) / nkb);
        /* the slice that comes after this one (of this panel, or the first of the next tile's),
         * its lines shared out among the row blocks: one per k */
        const char *nx = NULL;
        if (pv.ldb == ldp) { /* packed: slices are contiguous */
            if (k0 + kn < K)
                nx = (const char *)(pv.b + (long)(k0 + kn) * ldp);
            else if (pv.nx)
                nx = (const char *)pv.nx;
        }
        long share = ((long)kc * ldp * (long)sizeof(REAL) / (nblk * npc) + 63) / 64 * 64;
        for (int b = 0; b < nblk; b++) {
            int mr = FN(block_rows)(N, n0, b, nblk);
            FN(mk_fn) mk = FN(mk_table)(nvp, mr, nx != NULL);
            for (int h = 0; h < npc; h++)
                mk(kn, A + n0 * lda + k0, lda, pv.b + k0 * pv.ldb, pv.ldb, pv.off + h * nvp,
                   C + n0 * ldc, ldc, coff + h * nvp, acc || k0 > 0 ? MK_LOAD : MK_ZERO, NULL,
                   nx ? nx + (long)(b * npc + h) * share : NULL);
            n0 += mr;
        }
    }
}

/* The same into a block C (N, nv*VL) of the panel's own layout. */
static inline ATTR void FN(tile_product)(int N, int K, const REAL *A, long lda, FN(panel) pv,
                                        int nv, REAL *C, int acc, int kcb) {
    FN(tile_product_at)(N, K, A, lda, pv, nv, C, (long)nv * VL, FN(packed_off), acc, kcb);
}

/* r[i][j] <- r[j][i]: log2(VL) butterfly stages, each swapping the off-diagonal b x b blocks
 * of every 2b x 2b block. Fully unrolled with constant masks, so that the VL vectors stay in
 * registers (a loop over the stages kept them on the stack: 8 times slower). */
#define TRANSPOSE_STAGE(b)                                                                    \
    if (VL > (b)) {                                                                           \
        FN(ivec) lo, hi;                                                                      \
        _Pragma("GCC unroll 16") for (int j = 0; j < VL; j++) {                               \
            lo[j] = (j & (b)) ? j - (b) + VL : j;                                             \
            hi[j] = (j & (b)) ? j + VL : j + (b);                                             \
        }                                                                                     \
        _Pragma("GCC unroll 16") for (int i = 0; i < VL; i++) if (!(i & (b))) {               \
            V x_ = r[i], y_ = r[i + (b)];                                                     \
            r[i] = __builtin_shuffle(x_, y_, lo);                                             \
            r[i + (b)] = __builtin_shuffle(x_, y_, hi);                                       \
        }                                                                                     \
    }
static inline __attribute__((always_inline)) ATTR void FN(transpose)(V *r) {
    TRANSPOSE_STAGE(1)
    TRANSPOSE_STAGE(2)
    TRANSPOSE_STAGE(4)
    TRANSPOSE_STAGE(8)
}
#undef TRANSPOSE_STAGE

/* One weight operand of a recurrence step, seen through panels. src(k, g, j) = W[k*sk + g*sg +
 * j*sj] is its element for depth k, gate block g and hidden unit j: forward panels of Wh use
 * (ldw, gate stride, 1); the transposed panels for dA @ Wh^T use (1, 0, ldw). A tile at unit
 * vector a with Uc vectors covers G*Uc vectors of columns; packed, it sits at buf + a*VL*G*K as
 * [k][g][u < Uc*VL] with zeros past H. `direct` (rows of W contiguous in j, sj = 1) skips
 * packing for tiles that lie wholly inside H and reads W in place: packing costs a pass over W
 * that a call with one or two steps does not win back. */
typedef struct {
    const REAL *W;
    long sk, sg, sj;
    int K, G, U, direct;
    REAL *buf;
} FN(wpack);

static inline ATTR int FN(in_place)(const FN(wpack) *w, int H, long a, long Uc) {
    return w->direct && w->sj == 1 && (a + Uc) * VL <= H;
}

/* Pack the tile of Uc unit vectors from a (unless it is read in place): whole vectors copied
 * (forward panels, sj = 1) or transposed VL x VL in registers (backward panels, sk = 1),
 * the rest one by one. */
static ATTR void FN(pack_tile)(const FN(wpack) *wp, int H, long a, long Uc) {
    if (FN(in_place)(wp, H, a, Uc)) return;
    const int G = wp->G, K = wp->K;
    const long ld = (long)G * Uc * VL; /* one depth row of the panel */
    REAL *d = wp->buf + a * VL * G * K;
    for (int v = 0; v < G * Uc; v++) {
        int g = v / (int)Uc;
        long j0 = (a + v % Uc) * VL;
        int cnt = H - j0 < VL ? (int)(H - j0) : VL;
        const REAL *src = wp->W + g * wp->sg + j0 * wp->sj;
        REAL *dv = d + (long)v * VL;
        int k = 0;
        if (wp->sj == 1 && cnt == VL) {
            for (; k < K; k++) FN(vst)(dv + k * ld, FN(vld)(src + k * wp->sk));
        } else if (wp->sk == 1 && cnt == VL) {
            for (; k + VL <= K; k += VL) {
                V t[VL];
                for (int l = 0; l < VL; l++) t[l] = FN(vld)(src + l * wp->sj + k);
                FN(transpose)(t);
                for (int l = 0; l < VL; l++) FN(vst)(dv + (k + l) * ld, t[l]);
            }
        }
        for (; k < K; k++)
            for (int l = 0; l < VL; l++)
                dv[k * ld + l] = l < cnt ? src[k * wp->sk + l * wp->sj] : (REAL)0;
    }
}

static inline ATTR FN(panel) FN(panel_at)(const FN(wpack) *wp, int H, long a, long Uc) {
    FN(panel) pv = {0};
    if (FN(in_place)(wp, H, a, Uc)) {
        pv.b = wp->W + a * VL;
        pv.ldb = wp->sk;
        for (int v = 0; v < wp->G * Uc; v++) pv.off[v] = (v / Uc) * wp->sg + (v % Uc) * VL;
    } else {
        pv.b = wp->buf + a * VL * wp->G * wp->K;
        pv.ldb = (long)wp->G * Uc * VL;
        for (int v = 0; v < wp->G * Uc; v++) pv.off[v] = (long)v * VL;
    }
    return pv;
}

/* The panel of tile a, knowing the tile that its thread likely takes next (the scheduler hands
 * a thread its own tiles in order, last first on reverse steps): tile_product prefetches that
 * tile's first slice into L2 while it works on the last slice of this one. */
static inline ATTR FN(panel) FN(panel_next)(const FN(wpack) *wp, int H, long a, long Uc,
                                           int reverse, long nuv) {
    FN(panel) pv = FN(panel_at)(wp, H, a, Uc);
    long n = reverse ? a - wp->U : a + wp->U;
    if (n >= 0 && n < nuv && !FN(in_place)(wp, H, n, wp->U))
        pv.nx = wp->buf + n * VL * wp->G * wp->K;
    return pv;
}

/* ---------------------------------------------------------------------------- gemm
 * C = A @ B over Hc columns (a layer's G*H gate columns side by side), cut into unit vectors
 * of VL columns; tiles of GEMM_TU unit vectors. A comes in one or two row segments (dWx and
 * dWh share B = dA: [X^T; Hprev^T] @ dA), each with its own C rows. Tiles of one unit vector
 * per gate instead (as in the recurrence, whose gate math wants them) put a microkernel
 * block's stores G*H apart in C: slower (NOTES.md, "The microkernel and the products").
 *
 * Blocking: columns in chunks of at most GEMM_NV vectors; depth in near-equal blocks of at most
 * g->kc (fr_kc_bytes: the chunk's packed B block takes half of a core's L2); rows in blocks
 * of GEMM_MC. Per chunk, depth blocks
 * outer: B's block for the chunk is packed ([tile][k][u]) once and stays in L2 while every
 * row block of A passes it (rows outer streamed the whole chunk of B from L3 once per row
 * block where it did not fit L2: the LSTM dW product 512x3200x1024 and friends). An item is
 * a group of unit vectors with all rows, or (narrow C, by_rows) a block of at most GEMM_MC
 * rows with all columns. Each C element sums its depth blocks in order and each block in k
 * order, whatever the item split: results do not depend on the thread count. */
#ifndef GEMM_MC
#define GEMM_MC 144
#endif
#define GEMM_KC_MAX ((int)(FR_KC_BYTES_MAX / (4 * VL * (long)sizeof(REAL))))
#ifndef GEMM_NV
#define GEMM_NV 16
#endif
/* unit vectors of a tile: the widest microkernel worth calling (with AVX2's 16 registers,
 * tiles of 2 vectors x 6 rows ran the products 7-10% faster than 4 x 3; SSE2's 4 x 3 beat
 * 2 x 6 by 12%) */
#define GEMM_TU NV_MAX

/* Rows of a stored row-major matrix, in logical order r = (t, n) = (r / ni, r % ni):
 * p + (t - shift)*st + n*sn, except rows with t < shift, which come from p0 + n*sn0. ni = 0:
 * plain rows p + r*sn. Examples: the input xs (N, T, D) read in time-major order (ni = N,
 * st = D, sn = T*D); h_prev of every step (shift 1: step 0 reads h0). */
typedef struct {
    const REAL *p, *p0;
    long st, sn, sn0;
    long ni;
    int shift;
} FN(rows);

static inline ATTR const REAL *FN(row)(const FN(rows) *m, long r) {
    if (!m->ni) return m->p + r * m->sn;
    long t = r / m->ni, n = r - t * m->ni;
    if (t < m->shift) return m->p0 + n * m->sn0;
    return m->p + (t - m->shift) * m->st + n * m->sn;
}

typedef struct {
    FN(rows) a; /* stored rows of A: A(i, k) = row(k)[i] when trans, else row(i)[k] */
    FN(rows) c; /* rows of C */
    int trans;
    long M;
} FN(seg);

typedef struct FN(gemm_s) {
    int K, nseg;
    int kc;              /* the deepest depth block (set by add_seg) */
    FN(seg) seg[2];
    long mtot;           /* rows of all segments */
    const REAL *B;       /* B(k, j) = B[k*sk + j*sj] */
    long sk, sj;
    int Hc;              /* columns of B and C, in tiles of GEMM_TU unit vectors */
    const REAL *bias;    /* added once to C column j: bias[j]; or NULL */
    int acc;             /* C += A @ B instead of C = A @ B */
    REAL *colsum;        /* colsum[j] = sum_k B(k, j) (db), or NULL */
    int by_rows;         /* items are row blocks (else groups of unit vectors) */
    long mb;             /* rows of a row item: GEMM_MC, or fewer to give every thread as
                          * many (only where A is not packed once per call: see finish) */
    long item;           /* unit vectors per item (by columns) */
    REAL *apk;           /* A packed once per call for every item (see gemm_apk), or NULL */
    const struct FN(gemm_s) *apk_from; /* the product earlier in the same phase whose packed
                                        * A this one reads (the same segments of A), or NULL */
    REAL *bpk;           /* row items: B packed once per call for all of them, or NULL */
} FN(gemm);

/* Per-thread blocks of a product: packed A (GEMM_MC x kc), packed B (one depth block of a
 * chunk: kc x GEMM_NV vectors), the microkernel's output block. */
typedef struct {
    REAL *ap, *bp, *cs;
    const void *a_key; /* what ap holds: the product, segment, row and depth block (pa_*) */
    long pa_si, pa_row, pa_kb;
} FN(work);

#define GEMM_AP ((long)GEMM_MC * (GEMM_KC_MAX + VL))
#define GEMM_BP ((long)GEMM_KC_MAX * GEMM_NV * VL)
#define GEMM_CS ((long)MR_MAX * 4 * VL)

/* A that is transposed is packed once per call into a buffer all items read (segment after
 * segment, each in row blocks of GEMM_MC rows, each row block [depth block] [row][k]) rather
 * than once per item: packing a transposed block costs about a tenth of multiplying it by a
 * chunk. Packed rows are FN(kstride) long (a whole number of vectors, so that a packing store
 * fills whole cache lines). Its length, or 0 where A is read in place (plain rows, and gathered
 * ones: see gemm_item) or would need more than GEMM_APK. */
#define GEMM_APK ((long)1 << 23)
static inline int FN(nkb)(const FN(gemm) *g) { return (g->K + g->kc - 1) / g->kc; }
static inline long FN(kstride)(const FN(gemm) *g) {
    long kmax = (g->K + FN(nkb)(g) - 1) / FN(nkb)(g); /* the longest near-equal depth block */
    return (kmax + VL - 1) / VL * VL;
}
static long FN(gemm_apk_len)(const FN(gemm) *g) {
    long len = 0;
    int need = 0;
    for (int si = 0; si < g->nseg; si++) {
        len += (g->seg[si].M + GEMM_MC - 1) / GEMM_MC * GEMM_MC * FN(nkb)(g) * FN(kstride)(g);
        need |= g->seg[si].trans; /* gathered rows are read in place (gemm_item) */
    }
    return need && len <= GEMM_APK ? len : 0;
}

/* Row block ib of segment si in the shared packed A, depth block kb: its start. */
static inline ATTR const REAL *FN(apk_block)(const FN(gemm) *g, int si, long ib, int kb) {
    long ks = FN(kstride)(g), nkb = FN(nkb)(g), off = 0;
    for (int s = 0; s < si; s++) off += (g->seg[s].M + GEMM_MC - 1) / GEMM_MC * GEMM_MC * nkb * ks;
    long mn = g->seg[si].M - ib * GEMM_MC < GEMM_MC ? g->seg[si].M - ib * GEMM_MC : GEMM_MC;
    return g->apk + off + ib * GEMM_MC * nkb * ks + kb * mn * ks;
}

/* Row items all multiply by the same B: it is packed once per call (chunk after chunk of
 * GEMM_NV vectors at most, each depth block laid out as gemm_item packs it). Its length, or 0
 * where the product can have no row items or B would need more than GEMM_APK. */
static long FN(gemm_bpk_len)(const FN(gemm) *g) {
    long len = (long)g->K * ((g->Hc + VL - 1) / VL) * VL;
    return !g->colsum && g->mtot > GEMM_MC && len <= GEMM_APK ? len : 0;
}

/* Decide how a product is cut into items for nt threads. */
static void FN(gemm_plan)(FN(gemm) *g, int nt) {
    long nuv = (g->Hc + VL - 1) / VL;
    long want = (nuv + 2L * nt - 1) / (2L * nt);
    want = (want + GEMM_TU - 1) / GEMM_TU * GEMM_TU;
    g->item = want > GEMM_NV ? GEMM_NV : want;
    g->mtot = 0;
    for (int s = 0; s < g->nseg; s++) g->mtot += g->seg[s].M;
    long col_items = (nuv + g->item - 1) / g->item;
    /* narrow and tall: split the rows, so that each thread reads its share of A once (db
     * needs whole columns: it never does) */
    g->by_rows = !g->colsum && g->mtot > GEMM_MC && (col_items < nt || 4L * g->Hc < g->mtot);
    g->mb = GEMM_MC;
}

/* Pack rows [k0, k0 + kn) of B for unit vectors [c0, c1): tiles of GEMM_TU unit vectors, each
 * [k][u] with zeros past Hc; with `sum`, add each packed column's sum to colsum (from zero at
 * k0 = 0), in k order.
 *
 * Rows of B contiguous (sj = 1): row by row, with the rows PACK_AHEAD ahead prefetched and the
 * column sums kept in registers. A wide B (dA: G*H columns) has its rows a page or more apart,
 * where a walk down each column gets no help from the hardware prefetcher: the LSTM dW
 * products 284x1120x1024 and 512x3200x1024 (A^T, with db) took 4% longer that way. Columns of
 * B contiguous (sk = 1): VL x VL transposes in registers, column vector by column vector. */
#define PACK_AHEAD 8
static ATTR void FN(pack_b)(const FN(gemm) *g, int k0, int kn, long c0, long c1, REAL *bp,
                           int sum) {
    /* Per packed vector vi: its first column (col), its first packed element (po) and the
     * length of its tile's packed row (pl) */
    int nvt = (int)(c1 - c0);
    long col[nvt], po[nvt], pl[nvt];
    V sums[nvt];
    REAL *cs = sum ? g->colsum : NULL;
    for (int vi = 0; vi < nvt; vi++) {
        long a = vi / GEMM_TU * GEMM_TU; /* its tile, from c0 */
        col[vi] = (c0 + vi) * VL;
        po[vi] = a * VL * kn + (long)(vi - a) * VL;
        pl[vi] = (nvt - a < GEMM_TU ? nvt - a : GEMM_TU) * VL;
        REAL tmp[VL] = {0};
        if (cs && k0 > 0) /* continue the sums of the depth blocks before */
            for (int l = 0; l < VL && col[vi] + l < g->Hc; l++) tmp[l] = cs[col[vi] + l];
        sums[vi] = FN(vld)(tmp);
    }
    if (g->sj == 1) {
        long run = (c1 - c0) * VL; /* columns in this chunk */
        for (int k = 0; k < kn; k++) {
            const REAL *rw = g->B + (long)(k0 + k) * g->sk + c0 * VL; /* row k0 + k */
            if (k + PACK_AHEAD < kn)
                for (long l = 0; l < run; l += 64 / (long)sizeof(REAL))
                    __builtin_prefetch(rw + PACK_AHEAD * g->sk + l, 0, 3);
            for (int vi = 0; vi < nvt; vi++) {
                const REAL *s = rw + (long)vi * VL;
                V x;
                if (g->Hc - col[vi] >= VL) {
                    x = FN(vld)(s);
                } else {
                    REAL tmp[VL] = {0};
                    for (int l = 0; col[vi] + l < g->Hc; l++) tmp[l] = s[l];
                    x = FN(vld)(tmp);
                }
                FN(vst)(bp + po[vi] + k * pl[vi], x);
                sums[vi] += x;
            }
        }
    } else {
        for (int vi = 0; vi < nvt; vi++) {
            int cnt = g->Hc - col[vi] < VL ? (int)(g->Hc - col[vi]) : VL;
            const REAL *src = g->B + col[vi] * g->sj + (long)k0 * g->sk;
            REAL *dv = bp + po[vi];
            long ld = pl[vi];
            int k = 0;
            if (g->sk == 1) /* columns of B are rows in memory: VL x VL transposes */
                for (; k + VL <= kn; k += VL) {
                    V r[VL];
                    for (int l = 0; l < VL; l++)
                        r[l] = l < cnt ? FN(vld)(src + l * g->sj + k) : SPLAT(V, 0);
                    FN(transpose)(r);
                    for (int l = 0; l < VL; l++) FN(vst)(dv + (k + l) * ld, r[l]);
                }
            for (int l = 0; l < VL; l++) {
                const REAL *s = src + l * g->sj;
                for (int kk = k; kk < kn; kk++) dv[kk * ld + l] = l < cnt ? s[kk * g->sk] : 0;
            }
            if (cs)
                for (k = 0; k < kn; k++) sums[vi] += FN(vld)(dv + k * ld);
        }
    }
    if (cs)
        for (int vi = 0; vi < nvt; vi++)
            for (int l = 0; l < VL && col[vi] + l < g->Hc; l++) cs[col[vi] + l] = sums[vi][l];
}

/* Pack rows [i0, i0 + mn) x depth [k0, k0 + kn) of a segment's A: row-major (lda = kn), or
 * k-major (lda = mn) for a transposed operand; either way a copy of contiguous runs. */
static inline ATTR void FN(copy)(REAL *restrict d, const REAL *restrict s, int n) {
    int i = 0; /* short runs: a vector loop beats memcpy's string copy here */
    for (; i + VL <= n; i += VL) FN(vst)(d + i, FN(vld)(s + i));
    for (; i < n; i++) d[i] = s[i];
}

static ATTR void FN(pack_a)(const FN(seg) *s, long i0, int mn, int k0, int kn, REAL *ap,
                           long ldp) {
    if (!s->trans) {
        for (int r = 0; r < mn; r++) FN(copy)(ap + r * ldp, FN(row)(&s->a, i0 + r) + k0, kn);
        return;
    }
    /* A(i, k) = row(k)[i]: VL x VL blocks transposed in registers, VL source rows read side
     * by side (sequential streams), the edges one by one */
    int k = 0, rv = mn - mn % VL;
    for (; k + VL <= kn; k += VL) {
        const REAL *src[VL];
        for (int l = 0; l < VL; l++) src[l] = FN(row)(&s->a, k0 + k + l) + i0;
        for (int r = 0; r < rv; r += VL) {
            V t[VL];
            for (int l = 0; l < VL; l++) t[l] = FN(vld)(src[l] + r);
            FN(transpose)(t);
            for (int l = 0; l < VL; l++) FN(vst)(ap + (r + l) * ldp + k, t[l]);
        }
        for (int l = 0; l < VL; l++)
            for (int r = rv; r < mn; r++) ap[r * ldp + k + l] = src[l][r];
    }
    for (; k < kn; k++) {
        const REAL *src = FN(row)(&s->a, k0 + k) + i0;
        for (int r = 0; r < mn; r++) ap[r * ldp + k] = src[r];
    }
}

/* A microkernel block (mr rows from segment row i, the tile of Uc unit vectors from a) that
 * cannot be summed in C itself (a partial vector, or rows not equally spaced) goes through the
 * scratch block cs: gemm_start fills it with what the sums start from (init: C's values, the
 * bias or zeros; zeros past the valid columns), the microkernel adds to it (MK_LOAD), and
 * gemm_store copies the valid columns back. The arithmetic is the same as in C itself, so an
 * element's value does not depend on which way its tile went. */
static ATTR void FN(gemm_start)(const FN(gemm) *g, const FN(seg) *s, long i, int mr, REAL *cs,
                               long a, int Uc, int init) {
    for (int r = 0; r < mr; r++) {
        const REAL *src = FN(row)(&s->c, i + r);
        REAL *cr = cs + (long)r * Uc * VL;
        for (int v = 0; v < Uc; v++) {
            long j = (a + v) * VL;
            int cnt = g->Hc - j < VL ? (int)(g->Hc - j) : VL;
            const REAL *from = init == MK_LOAD ? src + j : init == MK_BIAS ? g->bias + j : NULL;
            for (int l = 0; l < VL; l++) cr[v * VL + l] = from && l < cnt ? from[l] : (REAL)0;
        }
    }
}

static ATTR void FN(gemm_store)(const FN(gemm) *g, const FN(seg) *s, long i, int mr,
                               const REAL *cs, long a, int Uc) {
    for (int r = 0; r < mr; r++) {
        REAL *dst = (REAL *)FN(row)(&s->c, i + r);
        const REAL *cr = cs + (long)r * Uc * VL;
        for (int v = 0; v < Uc; v++) {
            long j = (a + v) * VL;
            int cnt = g->Hc - j < VL ? (int)(g->Hc - j) : VL;
            FN(copy)(dst + j, cr + v * VL, cnt);
        }
    }
}

/* Are rows [i, i + cnt) of m equally spaced? Their spacing in *step. */
static inline ATTR int FN(even_rows)(const FN(rows) *m, long i, int cnt, long *step) {
    if (!m->ni) {
        *step = m->sn;
        return 1;
    }
    long t = i / m->ni;
    if (t != (i + cnt - 1) / m->ni) return 0;
    *step = t < m->shift ? m->sn0 : m->sn;
    return 1;
}

/* One item: unit vectors [ua, ub), rows [m0, m1) of the segments. Depth
 * blocks are near-equal (none of a few k). A is read in place where it is not transposed:
 * plain rows, and gathered rows (xs read time-major) one microkernel block at a time, where
 * the block's rows are equally spaced (a block that spans two steps is copied to ap first);
 * a transposed A is packed row-major per row block and depth block, B per chunk and depth
 * block. Each microkernel row block of A stays in L1 while the chunk's tiles of B stream past it
 * from L2. A tile of full vectors whose C rows are equally spaced is summed in C itself (with
 * the bias as the first block's start), others go through the scratch block and gemm_store. */
static ATTR void FN(gemm_item)(const FN(gemm) *g, long ua, long ub, long m0, long m1,
                              FN(work) *wk) {
    const long chunk = GEMM_NV;
    int sums = g->colsum != NULL; /* column items only: every column is packed in one item */
    int nkb = FN(nkb)(g);
    int mrmax = FN(mr_of)[GEMM_TU]; /* rows of a block: the full tiles' register tile */
    long nch = (ub - ua + chunk - 1) / chunk;
    /* Chunks outer, each with its depth blocks: B's block stays in L2 for all rows. With B
     * packed once per call (row items, whose rows no other item reads), depth blocks outer
     * instead: the item's A block, packed once per depth block, serves every chunk from L2. */
    int kouter = g->bpk != NULL;
    for (long it = 0; it < nch * nkb; it++) {
        long c0 = ua + (kouter ? it % nch : it / nkb) * chunk;
        int kb = (int)(kouter ? it / nch : it % nkb);
        long c1 = ub - c0 < chunk ? ub : c0 + chunk;
        long width = (c1 - c0) * VL; /* packed B of one depth row */
        int k0 = (int)((long)g->K * kb / nkb), k1 = (int)((long)g->K * (kb + 1) / nkb);
        int kn = k1 - k0;
        const REAL *bk = wk->bp;
        if (g->bpk)
            bk = g->bpk + (long)g->K * c0 * VL + (long)k0 * width;
        else
            FN(pack_b)(g, k0, kn, c0, c1, wk->bp, sums);
        int init = kb > 0 || g->acc ? MK_LOAD : (g->bias ? MK_BIAS : MK_ZERO);
        long base = 0;
        for (int si = 0; si < g->nseg; si++) {
            const FN(seg) *s = &g->seg[si];
            long lo = m0 > base ? m0 : base, hi = m1 < base + s->M ? m1 : base + s->M;
            int plain_a = !s->a.ni && !s->trans;
            int gathered = s->a.ni && !s->trans; /* read in place block by block */
            for (long i0 = lo; i0 < hi; i0 += GEMM_MC) { /* with g->apk, il % GEMM_MC == 0 */
                int mn = hi - i0 < GEMM_MC ? (int)(hi - i0) : GEMM_MC;
                long il = i0 - base; /* segment row */
                int nblk = (mn + mrmax - 1) / mrmax;
                const REAL *ab = NULL; /* A(il, k0), rows lda apart (gathered: per block) */
                long lda = 0;
                if (plain_a) {
                    lda = s->a.sn;
                    ab = FN(row)(&s->a, il) + k0;
                } else if (g->apk && !gathered) {
                    lda = FN(kstride)(g);
                    ab = FN(apk_block)(g, si, il / GEMM_MC, kb);
                } else if (!gathered) {
                    lda = FN(kstride)(g);
                    if (wk->a_key != g || wk->pa_si != si || wk->pa_row != il ||
                        wk->pa_kb != kb) {
                        FN(pack_a)(s, il, mn, k0, kn, wk->ap, lda);
                        wk->a_key = g, wk->pa_si = si, wk->pa_row = il, wk->pa_kb = kb;
                    }
                    ab = wk->ap;
                }
                for (int b = 0, r0 = 0, mr; b < nblk; b++, r0 += mr) {
                    mr = FN(block_rows)(mn, r0, b, nblk);
                    long step, ald = lda;
                    const REAL *ar; /* this block's A(il + r0, k0), rows ald apart */
                    if (!gathered) {
                        ar = ab + r0 * lda;
                    } else if (FN(even_rows)(&s->a, il + r0, mr, &ald)) {
                        ar = FN(row)(&s->a, il + r0) + k0; /* rows of one step: in place */
                    } else { /* rows of two steps: copied side by side */
                        for (int r = 0; r < mr; r++)
                            FN(copy)(wk->ap + r * kn, FN(row)(&s->a, il + r0 + r) + k0, kn);
                        wk->a_key = NULL; /* ap no longer holds a packed block */
                        ar = wk->ap, ald = kn;
                    }
                    int even = FN(even_rows)(&s->c, il + r0, mr, &step);
                    REAL *crow = (REAL *)FN(row)(&s->c, il + r0);
                    for (long a = c0; a < c1; a += GEMM_TU) {
                        int Uc = c1 - a < GEMM_TU ? (int)(c1 - a) : GEMM_TU;
                        const REAL *panel = bk + (a - c0) * VL * kn;
                        FN(mk_fn) mk = FN(mk_table)(Uc, mr, 0);
                        if (even && (a + Uc) * VL <= g->Hc) { /* C in place */
                            mk(kn, ar, ald, panel, (long)Uc * VL, FN(packed_off), crow + a * VL,
                               step, FN(packed_off), init, g->bias ? g->bias + a * VL : NULL,
                               NULL);
                        } else {
                            FN(gemm_start)(g, s, il + r0, mr, wk->cs, a, Uc, init);
                            mk(kn, ar, ald, panel, (long)Uc * VL, FN(packed_off), wk->cs,
                               (long)Uc * VL, FN(packed_off), MK_LOAD, NULL, NULL);
                            FN(gemm_store)(g, s, il + r0, mr, wk->cs, a, Uc);
                        }
                    }
                }
            }
            base += s->M;
        }
    }
}

/* ---------------------------------------------------------------------------- cells */
typedef struct FN(ctx_s) FN(ctx);
typedef void (*FN(loop_fn))(FN(ctx) *, fr_local *, REAL *C);

struct FN(ctx_s) {
    int T, N, H;
    long nuv; /* unit vectors of H */
    const REAL *xw, *Wh, *h0, *c0, *b_hn, *dhs, *hs_in, *cs_in, *acts_in, *hn_in;
    /* a layer forward with its input inside the steps (see run_input_layer): no xw; each step's
     * tile product adds x_t @ Wx (xs rows, panels of Wx in pk2), the epilogue b */
    const REAL *xs, *Wx, *b;
    int D;
    long hts, hns;      /* hs, hs_in, dhs: step t, row n at + t*hts + n*hns */
    const int64_t *len; /* (N,) steps of each row, or NULL: all T */
    int direct;         /* forward: read full tiles of Wh in place (see wpack) */
    REAL *hs, *cs, *acts, *rh, *hn, *dA, *dh, *dc, *dhn;
    REAL *h_last, *c_last; /* layer forward: each row's state after its own last step */
    /* layer forward: a second hs, the caller's copy for the backward, written row vector by row
     * vector in the steps (hs_kept) or copied whole at the end of the region (kept_end) */
    REAL *hs_kept, *kept_end;
    REAL *pk1, *pk2, *shared, *thr; /* panels, cell scratch, per-thread blocks */
    long thr_stride;
    FN(loop_fn) loop;   /* the recurrence (with its packing), or NULL */
    int npre, npost;    /* products before and after it: gemm[0, npre), then npost more */
    FN(gemm) gemm[4];
    fr_sched sch;
};

/* This thread's blocks: the recurrence's product block (N x 4 vectors), then a product's. */
static inline ATTR REAL *FN(thr_c)(FN(ctx) *c, int tid) { return c->thr + tid * c->thr_stride; }
static inline ATTR FN(work) FN(thr_work)(FN(ctx) *c, int tid) {
    REAL *base = FN(thr_c)(c, tid) + ((long)c->N * 4 * VL + 15) / 16 * 16;
    FN(work) w = {base, base + GEMM_AP, base + GEMM_AP + GEMM_BP, NULL, 0, 0, 0};
    return w;
}
#define THR_LEN(N) (((long)(N) * 4 * VL + 15) / 16 * 16 + GEMM_AP + GEMM_BP + GEMM_CS)

/* Products, each packed once per call where it shares a packed operand among its items (see
 * gemm_apk_len, gemm_bpk_len), then its items; both end without a meeting (fr_pass). */
static ATTR void FN(gemm_pack)(FN(ctx) *c, fr_local *L, const FN(gemm) *g) {
    long nuv = (g->Hc + VL - 1) / VL;
    if (g->apk && !g->apk_from) { /* every row block of every segment, all depth blocks */
        long nrb = 0;
        for (int si = 0; si < g->nseg; si++) nrb += (g->seg[si].M + GEMM_MC - 1) / GEMM_MC;
        int nkb = FN(nkb)(g);
        FOR_ITEMS(&c->sch, L, nrb, 1, u, cnt) { /* one row block per item: cnt is 1 */
            int si = 0;
            long ib = u + cnt - 1;
            while (ib >= (g->seg[si].M + GEMM_MC - 1) / GEMM_MC)
                ib -= (g->seg[si++].M + GEMM_MC - 1) / GEMM_MC;
            long i0 = ib * GEMM_MC;
            int mn = g->seg[si].M - i0 < GEMM_MC ? (int)(g->seg[si].M - i0) : GEMM_MC;
            for (int kb = 0; kb < nkb; kb++) {
                int k0 = (int)((long)g->K * kb / nkb), k1 = (int)((long)g->K * (kb + 1) / nkb);
                FN(pack_a)(&g->seg[si], i0, mn, k0, k1 - k0, (REAL *)FN(apk_block)(g, si, ib, kb),
                           FN(kstride)(g));
            }
        }
        fr_pass(L, nrb, 1);
    }
    if (g->bpk) { /* every chunk of columns, every depth block */
        long nch = (nuv + GEMM_NV - 1) / GEMM_NV;
        int nkb = FN(nkb)(g);
        FOR_ITEMS(&c->sch, L, nch * nkb, 1, u, cnt) { /* one (chunk, depth block) per item */
            long ch = (u + cnt - 1) / nkb, c0 = ch * GEMM_NV;
            long c1 = c0 + GEMM_NV < nuv ? c0 + GEMM_NV : nuv;
            int kb = (int)((u + cnt - 1) % nkb);
            int k0 = (int)((long)g->K * kb / nkb), k1 = (int)((long)g->K * (kb + 1) / nkb);
            long width = (c1 - c0) * VL;
            FN(pack_b)(g, k0, k1 - k0, c0, c1, g->bpk + (long)g->K * c0 * VL + (long)k0 * width, 0);
        }
        fr_pass(L, nch * nkb, 1);
    }
}

static ATTR void FN(gemm_items)(FN(ctx) *c, fr_local *L, const FN(gemm) *g, FN(work) *wk) {
    long nuv = (g->Hc + VL - 1) / VL;
    if (!g->by_rows) {
        FOR_ITEMS(&c->sch, L, nuv, g->item, a, cnt) FN(gemm_item)(g, a, a + cnt, 0, g->mtot, wk);
        fr_pass(L, nuv, g->item);
    } else {
        long nb = (g->mtot + g->mb - 1) / g->mb;
        FOR_ITEMS(&c->sch, L, nb, 1, b, cnt) {
            long m1 = (b + cnt) * g->mb;
            FN(gemm_item)(g, 0, nuv, b * g->mb, m1 < g->mtot ? m1 : g->mtot, wk);
        }
        fr_pass(L, nb, 1);
    }
}

/* The products gs[0, ng), none reading what another writes: all their packing, one meeting,
 * all their items, one meeting. A thread whose share of one product is done goes on with the
 * next product instead of waiting for the other thread at each (the LSTM 20x35x200x200
 * backward's dW product, 13 unit vectors in column items of 4, kept thread 0 waiting 0.35 ms
 * when it met alone). */
static ATTR void FN(gemm_phases)(FN(ctx) *c, fr_local *L, const FN(gemm) *gs, int ng,
                                 FN(work) *wk) {
    int packed = 0;
    for (int i = 0; i < ng; i++) {
        FN(gemm_pack)(c, L, &gs[i]);
        packed |= gs[i].apk || gs[i].bpk;
    }
    if (packed) fr_sync(&c->sch, L, 0, 1);
    for (int i = 0; i < ng; i++) FN(gemm_items)(c, L, &gs[i], wk);
    fr_sync(&c->sch, L, 0, 1);
}

/* dst[0, n) = src[0, n) in items of COPY_ITEM elements, on every thread. */
#define COPY_ITEM 16384
static ATTR void FN(copy_phase)(FN(ctx) *c, fr_local *L, REAL *dst, const REAL *src, long n) {
    long ni = (n + COPY_ITEM - 1) / COPY_ITEM;
    FOR_ITEMS(&c->sch, L, ni, 1, i, cnt) {
        long a = i * COPY_ITEM, e = (i + cnt) * COPY_ITEM < n ? (i + cnt) * COPY_ITEM : n;
        memcpy(dst + a, src + a, (size_t)(e - a) * sizeof(REAL));
    }
    fr_sync(&c->sch, L, ni, 1);
}

/* The region's work for thread tid: products, recurrence, products. */
static ATTR void FN(worker)(void *arg, int tid, int nt) {
    FN(ctx) *c = (FN(ctx) *)arg;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(work) wk = FN(thr_work)(c, tid);
#ifdef FR_PROFILE
    double t_ = fr_now_ns();
#define FR_PROF_MARK(i)                                                                       \
    if (tid == 0) {                                                                           \
        fr_prof[i] += fr_now_ns() - t_;                                                       \
        t_ = fr_now_ns();                                                                     \
    }
#else
#define FR_PROF_MARK(i)
#endif
    if (c->npre) FN(gemm_phases)(c, &L, c->gemm, c->npre, &wk);
    FR_PROF_MARK(0)
    if (c->loop) c->loop(c, &L, FN(thr_c)(c, tid));
    FR_PROF_MARK(4)
    if (c->npost) FN(gemm_phases)(c, &L, c->gemm + c->npre, c->npost, &wk);
    FR_PROF_MARK(5)
#undef FR_PROF_MARK
    if (c->kept_end) FN(copy_phase)(c, &L, c->kept_end, c->hs, (long)c->N * c->T * c->H);
}

/* The phase that packs the panels of wp, each tile where it will be used first (its owner). */
static ATTR void FN(pack_phase)(FN(ctx) *c, fr_local *L, const FN(wpack) *wp) {
    FOR_ITEMS(&c->sch, L, c->nuv, wp->U, a, cnt) FN(pack_tile)(wp, c->H, a, cnt);
    fr_sync(&c->sch, L, c->nuv, wp->U);
}

/* Loop over the tiles of a recurrence phase (then SYNC with the same U): a (first unit
 * vector), Uc (how many), j0 / nu (first unit, valid units: the last tile stops at H), nv
 * (vectors of columns = G*Uc), w = Uc*VL and p, the tile's panel. */
#define FOR_UNITS(U)                                                                          \
    FOR_ITEMS(&c->sch, L, c->nuv, (U), a, Uc)                                                 \
    for (int j0 = (int)a * VL, nu = (H - j0 < (int)Uc * VL ? H - j0 : (int)Uc * VL), once1_ = 1; \
         once1_; once1_ = 0)
#define FOR_TILES(WP)                                                                         \
    FOR_UNITS((WP)->U)                                                                        \
    for (int nv = (WP)->G * (int)Uc, w = (int)Uc * VL, once2_ = 1; once2_; once2_ = 0)        \
        for (FN(panel) p = FN(panel_next)((WP), H, a, Uc, L->reverse, c->nuv); once2_;         \
             once2_ = 0)
#define SYNC(U) fr_sync(&c->sch, L, c->nuv, (U))

/* Variable lengths: step t of row n is padding when t >= len[n]. Padding rows get zero outputs,
 * activations and gradients (so no gradient flows from them and the zero h_prev / c_prev they
 * leave makes the next padded step's product vanish). */
#define PAD(c, t, n) ((c)->len && (t) >= (c)->len[n])

static inline ATTR void FN(zero)(REAL *p, int cnt) {
    for (int u = 0; u < cnt; u++) p[u] = 0;
}

/* Zero `cnt` units of G gate blocks (stride H) from p. */
static inline ATTR void FN(zero_gates)(REAL *p, int G, int H, int cnt) {
    for (int g = 0; g < G; g++) FN(zero)(p + (long)g * H, cnt);
}

/* The layer forward's final state: units [j0, j0 + nu) of row n after its own last step,
 * from v (that step's row), or from v0 (the initial state's row) for a row of length 0.
 * Called at every step of every row; copies at the one that matters. */
static inline ATTR void FN(keep_last)(const FN(ctx) *c, REAL *last, int t, int n, int j0, int nu,
                                     const REAL *v, const REAL *v0) {
    if (!last) return;
    long L_ = c->len ? c->len[n] : c->T;
    if (t == L_ - 1)
        memcpy(last + (long)n * c->H + j0, v, nu * sizeof(REAL));
    else if (L_ == 0 && t == 0)
        memcpy(last + (long)n * c->H + j0, v0, nu * sizeof(REAL));
}

/* A layer forward's records of row n's new h (o: nu units from j0) besides hs: the copy kept
 * for the backward, written while o is in L1 (see keep), and h_last at the row's last
 * step. */
static inline ATTR void FN(keep_h)(const FN(ctx) *c, int t, int n, int j0, int nu,
                                   const REAL *o, const REAL *h0) {
    if (c->hs_kept)
        memcpy(c->hs_kept + t * c->hts + (long)n * c->hns + j0, o, nu * sizeof(REAL));
    FN(keep_last)(c, c->h_last, t, n, j0, nu, o, h0);
}

/* Gate epilogues, one row (one batch element) each. Forward rows see the product block row
 * `cr` (gate g at cr + g*w) and the rows of xw / acts at this tile's first unit (gate g at
 * + g*H); backward rows see the product block row `pr` (this step's share of dh from the step
 * after it) and run over this tile's units [0, cnt) of one row. Pointers are
 * restrict-qualified: a row's inputs and outputs never overlap. */
#define R REAL *restrict
#define CR const REAL *restrict
#define ONE ((REAL)1)

#define STORE_STEP(T, LD, ST, SIG, TANH) ST(dst + u, LD(cr + u));
static inline ATTR void FN(store_row)(int nu, CR cr, R dst) { ROW_LOOP(nu, STORE_STEP); }
#define ADD_STEP(T, LD, ST, SIG, TANH) ST(dst + u, LD(dst + u) + LD(cr + u));
static inline ATTR void FN(add_row)(int nu, CR cr, R dst) { ROW_LOOP(nu, ADD_STEP); }

/* The final dh0 = dA_0 @ Wh^T (+ what dh holds when add) of a backward pass. */
static ATTR void FN(dh0_phase)(FN(ctx) *c, fr_local *L, const FN(wpack) *w1, REAL *C, int K,
                              const REAL *A, long lda, int add) {
    const int N = c->N, H = c->H;
    FOR_TILES(w1) {
        FN(tile_product)(N, K, A, lda, p, nv, C, 0, TILE_KCB_BWD);
        for (int n = 0; n < N; n++) {
            if (add)
                FN(add_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
            else
                FN(store_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
        }
    }
    SYNC(w1->U);
}

/* A layer forward with its input inside the steps (c->xs set, see run_input_layer): the tile's
 * product block C also gets x_t @ Wx through the tile's panel of Wx. */
static inline ATTR void FN(input_product)(const FN(ctx) *c, int t, long n0, long cnt,
                                         const FN(wpack) *wx, long a, long Uc, int nv, REAL *C) {
    const long ldx = (long)c->T * c->D;
    if (c->xs)
        FN(tile_product)((int)cnt, c->D, c->xs + n0 * ldx + (long)t * c->D, ldx,
                         FN(panel_at)(wx, c->H, a, Uc), nv, C, 1, TILE_KCB_FWD((int)cnt));
}

/* Rows apart: where one thread's panels of a whole step fit its L2, each thread takes whole
 * rows (batch elements) through every step and every tile, instead of its tiles for every
 * row. Rows never meet in a recurrence, so the threads meet once per call instead of once per
 * step, read no h_prev from another core, and share the work evenly whatever the count of
 * unit vectors (H = 200: 13, split 7 / 6 by tiles). Each element is summed over k in the same
 * order either way, so results are the same. Returns the rows of an item (one per thread), or
 * 0 to cut by tiles. */
#define FR_ROWS_MIN 8 /* rows per thread at least: fewer fill too little of a microkernel */
/* Every tile of a phase over the unit vectors in items of U (a, Uc), in order, cut as the
 * scheduler cuts them for L->nt threads: the panels were packed tile by tile so. */
#define FOR_EVERY_TILE(U)                                                                     \
    for (int r_ = 0; r_ < L->nt; r_++)                                                        \
        for (long u0_ = 0, u1_ = 0, a = (fr_range(c->nuv, r_, L->nt, &u0_, &u1_), u0_);     \
             a < u1_; a += (U))                                                               \
            for (long Uc = u1_ - a < (U) ? u1_ - a : (U), once_t = 1; once_t; once_t = 0)
static inline long FN(rows_apart)(const FN(ctx) *c, const fr_local *L, long panel_elems) {
    if (L->nt < 2 || c->N < FR_ROWS_MIN * L->nt) return 0;
    if (panel_elems * (long)sizeof(REAL) > fr_l2_bytes()) return 0;
    return (c->N + L->nt - 1) / L->nt;
}

/* In a tile function: the tile at unit vector a of Uc vectors (j0 its first unit, w its width,
 * nu its units inside H), and h_prev of step t from hs (h0 at t = 0; lda its row stride). */
#define TILE_AT(a, Uc)                                                                        \
    const int j0 = (int)(a) * VL, w = (int)(Uc) * VL, nu = c->H - j0 < w ? c->H - j0 : w
#define HPREV(hs_, t)                                                                         \
    const REAL *hp = (t) ? (hs_) + ((t) - 1) * c->hts : c->h0;                                \
    const long lda = (t) ? c->hns : c->H

/* One tile's part of step t for rows [n0, n0 + cnt): its product(s) and gate math (wx: the
 * panels of Wx where the input is inside the steps). */
typedef void (*FN(tile_fn))(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc, FN(panel) p,
                            const FN(wpack) *wx, REAL *C);

/* The steps of a recurrence whose panels are packed: forward (t up) or backward (`down`), each
 * step npass passes over the tiles (pass i: fn[i] with the panels of wp[i], and of wx[i] for
 * the input where it is inside the steps; wx NULL where it is not). Rows apart where
 * rows_apart says so (panel_elems: one thread's panels of a step), else tiles of every row
 * with a meeting after each pass. */
static ATTR void FN(run_steps)(FN(ctx) *c, fr_local *L, REAL *C, int down, int npass,
                               const FN(wpack) *const *wp, const FN(tile_fn) *fn,
                               const FN(wpack) *const *wx, long panel_elems) {
    const int T = c->T, H = c->H;
    long nr = FN(rows_apart)(c, L, panel_elems);
    /* A forward tile prefetches its gate math's lines during its product (panel.pre). The
     * LSTM's does so only where the threads share out the tiles: there a tile's rows were last
     * written by either core, and panels that stream from memory push them out of L2 (LSTM
     * 20x30x128x1024 forward 24.7-25.1 ms without, 23.8-24.3 with; 1x100x256x256 3-5% faster
     * with). With rows apart, a thread's rows and panels stay in its own L2 and the LSTM's
     * prefetches cost 2-4%: forward, the char LM's 32x35x28x256 2.88-3.03 ms without them,
     * 2.99-3.13 with; 20x35x200x200 2.12-2.23 against 2.23-2.27, 64x50x256x256 12.97-13.38
     * against 13.39-13.66. The GRUs' prefetch always: the reset-before GRU's forward at
     * 64x50x256x256 (rows apart) took 4-7% longer without, the others were within noise. */
    if (nr) {
        FOR_ITEMS(&c->sch, L, c->N, nr, n0, cnt)
        for (int s = 0; s < T; s++)
            for (int i = 0; i < npass; i++)
                FOR_EVERY_TILE(wp[i]->U) {
                    FN(panel) p = FN(panel_next)(wp[i], H, a, Uc, 0, c->nuv);
                    p.apart = 1;
                    fn[i](c, down ? T - 1 - s : s, n0, cnt, a, Uc, p, wx ? wx[i] : NULL, C);
                }
        fr_sync(&c->sch, L, c->N, nr);
        return;
    }
    for (int s = 0; s < T; s++) {
        L->reverse = s & 1; /* see fr_next */
        for (int i = 0; i < npass; i++) {
            FOR_ITEMS(&c->sch, L, c->nuv, wp[i]->U, a, Uc)
            fn[i](c, down ? T - 1 - s : s, 0, c->N, a, Uc,
                  FN(panel_next)(wp[i], H, a, Uc, L->reverse, c->nuv), wx ? wx[i] : NULL, C);
            fr_sync(&c->sch, L, c->nuv, wp[i]->U);
        }
    }
}

/* The lines a tile's gate math reads or writes in each row: up to 6 streams, each `ng` runs
 * of nl lines, gs apart from p + r*rs in row r (a tile's units in its gate blocks), to read
 * or to write. */
typedef struct {
    const REAL *p[6];
    long rs[6], gs[6];
    int ng[6], wr[6], ns, nl;
} FN(rowpf);
static inline ATTR void FN(rowpf_add)(FN(rowpf) *q, const REAL *p, long rs, int ng, long gs,
                                     int wr) {
    q->p[q->ns] = p, q->rs[q->ns] = rs, q->ng[q->ns] = ng, q->gs[q->ns] = gs;
    q->wr[q->ns++] = wr;
}
static ATTR void FN(rowpf_run)(const void *arg, long r0, long r1) {
    const FN(rowpf) *q = (const FN(rowpf) *)arg;
    for (long r = r0; r < r1; r++)
        for (int i = 0; i < q->ns; i++)
            for (int g = 0; g < q->ng[i]; g++)
                for (int l = 0; l < q->nl; l++) {
                    const char *a = (const char *)(q->p[i] + r * q->rs[i] + g * q->gs[i]) + 64 * l;
                    if (q->wr[i])
                        __builtin_prefetch(a, 1, 2);
                    else
                        __builtin_prefetch(a, 0, 2);
                }
}
#define ROWPF_LINES(w) ((int)(((w) * (long)sizeof(REAL) + 63) / 64)) /* lines of w units */

/* ------------------------------------------------------------------ RNN: h' = tanh(xw + h Wh) */
#define RNN_FWD_STEP(T, LD, ST, SIG, TANH) ST(ho + u, TANH(LD(xr + u) + LD(cr + u)));
static inline ATTR void FN(rnn_fwd_row)(int nu, CR cr, CR xr, R ho) { ROW_LOOP(nu, RNN_FWD_STEP); }

#define RNN_BWD_STEP(T, LD, ST, SIG, TANH)                                                    \
    {                                                                                         \
        T y_ = LD(y + u);                                                                     \
        ST(d + u, (LD(g + u) + LD(pr + u)) * (ONE - y_ * y_));                                \
    }
static inline ATTR void FN(rnn_bwd_row)(int cnt, CR g, CR pr, CR y, R d) {
    ROW_LOOP(cnt, RNN_BWD_STEP);
}

/* Step t of rows [n0, n0 + cnt) for the tile of Uc unit vectors at a (see lstm_fwd_tile). */
static ATTR void FN(rnn_fwd_tile)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                  FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int N = c->N, H = c->H;
    TILE_AT(a, Uc);
    HPREV(c->hs, t);
    const REAL *x = c->xs ? c->b : c->xw + (long)t * N * H;
    const long xn = c->xs ? 0 : H; /* x's row stride: the bias is every row's */
    REAL *ho = c->hs + t * c->hts;
    FN(tile_product)((int)cnt, H, hp + n0 * lda, lda, p, (int)Uc, C, 0, TILE_KCB_FWD((int)cnt));
    FN(input_product)(c, t, n0, cnt, wx, a, Uc, (int)Uc, C);
    for (long n = n0; n < n0 + cnt; n++) {
        REAL *o = ho + n * c->hns + j0;
        if (PAD(c, t, n))
            FN(zero)(o, nu);
        else
            FN(rnn_fwd_row)(nu, C + (n - n0) * w, x + n * xn + j0, o);
        FN(keep_h)(c, t, (int)n, j0, nu, o, c->h0 + n * H + j0);
    }
}

static ATTR void FN(rnn_fwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int H = c->H;
    FN(wpack) w1 = {c->Wh, H, 0, 1, H, 1, 4, c->direct, c->pk1};
    FN(wpack) w2 = {c->Wx, H, 0, 1, c->D, 1, 4, c->direct, c->pk2};
    FN(pack_phase)(c, L, &w1);
    if (c->xs) FN(pack_phase)(c, L, &w2);
    const FN(wpack) *wp[] = {&w1};
    const FN(tile_fn) fn[] = {FN(rnn_fwd_tile)};
    const FN(wpack) *wx[] = {&w2};
    FN(run_steps)(c, L, C, 0, 1, wp, fn, wx, (H + (c->xs ? c->D : 0)) * c->nuv * VL);
}

/* Step t of rows [n0, n0 + cnt) for the tile at a (see lstm_bwd_tile). */
static ATTR void FN(rnn_bwd_tile)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                  FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int T = c->T, N = c->N, H = c->H;
    TILE_AT(a, Uc);
    REAL *d = c->dA + (long)t * N * H;
    if (t < T - 1) /* dA_{t+1} Wh^T */
        FN(tile_product)((int)cnt, H, d + ((long)N + n0) * H, H, p, (int)Uc, C, 0,
                         TILE_KCB_BWD);
    else
        FN(zero)(C, (int)cnt * w);
    for (long n = n0; n < n0 + cnt; n++) {
        REAL *dr = d + n * H + j0;
        if (PAD(c, t, n)) {
            FN(zero)(dr, nu);
            continue;
        }
        long s = t * c->hts + n * c->hns + j0;
        FN(rnn_bwd_row)(nu, c->dhs + s, C + (n - n0) * w, c->hs_in + s, dr);
    }
}

static ATTR void FN(rnn_bwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int H = c->H;
    FN(wpack) w1 = {c->Wh, 1, 0, H, H, 1, 4, 0, c->pk1}; /* rows of Wh: dA @ Wh^T */
    FN(pack_phase)(c, L, &w1);
    const FN(wpack) *wp[] = {&w1};
    const FN(tile_fn) fn[] = {FN(rnn_bwd_tile)};
    FN(run_steps)(c, L, C, 1, 1, wp, fn, NULL, (long)H * c->nuv * VL);
    FN(dh0_phase)(c, L, &w1, C, H, c->dA, H, 0);
}

/* --------------------------------------------- LSTM: [f|g|i|o], c' = f c + g i, h' = o tanh(c') */
#define LSTM_FWD_STEP(T, LD, ST, SIG, TANH)                                                   \
    {                                                                                         \
        T f = SIG(LD(xr + u) + LD(cr + u));                                                   \
        T g = TANH(LD(xr + H + u) + LD(cr + w + u));                                          \
        T i = SIG(LD(xr + 2 * H + u) + LD(cr + 2 * w + u));                                   \
        T og = SIG(LD(xr + 3 * H + u) + LD(cr + 3 * w + u));                                  \
        T cc = f * LD(cp + u) + g * i;                                                        \
        ST(ar + u, f);                                                                        \
        ST(ar + H + u, g);                                                                    \
        ST(ar + 2 * H + u, i);                                                                \
        ST(ar + 3 * H + u, og);                                                               \
        ST(co + u, cc);                                                                       \
        ST(ho + u, og * TANH(cc));                                                            \
    }
static inline ATTR void FN(lstm_fwd_row)(int nu, int H, int w, CR cr, CR xr, CR cp, R ar, R co,
                                        R ho) {
    ROW_LOOP(nu, LSTM_FWD_STEP);
}

/* dc is the running gradient of this row's cell state: in, that of step t+1; out, step t's. */
#define LSTM_BWD_STEP(T, LD, ST, SIG, TANH)                                                   \
    {                                                                                         \
        T f = LD(ar + u), gg = LD(ar + H + u), i = LD(ar + 2 * H + u);                        \
        T og = LD(ar + 3 * H + u), tc = TANH(LD(cn + u));                                     \
        T dhv = LD(g + u) + LD(pr + u);                                                       \
        T dcv = LD(dc + u) + dhv * og * (ONE - tc * tc);                                      \
        ST(dr + u, dcv * LD(cp + u) * f * (ONE - f));                                         \
        ST(dr + H + u, dcv * i * (ONE - gg * gg));                                            \
        ST(dr + 2 * H + u, dcv * gg * i * (ONE - i));                                         \
        ST(dr + 3 * H + u, dhv * tc * og * (ONE - og));                                       \
        ST(dc + u, dcv * f);                                                                  \
    }
static inline ATTR void FN(lstm_bwd_row)(int cnt, int H, CR ar, CR cn, CR cp, CR g, CR pr, R dc,
                                        R dr) {
    ROW_LOOP(cnt, LSTM_BWD_STEP);
}

/* Step t of rows [n0, n0 + cnt) for the tile of Uc unit vectors at a: its product (h_prev,
 * and x_t where the input is inside the steps) and gates. */
static ATTR void FN(lstm_fwd_tile)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                   FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int N = c->N, H = c->H;
    const long G4 = 4L * H;
    const int j0 = (int)a * VL, w = (int)Uc * VL, nv = 4 * (int)Uc;
    const int nu = H - j0 < w ? H - j0 : w;
    HPREV(c->hs, t);
    const REAL *cp = t ? c->cs + (long)(t - 1) * N * H : c->c0;
    const REAL *x = c->xs ? c->b : c->xw + t * N * G4;
    const long xn = c->xs ? 0 : G4; /* x's row stride: the bias is every row's */
    REAL *ac = c->acts + t * N * G4;
    REAL *co = c->cs + (long)t * N * H;
    FN(rowpf) pf = {.ns = 0, .nl = ROWPF_LINES(w)};
    if (!p.apart) { /* see run_steps */
        if (!c->xs) FN(rowpf_add)(&pf, x + n0 * xn + j0, xn, 4, H, 0);
        FN(rowpf_add)(&pf, cp + n0 * H + j0, H, 1, 0, 0);
        FN(rowpf_add)(&pf, ac + n0 * G4 + j0, G4, 4, H, 1);
        FN(rowpf_add)(&pf, co + n0 * H + j0, H, 1, 0, 1);
        FN(rowpf_add)(&pf, c->hs + t * c->hts + n0 * c->hns + j0, c->hns, 1, 0, 1);
        p.pre = FN(rowpf_run), p.pre_arg = &pf;
    }
    FN(tile_product)((int)cnt, H, hp + n0 * lda, lda, p, nv, C, 0, TILE_KCB_FWD((int)cnt));
    FN(input_product)(c, t, n0, cnt, wx, a, Uc, nv, C);
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G4 + j0;
        REAL *o = c->hs + t * c->hts + n * c->hns + j0;
        if (PAD(c, t, n)) {
            FN(zero_gates)(ac + sg, 4, H, nu);
            FN(zero)(co + s, nu);
            FN(zero)(o, nu);
        } else {
            FN(lstm_fwd_row)(nu, H, w, C + (n - n0) * 4 * w, x + n * xn + j0, cp + s, ac + sg,
                             co + s, o);
        }
        FN(keep_h)(c, t, (int)n, j0, nu, o, c->h0 + s);
        FN(keep_last)(c, c->c_last, t, (int)n, j0, nu, co + s, c->c0 + s);
    }
}

static ATTR void FN(lstm_fwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int H = c->H;
    const long G4 = 4L * H;
    FN(wpack) w1 = {c->Wh, G4, H, 1, H, 4, 1, c->direct, c->pk1};
    FN(wpack) w2 = {c->Wx, G4, H, 1, c->D, 4, 1, c->direct, c->pk2};
    FN(pack_phase)(c, L, &w1);
    if (c->xs) FN(pack_phase)(c, L, &w2);
    const FN(wpack) *wp[] = {&w1};
    const FN(tile_fn) fn[] = {FN(lstm_fwd_tile)};
    const FN(wpack) *wx[] = {&w2};
    FN(run_steps)(c, L, C, 0, 1, wp, fn, wx, (H + (c->xs ? c->D : 0)) * c->nuv * VL * 4);
}

/* Step t of rows [n0, n0 + cnt) for the tile of Uc unit vectors at a: those units' share of
 * dh from step t+1 (dA_{t+1} Wh^T), then their gate gradients of step t. */
static ATTR void FN(lstm_bwd_tile)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                   FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int T = c->T, N = c->N, H = c->H;
    const long G4 = 4L * H, o = (long)t * N * H;
    TILE_AT(a, Uc);
    const REAL *cp = t ? c->cs_in + o - (long)N * H : c->c0;
    REAL *d = c->dA + t * N * G4;
    if (t < T - 1) /* dA_{t+1} Wh^T */
        FN(tile_product)((int)cnt, (int)G4, d + (N + n0) * G4, G4, p, (int)Uc, C, 0,
                         TILE_KCB_BWD);
    else
        FN(zero)(C, (int)cnt * w);
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G4 + j0;
        if (t == T - 1) FN(zero)(c->dc + s, nu);
        if (PAD(c, t, n)) {
            FN(zero_gates)(d + sg, 4, H, nu);
            FN(zero)(c->dc + s, nu);
            continue;
        }
        FN(lstm_bwd_row)(nu, H, c->acts_in + t * N * G4 + sg, c->cs_in + o + s, cp + s,
                         c->dhs + t * c->hts + n * c->hns + j0, C + (n - n0) * w, c->dc + s,
                         d + sg);
    }
}

static ATTR void FN(lstm_bwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const long G4 = 4L * c->H;
    FN(wpack) w1 = {c->Wh, 1, 0, G4, (int)G4, 1, 4, 0, c->pk1}; /* rows of Wh: dA @ Wh^T */
    FN(pack_phase)(c, L, &w1);
    const FN(wpack) *wp[] = {&w1};
    const FN(tile_fn) fn[] = {FN(lstm_bwd_tile)};
    FN(run_steps)(c, L, C, 1, 1, wp, fn, NULL, G4 * c->nuv * VL);
    FN(dh0_phase)(c, L, &w1, C, (int)G4, c->dA, G4, 0);
}

/* -------------------------------- GRU, reset before: [z|r|h~], h~ = tanh(xw_h + (r h) Wh_h) */
#define GRU_FWD_ZR_STEP(T, LD, ST, SIG, TANH)                                                 \
    {                                                                                         \
        T z = SIG(LD(xr + u) + LD(cr + u));                                                   \
        T r = SIG(LD(xr + H + u) + LD(cr + w + u));                                           \
        ST(ar + u, z);                                                                        \
        ST(ar + H + u, r);                                                                    \
        ST(rh + u, r * LD(hp + u));                                                           \
    }
static inline ATTR void FN(gru_fwd_row_zr)(int nu, int H, int w, CR cr, CR xr, CR hp, R ar,
                                          R rh) {
    ROW_LOOP(nu, GRU_FWD_ZR_STEP);
}

#define GRU_FWD_H_STEP(T, LD, ST, SIG, TANH)                                                  \
    {                                                                                         \
        T z = LD(ar + u);                                                                     \
        T ht = TANH(LD(xr + 2 * H + u) + LD(cr + u));                                         \
        ST(ar + 2 * H + u, ht);                                                               \
        ST(ho + u, (ONE - z) * LD(hp + u) + z * ht);                                          \
    }
static inline ATTR void FN(gru_fwd_row_h)(int nu, int H, CR cr, CR xr, CR hp, R ar, R ho) {
    ROW_LOOP(nu, GRU_FWD_H_STEP);
}

/* v = dhs + dh (the part of dh_{t+1} from its own gates, pe) + [dA_z|dA_r]_{t+1} Wh_zr^T (pr) */
#define GRU_BWD_H_STEP(T, LD, ST, SIG, TANH)                                                  \
    {                                                                                         \
        T z = LD(ar + u), ht = LD(ar + 2 * H + u);                                            \
        T v = LD(g + u) + LD(pe + u) + LD(pr + u);                                            \
        ST(dhv + u, v);                                                                       \
        ST(dr + 2 * H + u, v * z * (ONE - ht * ht));                                          \
    }
static inline ATTR void FN(gru_bwd_row_h)(int cnt, int H, CR ar, CR g, CR pe, CR pr, R dhv,
                                         R dr) {
    ROW_LOOP(cnt, GRU_BWD_H_STEP);
}

#define GRU_BWD_ZR_STEP(T, LD, ST, SIG, TANH)                                                 \
    {                                                                                         \
        T z = LD(ar + u), r = LD(ar + H + u), ht = LD(ar + 2 * H + u), hv = LD(hp + u);       \
        T v = LD(dhv + u), d_ = LD(drh + u);                                                  \
        ST(dr + u, v * (ht - hv) * z * (ONE - z));                                            \
        ST(dr + H + u, d_ * hv * r * (ONE - r));                                              \
        ST(dh + u, v * (ONE - z) + d_ * r);                                                   \
    }
static inline ATTR void FN(gru_bwd_row_zr)(int nu, int H, CR ar, CR hp, CR dhv, CR drh, R dr,
                                          R dh) {
    ROW_LOOP(nu, GRU_BWD_ZR_STEP);
}

/* Step t of rows [n0, n0 + cnt), the z and r gates of the tile at a (its [Wh_z | Wh_r] panel
 * p), then, in a second pass over the tiles, the candidate and h (panel of Wh_h). */
static ATTR void FN(gru_fwd_tile_zr)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                     FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int N = c->N, H = c->H;
    const long G3 = 3L * H;
    TILE_AT(a, Uc);
    HPREV(c->hs, t);
    const REAL *x = c->xs ? c->b : c->xw + t * N * G3;
    const long xn = c->xs ? 0 : G3; /* x's row stride: the bias is every row's */
    REAL *ac = c->acts + t * N * G3;
    REAL *rh = c->rh + (long)t * N * H;
    FN(rowpf) pf = {.ns = 0, .nl = ROWPF_LINES(w)};
    if (!c->xs) FN(rowpf_add)(&pf, x + n0 * xn + j0, xn, 2, H, 0);
    FN(rowpf_add)(&pf, ac + n0 * G3 + j0, G3, 2, H, 1);
    FN(rowpf_add)(&pf, rh + n0 * H + j0, H, 1, 0, 1);
    p.pre = FN(rowpf_run), p.pre_arg = &pf;
    FN(tile_product)((int)cnt, H, hp + n0 * lda, lda, p, 2 * (int)Uc, C, 0,
                     TILE_KCB_FWD((int)cnt));
    FN(input_product)(c, t, n0, cnt, wx, a, Uc, 2 * (int)Uc, C);
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G3 + j0;
        if (PAD(c, t, n)) {
            FN(zero_gates)(ac + sg, 3, H, nu);
            FN(zero)(rh + s, nu);
            FN(zero)(c->hs + t * c->hts + n * c->hns + j0, nu);
            continue;
        }
        FN(gru_fwd_row_zr)(nu, H, w, C + (n - n0) * 2 * w, x + n * xn + j0, hp + n * lda + j0,
                           ac + sg, rh + s);
    }
}
static ATTR void FN(gru_fwd_tile_h)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                    FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int N = c->N, H = c->H;
    const long G3 = 3L * H;
    TILE_AT(a, Uc);
    HPREV(c->hs, t);
    const REAL *x = c->xs ? c->b : c->xw + t * N * G3;
    const long xn = c->xs ? 0 : G3;
    REAL *ac = c->acts + t * N * G3;
    const REAL *rh = c->rh + (long)t * N * H;
    FN(rowpf) pf = {.ns = 0, .nl = ROWPF_LINES(w)};
    if (!c->xs) FN(rowpf_add)(&pf, x + n0 * xn + j0 + 2 * H, xn, 1, 0, 0);
    FN(rowpf_add)(&pf, ac + n0 * G3 + j0, G3, 1, 0, 0);
    FN(rowpf_add)(&pf, ac + n0 * G3 + j0 + 2 * H, G3, 1, 0, 1);
    FN(rowpf_add)(&pf, c->hs + t * c->hts + n0 * c->hns + j0, c->hns, 1, 0, 1);
    p.pre = FN(rowpf_run), p.pre_arg = &pf;
    FN(tile_product)((int)cnt, H, rh + n0 * H, H, p, (int)Uc, C, 0, TILE_KCB_FWD((int)cnt));
    FN(input_product)(c, t, n0, cnt, wx, a, Uc, (int)Uc, C);
    for (long n = n0; n < n0 + cnt; n++) {
        const long sg = n * G3 + j0;
        REAL *o = c->hs + t * c->hts + n * c->hns + j0;
        if (!PAD(c, t, n)) /* padded rows were zeroed in the first pass */
            FN(gru_fwd_row_h)(nu, H, C + (n - n0) * w, x + n * xn + j0, hp + n * lda + j0,
                              ac + sg, o);
        FN(keep_h)(c, t, (int)n, j0, nu, o, c->h0 + n * H + j0);
    }
}

static ATTR void FN(gru_fwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int H = c->H, D = c->xs ? c->D : 0;
    const long G3 = 3L * H, nuh = c->nuv * VL;
    /* [Wh_z | Wh_r] and Wh_h, and where the input is inside the steps the same blocks of Wx
     * (after Wh_h in pk2: see run_input_layer) */
    FN(wpack) w1 = {c->Wh, G3, H, 1, H, 2, 2, c->direct, c->pk1};
    FN(wpack) w2 = {c->Wh + 2 * H, G3, 0, 1, H, 1, 4, c->direct, c->pk2};
    FN(wpack) x1 = {c->Wx, G3, H, 1, D, 2, 2, c->direct, c->pk2 + nuh * H};
    FN(wpack) x2 = {c->Wx + 2 * H, G3, 0, 1, D, 1, 4, c->direct, c->pk2 + nuh * (H + 2 * D)};
    FN(pack_phase)(c, L, &w1);
    FN(pack_phase)(c, L, &w2);
    if (c->xs) {
        FN(pack_phase)(c, L, &x1);
        FN(pack_phase)(c, L, &x2);
    }
    /* two passes a step: the candidate product needs every unit of r*h */
    const FN(wpack) *wp[] = {&w1, &w2}, *wx[] = {&x1, &x2};
    const FN(tile_fn) fn[] = {FN(gru_fwd_tile_zr), FN(gru_fwd_tile_h)};
    FN(run_steps)(c, L, C, 0, 2, wp, fn, c->xs ? wx : NULL, (H + D) * 3 * nuh);
}

/* Step t of rows [n0, n0 + cnt) for the tile at a: units of dh_{t+1} (what dh holds, its
 * gates' share, + [dA_z|dA_r]_{t+1} Wh_zr^T: panel p), then the candidate's gradient of step
 * t; in a second pass over the tiles, drh = dA_h @ Wh_h^T and the z and r gradients. */
static ATTR void FN(gru_bwd_tile_h)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                    FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int T = c->T, N = c->N, H = c->H;
    const long G3 = 3L * H;
    TILE_AT(a, Uc);
    const REAL *ac = c->acts_in + t * N * G3;
    REAL *d = c->dA + t * N * G3, *dhv = c->shared; /* dhv (N, H): dhs[t] + dh */
    if (t < T - 1)
        FN(tile_product)((int)cnt, 2 * H, d + (N + n0) * G3, G3, p, (int)Uc, C, 0, TILE_KCB_BWD);
    else
        FN(zero)(C, (int)cnt * w);
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G3 + j0;
        if (t == T - 1) FN(zero)(c->dh + s, nu);
        if (PAD(c, t, n)) {
            FN(zero_gates)(d + sg, 3, H, nu);
            continue;
        }
        FN(gru_bwd_row_h)(nu, H, ac + sg, c->dhs + t * c->hts + n * c->hns + j0, c->dh + s,
                          C + (n - n0) * w, dhv + s, d + sg);
    }
}
static ATTR void FN(gru_bwd_tile_zr)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                     FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int N = c->N, H = c->H;
    const long G3 = 3L * H;
    TILE_AT(a, Uc);
    HPREV(c->hs_in, t);
    const REAL *ac = c->acts_in + t * N * G3;
    REAL *d = c->dA + t * N * G3, *dhv = c->shared;
    FN(tile_product)((int)cnt, H, d + n0 * G3 + 2 * H, G3, p, (int)Uc, C, 0, TILE_KCB_BWD);
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G3 + j0;
        if (PAD(c, t, n)) {
            FN(zero)(c->dh + s, nu);
            continue;
        }
        FN(gru_bwd_row_zr)(nu, H, ac + sg, hp + n * lda + j0, dhv + s, C + (n - n0) * w, d + sg,
                           c->dh + s);
    }
}

static ATTR void FN(gru_bwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int H = c->H;
    const long G3 = 3L * H;
    FN(wpack) w1 = {c->Wh + 2 * H, 1, 0, G3, H, 1, 4, 0, c->pk1}; /* for dA_h @ Wh_h^T */
    FN(pack_phase)(c, L, &w1);
    FN(wpack) w2 = {c->Wh, 1, 0, G3, 2 * H, 1, 4, 0, c->pk2};     /* for dA_zr @ Wh_zr^T */
    FN(pack_phase)(c, L, &w2);
    const FN(wpack) *wp[] = {&w2, &w1};
    const FN(tile_fn) fn[] = {FN(gru_bwd_tile_h), FN(gru_bwd_tile_zr)};
    FN(run_steps)(c, L, C, 1, 2, wp, fn, NULL, G3 * c->nuv * VL);
    FN(dh0_phase)(c, L, &w2, C, 2 * H, c->dA, G3, 1);
}

/* --------------------- GRU, reset after: n = tanh(xw_n + r (h Wh_n + b_hn)), h' = (1-z) n + z h */
/* XN: the candidate's input part, xw_n (projected first) or b_n + (x_t Wx_n) from the block's
 * fourth column (the input inside the steps) */
#define GRU_RA_FWD_BODY(T, LD, ST, SIG, TANH, XN)                                             \
    {                                                                                         \
        T z = SIG(LD(xr + u) + LD(cr + u));                                                   \
        T r = SIG(LD(xr + H + u) + LD(cr + w + u));                                           \
        T q = LD(cr + 2 * w + u) + LD(bh + u);                                                \
        T n_ = TANH(XN + r * q);                                                              \
        ST(hn + u, q);                                                                        \
        ST(ar + u, z);                                                                        \
        ST(ar + H + u, r);                                                                    \
        ST(ar + 2 * H + u, n_);                                                               \
        ST(ho + u, (ONE - z) * n_ + z * LD(hp + u));                                          \
    }
#define GRU_RA_FWD_STEP(T, LD, ST, SIG, TANH)                                                 \
    GRU_RA_FWD_BODY(T, LD, ST, SIG, TANH, LD(xr + 2 * H + u))
#define GRU_RA_FWD_IN_STEP(T, LD, ST, SIG, TANH)                                              \
    GRU_RA_FWD_BODY(T, LD, ST, SIG, TANH, LD(xr + 2 * H + u) + LD(cr + 3 * w + u))
static inline ATTR void FN(gru_ra_fwd_row)(int nu, int H, int w, CR cr, CR xr, CR bh, CR hp,
                                          R ar, R hn, R ho) {
    ROW_LOOP(nu, GRU_RA_FWD_STEP);
}
static inline ATTR void FN(gru_ra_fwd_row_in)(int nu, int H, int w, CR cr, CR xr, CR bh, CR hp,
                                             R ar, R hn, R ho) {
    ROW_LOOP(nu, GRU_RA_FWD_IN_STEP);
}

/* v = dhs + dh (in: z*v of step t+1; out: z*v of step t) + the product share pr */
#define GRU_RA_BWD_STEP(T, LD, ST, SIG, TANH)                                                 \
    {                                                                                         \
        T z = LD(ar + u), r = LD(ar + H + u), n_ = LD(ar + 2 * H + u);                        \
        T v = LD(g + u) + LD(dh + u) + LD(pr + u);                                            \
        T dan = v * (ONE - z) * (ONE - n_ * n_);                                              \
        T daz = v * (LD(hp + u) - n_) * z * (ONE - z);                                        \
        T dar = dan * LD(hnt + u) * r * (ONE - r);                                            \
        ST(dr + u, daz);                                                                      \
        ST(dr + H + u, dar);                                                                  \
        ST(dr + 2 * H + u, dan);                                                              \
        ST(dn + u, dan * r);                                                                  \
        ST(dh + u, v * z);                                                                    \
    }
static inline ATTR void FN(gru_ra_bwd_row)(int cnt, int H, CR ar, CR g, CR pr, CR hp, CR hnt,
                                          R dh, R dr, R dn) {
    ROW_LOOP(cnt, GRU_RA_BWD_STEP);
}

/* Step t of rows [n0, n0 + cnt) for the tile at a: product and gates. With the input inside
 * the steps, a row of the block C holds [z | r | hn | xn], each w wide: z and r sum both
 * products, hn is h_prev's alone (the reset gate scales it) and xn x_t's. */
static ATTR void FN(gru_ra_fwd_tile)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                     FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int N = c->N, H = c->H;
    const long G3 = 3L * H;
    TILE_AT(a, Uc);
    HPREV(c->hs, t);
    const REAL *x = c->xs ? c->b : c->xw + t * N * G3;
    const long xn = c->xs ? 0 : G3; /* x's row stride: the bias is every row's */
    REAL *ac = c->acts + t * N * G3;
    REAL *hn = c->hn + (long)t * N * H;
    const int nv = 3 * (int)Uc, cb = c->xs ? 4 : 3; /* blocks of w in a row of C */
    FN(rowpf) pf = {.ns = 0, .nl = ROWPF_LINES(w)};
    if (!c->xs) FN(rowpf_add)(&pf, x + n0 * xn + j0, xn, 3, H, 0);
    FN(rowpf_add)(&pf, ac + n0 * G3 + j0, G3, 3, H, 1);
    FN(rowpf_add)(&pf, hn + n0 * H + j0, H, 1, 0, 1);
    FN(rowpf_add)(&pf, c->hs + t * c->hts + n0 * c->hns + j0, c->hns, 1, 0, 1);
    p.pre = FN(rowpf_run), p.pre_arg = &pf;
    if (c->xs) {
        long ch[4], cx[4]; /* the C columns of the panels' vectors (a panel has at most 4) */
        for (int v = 0; v < nv; v++) {
            int g = v / (int)Uc, i = v % (int)Uc;
            ch[v] = (long)g * w + i * VL;
            cx[v] = (long)(g == 2 ? 3 : g) * w + i * VL;
        }
        FN(tile_product_at)((int)cnt, H, hp + n0 * lda, lda, p, nv, C, 4L * w, ch, 0,
                            TILE_KCB_FWD((int)cnt));
        for (long n = 0; n < cnt; n++) FN(zero)(C + n * 4 * w + 3 * w, w);
        const long ldx = (long)c->T * c->D;
        FN(tile_product_at)((int)cnt, c->D, c->xs + n0 * ldx + (long)t * c->D, ldx,
                            FN(panel_at)(wx, H, a, Uc), nv, C, 4L * w, cx, 1,
                            TILE_KCB_FWD((int)cnt));
    } else {
        FN(tile_product)((int)cnt, H, hp + n0 * lda, lda, p, nv, C, 0, TILE_KCB_FWD((int)cnt));
    }
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G3 + j0;
        REAL *o = c->hs + t * c->hts + n * c->hns + j0;
        if (PAD(c, t, n)) {
            FN(zero_gates)(ac + sg, 3, H, nu);
            FN(zero)(hn + s, nu);
            FN(zero)(o, nu);
        } else {
            (c->xs ? FN(gru_ra_fwd_row_in) : FN(gru_ra_fwd_row))(
                nu, H, w, C + (n - n0) * cb * w, x + n * xn + j0, c->b_hn + j0, hp + n * lda + j0,
                ac + sg, hn + s, o);
        }
        FN(keep_h)(c, t, (int)n, j0, nu, o, c->h0 + s);
    }
}

static ATTR void FN(gru_ra_fwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int H = c->H;
    const long G3 = 3L * H;
    FN(wpack) w1 = {c->Wh, G3, H, 1, H, 3, 1, c->direct, c->pk1};
    FN(wpack) w2 = {c->Wx, G3, H, 1, c->D, 3, 1, c->direct, c->pk2};
    FN(pack_phase)(c, L, &w1);
    if (c->xs) FN(pack_phase)(c, L, &w2);
    const FN(wpack) *wp[] = {&w1};
    const FN(tile_fn) fn[] = {FN(gru_ra_fwd_tile)};
    const FN(wpack) *wx[] = {&w2};
    FN(run_steps)(c, L, C, 0, 1, wp, fn, wx, (H + (c->xs ? c->D : 0)) * c->nuv * VL * 3);
}

/* Step t of rows [n0, n0 + cnt) for the tile at a: its units' share of dh_{t+1}
 * ([dA_z|dA_r]_{t+1} Wh_zr^T + dhn_{t+1} Wh_n^T), then their gate gradients of step t. */
static ATTR void FN(gru_ra_bwd_tile)(FN(ctx) *c, int t, long n0, long cnt, long a, long Uc,
                                     FN(panel) p, const FN(wpack) *wx, REAL *C) {
    const int T = c->T, N = c->N, H = c->H;
    const long G3 = 3L * H, o = (long)t * N * H;
    TILE_AT(a, Uc);
    HPREV(c->hs_in, t);
    REAL *d = c->dA + t * N * G3;
    if (t < T - 1) {
        /* the z and r rows of the panel, then its n rows: the first part's last slice
         * prefetches the second's first, the second the next tile's (see tile_product) */
        FN(panel) pzr = p, pn = p;
        pn.b += 2L * H * p.ldb;
        pzr.nx = pn.b;
        FN(tile_product)((int)cnt, 2 * H, d + (N + n0) * G3, G3, pzr, (int)Uc, C, 0,
                         TILE_KCB_BWD);
        FN(tile_product)((int)cnt, H, c->dhn + o + (N + n0) * H, H, pn, (int)Uc, C, 1,
                         TILE_KCB_BWD);
    } else {
        FN(zero)(C, (int)cnt * w);
    }
    for (long n = n0; n < n0 + cnt; n++) {
        const long s = n * H + j0, sg = n * G3 + j0;
        if (t == T - 1) FN(zero)(c->dh + s, nu);
        if (PAD(c, t, n)) {
            FN(zero_gates)(d + sg, 3, H, nu);
            FN(zero)(c->dhn + o + s, nu);
            FN(zero)(c->dh + s, nu);
            continue;
        }
        FN(gru_ra_bwd_row)(nu, H, c->acts_in + t * N * G3 + sg,
                           c->dhs + t * c->hts + n * c->hns + j0, C + (n - n0) * w,
                           hp + n * lda + j0, c->hn_in + o + s, c->dh + s, d + sg,
                           c->dhn + o + s);
    }
}

static ATTR void FN(gru_ra_bwd)(FN(ctx) *c, fr_local *L, REAL *C) {
    const int N = c->N, H = c->H;
    const long G3 = 3L * H;
    FN(wpack) w1 = {c->Wh, 1, 0, G3, (int)G3, 1, 4, 0, c->pk1}; /* rows of Wh: [z | r | n] */
    FN(pack_phase)(c, L, &w1);
    const FN(wpack) *wp[] = {&w1};
    const FN(tile_fn) fn[] = {FN(gru_ra_bwd_tile)};
    FN(run_steps)(c, L, C, 1, 1, wp, fn, NULL, G3 * c->nuv * VL);
    /* dh0 = z*v of step 0 + [dA_z|dA_r]_0 Wh_zr^T + dhn_0 Wh_n^T */
    FOR_TILES(&w1) {
        FN(tile_product)(N, 2 * H, c->dA, G3, p, nv, C, 0, TILE_KCB_BWD);
        FN(panel) pn = p;
        pn.b += 2L * H * p.ldb;
        FN(tile_product)(N, H, c->dhn, H, pn, nv, C, 1, TILE_KCB_BWD);
        for (int n = 0; n < N; n++) FN(add_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
    }
    SYNC(w1.U);
}

/* ---------------------------------------------------------------------------- softmax
 * Softmax cross-entropy of rows [r0, r1) of x (M, V): each row's -log p[t] (0 for label -1)
 * into loss[r]; with dx, writes (softmax - onehot(t)) * w, w = scale for labelled rows and 0 for
 * the others (so a NaN or +inf score still gives NaN there, as in the reference). */
static ATTR void FN(softmax_rows)(long r0, long r1, long M, long Vn, const REAL *x,
                                 const int64_t *t, REAL *dx, REAL scale, double *loss) {
    /* A row's last Vn % VL scores go through one padded vector (lanes past Vn: -inf for the
     * max, zero after the exp) rather than a scalar loop: rows are short (the char LM's V = 28
     * is one vector and 12 scalars, whose scalar exps took most of the time). */
    long jt = Vn - Vn % VL, nt = Vn - jt;
    FN(ivec) tail_lane;
    for (int l = 0; l < VL; l++) tail_lane[l] = l < nt ? -1 : 0;
    for (long r = r0; r < r1; r++) {
        const REAL *xr = x + r * Vn;
        V xt = SPLAT(V, -INFINITY);
        if (nt && r * Vn + jt + VL <= M * Vn) { /* read on into the next rows: one load */
            xt = FN(v_sel)(tail_lane, FN(vld)(xr + jt), xt);
        } else if (nt) {
            REAL tmp[VL];
            for (int l = 0; l < VL; l++) tmp[l] = l < nt ? xr[jt + l] : -INFINITY;
            xt = FN(vld)(tmp);
        }
        V mv = xt;
        for (long j = 0; j < jt; j += VL) {
            V v = FN(vld)(xr + j);
            mv = FN(v_sel)(v > mv, v, mv);
        }
        REAL m = FN(hmax)(mv);
        /* exp(x - m), stored in dx when a gradient is wanted, summed either way */
        V sv = SPLAT(V, 0);
        REAL *er = dx ? dx + r * Vn : NULL;
        for (long j = 0; j < jt; j += VL) {
            V e = FN(vexp)(FN(vld)(xr + j) - m);
            if (er) FN(vst)(er + j, e);
            sv += e;
        }
        V et = SPLAT(V, 0);
        if (nt) {
            et = FN(v_sel)(tail_lane, FN(vexp)(xt - m), SPLAT(V, 0));
            sv += et;
        }
        double s = FN(hsum)(sv);
        int64_t lbl = t[r];
        long tt = lbl < 0 ? 0 : (long)lbl;
        double logp = (double)xr[tt] - (double)m - log(s);
        loss[r] = lbl >= 0 ? -logp : 0.0;
        if (er) {
            REAL w = lbl >= 0 ? scale : (REAL)0;
            REAL k = (REAL)(1.0 / s) * w;
            for (long j = 0; j < jt; j += VL) FN(vst)(er + j, FN(vld)(er + j) * k);
            for (long l = 0; l < nt; l++) er[jt + l] = et[l] * k;
            er[tt] -= w;
        }
    }
}

typedef struct {
    long M, Vn;
    const REAL *x;
    const int64_t *t;
    REAL *dx;
    REAL scale;
    double *loss;
} FN(softmax_ctx);

static ATTR void FN(softmax_items)(void *arg, long r0, long cnt) {
    FN(softmax_ctx) *s = (FN(softmax_ctx) *)arg;
    FN(softmax_rows)(r0, r0 + cnt, s->M, s->Vn, s->x, s->t, s->dx, s->scale, s->loss);
}

static int FN(softmax_cross_entropy)(long M, long Vn, const REAL *x, const int64_t *t,
                                     REAL *dx, double *loss, int nthreads) {
    long count = 0;
    for (long r = 0; r < M; r++) count += t[r] >= 0;
    double *rows = (double *)malloc((size_t)M * sizeof(double));
    if (!rows) return FR_ENOMEM;
    FN(softmax_ctx) s = {M, Vn, x, t, dx, (REAL)(1.0 / (double)(count > 0 ? count : 1)), rows};
    /* one thread per 15000 scores: a region whose workers are already spinning starts in
     * about a microsecond (NOTES.md, "Flat ops and the optimizers") */
    long by_work = M * Vn / 15000;
    int nt = nthreads < by_work ? nthreads : (int)by_work;
    if (nt > M) nt = (int)M;
    nt = nt < 1 ? 1 : nt;
    fr_for(FN(softmax_items), &s, M, fr_item_units(M, nt, 4), nt);
    double total = 0; /* row by row, in order: the same sum whatever the thread count */
    for (long r = 0; r < M; r++) total += rows[r];
    free(rows);
    *loss = count > 0 ? total / (double)count : 0.0;
    return 0;
}

/* ---------------------------------------------------------------------------- flat ops
 * Elementwise work over n elements (the optimizers' updates and norms, dropout) and the
 * embedding's gradient, as items of an fr_for loop on the engine's threads. The unit is a block
 * of FLAT_BLOCK elements; a block's values, and its partial sum, are the same whatever the
 * thread count. One thread per FLAT_PER_THREAD elements at most: below that a region's start
 * costs more than the split saves. */
#define FLAT_BLOCK 8192L
#define FLAT_PER_THREAD (1L << 16)

typedef struct {
    long n;
    REAL keep;
    const REAL *x;
    REAL *y, *mask;
    unsigned long long seed, thr;
    long M, D; /* embedding: dout (M, D) scattered into dW's rows */
    const int64_t *idx;
} FN(flat);

static int FN(flat_threads)(long n, int nthreads) {
    long by_work = n / FLAT_PER_THREAD;
    int nt = by_work < nthreads ? (int)by_work : nthreads;
    return nt < 1 ? 1 : (nt > FR_MAXT ? FR_MAXT : nt);
}

static inline long FN(flat_end)(const FN(flat) *f, long b) {
    return (b * FLAT_BLOCK < f->n - FLAT_BLOCK) ? b * FLAT_BLOCK + FLAT_BLOCK : f->n;
}

/* Lists of arrays (the optimizers' ops): the blocks of every array, numbered through the list
 * in order (array i has blocks first[i] .. first[i + 1] - 1; its last block ends at n[i]). */
typedef struct {
    int m;
    const long *n, *first;
    const REAL *const *x;
    REAL *const *y;
    REAL a, b;
    double *part;
} FN(lists);

/* The array of block bk (binary search over first[]). */
static inline int FN(block_array)(const FN(lists) *f, long bk) {
    int lo = 0, hi = f->m - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (f->first[mid] <= bk) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* y[k0:k1] = a x + b y, or a x when b is 0 (y is not read then, as in BLAS). x may be y. */
static inline ATTR void FN(axpby_span)(REAL a, const REAL *x, REAL b, REAL *y, long k0, long k1) {
    if (x == y) { /* one array: a loop without a second pointer vectorizes unversioned */
        if (b == 0)
            for (long k = k0; k < k1; k++) y[k] = a * y[k];
        else
            for (long k = k0; k < k1; k++) y[k] = a * y[k] + b * y[k];
        return;
    }
    const REAL *restrict xr = x; /* disjoint: overlaps are taken apart before (fr_axpby) */
    REAL *restrict yr = y;
    if (b == 0)
        for (long k = k0; k < k1; k++) yr[k] = a * xr[k];
    else
        for (long k = k0; k < k1; k++) yr[k] = a * xr[k] + b * yr[k];
}

/* Block bk's array (i: the previous block's, or block_array's) and its elements [*k0, *k1). */
static inline int FN(block_span)(const FN(lists) *f, long bk, int i, long *k0, long *k1) {
    while (bk >= f->first[i + 1]) i++;
    *k0 = (bk - f->first[i]) * FLAT_BLOCK;
    *k1 = *k0 + FLAT_BLOCK < f->n[i] ? *k0 + FLAT_BLOCK : f->n[i];
    return i;
}

static ATTR void FN(axpby_items)(void *arg, long b0, long nb) {
    const FN(lists) *f = (const FN(lists) *)arg;
    long k0, k1;
    for (long bk = b0, i = FN(block_array)(f, b0); bk < b0 + nb; bk++) {
        i = FN(block_span)(f, bk, (int)i, &k0, &k1);
        FN(axpby_span)(f->a, f->x[i], f->b, f->y[i], k0, k1);
    }
}

/* x[k0:k1]'s sum of squares, in double: vector lanes sum 16 squares each in REAL, then go into
 * the double. */
static inline ATTR double FN(sumsq_span)(const REAL *x, long k, long k1) {
    double s = 0;
    while (k < k1) {
        const long c1 = k + 64 * VL < k1 ? k + 64 * VL : k1;
        V s0 = SPLAT(V, 0), s1 = s0, s2 = s0, s3 = s0;
        for (; k + 4 * VL <= c1; k += 4 * VL) {
            V v0 = FN(vld)(x + k), v1 = FN(vld)(x + k + VL);
            V v2 = FN(vld)(x + k + 2 * VL), v3 = FN(vld)(x + k + 3 * VL);
            s0 += v0 * v0, s1 += v1 * v1, s2 += v2 * v2, s3 += v3 * v3;
        }
        for (; k + VL <= c1; k += VL) {
            V v = FN(vld)(x + k);
            s0 += v * v;
        }
        V t = (s0 + s1) + (s2 + s3);
        for (int l = 0; l < VL; l++) s += t[l];
        for (; k < c1; k++) s += (double)x[k] * x[k];
    }
    return s;
}

static ATTR void FN(sumsq_items)(void *arg, long b0, long nb) {
    const FN(lists) *f = (const FN(lists) *)arg;
    long k0, k1;
    for (long bk = b0, i = FN(block_array)(f, b0); bk < b0 + nb; bk++) {
        i = FN(block_span)(f, bk, (int)i, &k0, &k1);
        f->part[bk] = FN(sumsq_span)(f->x[i], k0, k1);
    }
}

/* first[] of m arrays (m + 1 entries, malloc'd; NULL when out of memory); *nb the blocks. */
static long *FN(block_starts)(int m, const long *n, long *nb, long *total) {
    long *first = (long *)malloc((size_t)(m + 1) * sizeof(long));
    if (!first) return NULL;
    first[0] = 0;
    *total = 0;
    for (int i = 0; i < m; i++) {
        first[i + 1] = first[i] + (n[i] + FLAT_BLOCK - 1) / FLAT_BLOCK;
        *total += n[i];
    }
    *nb = first[m];
    return first;
}

/* One parallel loop over the blocks of every pair: no y may overlap another array, but x[i]
 * may be y[i] (fr_axpby sees to that). */
static int FN(axpby)(int m, const long *n, double a, const void *const *x, double b,
                     void *const *y, int nthreads) {
    long nb, total;
    long *first = FN(block_starts)(m, n, &nb, &total);
    if (!first) return FR_ENOMEM;
    FN(lists) f = {.m = m, .n = n, .first = first, .x = (const REAL *const *)x,
                   .y = (REAL *const *)y, .a = (REAL)a, .b = (REAL)b};
    int nt = FN(flat_threads)(total, nthreads);
    if (nb) fr_for(FN(axpby_items), &f, nb, fr_item_units(nb, nt, 4), nt);
    free(first);
    return 0;
}

static int FN(sum_squares)(int m, const long *n, const void *const *x, double *total,
                           int nthreads) {
    long nb, count;
    long *first = FN(block_starts)(m, n, &nb, &count);
    *total = 0;
    if (!first) return FR_ENOMEM;
    FN(lists) f = {.m = m, .n = n, .first = first, .x = (const REAL *const *)x};
    f.part = (double *)malloc((size_t)(nb ? nb : 1) * sizeof(double));
    if (!f.part) {
        free(first);
        return FR_ENOMEM;
    }
    int nt = FN(flat_threads)(count, nthreads);
    if (nb) fr_for(FN(sumsq_items), &f, nb, fr_item_units(nb, nt, 4), nt);
    double s = 0; /* block by block, in order: the same sum whatever the thread count */
    for (long i = 0; i < nb; i++) s += f.part[i];
    free(f.part);
    free(first);
    *total = s;
    return 0;
}

/* Keep element k when the 24-bit draw splitmix64(seed + (k + 1) golden) >> 40 is >= thr. */
static ATTR void FN(dropout_items)(void *arg, long b0, long nb) {
    const FN(flat) *f = (const FN(flat) *)arg;
    const long k0 = b0 * FLAT_BLOCK, k1 = FN(flat_end)(f, b0 + nb - 1);
    const unsigned long long seed = f->seed, thr = f->thr;
    const REAL keep = f->keep;
    const REAL *restrict x = f->x;
    REAL *restrict y = f->y, *restrict mask = f->mask;
    for (long k = k0; k < k1; k++) {
        unsigned long long z = seed + (unsigned long long)(k + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        REAL mk = (z >> 40) >= thr ? keep : (REAL)0;
        mask[k] = mk;
        y[k] = x[k] * mk;
    }
}

/* Rows [r0, r0 + cnt) of dW: zeroed, then the dout rows whose id falls there added in the
 * order of the ids (so a row's sum does not depend on the thread count). */
static ATTR void FN(embed_items)(void *arg, long r0, long cnt) {
    const FN(flat) *f = (const FN(flat) *)arg;
    const long D = f->D;
    memset(f->y + r0 * D, 0, (size_t)(cnt * D) * sizeof(REAL));
    for (long m = 0; m < f->M; m++) {
        const long r = (long)f->idx[m];
        if (r < r0 || r >= r0 + cnt) continue;
        REAL *restrict row = f->y + r * D;
        const REAL *restrict src = f->x + m * D;
        for (long j = 0; j < D; j++) row[j] += src[j];
    }
}

static void FN(dropout)(long n, const void *x, uint64_t seed, uint64_t thr, double keep,
                        void *y, void *mask, int nthreads) {
    FN(flat) f = {.n = n, .keep = (REAL)keep, .x = (const REAL *)x, .y = (REAL *)y,
                  .mask = (REAL *)mask, .seed = seed, .thr = thr};
    long nb = (n + FLAT_BLOCK - 1) / FLAT_BLOCK;
    int nt = FN(flat_threads)(n, nthreads);
    if (nb) fr_for(FN(dropout_items), &f, nb, fr_item_units(nb, nt, 4), nt);
}

static void FN(embedding_backward)(long M, long D, long Vn, const void *dout,
                                   const int64_t *idx, void *dW, int nthreads) {
    FN(flat) f = {.x = (const REAL *)dout, .y = (REAL *)dW, .M = M, .D = D, .idx = idx};
    int nt = FN(flat_threads)(Vn * D, nthreads);
    if (Vn && D) fr_for(FN(embed_items), &f, Vn, fr_item_units(Vn, nt, 4), nt);
}

/* ---------------------------------------------------------------------------- driver */
/* Threads for a recurrence: at most the unit vectors, and few enough that each keeps about
 * 2e5 flops of the step's recurrent product (below that a meeting costs more than the split
 * saves). */
static int FN(threads)(int nthreads, int N, int H, int G) {
    int nuv = (H + VL - 1) / VL;
    double flops = 2.0 * N * H * (double)G * H;
    int by_work = (int)(flops / 2e5);
    int nt = nthreads < nuv ? nthreads : nuv;
    nt = nt < by_work ? nt : by_work;
    nt = nt < FR_MAXT ? nt : FR_MAXT;
    return nt < 1 ? 1 : nt;
}

#define ROUND16(n) (((long)(n) + 15) / 16 * 16)
#define NUV(H) ((long)((H) + VL - 1) / VL * VL)

/* Shapes and strides of a recurrence op: every (T, N, .) array time-major. */
static void FN(init)(FN(ctx) *c, const fr_dims *d, const int64_t *len) {
    c->T = d->T;
    c->N = d->N;
    c->H = d->H;
    c->nuv = (d->H + VL - 1) / VL;
    c->hts = (long)d->N * d->H;
    c->hns = d->H;
    c->len = len;
}

/* A layer op: hs and dhs batch-major (N, T, H), the rest as in a recurrence op. */
static void FN(init_layer)(FN(ctx) *c, const fr_dims *d, const int64_t *len) {
    FN(init)(c, d, len);
    c->hts = d->H;
    c->hns = (long)d->T * d->H;
}

/* One work buffer for the call (panels, per-thread blocks, cell scratch, then `internal`
 * REALs that the op lays out itself at *ibuf) for nt threads. */
typedef struct {
    void *p;
    int cached;
} FN(held);

static int FN(begin)(FN(ctx) *c, int nt, long pk1, long pk2, long shared, long internal,
                     REAL **ibuf, FN(held) *h) {
    pk1 = ROUND16(pk1);
    pk2 = ROUND16(pk2);
    shared = ROUND16(shared);
    c->thr_stride = ROUND16(THR_LEN(c->N));
    long total = pk1 + pk2 + c->thr_stride * nt + shared + ROUND16(internal);
    REAL *buf = (REAL *)fr_ws_get((size_t)total * sizeof(REAL), &h->cached);
    if (!buf) return FR_ENOMEM;
    h->p = buf;
    c->pk1 = buf;
    c->pk2 = buf + pk1;
    c->thr = buf + pk1 + pk2;
    c->shared = c->thr + c->thr_stride * nt;
    *ibuf = c->shared + shared;
    return 0;
}

static int FN(launch)(FN(ctx) *c, int nt, FN(held) *h) {
    fr_sched_init(&c->sch);
    fr_parallel(FN(worker), c, nt);
    fr_ws_put(h->p, h->cached);
    return 0;
}

/* A recurrence op: the loop alone, with its panel sizes and cell scratch. */
static int FN(run_loop)(FN(ctx) *c, FN(loop_fn) loop, int G, int nthreads, long pk1, long pk2,
                        long shared) {
    int nt = FN(threads)(nthreads, c->N, c->H, G);
    REAL *ib;
    FN(held) h;
    c->loop = loop;
    if (FN(begin)(c, nt, pk1, pk2, shared, 0, &ib, &h)) return FR_ENOMEM;
    return FN(launch)(c, nt, &h);
}

#define IN(i) ((const REAL *)in[i])
#define OUT(i) ((REAL *)out[i])
#define ARGS const fr_dims *d, const void *const *in, void *const *out, const int64_t *len, int nth

/* ---- recurrence ops: in = the contract's arguments, out = its results (fastrnn/contract.py) */
static int FN(op_rnn_forward)(ARGS) { /* xw, Wh, h0 -> hs */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.xw = IN(0), c.Wh = IN(1), c.h0 = IN(2), c.hs = OUT(0);
    c.direct = d->T <= FR_DIRECT_T;
    return FN(run_loop)(&c, FN(rnn_fwd), 1, nth, NUV(d->H) * d->H, 0, 0);
}

static int FN(op_rnn_backward)(ARGS) { /* dhs, Wh, hs, h0 -> dA, dh0 */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(1), c.hs_in = IN(2), c.h0 = IN(3), c.dA = OUT(0), c.dh = OUT(1);
    return FN(run_loop)(&c, FN(rnn_bwd), 1, nth, NUV(d->H) * d->H, 0, 0);
}

static int FN(op_lstm_forward)(ARGS) { /* xw, Wh, h0, c0 -> hs, cs, acts */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.xw = IN(0), c.Wh = IN(1), c.h0 = IN(2), c.c0 = IN(3);
    c.hs = OUT(0), c.cs = OUT(1), c.acts = OUT(2);
    c.direct = d->T <= FR_DIRECT_T;
    return FN(run_loop)(&c, FN(lstm_fwd), 4, nth, NUV(d->H) * 4 * d->H, 0, 0);
}

static int FN(op_lstm_backward)(ARGS) { /* dhs, Wh, cs, acts, c0 -> dA, dh0, dc0 */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(1), c.cs_in = IN(2), c.acts_in = IN(3), c.c0 = IN(4);
    c.dA = OUT(0), c.dh = OUT(1), c.dc = OUT(2);
    return FN(run_loop)(&c, FN(lstm_bwd), 4, nth, NUV(d->H) * 4 * d->H, 0, 0);
}

static int FN(op_gru_forward)(ARGS) { /* xw, Wh, h0 -> hs, acts, rh */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.xw = IN(0), c.Wh = IN(1), c.h0 = IN(2), c.hs = OUT(0), c.acts = OUT(1), c.rh = OUT(2);
    c.direct = d->T <= FR_DIRECT_T;
    return FN(run_loop)(&c, FN(gru_fwd), 3, nth, NUV(d->H) * 2 * d->H, NUV(d->H) * d->H, 0);
}

static int FN(op_gru_backward)(ARGS) { /* dhs, Wh, hs, acts, h0 -> dA, dh0 */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(1), c.hs_in = IN(2), c.acts_in = IN(3), c.h0 = IN(4);
    c.dA = OUT(0), c.dh = OUT(1);
    return FN(run_loop)(&c, FN(gru_bwd), 3, nth, NUV(d->H) * d->H, NUV(d->H) * 2 * d->H,
                        (long)d->N * d->H);
}

static int FN(op_gru_ra_forward)(ARGS) { /* xw, Wh, b_hn, h0 -> hs, acts, hn */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.xw = IN(0), c.Wh = IN(1), c.b_hn = IN(2), c.h0 = IN(3);
    c.hs = OUT(0), c.acts = OUT(1), c.hn = OUT(2);
    c.direct = d->T <= FR_DIRECT_T;
    return FN(run_loop)(&c, FN(gru_ra_fwd), 3, nth, NUV(d->H) * 3 * d->H, 0, 0);
}

static int FN(op_gru_ra_backward)(ARGS) { /* dhs, Wh, hs, acts, hn, h0 -> dA, dhn, dh0 */
    FN(ctx) c = {0};
    FN(init)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(1), c.hs_in = IN(2), c.acts_in = IN(3), c.hn_in = IN(4);
    c.h0 = IN(5), c.dA = OUT(0), c.dhn = OUT(1), c.dh = OUT(2);
    return FN(run_loop)(&c, FN(gru_ra_bwd), 3, nth, NUV(d->H) * 3 * d->H, 0, 0);
}

/* ---- layer ops: the products and the recurrence of a whole layer in one region */

/* Rows of xs (N, T, D) (or dxs) in time-major order (t, n). */
static FN(rows) FN(rows_tn)(const REAL *p, const fr_dims *d) {
    FN(rows) r = {p, NULL, d->D, (long)d->T * d->D, 0, d->N, 0};
    return r;
}
/* Plain rows of width `ld`. */
static FN(rows) FN(rows_plain)(const REAL *p, long ld) {
    FN(rows) r = {p, NULL, 0, ld, 0, 0, 0};
    return r;
}
/* h_prev of every step (t, n): h0 for t = 0, else hs[n, t-1] of a batch-major hs. */
static FN(rows) FN(rows_hprev)(const REAL *hs, const REAL *h0, const fr_dims *d) {
    FN(rows) r = {hs, h0, d->H, (long)d->T * d->H, d->H, d->N, 1};
    return r;
}

/* The REALs of the work buffer that a layer op lays out itself (internal buffers, packed A),
 * handed out in order; with ib NULL it only counts (the sizing pass). */
typedef struct {
    REAL *ib;
    long used;
} FN(carve);

static REAL *FN(take)(FN(carve) *cv, long n) {
    REAL *p = cv->ib ? cv->ib + cv->used : NULL;
    cv->used += ROUND16(n);
    return p;
}

/* Cut a planned product into items and give it its shared packed A where it has one (the
 * space is reserved whatever the item split, so both passes lay out the same buffer). */
static void FN(finish)(FN(gemm) *g, int nt, FN(carve) *cv) {
    FN(gemm_plan)(g, nt);
    long n = g->apk_from ? 0 : FN(gemm_apk_len)(g);
    REAL *apk = g->apk_from ? g->apk_from->apk : n ? FN(take)(cv, n) : NULL;
    /* row items pack their own rows of A (each row is read by one item only): packing it
     * all first takes it through memory and back (the tied LM's dW^T = dy^T x, 10000 x 700 x
     * 650, A^T, 2 threads: 35.5-36.1 ms that way, 32.9 ms packed by the items) */
    g->apk = g->by_rows ? NULL : apk;
    n = FN(gemm_bpk_len)(g);
    REAL *bpk = n ? FN(take)(cv, n) : NULL;
    g->bpk = g->by_rows ? bpk : NULL;
    if (g->by_rows && !g->apk) { /* row items need not start at a packed block of A */
        long nb = (g->mtot + GEMM_MC - 1) / GEMM_MC;
        nb = (nb + nt - 1) / nt * nt;
        g->mb = (g->mtot + nb - 1) / nb;
    }
}

/* C = A @ B over W columns of B (rows sk apart) and of C. A layer's gate blocks lie side by
 * side in both, so its products run over all G*H columns at once, never gate by gate. */
static void FN(cols_gemm)(FN(gemm) *g, int K, const REAL *B, long sk, long W) {
    *g = (FN(gemm)){0};
    g->K = K;
    g->B = B, g->sk = sk, g->sj = 1;
    g->Hc = (int)W;
}

static void FN(add_seg)(FN(gemm) *g, FN(rows) a, int trans, long M, FN(rows) cr) {
    FN(seg) *s = &g->seg[g->nseg++];
    s->a = a, s->trans = trans, s->M = M, s->c = cr;
    if (!g->kc) g->kc = (int)(fr_kc_bytes() / (4 * VL * (long)sizeof(REAL)));
}

/* xw (T, N, G*H) = X @ Wx + b, X the rows of xs (N, T, D) in time-major order; a product before
 * the recurrence. */
static void FN(plan_xw)(FN(ctx) *c, const fr_dims *d, int G, const REAL *xs, const REAL *Wx,
                        const REAL *b, int nt, FN(carve) *cv) {
    long GH = (long)G * d->H;
    c->xw = FN(take)(cv, (long)d->T * d->N * GH);
    FN(gemm) *g = &c->gemm[c->npre++];
    FN(cols_gemm)(g, d->D, Wx, GH, GH);
    FN(add_seg)(g, FN(rows_tn)(xs, d), 0, (long)d->T * d->N, FN(rows_plain)(c->xw, GH));
    g->bias = b;
    FN(finish)(g, nt, cv);
}

/* dxs (N, T, D) = dA @ Wx^T, rows in time-major order; a product after the recurrence. */
static void FN(plan_dx)(FN(ctx) *c, const fr_dims *d, int G, const REAL *Wx, REAL *dxs, int nt,
                        FN(carve) *cv) {
    long GH = (long)G * d->H;
    FN(gemm) *g = &c->gemm[c->npre + c->npost++];
    *g = (FN(gemm)){0};
    g->K = (int)GH;
    g->B = Wx, g->sk = 1, g->sj = GH; /* B(k, j) = Wx[j, k] */
    g->Hc = d->D;
    FN(add_seg)(g, FN(rows_plain)(c->dA, GH), 0, (long)d->T * d->N, FN(rows_tn)(dxs, d));
    FN(finish)(g, nt, cv);
}

/* The candidate block of a GRU's dWh (columns [2H, 3H)): A^T @ B with A rows `a` (r*h_prev
 * reset-before, h_prev reset-after) and B (T*N rows of stride sk: dA's n block, or dhn), db_hn
 * its column sums or NULL; `from`, or NULL, the product just before whose packed A it reads. */
static void FN(plan_dwh_n)(FN(ctx) *c, const fr_dims *d, FN(rows) a, const REAL *B, long sk,
                           REAL *db_hn, const FN(gemm) *from, REAL *dWh, int nt,
                           FN(carve) *cv) {
    long G3 = 3L * d->H, TN = (long)d->T * d->N;
    FN(gemm) *g = &c->gemm[c->npre + c->npost++];
    FN(cols_gemm)(g, (int)TN, B, sk, d->H);
    FN(add_seg)(g, a, 1, d->H, FN(rows_plain)(dWh + 2 * d->H, G3));
    g->colsum = db_hn;
    g->apk_from = from;
    FN(finish)(g, nt, cv);
}

/* The weight gradients of a layer whose recurrent product sees h_prev for the gate blocks
 * [0, Gh) with gradient dA (RNN, LSTM: all of them): [X^T; Hprev^T] @ dA in one product when
 * Gh = G, with db the column sums of dA. A GRU's (Gh = 2) Hprev^T product takes the z and r
 * blocks of dA; the reset-after form's n block is a third product over the same packed
 * Hprev^T with B = dhn (T*N, H), whose column sums are db_hn. */
static void FN(plan_dw)(FN(ctx) *c, const fr_dims *d, int G, int Gh, const REAL *xs,
                        const REAL *hs, REAL *dWx, REAL *dWh, REAL *db, const REAL *dhn,
                        REAL *db_hn, int nt, FN(carve) *cv) {
    long GH = (long)G * d->H, TN = (long)d->T * d->N;
    FN(gemm) *g = &c->gemm[c->npre + c->npost++];
    FN(cols_gemm)(g, (int)TN, c->dA, GH, GH);
    FN(add_seg)(g, FN(rows_tn)(xs, d), 1, d->D, FN(rows_plain)(dWx, GH));
    if (Gh == G) FN(add_seg)(g, FN(rows_hprev)(hs, c->h0, d), 1, d->H, FN(rows_plain)(dWh, GH));
    g->colsum = db;
    FN(finish)(g, nt, cv);
    if (Gh < G) {
        g = &c->gemm[c->npre + c->npost++];
        FN(cols_gemm)(g, (int)TN, c->dA, GH, (long)Gh * d->H);
        FN(add_seg)(g, FN(rows_hprev)(hs, c->h0, d), 1, d->H, FN(rows_plain)(dWh, GH));
        FN(finish)(g, nt, cv);
        if (dhn) /* the n block: the same A, B from dhn */
            FN(plan_dwh_n)(c, d, FN(rows_hprev)(hs, c->h0, d), dhn, d->H, db_hn, g, dWh, nt,
                           cv);
    }
}

/* Threads for a layer: the recurrence's count, or more when the products alone want them. */
static int FN(layer_threads)(int nthreads, const fr_dims *d, int G) {
    int nt = FN(threads)(nthreads, d->N, d->H, G);
    double flops = 2.0 * d->T * d->N * (double)G * d->H * d->D;
    int by_gemm = (int)(flops / 2e6);
    by_gemm = by_gemm < nthreads ? by_gemm : nthreads;
    return nt > by_gemm ? nt : (by_gemm < FR_MAXT ? by_gemm : FR_MAXT);
}

/* The products of a layer op and the buffers they need, from its arguments. */
typedef void (*FN(plan_fn))(FN(ctx) *, const fr_dims *, const void *const *, void *const *, int,
                           FN(carve) *);

/* Plan once to size the work buffer, take it, plan again into it, run. */
static int FN(run_layer)(FN(ctx) *c, const fr_dims *d, int G, int nth, long pk1, long pk2,
                         long shared, FN(plan_fn) plan, const void *const *in, void *const *out) {
    int nt = FN(layer_threads)(nth, d, G);
    FN(carve) cv = {NULL, 0};
    plan(c, d, in, out, nt, &cv);
    REAL *ib;
    FN(held) h;
    if (FN(begin)(c, nt, pk1, pk2, shared, cv.used, &ib, &h)) return FR_ENOMEM;
    cv = (FN(carve)){ib, 0};
    c->npre = c->npost = 0;
    plan(c, d, in, out, nt, &cv);
    return FN(launch)(c, nt, &h);
}

#define PLAN(name)                                                                            \
    static void FN(name)(FN(ctx) * c, const fr_dims *d, const void *const *in,                \
                         void *const *out, int nt, FN(carve) *cv)

/* forward: xs, Wx, b, Wh, [b_hn,] h0 [, c0] -> hs, h_last [, c_last], saved */
PLAN(plan_fwd1) { FN(plan_xw)(c, d, 1, IN(0), IN(1), IN(2), nt, cv); (void)out; }
PLAN(plan_fwd3) { FN(plan_xw)(c, d, 3, IN(0), IN(1), IN(2), nt, cv); (void)out; }
PLAN(plan_fwd4) { FN(plan_xw)(c, d, 4, IN(0), IN(1), IN(2), nt, cv); (void)out; }
PLAN(plan_none) { (void)c, (void)d, (void)in, (void)out, (void)nt, (void)cv; }

/* backward: dhs, xs, Wx, Wh, hs, ... -> dxs, dh0, ..., dWx, dWh, db [, db_hn] */
PLAN(plan_rnn_bwd) { /* -> dxs, dh0, dWx, dWh, db */
    c->dA = FN(take)(cv, (long)d->T * d->N * d->H);
    FN(plan_dw)(c, d, 1, 1, IN(1), IN(4), OUT(2), OUT(3), OUT(4), NULL, NULL, nt, cv);
    FN(plan_dx)(c, d, 1, IN(2), OUT(0), nt, cv);
}
PLAN(plan_lstm_bwd) { /* -> dxs, dh0, dc0, dWx, dWh, db */
    c->dA = FN(take)(cv, (long)d->T * d->N * 4 * d->H);
    FN(plan_dw)(c, d, 4, 4, IN(1), IN(4), OUT(3), OUT(4), OUT(5), NULL, NULL, nt, cv);
    FN(plan_dx)(c, d, 4, IN(2), OUT(0), nt, cv);
}
PLAN(plan_gru_bwd) { /* in: ..., acts, rh, h0 -> dxs, dh0, dWx, dWh, db */
    c->dA = FN(take)(cv, (long)d->T * d->N * 3 * d->H);
    FN(plan_dw)(c, d, 3, 2, IN(1), IN(4), OUT(2), OUT(3), OUT(4), NULL, NULL, nt, cv);
    FN(plan_dwh_n)(c, d, FN(rows_plain)(IN(6), d->H), c->dA + 2 * d->H, 3L * d->H, NULL, NULL,
                   OUT(3), nt, cv);
    FN(plan_dx)(c, d, 3, IN(2), OUT(0), nt, cv);
}
PLAN(plan_gru_ra_bwd) { /* -> dxs, dh0, dWx, dWh, db, db_hn */
    long TNH = (long)d->T * d->N * d->H;
    c->dA = FN(take)(cv, 3 * TNH);
    c->dhn = FN(take)(cv, TNH);
    FN(plan_dw)(c, d, 3, 2, IN(1), IN(4), OUT(2), OUT(3), OUT(4), c->dhn, OUT(5), nt, cv);
    FN(plan_dx)(c, d, 3, IN(2), OUT(0), nt, cv);
}
#undef PLAN

/* The layer forwards multiply x_t @ Wx inside each step, beside h @ Wh, rather than xw = X @
 * Wx + b for all steps before the recurrence, where [Wx; Wh] fits one core's L2 and the batch
 * fills the microkernel's rows (G gate blocks). It saves writing and reading xw and a phase;
 * the steps' products grow by D / H. LSTM layer forward, 2 threads, f32, N x T x D x H:
 * 32x35x28x256 3.6 -> 3.4 ms, 20x35x100x100 1.3 -> 0.88, 20x35x200x200 2.8-3.5 -> 2.4,
 * 64x50x256x256 16.8 -> 14; where the panels stream from L3 it loses (20x35x650x650 21.9 ->
 * 24.5), and with N = 1 (1x100x256x256 1.14 -> 1.3). The reset-after GRU keeps the
 * candidate's input part in a column of its own (gru_ra_fwd_tile). Decided from the shapes,
 * not the thread count: the two ways round differently. */
#ifndef FR_FUSE_BYTES
#define FR_FUSE_BYTES (2L << 20)
#define FR_FUSE_N 8
#endif
/* A layer forward whose input (xs, Wx, b: the contract's first three arguments) enters its
 * G gate blocks additively: inside the steps where that pays, else through `project`. pk1 and
 * pk2 hold the panels of Wh; the panels of Wx (G gate blocks) go after those in pk2. */
static int FN(run_input_layer)(FN(ctx) *c, const fr_dims *d, int G, int nth, long pk1, long pk2,
                               FN(plan_fn) project, const void *const *in, void *const *out) {
    if (d->N >= FR_FUSE_N && (long)(d->D + d->H) * G * d->H * (long)sizeof(REAL) <= FR_FUSE_BYTES) {
        c->xs = IN(0), c->Wx = IN(1), c->b = IN(2), c->D = d->D;
        return FN(run_layer)(c, d, G, nth, pk1, pk2 + NUV(d->H) * G * d->D, 0, FN(plan_none), in,
                             out);
    }
    return FN(run_layer)(c, d, G, nth, pk1, pk2, 0, project, in, out);
}

/* How a layer forward writes its kept hs: each row vector right after its gate math
 * (keep_h), where hs is small enough to stay in the caches (the char LM's 1.1 MB: faster than
 * a copy afterwards); else copied whole by every thread at the end of the region
 * (64x50x256x256's 3.3 MB were slower written in the steps, and took 0.5 ms copied by one
 * thread after the region). Measurements: NOTES.md, "Python around the engine". */
#define FR_KEEP_BYTES (1L << 21)
static void FN(keep)(FN(ctx) *c, const fr_dims *d, void *kept) {
    int in = (long)d->N * d->T * d->H * (long)sizeof(REAL) <= FR_KEEP_BYTES;
    c->hs_kept = in ? (REAL *)kept : NULL;
    c->kept_end = in ? NULL : (REAL *)kept;
}

static int FN(op_rnn_layer_forward)(ARGS) { /* xs, Wx, b, Wh, h0 -> hs, h_last */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.Wh = IN(3), c.h0 = IN(4), c.hs = OUT(0), c.h_last = OUT(1);
    c.direct = d->T <= FR_DIRECT_T, c.loop = FN(rnn_fwd);
    FN(keep)(&c, d, OUT(2));
    return FN(run_input_layer)(&c, d, 1, nth, NUV(d->H) * d->H, 0, FN(plan_fwd1), in, out);
}

static int FN(op_rnn_layer_backward)(ARGS) { /* dhs, xs, Wx, Wh, hs, h0 -> dxs, dh0, dW.. */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(3), c.hs_in = IN(4), c.h0 = IN(5), c.dh = OUT(1);
    c.loop = FN(rnn_bwd);
    return FN(run_layer)(&c, d, 1, nth, NUV(d->H) * d->H, 0, 0, FN(plan_rnn_bwd), in, out);
}

static int FN(op_lstm_layer_forward)(ARGS) {
    /* xs, Wx, b, Wh, h0, c0 -> hs, h_last, c_last, cs, acts */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.Wh = IN(3), c.h0 = IN(4), c.c0 = IN(5);
    c.hs = OUT(0), c.h_last = OUT(1), c.c_last = OUT(2), c.cs = OUT(3), c.acts = OUT(4);
    c.direct = d->T <= FR_DIRECT_T, c.loop = FN(lstm_fwd);
    FN(keep)(&c, d, OUT(5));
    return FN(run_input_layer)(&c, d, 4, nth, NUV(d->H) * 4 * d->H, 0,
                               FN(plan_fwd4), in, out);
}

static int FN(op_lstm_layer_backward)(ARGS) {
    /* dhs, xs, Wx, Wh, hs, cs, acts, h0, c0 -> dxs, dh0, dc0, dWx, dWh, db */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(3), c.cs_in = IN(5), c.acts_in = IN(6), c.h0 = IN(7), c.c0 = IN(8);
    c.dh = OUT(1), c.dc = OUT(2);
    c.loop = FN(lstm_bwd);
    return FN(run_layer)(&c, d, 4, nth, NUV(d->H) * 4 * d->H, 0, 0, FN(plan_lstm_bwd), in, out);
}

static int FN(op_gru_layer_forward)(ARGS) { /* xs, Wx, b, Wh, h0 -> hs, h_last, acts, rh */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.Wh = IN(3), c.h0 = IN(4), c.hs = OUT(0), c.h_last = OUT(1), c.acts = OUT(2), c.rh = OUT(3);
    c.direct = d->T <= FR_DIRECT_T, c.loop = FN(gru_fwd);
    FN(keep)(&c, d, OUT(4));
    return FN(run_input_layer)(&c, d, 3, nth, NUV(d->H) * 2 * d->H,
                               NUV(d->H) * d->H, FN(plan_fwd3), in, out);
}

static int FN(op_gru_layer_backward)(ARGS) {
    /* dhs, xs, Wx, Wh, hs, acts, rh, h0 -> dxs, dh0, dWx, dWh, db */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(3), c.hs_in = IN(4), c.acts_in = IN(5), c.h0 = IN(7);
    c.dh = OUT(1);
    c.loop = FN(gru_bwd);
    return FN(run_layer)(&c, d, 3, nth, NUV(d->H) * d->H, NUV(d->H) * 2 * d->H,
                         (long)d->N * d->H, FN(plan_gru_bwd), in, out);
}

static int FN(op_gru_ra_layer_forward)(ARGS) {
    /* xs, Wx, b, Wh, b_hn, h0 -> hs, h_last, acts, hn */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.Wh = IN(3), c.b_hn = IN(4), c.h0 = IN(5);
    c.hs = OUT(0), c.h_last = OUT(1), c.acts = OUT(2), c.hn = OUT(3);
    c.direct = d->T <= FR_DIRECT_T, c.loop = FN(gru_ra_fwd);
    FN(keep)(&c, d, OUT(4));
    return FN(run_input_layer)(&c, d, 3, nth, NUV(d->H) * 3 * d->H, 0,
                               FN(plan_fwd3), in, out);
}

static int FN(op_gru_ra_layer_backward)(ARGS) {
    /* dhs, xs, Wx, Wh, hs, acts, hn, h0 -> dxs, dh0, dWx, dWh, db, db_hn */
    FN(ctx) c = {0};
    FN(init_layer)(&c, d, len);
    c.dhs = IN(0), c.Wh = IN(3), c.hs_in = IN(4), c.acts_in = IN(5), c.hn_in = IN(6);
    c.h0 = IN(7), c.dh = OUT(1);
    c.loop = FN(gru_ra_bwd);
    return FN(run_layer)(&c, d, 3, nth, NUV(d->H) * 3 * d->H, 0, 0, FN(plan_gru_ra_bwd), in,
                         out);
}

/* In the order of enum fr_op (engine.h). */
static const fr_cell_fn FN(cell_ops)[FR_OP_COUNT] = {
    FN(op_rnn_forward), FN(op_rnn_backward), FN(op_lstm_forward), FN(op_lstm_backward),
    FN(op_gru_forward), FN(op_gru_backward), FN(op_gru_ra_forward), FN(op_gru_ra_backward),
    FN(op_rnn_layer_forward), FN(op_rnn_layer_backward), FN(op_lstm_layer_forward),
    FN(op_lstm_layer_backward), FN(op_gru_layer_forward), FN(op_gru_layer_backward),
    FN(op_gru_ra_layer_forward), FN(op_gru_ra_layer_backward),
};

/* ---- plain products (fr_matmul) */
static int FN(matmul)(long M, long K, long Vc, const REAL *A, long a_rs, long a_cs,
                      const REAL *B, long b_rs, long b_cs, REAL *C, long c_rs, long c_cs,
                      const REAL *bias, REAL *colsum, int acc, int nthreads) {
    if (c_cs != 1) { /* C in Fortran order: C^T = B^T A^T, in C order */
        long t;
        t = M, M = Vc, Vc = t;
        const REAL *p = A;
        A = B, B = p;
        t = a_rs, a_rs = b_cs, b_cs = t;
        t = a_cs, a_cs = b_rs, b_rs = t;
        c_rs = c_cs;
    }
    FN(ctx) c = {0};
    FN(gemm) *g = &c.gemm[0];
    g->K = (int)K;
    g->B = B, g->sk = b_rs, g->sj = b_cs;
    g->Hc = (int)Vc;
    g->bias = bias, g->acc = acc, g->colsum = colsum;
    if (a_cs == 1)
        FN(add_seg)(g, FN(rows_plain)(A, a_rs), 0, M, FN(rows_plain)(C, c_rs));
    else /* a_rs == 1: the rows of A^T */
        FN(add_seg)(g, FN(rows_plain)(A, a_cs), 1, M, FN(rows_plain)(C, c_rs));
    double flops = 2.0 * M * K * Vc;
    int nt = (int)(flops / 2e6);
    nt = nt < nthreads ? nt : nthreads;
    nt = nt < 1 ? 1 : (nt > FR_MAXT ? FR_MAXT : nt);
    REAL *ib;
    FN(held) h;
    g->mtot = M; /* (gemm_bpk_len reads it before gemm_plan sets it) */
    if (FN(begin)(&c, nt, 0, 0, 0, ROUND16(FN(gemm_apk_len)(g)) + ROUND16(FN(gemm_bpk_len)(g)),
                  &ib, &h))
        return FR_ENOMEM;
    FN(carve) cv = {ib, 0};
    FN(finish)(g, nt, &cv);
    c.npre = 1;
    return FN(launch)(&c, nt, &h);
}

#undef IN
#undef OUT
#undef ARGS
#undef ROUND16
#undef NUV
#undef THR_LEN
#undef FOR_UNITS
#undef FOR_TILES
#undef FOR_EVERY_TILE
#undef TILE_AT
#undef HPREV
#undef SYNC
#undef GEMM_KC_MAX
#undef GEMM_NV
#undef GEMM_AP
#undef GEMM_BP
#undef GEMM_CS
#undef MR_MAX
#undef V
#undef EXP_LO
#undef EXP_HI
#undef MK_SHAPES
#undef MK_SHAPES_MR2
#undef MK_SHAPES_MR3
#undef MK_SHAPES_MR4
#undef PAD
#undef R
#undef CR
#undef ONE
#undef ROW_LOOP
#undef SLD
#undef SST
#undef SPLAT
#undef EXP_RND
#undef EXP_LN2HI
#undef EXP_LN2LO
#undef EXP_BIAS
#undef EXP_MANT
#undef FLAT_BLOCK
#undef TILE_KCB_BWD
#undef TILE_KCB_FWD
#undef FLAT_PER_THREAD
#undef EXP_POLY
#undef STORE_STEP
#undef ADD_STEP
#undef RNN_FWD_STEP
#undef RNN_BWD_STEP
#undef LSTM_FWD_STEP
#undef LSTM_BWD_STEP
#undef GRU_FWD_ZR_STEP
#undef GRU_FWD_H_STEP
#undef GRU_BWD_H_STEP
#undef GRU_BWD_ZR_STEP
#undef GRU_RA_FWD_STEP
#undef GRU_RA_BWD_STEP
