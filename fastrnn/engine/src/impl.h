/* One instruction set and one precision of the engine; engine.c includes this file once per
 * (ISA, dtype) after defining:
 *   REAL      float or double          VL     lanes of one SIMD vector of REAL
 *   SFX       name suffix, e.g. f32_avx512
 *   ATTR      the function attribute that selects the instruction set (may be empty)
 *   MR1..MR4  rows of the register tile for 1..4 vectors of columns
 *   IS_F64    1 for double
 *
 * Decomposition (the same as the CUDA persistent kernel): hidden units are cut into "unit
 * vectors" of VL consecutive units; an item of work is a tile of U unit vectors with all G gate
 * columns of those units, so the gate math of a tile needs no data from other tiles. Each
 * thread owns a contiguous range of unit vectors and packs its columns of Wh (forward) or rows
 * of Wh (backward, for dA @ Wh^T) once per call into panels: a tile's panel holds nv = G*U
 * vectors of columns, stored [k][g][u] with zeros past H, so the microkernel reads one aligned
 * contiguous stream (forward calls of a few steps read Wh in place instead, see wpack). Per
 * step a tile multiplies all N rows of the shared operand (h_prev, r*h_prev or dA) by its panel
 * into a small scratch block (mr x nv*VL per register tile, L1/L2 resident), applies the gate
 * epilogue from there and writes its units of the outputs. A step is one phase forward (two
 * for the reset-before GRU, whose candidate product needs every r*h_prev unit) and two or
 * three backward; threads take their own tiles first and then any left (engine.c explains the
 * scheduling), and meet when every tile of the phase is done.
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
#define EXP_POLY(T, r)                                                                        \
    T p = SPLAT(T, 1.9875691500e-4f);                                                         \
    p = p * r + 1.3981999507e-3f;                                                             \
    p = p * r + 8.3334519073e-3f;                                                             \
    p = p * r + 4.1665795894e-2f;                                                             \
    p = p * r + 1.6666665459e-1f;                                                             \
    p = p * r + 5.0000001201e-1f;
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
#define SLD(p) (*(p))
#define SST(p, v) (*(p) = (v))

#define MATH_DEFS(T, pre)                                                                     \
    static inline ATTR T FN(pre##exp)(T x) {                                                  \
        x = FN(pre##_sel)(x < EXP_LO, SPLAT(T, EXP_LO), x);                                   \
        x = FN(pre##_sel)(x > EXP_HI, SPLAT(T, EXP_HI), x);                                   \
        T t = x * (REAL)1.4426950408889634 + EXP_RND;                                         \
        T kf = t - EXP_RND;                                                                   \
        T r = x - kf * EXP_LN2HI;                                                             \
        r = r - kf * EXP_LN2LO;                                                               \
        EXP_POLY(T, r)                                                                        \
        p = p * (r * r) + r + (REAL)1;                                                        \
        /* a NaN gives garbage bits here, but p is already NaN */                             \
        return p * FN(pre##_real)((FN(pre##_bits)(t) - FN(s_bits)(EXP_RND) + EXP_BIAS)        \
                                  << EXP_MANT);                                               \
    }                                                                                         \
    static inline ATTR T FN(pre##tanh)(T x) {                                                 \
        return (REAL)2 / ((REAL)1 + FN(pre##exp)((REAL)-2 * x)) - (REAL)1;                    \
    }                                                                                         \
    static inline ATTR T FN(pre##sigmoid)(T x) {                                              \
        return (REAL)0.5 * (FN(pre##tanh)((REAL)0.5 * x) + (REAL)1);                          \
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
 * C[r][v*VL + l] (+)= sum_k A[r*lda + k] * B[k*ldb + off[v] + l], r < MRv, v < NVv: MRv*NVv
 * accumulator registers, one broadcast of A per row and one panel load per vector per k.
 * A packed panel has ldb = NVv*VL and off[v] = v*VL; a direct one reads Wh's rows in place
 * (off[v] = that vector's column). C has row stride NVv*VL; `load` adds to what C holds
 * (a later block of k). */
static inline __attribute__((always_inline)) ATTR void FN(mk_body)(
    int K, const REAL *restrict A, long lda, const REAL *restrict B, long ldb,
    const long *restrict off, REAL *restrict C, int load, const int NVv, const int MRv) {
    V acc[32]; /* MRv * NVv <= 24: fully unrolled, so only the used ones live (in registers) */
    if (load) {
        _Pragma("GCC unroll 32") for (int i = 0; i < MRv * NVv; i++)
            __builtin_memcpy(&acc[i], C + (long)i * VL, sizeof(V));
    } else {
        _Pragma("GCC unroll 32") for (int i = 0; i < MRv * NVv; i++) acc[i] = (V){0};
    }
    const REAL *b[4];
    _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++) b[v] = B + off[v];
    for (int k = 0; k < K; k++) {
        V p[4];
        _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++) {
            p[v] = FN(vld)(b[v]);
            b[v] += ldb;
        }
        _Pragma("GCC unroll 12") for (int r = 0; r < MRv; r++) {
            REAL a = A[r * lda + k];
            _Pragma("GCC unroll 4") for (int v = 0; v < NVv; v++) acc[r * NVv + v] += a * p[v];
        }
    }
    _Pragma("GCC unroll 32") for (int i = 0; i < MRv * NVv; i++)
        __builtin_memcpy(C + (long)i * VL, &acc[i], sizeof(V));
}

#define MK(NVv, MRv)                                                                         \
    static ATTR void CAT(FN(mk), NVv##x##MRv)(int K, const REAL *restrict A, long lda,      \
                                               const REAL *restrict B, long ldb,             \
                                               const long *restrict off, REAL *restrict C,   \
                                               int load) {                                   \
        FN(mk_body)(K, A, lda, B, ldb, off, C, load, NVv, MRv);                              \
    }

typedef void (*FN(mk_fn))(int, const REAL *restrict, long, const REAL *restrict, long,
                         const long *restrict, REAL *restrict, int);

MK(1, 1) MK(1, 2) MK(1, 3) MK(1, 4) MK(1, 5) MK(1, 6) MK(1, 7) MK(1, 8)
MK(2, 1) MK(2, 2) MK(2, 3) MK(2, 4) MK(2, 5) MK(2, 6)
MK(3, 1) MK(3, 2) MK(3, 3) MK(3, 4)
MK(4, 1) MK(4, 2) MK(4, 3)
#if MR2 > 6
MK(2, 7) MK(2, 8) MK(2, 9) MK(2, 10) MK(2, 11) MK(2, 12)
#endif
#if MR3 > 4
MK(3, 5) MK(3, 6) MK(3, 7) MK(3, 8)
#endif
#if MR4 > 3
MK(4, 4) MK(4, 5) MK(4, 6)
#endif

static FN(mk_fn) FN(mk_table)(int nv, int mr) {
    switch (nv * 16 + mr) {
#define E(NVv, MRv) case NVv * 16 + MRv: return CAT(FN(mk), NVv##x##MRv);
    E(1, 1) E(1, 2) E(1, 3) E(1, 4) E(1, 5) E(1, 6) E(1, 7) E(1, 8)
    E(2, 1) E(2, 2) E(2, 3) E(2, 4) E(2, 5) E(2, 6)
    E(3, 1) E(3, 2) E(3, 3) E(3, 4)
    E(4, 1) E(4, 2) E(4, 3)
#if MR2 > 6
    E(2, 7) E(2, 8) E(2, 9) E(2, 10) E(2, 11) E(2, 12)
#endif
#if MR3 > 4
    E(3, 5) E(3, 6) E(3, 7) E(3, 8)
#endif
#if MR4 > 3
    E(4, 4) E(4, 5) E(4, 6)
#endif
#undef E
    }
    return 0;
}

static const int FN(mr_of)[5] = {0, MR1, MR2, MR3, MR4};

/* One tile's panel: where its k-th row of vector v starts is b + k*ldb + off[v]. */
typedef struct {
    const REAL *b;
    long ldb, off[4];
} FN(panel);

/* C (N, nv*VL) = A (N, K; row stride lda) @ panel (K, nv*VL). k runs in blocks whose panel
 * slice fits in L1 (FR_L1 bytes), each block serving every row block before the next is
 * loaded: the panel then streams from L2/L3 once per step instead of once per row block.
 * Rows go in near-equal blocks of at most MR(nv), so N = 20 with MR 6 runs 5+5+5+5 rather
 * than 6+6+6+2. Every C element still sums over k in order 0..K-1, whatever N, nv or the
 * thread split: results do not depend on the thread count. */
/* Forward calls of at most this many steps read Wh in place instead of packing it. */
#ifndef FR_DIRECT_T
#define FR_DIRECT_T 3
#endif
#ifndef FR_L1
#define FR_L1 32768
#endif
static ATTR void FN(tile_product)(int N, int K, const REAL *A, long lda, FN(panel) pv, int nv,
                                 REAL *C) {
    int mrmax = FN(mr_of)[nv];
    int nblk = (N + mrmax - 1) / mrmax;
    long ldc = (long)nv * VL;
    int kc = FR_L1 / (int)(ldc * sizeof(REAL));
    for (int k0 = 0; k0 < K; k0 += kc) {
        int kn = K - k0 < kc ? K - k0 : kc;
        int n0 = 0;
        for (int b = 0; b < nblk; b++) {
            int mr = (N - n0 + (nblk - b) - 1) / (nblk - b);
            FN(mk_table)(nv, mr)(kn, A + n0 * lda + k0, lda, pv.b + k0 * pv.ldb, pv.ldb, pv.off,
                                 C + n0 * ldc, k0 > 0);
            n0 += mr;
        }
    }
}

/* One weight operand of a step's product, seen through panels. src(k, g, j) = W[k*sk + g*sg +
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

static inline ATTR int FN(in_place)(const FN(wpack) *w, int H, int a, int Uc) {
    return w->direct && w->sj == 1 && (a + Uc) * VL <= H;
}

/* Pack the tile of Uc unit vectors from a (unless it is read in place). */
static ATTR void FN(pack_tile)(const FN(wpack) *wp, int H, int a, int Uc) {
    if (FN(in_place)(wp, H, a, Uc)) return;
    int w = Uc * VL;
    REAL *d = wp->buf + (long)a * VL * wp->G * wp->K;
    for (int k = 0; k < wp->K; k++)
        for (int g = 0; g < wp->G; g++) {
            const REAL *s = wp->W + k * wp->sk + g * wp->sg;
            for (int u = 0; u < w; u++) {
                int j = a * VL + u;
                *d++ = j < H ? s[j * wp->sj] : (REAL)0;
            }
        }
}

static inline ATTR FN(panel) FN(panel_at)(const FN(wpack) *wp, int H, int a, int Uc) {
    FN(panel) pv = {0};
    if (FN(in_place)(wp, H, a, Uc)) {
        pv.b = wp->W + (long)a * VL;
        pv.ldb = wp->sk;
        for (int v = 0; v < wp->G * Uc; v++) pv.off[v] = (v / Uc) * wp->sg + (v % Uc) * VL;
    } else {
        pv.b = wp->buf + (long)a * VL * wp->G * wp->K;
        pv.ldb = (long)wp->G * Uc * VL;
        for (int v = 0; v < wp->G * Uc; v++) pv.off[v] = (long)v * VL;
    }
    return pv;
}

/* ---------------------------------------------------------------------------- cells */
typedef struct {
    int T, N, H;
    const REAL *xw, *Wh, *h0, *c0, *b_hn, *dhs, *hs_in, *cs_in, *acts_in, *hn_in;
    const int64_t *len; /* (N,) steps of each row, or NULL: all T */
    int direct;         /* forward: read full tiles of Wh in place (see wpack) */
    REAL *hs, *cs, *acts, *rh, *hn, *dA, *dh, *dc, *dhn;
    REAL *pk1, *pk2, *scratch, *shared; /* panels, per-thread product blocks, cell scratch */
    long scratch_stride;
    fr_sched sch;
} FN(ctx);

typedef void (*FN(worker))(FN(ctx) *, int tid, int nt);

/* Owner r's unit vectors [*u0, *u1) of the ceil(H / VL) (near-equal contiguous ranges). */
static inline ATTR void FN(range)(int H, int r, int nt, int *u0, int *u1) {
    int nuv = (H + VL - 1) / VL;
    *u0 = (int)((long)r * nuv / nt);
    *u1 = (int)((long)(r + 1) * nuv / nt);
}

/* A phase over items of U unit vectors: each owner's range [u0, u1) cut into ceil((u1-u0)/U)
 * items, claimed own range first (fr_claim); `it` keeps which owner is being scanned. */
typedef struct {
    int k, a, uc; /* owners scanned so far; the claimed item: first unit vector, count */
    long end;     /* the done count that completes the phase */
} FN(item);

static inline ATTR int FN(next)(FN(ctx) *c, fr_local *l, int U, FN(item) *it) {
    for (; it->k < l->nt; it->k++) {
        int r = (l->tid + it->k) % l->nt, u0, u1;
        FN(range)(c->H, r, l->nt, &u0, &u1);
        long i = fr_claim(&c->sch, l, r, (u1 - u0 + U - 1) / U);
        if (i >= 0) {
            it->a = u0 + (int)i * U;
            it->uc = u1 - it->a < U ? u1 - it->a : U;
            return 1;
        }
    }
    return 0;
}

/* Items in each owner's range for a phase of U unit vectors. */
static inline ATTR void FN(lens)(const FN(ctx) *c, const fr_local *l, int U, long *lens) {
    for (int r = 0; r < l->nt; r++) {
        int u0, u1;
        FN(range)(c->H, r, l->nt, &u0, &u1);
        lens[r] = (u1 - u0 + U - 1) / U;
    }
}

/* The done count that completes the current phase of U unit vectors. */
static inline ATTR long FN(phase_target)(const FN(ctx) *c, const fr_local *l, int U) {
    long lens[FR_MAXT];
    FN(lens)(c, l, U, lens);
    return fr_phase_target(l, lens);
}

/* Wait for the phase over items of U unit vectors to be done everywhere. */
static inline ATTR void FN(sync)(FN(ctx) *c, fr_local *l, int U) {
    long lens[FR_MAXT];
    FN(lens)(c, l, U, lens);
    fr_phase_end(&c->sch, l, lens);
}

/* The phase that packs the panels of wp, each tile where it will be used first (its owner). */
static ATTR void FN(pack_phase)(FN(ctx) *c, fr_local *l, const FN(wpack) *wp) {
    FN(item) it = {0, 0, 0, FN(phase_target)(c, l, wp->U)};
    while (FN(next)(c, l, wp->U, &it)) {
        FN(pack_tile)(wp, c->H, it.a, it.uc);
        fr_finish(&c->sch, it.end);
    }
    FN(sync)(c, l, wp->U);
}

/* Loop over the items of a phase of U unit vectors (then call sync with the same U): a (first
 * unit vector), Uc_ (how many), j0/nu (first unit, valid units: the last item stops at H). */
#define FOR_UNITS(U)                                                                        \
    for (FN(item) it_ = {0, 0, 0, FN(phase_target)(c, &L, (U))}; FN(next)(c, &L, (U), &it_);   \
         fr_finish(&c->sch, it_.end))                                                       \
        for (int a = it_.a, Uc_ = it_.uc, j0 = a * VL,                                      \
                 nu = (H - j0 < Uc_ * VL ? H - j0 : Uc_ * VL), once_ = 1; once_; once_ = 0)

/* Loop over the tiles of a product phase: also nv (vectors of columns = G*Uc), w = Uc*VL and
 * p, the tile's panel. */
#define FOR_TILES(WP)                                                                       \
    FOR_UNITS((WP)->U)                                                                      \
    for (int nv = (WP)->G * Uc_, w = Uc_ * VL, once2_ = 1; once2_; once2_ = 0)              \
        for (FN(panel) p = FN(panel_at)((WP), H, a, Uc_); once2_; once2_ = 0)

/* Variable lengths: step t of row n is padding when t >= len[n]. Padding rows get zero outputs,
 * activations and gradients (so no gradient flows from them and the zero h_prev / c_prev they
 * leave makes the next padded step's product vanish); a row's final state is the caller's to
 * gather at its own last step. */
#define PAD(c, t, n) ((c)->len && (t) >= (c)->len[n])

static inline ATTR void FN(zero)(REAL *p, int cnt) {
    for (int u = 0; u < cnt; u++) p[u] = 0;
}

/* Zero `cnt` units of G gate blocks (stride H) from p. */
static inline ATTR void FN(zero_gates)(REAL *p, int G, int H, int cnt) {
    for (int g = 0; g < G; g++) FN(zero)(p + (long)g * H, cnt);
}

/* Gate epilogues, one row (one batch element) each. Forward rows see the product block row
 * `cr` (gate g at cr + g*w) and the rows of xw / acts at this tile's first unit (gate g at
 * + g*H); backward rows run over this thread's units [0, cnt) of one row. Pointers are
 * restrict-qualified: a row's inputs and outputs never overlap. */
#define R REAL *restrict
#define CR const REAL *restrict
#define ONE ((REAL)1)

#define STORE_STEP(T, LD, ST, SIG, TANH) ST(dst + u, LD(cr + u));
static inline ATTR void FN(store_row)(int nu, CR cr, R dst) { ROW_LOOP(nu, STORE_STEP); }
#define ADD_STEP(T, LD, ST, SIG, TANH) ST(dst + u, LD(dst + u) + LD(cr + u));
static inline ATTR void FN(add_row)(int nu, CR cr, R dst) { ROW_LOOP(nu, ADD_STEP); }

/* ------------------------------------------------------------------ RNN: h' = tanh(xw + h Wh) */
#define RNN_FWD_STEP(T, LD, ST, SIG, TANH) ST(ho + u, TANH(LD(xr + u) + LD(cr + u)));
static inline ATTR void FN(rnn_fwd_row)(int nu, CR cr, CR xr, R ho) { ROW_LOOP(nu, RNN_FWD_STEP); }

#define RNN_BWD_STEP(T, LD, ST, SIG, TANH)                                                    \
    {                                                                                         \
        T y_ = LD(y + u);                                                                     \
        ST(d + u, (LD(g + u) + LD(dh + u)) * (ONE - y_ * y_));                                \
    }
static inline ATTR void FN(rnn_bwd_row)(int cnt, CR g, CR dh, CR y, R d) {
    ROW_LOOP(cnt, RNN_BWD_STEP);
}

static ATTR void FN(rnn_fwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, H, 0, 1, H, 1, 4, c->direct, c->pk1};
    FN(pack_phase)(c, &L, &w1);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = 0; t < T; t++) {
        const REAL *hp = t ? c->hs + (long)(t - 1) * N * H : c->h0;
        const REAL *x = c->xw + (long)t * N * H;
        REAL *ho = c->hs + (long)t * N * H;
        FOR_TILES(&w1) {
            FN(tile_product)(N, H, hp, H, p, nv, C);
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0;
                if (PAD(c, t, n))
                    FN(zero)(ho + s, nu);
                else
                    FN(rnn_fwd_row)(nu, C + (long)n * w, x + s, ho + s);
            }
        }
        FN(sync)(c, &L, w1.U);
    }
}

static ATTR void FN(rnn_bwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, 1, 0, H, H, 1, 4, 0, c->pk1}; /* rows of Wh: dA @ Wh^T */
    FN(pack_phase)(c, &L, &w1);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = T - 1; t >= 0; t--) {
        const long o = (long)t * N * H;
        FOR_UNITS(4) {
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0;
                if (PAD(c, t, n))
                    FN(zero)(c->dA + o + s, nu);
                else
                    FN(rnn_bwd_row)(nu, c->dhs + o + s, c->dh + s, c->hs_in + o + s,
                                    c->dA + o + s);
            }
        }
        FN(sync)(c, &L, 4);
        FOR_TILES(&w1) {
            FN(tile_product)(N, H, c->dA + o, H, p, nv, C);
            for (int n = 0; n < N; n++)
                FN(store_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
        }
        FN(sync)(c, &L, w1.U); /* the next step reads dh of every unit */
    }
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

