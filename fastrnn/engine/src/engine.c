/* fastrnn CPU engine: instruction-set dispatch, the step barrier, and the public entry points.
 * The kernels themselves are in impl.h, compiled here once per (instruction set, precision). */
#define _POSIX_C_SOURCE 200809L /* posix_memalign under -std=c11 */
#include "engine.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(_WIN32)
#include <malloc.h>
#include <windows.h>
#define fr_yield() SwitchToThread()
static void *fr_alloc(size_t n) { return _aligned_malloc(n ? n : 64, 64); }
static void fr_free(void *p) { _aligned_free(p); }
#else
#include <sched.h>
#define fr_yield() sched_yield()
static void *fr_alloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}
static void fr_free(void *p) { free(p); }
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define fr_relax() _mm_pause()
#define FR_X86 1
#else
#define fr_relax() ((void)0)
#define FR_X86 0
#endif

/* ---------------------------------------------------------------------------- barrier
 * Threads meet once or twice per time step. Spinning keeps the wake-up in the ~100 ns range
 * when every thread has a core; after FR_SPIN polls a waiter yields its core on every poll,
 * so on a machine busy with other work a waiting thread does not hold a core that the thread
 * it waits for (or another process) needs. */
#define FR_SPIN 256

typedef struct {
    atomic_int count;
    atomic_int gen;
} fr_barrier;

static void fr_barrier_wait(fr_barrier *b, int n) {
    if (n <= 1) return;
    int gen = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->gen, 1, memory_order_release);
        return;
    }
    for (int i = 0; atomic_load_explicit(&b->gen, memory_order_acquire) == gen; i++) {
        if (i < FR_SPIN)
            fr_relax();
        else
            fr_yield();
    }
}

/* ---------------------------------------------------------------------------- kernels */
#define ATTR
#define VL 4
#define MR1 8
#define MR2 6
#define MR3 4
#define MR4 3
#define REAL float
#define IS_F64 0
#define SFX f32_portable
#include "impl.h"
#undef REAL
#undef IS_F64
#undef SFX
#undef VL
#define VL 2
#define REAL double
#define IS_F64 1
#define SFX f64_portable
#include "impl.h"
#undef REAL
#undef IS_F64
#undef SFX
#undef VL
#undef ATTR

#if FR_X86
#define ATTR __attribute__((target("avx2,fma")))
#define VL 8
#define REAL float
#define IS_F64 0
#define SFX f32_avx2
#include "impl.h"
#undef REAL
#undef IS_F64
#undef SFX
#undef VL
#define VL 4
#define REAL double
#define IS_F64 1
#define SFX f64_avx2
#include "impl.h"
#undef REAL
#undef IS_F64
#undef SFX
#undef VL
#undef ATTR
#undef MR1
#undef MR2
#undef MR3
#undef MR4

#define ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define MR1 8
#define MR2 12
#define MR3 8
#define MR4 6
#define VL 16
#define REAL float
#define IS_F64 0
#define SFX f32_avx512
#include "impl.h"
#undef REAL
#undef IS_F64
#undef SFX
#undef VL
#define VL 8
#define REAL double
#define IS_F64 1
#define SFX f64_avx512
#include "impl.h"
#undef REAL
#undef IS_F64
#undef SFX
#undef VL
#undef ATTR
#endif