#define LSTM_BWD_STEP(T, LD, ST, SIG, TANH)                                                   \
    {                                                                                         \
        T f = LD(ar + u), gg = LD(ar + H + u), i = LD(ar + 2 * H + u);                        \
        T og = LD(ar + 3 * H + u), tc = TANH(LD(cn + u));                                     \
        T dhv = LD(g + u) + LD(dh + u);                                                       \
        T dcv = LD(dc + u) + dhv * og * (ONE - tc * tc);                                      \
        ST(dr + u, dcv * LD(cp + u) * f * (ONE - f));                                         \
        ST(dr + H + u, dcv * i * (ONE - gg * gg));                                            \
        ST(dr + 2 * H + u, dcv * gg * i * (ONE - i));                                         \
        ST(dr + 3 * H + u, dhv * tc * og * (ONE - og));                                       \
        ST(dc + u, dcv * f);                                                                  \
    }
static inline ATTR void FN(lstm_bwd_row)(int cnt, int H, CR ar, CR cn, CR cp, CR g, CR dh, R dc,
                                        R dr) {
    ROW_LOOP(cnt, LSTM_BWD_STEP);
}

static ATTR void FN(lstm_fwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    const long G4 = 4L * H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, G4, H, 1, H, 4, 1, c->direct, c->pk1};
    FN(pack_phase)(c, &L, &w1);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = 0; t < T; t++) {
        const REAL *hp = t ? c->hs + (long)(t - 1) * N * H : c->h0;
        const REAL *cp = t ? c->cs + (long)(t - 1) * N * H : c->c0;
        const REAL *x = c->xw + t * N * G4;
        REAL *ac = c->acts + t * N * G4;
        REAL *ho = c->hs + (long)t * N * H, *co = c->cs + (long)t * N * H;
        FOR_TILES(&w1) {
            FN(tile_product)(N, H, hp, H, p, nv, C);
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G4 + j0;
                if (PAD(c, t, n)) {
                    FN(zero_gates)(ac + sg, 4, H, nu);
                    FN(zero)(co + s, nu);
                    FN(zero)(ho + s, nu);
                    continue;
                }
                FN(lstm_fwd_row)(nu, H, w, C + (long)n * 4 * w, x + sg, cp + s, ac + sg, co + s,
                                 ho + s);
            }
        }
        FN(sync)(c, &L, w1.U);
    }
}

static ATTR void FN(lstm_bwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    const long G4 = 4L * H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, 1, 0, G4, (int)G4, 1, 4, 0, c->pk1};
    FN(pack_phase)(c, &L, &w1);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = T - 1; t >= 0; t--) {
        const long o = (long)t * N * H;
        const REAL *cp = t ? c->cs_in + o - (long)N * H : c->c0;
        REAL *d = c->dA + t * N * G4;
        FOR_UNITS(4) {
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = t * N * G4 + n * G4 + j0;
                if (PAD(c, t, n)) {
                    FN(zero_gates)(c->dA + sg, 4, H, nu);
                    FN(zero)(c->dc + s, nu);
                    continue;
                }
                FN(lstm_bwd_row)(nu, H, c->acts_in + sg, c->cs_in + o + s, cp + s, c->dhs + o + s,
                                 c->dh + s, c->dc + s, c->dA + sg);
            }
        }
        FN(sync)(c, &L, 4);
        FOR_TILES(&w1) {
            FN(tile_product)(N, (int)G4, d, G4, p, nv, C);
            for (int n = 0; n < N; n++)
                FN(store_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
        }
        FN(sync)(c, &L, w1.U); /* the next step reads dh of every unit */
    }
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

#define GRU_BWD_H_STEP(T, LD, ST, SIG, TANH)                                                  \
    {                                                                                         \
        T z = LD(ar + u), ht = LD(ar + 2 * H + u);                                            \
        T v = LD(g + u) + LD(dh + u);                                                         \
        ST(dhv + u, v);                                                                       \
        ST(dr + 2 * H + u, v * z * (ONE - ht * ht));                                          \
    }