/* ---------------------------------------------------------------------------- dispatch */
enum { ISA_UNSET = -1, ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static const char *isa_names[] = {"portable", "avx2", "avx512"};
static int isa = ISA_UNSET;

static int isa_best(void) {
#if FR_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
#endif
    return ISA_PORTABLE;
}

int fr_set_isa(const char *name) {
    int best = isa_best();
    if (!name || !*name) {
        isa = best;
        return 0;
    }
    for (int i = 0; i < 3; i++)
        if (strcmp(name, isa_names[i]) == 0) {
            if (i > best) return -2;
            isa = i;
            return 0;
        }
    return -1;
}

const char *fr_isa(void) {
    if (isa == ISA_UNSET) isa = isa_best();
    return isa_names[isa];
}

int fr_max_threads(void) {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

#if FR_X86
#define DISPATCH(op, prec, ...)                                                                \
    do {                                                                                       \
        if (isa == ISA_UNSET) isa = isa_best();                                                \
        if (isa == ISA_AVX512) return op##_##prec##_avx512(__VA_ARGS__);                       \
        if (isa == ISA_AVX2) return op##_##prec##_avx2(__VA_ARGS__);                           \
        return op##_##prec##_portable(__VA_ARGS__);                                            \
    } while (0)
#else
#define DISPATCH(op, prec, ...) return op##_##prec##_portable(__VA_ARGS__)
#endif

#define FR_DEFINE(REAL, P)                                                                         \
int fr_rnn_forward_##P(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,        \
                       REAL *hs, const int64_t *len, int nt) {                                     \
    DISPATCH(rnn_forward, P, T, N, H, xw, Wh, h0, hs, len, nt);                                    \
}                                                                                                  \
int fr_rnn_backward_##P(int T, int N, int H, const REAL *dhs, const REAL *Wh, const REAL *hs,      \
                        REAL *dA, REAL *dh, const int64_t *len, int nt) {                          \
    DISPATCH(rnn_backward, P, T, N, H, dhs, Wh, hs, dA, dh, len, nt);                              \
}                                                                                                  \
int fr_lstm_forward_##P(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,       \
                        const REAL *c0, REAL *hs, REAL *cs, REAL *acts, const int64_t *len,        \
                        int nt) {                                                                  \
    DISPATCH(lstm_forward, P, T, N, H, xw, Wh, h0, c0, hs, cs, acts, len, nt);                     \
}                                                                                                  \
int fr_lstm_backward_##P(int T, int N, int H, const REAL *dhs, const REAL *Wh, const REAL *cs,     \
                         const REAL *acts, const REAL *c0, REAL *dA, REAL *dh, REAL *dc,           \
                         const int64_t *len, int nt) {                                             \
    DISPATCH(lstm_backward, P, T, N, H, dhs, Wh, cs, acts, c0, dA, dh, dc, len, nt);               \
}                                                                                                  \
int fr_gru_forward_##P(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,        \
                       REAL *hs, REAL *acts, REAL *rh, const int64_t *len, int nt) {               \
    DISPATCH(gru_forward, P, T, N, H, xw, Wh, h0, hs, acts, rh, len, nt);                          \
}                                                                                                  \
int fr_gru_backward_##P(int T, int N, int H, const REAL *dhs, const REAL *Wh, const REAL *hs,      \
                        const REAL *acts, const REAL *h0, REAL *dA, REAL *dh,                      \
                        const int64_t *len, int nt) {                                              \
    DISPATCH(gru_backward, P, T, N, H, dhs, Wh, hs, acts, h0, dA, dh, len, nt);                    \
}                                                                                                  \
int fr_gru_ra_forward_##P(int T, int N, int H, const REAL *xw, const REAL *Wh,                     \
                          const REAL *b_hn, const REAL *h0, REAL *hs, REAL *acts, REAL *hn,        \
                          const int64_t *len, int nt) {                                            \
    DISPATCH(gru_ra_forward, P, T, N, H, xw, Wh, b_hn, h0, hs, acts, hn, len, nt);                 \
}                                                                                                  \
int fr_gru_ra_backward_##P(int T, int N, int H, const REAL *dhs, const REAL *Wh,                   \
                           const REAL *hs, const REAL *acts, const REAL *hn, const REAL *h0,       \
                           REAL *dA, REAL *dhn, REAL *dh, const int64_t *len, int nt) {            \
    DISPATCH(gru_ra_backward, P, T, N, H, dhs, Wh, hs, acts, hn, h0, dA, dhn, dh, len, nt);        \
}

FR_DEFINE(float, f32)
FR_DEFINE(double, f64)

/* ---------------------------------------------------------------------------- other ops */
#define FR_OPS(REAL, P)                                                                        \
int fr_softmax_cross_entropy_##P(long M, long V, const REAL *x, const int64_t *t, REAL *dx,  \
                                 double *loss, int nt) {                                       \
    DISPATCH(softmax_cross_entropy, P, M, V, x, t, dx, loss, nt);                              \
}                                                                                              \
void fr_embedding_forward_##P(long M, long D, const REAL *W, const int64_t *idx, REAL *out) { \
    for (long m = 0; m < M; m++) memcpy(out + m * D, W + idx[m] * D, D * sizeof(REAL));        \
}                                                                                              \
void fr_embedding_backward_##P(long M, long D, long V, const REAL *dout,                       \
                               const int64_t *idx, REAL *dW) {                               \
    memset(dW, 0, (size_t)V * D * sizeof(REAL));                                               \
    for (long m = 0; m < M; m++) {                                                             \
        REAL *row = dW + idx[m] * D;                                                           \
        const REAL *src = dout + m * D;                                                        \
        for (long j = 0; j < D; j++) row[j] += src[j];                                         \
    }                                                                                          \
}                                                                                              \
void fr_dropout_##P(long n, const REAL *x, unsigned long long seed, unsigned long long thr,    \
                    REAL keep_value, REAL *y, REAL *mask) {                                    \
    for (long k = 0; k < n; k++) {                                                             \
        unsigned long long z = seed + (unsigned long long)(k + 1) * 0x9E3779B97F4A7C15ULL;     \
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;                                           \
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;                                           \
        z ^= z >> 31;                                                                          \
        REAL mk = (z >> 40) >= thr ? keep_value : (REAL)0;                                     \
        mask[k] = mk;                                                                          \
        y[k] = x[k] * mk;                                                                      \
    }                                                                                          \
}

FR_OPS(float, f32)
FR_OPS(double, f64)