static inline ATTR void FN(gru_bwd_row_h)(int cnt, int H, CR ar, CR g, CR dh, R dhv, R dr) {
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

static ATTR void FN(gru_fwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    const long G3 = 3L * H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, G3, H, 1, H, 2, 2, c->direct, c->pk1};         /* [Wh_z | Wh_r] */
    FN(pack_phase)(c, &L, &w1);
    FN(wpack) w2 = {c->Wh + 2 * H, G3, 0, 1, H, 1, 4, c->direct, c->pk2}; /* Wh_h */
    FN(pack_phase)(c, &L, &w2);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = 0; t < T; t++) {
        const REAL *hp = t ? c->hs + (long)(t - 1) * N * H : c->h0;
        const REAL *x = c->xw + t * N * G3;
        REAL *ac = c->acts + t * N * G3;
        REAL *rh = c->rh + (long)t * N * H, *ho = c->hs + (long)t * N * H;
        FOR_TILES(&w1) {
            FN(tile_product)(N, H, hp, H, p, nv, C);
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G3 + j0;
                if (PAD(c, t, n)) {
                    FN(zero_gates)(ac + sg, 3, H, nu);
                    FN(zero)(rh + s, nu);
                    FN(zero)(ho + s, nu);
                    continue;
                }
                FN(gru_fwd_row_zr)(nu, H, w, C + (long)n * 2 * w, x + sg, hp + s, ac + sg, rh + s);
            }
        }
        FN(sync)(c, &L, w1.U); /* the candidate product needs every unit of r*h */
        FOR_TILES(&w2) {
            FN(tile_product)(N, H, rh, H, p, nv, C);
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G3 + j0;
                if (PAD(c, t, n)) continue; /* zeroed in the first phase */
                FN(gru_fwd_row_h)(nu, H, C + (long)n * w, x + sg, hp + s, ac + sg, ho + s);
            }
        }
        FN(sync)(c, &L, w2.U);
    }
}

static ATTR void FN(gru_bwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    const long G3 = 3L * H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh + 2 * H, 1, 0, G3, H, 1, 4, 0, c->pk1}; /* for dA_h @ Wh_h^T */
    FN(pack_phase)(c, &L, &w1);
    FN(wpack) w2 = {c->Wh, 1, 0, G3, 2 * H, 1, 4, 0, c->pk2};     /* for dA_zr @ Wh_zr^T */
    FN(pack_phase)(c, &L, &w2);
    REAL *C = c->scratch + tid * c->scratch_stride;
    REAL *dhv = c->shared; /* (N, H): dhs[t] + dh */
    for (int t = T - 1; t >= 0; t--) {
        const long o = (long)t * N * H;
        const REAL *hp = t ? c->hs_in + o - (long)N * H : c->h0;
        const REAL *ac = c->acts_in + t * N * G3;
        REAL *d = c->dA + t * N * G3;
        FOR_UNITS(4) {
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G3 + j0;
                if (PAD(c, t, n)) {
                    FN(zero_gates)(d + sg, 3, H, nu);
                    continue;
                }
                FN(gru_bwd_row_h)(nu, H, ac + sg, c->dhs + o + s, c->dh + s, dhv + s, d + sg);
            }
        }
        FN(sync)(c, &L, 4);
        FOR_TILES(&w1) {
            FN(tile_product)(N, H, d + 2 * H, G3, p, nv, C); /* drh = dA_h @ Wh_h^T */
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G3 + j0;
                if (PAD(c, t, n)) {
                    FN(zero)(c->dh + s, nu); /* the product adds zero rows of dA to it */
                    continue;
                }
                FN(gru_bwd_row_zr)(nu, H, ac + sg, hp + s, dhv + s, C + (long)n * w, d + sg,
                                   c->dh + s);
            }
        }
        FN(sync)(c, &L, w1.U);
        FOR_TILES(&w2) {
            FN(tile_product)(N, 2 * H, d, G3, p, nv, C); /* [dA_z | dA_r] @ Wh_zr^T */
            for (int n = 0; n < N; n++) FN(add_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
        }
        FN(sync)(c, &L, w2.U); /* the next step reads dh of every unit */
    }
}

/* --------------------- GRU, reset after: n = tanh(xw_n + r (h Wh_n + b_hn)), h' = (1-z) n + z h */
#define GRU_RA_FWD_STEP(T, LD, ST, SIG, TANH)                                                 \
    {                                                                                         \
        T z = SIG(LD(xr + u) + LD(cr + u));                                                   \
        T r = SIG(LD(xr + H + u) + LD(cr + w + u));                                           \
        T q = LD(cr + 2 * w + u) + LD(bh + u);                                                \
        T n_ = TANH(LD(xr + 2 * H + u) + r * q);                                              \
        ST(hn + u, q);                                                                        \
        ST(ar + u, z);                                                                        \
        ST(ar + H + u, r);                                                                    \
        ST(ar + 2 * H + u, n_);                                                               \
        ST(ho + u, (ONE - z) * n_ + z * LD(hp + u));                                          \
    }
static inline ATTR void FN(gru_ra_fwd_row)(int nu, int H, int w, CR cr, CR xr, CR bh, CR hp,
                                          R ar, R hn, R ho) {
    ROW_LOOP(nu, GRU_RA_FWD_STEP);
}

#define GRU_RA_BWD_STEP(T, LD, ST, SIG, TANH)                                                 \
    {                                                                                         \
        T z = LD(ar + u), r = LD(ar + H + u), n_ = LD(ar + 2 * H + u);                        \
        T v = LD(g + u) + LD(dh + u);                                                         \
        T dan = v * (ONE - z) * (ONE - n_ * n_);                                              \
        T daz = v * (LD(hp + u) - n_) * z * (ONE - z);                                        \
        T dar = dan * LD(hnt + u) * r * (ONE - r);                                            \
        T q = dan * r;                                                                        \
        ST(dr + u, daz);                                                                      \
        ST(dr + H + u, dar);                                                                  \
        ST(dr + 2 * H + u, dan);                                                              \
        ST(dn + u, q);                                                                        \
        ST(er + u, daz);                                                                      \
        ST(er + H + u, dar);                                                                  \
        ST(er + 2 * H + u, q);                                                                \
        ST(dh + u, v * z);                                                                    \
    }
static inline ATTR void FN(gru_ra_bwd_row)(int cnt, int H, CR ar, CR g, CR hp, CR hnt, R dh,
                                          R dr, R dn, R er) {
    ROW_LOOP(cnt, GRU_RA_BWD_STEP);
}

static ATTR void FN(gru_ra_fwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    const long G3 = 3L * H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, G3, H, 1, H, 3, 1, c->direct, c->pk1};
    FN(pack_phase)(c, &L, &w1);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = 0; t < T; t++) {
        const REAL *hp = t ? c->hs + (long)(t - 1) * N * H : c->h0;
        const REAL *x = c->xw + t * N * G3;
        REAL *ac = c->acts + t * N * G3;
        REAL *hn = c->hn + (long)t * N * H, *ho = c->hs + (long)t * N * H;
        FOR_TILES(&w1) {
            FN(tile_product)(N, H, hp, H, p, nv, C);
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G3 + j0;
                if (PAD(c, t, n)) {
                    FN(zero_gates)(ac + sg, 3, H, nu);
                    FN(zero)(hn + s, nu);
                    FN(zero)(ho + s, nu);
                    continue;
                }
                FN(gru_ra_fwd_row)(nu, H, w, C + (long)n * 3 * w, x + sg, c->b_hn + j0, hp + s,
                                   ac + sg, hn + s, ho + s);
            }
        }
        FN(sync)(c, &L, w1.U);
    }
}

static ATTR void FN(gru_ra_bwd)(FN(ctx) *c, int tid, int nt) {
    const int T = c->T, N = c->N, H = c->H;
    const long G3 = 3L * H;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FN(wpack) w1 = {c->Wh, 1, 0, G3, (int)G3, 1, 4, 0, c->pk1};
    FN(pack_phase)(c, &L, &w1);
    REAL *C = c->scratch + tid * c->scratch_stride;
    for (int t = T - 1; t >= 0; t--) {
        const long o = (long)t * N * H;
        const REAL *hp = t ? c->hs_in + o - (long)N * H : c->h0;
        /* [dA_z | dA_r | dhn] of this step, double-buffered: a thread may still be reading
         * step t+1's copy while its neighbour writes step t's */
        REAL *rec = c->shared + (long)(t & 1) * N * G3;
        FOR_UNITS(4) {
            for (int n = 0; n < N; n++) {
                const long s = (long)n * H + j0, sg = n * G3 + j0, tg = t * N * G3 + sg;
                if (PAD(c, t, n)) {
                    FN(zero_gates)(c->dA + tg, 3, H, nu);
                    FN(zero_gates)(rec + sg, 3, H, nu);
                    FN(zero)(c->dhn + o + s, nu);
                    FN(zero)(c->dh + s, nu);
                    continue;
                }
                FN(gru_ra_bwd_row)(nu, H, c->acts_in + tg, c->dhs + o + s, hp + s,
                                   c->hn_in + o + s, c->dh + s, c->dA + tg, c->dhn + o + s,
                                   rec + sg);
            }
        }
        FN(sync)(c, &L, 4);
        FOR_TILES(&w1) {
            FN(tile_product)(N, (int)G3, rec, G3, p, nv, C);
            for (int n = 0; n < N; n++) FN(add_row)(nu, C + (long)n * w, c->dh + (long)n * H + j0);
        }
        FN(sync)(c, &L, w1.U); /* the next step reads dh of every unit */
    }
}

/* ---------------------------------------------------------------------------- ops */
/* Softmax cross-entropy of rows [r0, r1) of x (M, V): adds -log p[t] of the rows whose label
 * is not -1 to *loss; with dx, writes (softmax - onehot(t)) * w, w = scale for labelled rows and
 * 0 for the others (so a NaN or +inf score still gives NaN there, as in the reference). */
static ATTR void FN(softmax_rows)(long r0, long r1, long Vn, const REAL *x, const int64_t *t,
                                 REAL *dx, REAL scale, double *loss) {
    double acc = 0;
    for (long r = r0; r < r1; r++) {
        const REAL *xr = x + r * Vn;
        REAL m = xr[0];
        long j = 1;
        V mv = SPLAT(V, m);
        for (; j + VL <= Vn; j += VL) {
            V v = FN(vld)(xr + j);
            mv = FN(v_sel)(v > mv, v, mv);
        }
        for (int l = 0; l < VL; l++) m = mv[l] > m ? mv[l] : m;
        for (; j < Vn; j++) m = xr[j] > m ? xr[j] : m;
        /* exp(x - m), stored in dx when a gradient is wanted, summed either way */
        V sv = SPLAT(V, 0);
        REAL ss = 0;
        REAL *er = dx ? dx + r * Vn : NULL;
        for (j = 0; j + VL <= Vn; j += VL) {
            V e = FN(vexp)(FN(vld)(xr + j) - m);
            if (er) FN(vst)(er + j, e);
            sv += e;
        }
        for (; j < Vn; j++) {
            REAL e = FN(sexp)(xr[j] - m);
            if (er) er[j] = e;
            ss += e;
        }
        double s = ss;
        for (int l = 0; l < VL; l++) s += sv[l];
        int64_t lbl = t[r];
        long tt = lbl < 0 ? 0 : (long)lbl;
        double logp = (double)xr[tt] - (double)m - log(s);
        if (lbl >= 0) acc -= logp;
        if (er) {
            REAL w = lbl >= 0 ? scale : (REAL)0;
            REAL k = (REAL)(1.0 / s) * w;
            for (j = 0; j + VL <= Vn; j += VL) FN(vst)(er + j, FN(vld)(er + j) * k);
            for (; j < Vn; j++) er[j] *= k;
            er[tt] -= w;
        }
    }
    *loss += acc;
}

static int FN(softmax_cross_entropy)(long M, long Vn, const REAL *x, const int64_t *t,
                                     REAL *dx, double *loss, int nthreads) {
    long count = 0;
    for (long r = 0; r < M; r++) count += t[r] >= 0;
    REAL scale = (REAL)(1.0 / (double)(count > 0 ? count : 1));
    /* one thread per ~2e5 scores: below that the region start costs more than it saves */
    long by_work = M * Vn / 200000;
    int nt = nthreads < by_work ? nthreads : (int)by_work;
    nt = nt < 1 ? 1 : nt;
    if (nt > M) nt = (int)M;
    double total = 0;
    if (nt <= 1) {
        FN(softmax_rows)(0, M, Vn, x, t, dx, scale, &total);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
            int tid = omp_get_thread_num(), n = omp_get_num_threads();
            double part = 0;
            FN(softmax_rows)(M * tid / n, M * (tid + 1) / n, Vn, x, t, dx, scale, &part);
            total += part;
        }
#else
        FN(softmax_rows)(0, M, Vn, x, t, dx, scale, &total);
#endif
    }
    *loss = count > 0 ? total / (double)count : 0.0;
    return 0;
}

/* ---------------------------------------------------------------------------- driver */
/* Threads: at most the unit vectors, and few enough that each keeps about 2e5 flops of the
 * step's recurrent product (below that a barrier costs more than the split saves). */
static int FN(threads)(int nthreads, int N, int H, int G) {
    int nuv = (H + VL - 1) / VL;
    double flops = 2.0 * N * H * (double)G * H;
    int by_work = (int)(flops / 2e5);
    int nt = nthreads < nuv ? nthreads : nuv;
    nt = nt < by_work ? nt : by_work;
    nt = nt < FR_MAXT ? nt : FR_MAXT;
    return nt < 1 ? 1 : nt;
}

/* Allocate the panels (pk1_len + pk2_len), per-thread product blocks and shared_len of cell
 * scratch in one aligned block, then run the worker on nt threads. */
static int FN(run)(FN(worker) worker, FN(ctx) *c, int nt, long pk1_len, long pk2_len,
                   long shared_len) {
    long pad = 64 / sizeof(REAL);
    c->scratch_stride = ((long)c->N * 4 * VL + pad - 1) / pad * pad;
    long p1 = (pk1_len + pad - 1) / pad * pad, p2 = (pk2_len + pad - 1) / pad * pad;
    long total = p1 + p2 + c->scratch_stride * nt + shared_len;
    REAL *buf = (REAL *)fr_alloc(total * sizeof(REAL));
    if (!buf) return FR_ENOMEM;
    c->pk1 = buf;
    c->pk2 = buf + p1;
    c->scratch = buf + p1 + p2;
    c->shared = c->scratch + c->scratch_stride * nt;
    fr_sched_init(&c->sch);
    nt = fr_threads_now(nt);
    if (nt <= 1) {
        worker(c, 0, 1);
    } else {
        long t0 = fr_now_ns(), master_done = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
        {
            worker(c, omp_get_thread_num(), omp_get_num_threads());
            if (omp_get_thread_num() == 0) master_done = fr_now_ns();
        }
#else
        worker(c, 0, 1);
        master_done = fr_now_ns();
#endif
        /* the region's join waits for every thread, late ones included: count it too */
        long t1 = fr_now_ns();
        fr_after_call(nt, t1 - t0, atomic_load(&c->sch.waited_ns) + (t1 - master_done));
    }
    fr_free(buf);
    return 0;
}

#define NUV(H) ((long)((H) + VL - 1) / VL * VL)

static int FN(rnn_forward)(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,
                           REAL *hs, const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .direct = T <= FR_DIRECT_T, .xw = xw,
                 .Wh = Wh, .h0 = h0, .hs = hs};
    return FN(run)(FN(rnn_fwd), &c, FN(threads)(nthreads, N, H, 1), NUV(H) * H, 0, 0);
}

static int FN(rnn_backward)(int T, int N, int H, const REAL *dhs, const REAL *Wh,
                            const REAL *hs, REAL *dA, REAL *dh, const int64_t *lengths,
                            int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .dhs = dhs, .Wh = Wh, .hs_in = hs,
                 .dA = dA, .dh = dh};
    return FN(run)(FN(rnn_bwd), &c, FN(threads)(nthreads, N, H, 1), NUV(H) * H, 0, 0);
}

static int FN(lstm_forward)(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,
                            const REAL *c0, REAL *hs, REAL *cs, REAL *acts,
                            const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .direct = T <= FR_DIRECT_T, .xw = xw,
                 .Wh = Wh, .h0 = h0, .c0 = c0, .hs = hs,
                 .cs = cs, .acts = acts};
    return FN(run)(FN(lstm_fwd), &c, FN(threads)(nthreads, N, H, 4), NUV(H) * 4 * H, 0, 0);
}

static int FN(lstm_backward)(int T, int N, int H, const REAL *dhs, const REAL *Wh,
                             const REAL *cs, const REAL *acts, const REAL *c0, REAL *dA,
                             REAL *dh, REAL *dc, const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .dhs = dhs, .Wh = Wh, .cs_in = cs,
                 .acts_in = acts,
                 .c0 = c0, .dA = dA, .dh = dh, .dc = dc};
    return FN(run)(FN(lstm_bwd), &c, FN(threads)(nthreads, N, H, 4), NUV(H) * 4 * H, 0, 0);
}

static int FN(gru_forward)(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,
                           REAL *hs, REAL *acts, REAL *rh, const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .direct = T <= FR_DIRECT_T, .xw = xw,
                 .Wh = Wh, .h0 = h0, .hs = hs, .acts = acts,
                 .rh = rh};
    return FN(run)(FN(gru_fwd), &c, FN(threads)(nthreads, N, H, 3), NUV(H) * 2 * H,
                   NUV(H) * H, 0);
}

static int FN(gru_backward)(int T, int N, int H, const REAL *dhs, const REAL *Wh,
                            const REAL *hs, const REAL *acts, const REAL *h0, REAL *dA,
                            REAL *dh, const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .dhs = dhs, .Wh = Wh, .hs_in = hs,
                 .acts_in = acts,
                 .h0 = h0, .dA = dA, .dh = dh};
    return FN(run)(FN(gru_bwd), &c, FN(threads)(nthreads, N, H, 3), NUV(H) * H,
                   NUV(H) * 2 * H, (long)N * H);
}

static int FN(gru_ra_forward)(int T, int N, int H, const REAL *xw, const REAL *Wh,
                              const REAL *b_hn, const REAL *h0, REAL *hs, REAL *acts, REAL *hn,
                              const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .direct = T <= FR_DIRECT_T, .xw = xw,
                 .Wh = Wh, .b_hn = b_hn, .h0 = h0, .hs = hs,
                 .acts = acts, .hn = hn};
    return FN(run)(FN(gru_ra_fwd), &c, FN(threads)(nthreads, N, H, 3), NUV(H) * 3 * H, 0, 0);
}

static int FN(gru_ra_backward)(int T, int N, int H, const REAL *dhs, const REAL *Wh,
                               const REAL *hs, const REAL *acts, const REAL *hn,
                               const REAL *h0, REAL *dA, REAL *dhn, REAL *dh,
                               const int64_t *lengths, int nthreads) {
    FN(ctx) c = {.T = T, .N = N, .H = H, .len = lengths, .dhs = dhs, .Wh = Wh, .hs_in = hs,
                 .acts_in = acts,
                 .hn_in = hn, .h0 = h0, .dA = dA, .dhn = dhn, .dh = dh};
    return FN(run)(FN(gru_ra_bwd), &c, FN(threads)(nthreads, N, H, 3), NUV(H) * 3 * H, 0,
                   2L * N * 3 * H);
}

#undef NUV
#undef FOR_TILES
#undef V
#undef EXP_LO
#undef EXP_HI
#undef MK
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
