/* fastrnn CPU engine: instruction-set dispatch, the step scheduler, and the public entry points.
 * The kernels themselves are in impl.h, compiled here once per (instruction set, precision). */
#define _GNU_SOURCE /* posix_memalign and syscall under -std=c11 */
#include "engine.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FR_FUTEX 1
#else
#define FR_FUTEX 0
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define fr_relax() _mm_pause()
#define FR_X86 1
#else
#define fr_relax() ((void)0)
#define FR_X86 0
#endif

/* ---------------------------------------------------------------------------- scheduling
 * The work of a time step comes in phases (a product and its gate epilogue; a backward pass's
 * gate gradients; packing), each cut into items (a tile of hidden units). Every thread owns a
 * fixed range of items and claims its own first, so that with every thread on a core each
 * keeps its panels in its own cache, exactly as a static split would; then it claims what the
 * others have not started. A phase ends when all its items are done (a count, not a barrier):
 * a thread that the OS has descheduled, on a machine busy with other work, holds up nobody
 * unless it is inside an item, and finds the phases it missed already done when it wakes.
 * Waiting spins for up to FR_SPIN_NS (a wake-up in the ~100 ns range when every thread has a
 * core), then sleeps until the phase is done: on a core shared with another process, a
 * yielding waiter would hand that process the core for a whole time slice, while a sleeper is
 * woken the moment the last item finishes (a futex on Linux; elsewhere it yields). */
#define FR_SPIN_NS 20000
#define FR_MAXT 64

typedef struct {
    _Alignas(64) atomic_long v; /* one cache line each: claims of one owner */
} fr_counter;

typedef struct {
    fr_counter claim[FR_MAXT]; /* items claimed from each owner's range, over all phases */
    fr_counter done;           /* items finished, over all phases */
    _Alignas(64) atomic_int epoch; /* phases finished: what sleepers wait on */
    atomic_int sleepers;
    atomic_long waited_ns; /* time threads spent waiting at phase ends, over the call */
} fr_sched;

/* One thread's view: how many items each owner's range held in the phases before this one. */
typedef struct {
    int tid, nt;
    long base[FR_MAXT];
    long target;
} fr_local;

static void fr_sched_init(fr_sched *s) {
    for (int r = 0; r < FR_MAXT; r++) atomic_init(&s->claim[r].v, 0);
    atomic_init(&s->done.v, 0);
    atomic_init(&s->epoch, 0);
    atomic_init(&s->sleepers, 0);
    atomic_init(&s->waited_ns, 0);
}

static long fr_now_ns(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Contention: when the threads of a call spent more than 30% of it waiting for each other
 * (a thread descheduled inside an item: the machine is busy with other work),
 * the next calls run on one thread, a number that doubles while the contention lasts (up to
 * 256 calls) and resets after a call that ran well; then the full count is tried again. */
static atomic_int fr_single_calls, fr_backoff;

static int fr_threads_now(int nt) {
    if (nt <= 1) return 1;
    int left = atomic_load(&fr_single_calls);
    while (left > 0)
        if (atomic_compare_exchange_weak(&fr_single_calls, &left, left - 1)) return 1;
    return nt;
}

static void fr_after_call(int nt, long wall_ns, long waited_ns) {
    if (nt <= 1) return;
    if (waited_ns * 10 > wall_ns * 3L * (nt - 1)) {
        int b = atomic_load(&fr_backoff);
        b = b < 4 ? 4 : (b < 256 ? 2 * b : 256);
        atomic_store(&fr_backoff, b);
        atomic_store(&fr_single_calls, b);
    } else {
        atomic_store(&fr_backoff, 0);
    }
}

static void fr_local_init(fr_local *l, int tid, int nt) {
    l->tid = tid;
    l->nt = nt;
    l->target = 0;
    for (int r = 0; r < nt; r++) l->base[r] = 0;
}

/* Claim the next unstarted item of owner r in the current phase (its range holds len items):
 * its index, or -1 when all are taken. */
static long fr_claim(fr_sched *s, const fr_local *l, int r, long len) {
    long c = atomic_load_explicit(&s->claim[r].v, memory_order_relaxed);
    while (c < l->base[r] + len)
        if (atomic_compare_exchange_weak_explicit(&s->claim[r].v, &c, c + 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return c - l->base[r];
    return -1;
}

/* Mark an item done; `end` is the done count at which its phase is complete. */
static void fr_finish(fr_sched *s, long end) {
    if (atomic_fetch_add(&s->done.v, 1) + 1 == end) {
        atomic_fetch_add(&s->epoch, 1);
#if FR_FUTEX
        if (atomic_load(&s->sleepers) > 0)
            syscall(SYS_futex, &s->epoch, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
#endif
    }
}

/* The done count at which the current phase (owner ranges of lens[r] items) is complete. */
static long fr_phase_target(const fr_local *l, const long *lens) {
    long end = l->target;
    for (int r = 0; r < l->nt; r++) end += lens[r];
    return end;
}

/* End of a phase whose owner ranges held lens[r] items: wait until every item is done. */
static void fr_phase_end(fr_sched *s, fr_local *l, const long *lens) {
    long end = fr_phase_target(l, lens);
    for (int r = 0; r < l->nt; r++) l->base[r] += lens[r];
    l->target = end;
    if (l->nt <= 1) return;
    if (atomic_load_explicit(&s->done.v, memory_order_acquire) >= end) return;
    long t0 = fr_now_ns();
    for (int i = 1; atomic_load_explicit(&s->done.v, memory_order_acquire) < end; i++) {
        if (i % 64 || fr_now_ns() - t0 < FR_SPIN_NS) {
            fr_relax();
            continue;
        }
#if FR_FUTEX
        int e = atomic_load(&s->epoch);
        atomic_fetch_add(&s->sleepers, 1);
        if (atomic_load(&s->done.v) < end) /* seq_cst: else the finisher sees a sleeper */
            syscall(SYS_futex, &s->epoch, FUTEX_WAIT_PRIVATE, e, NULL, NULL, 0);
        atomic_fetch_sub(&s->sleepers, 1);
#else
        fr_yield();
#endif
    }
    atomic_fetch_add(&s->waited_ns, fr_now_ns() - t0);
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

/* ---------------------------------------------------------------------------- by precision */
int fr_rnn_forward(int f64, int T, int N, int H, const void *xw, const void *Wh, const void *h0,
                   void *hs, const int64_t *lengths, int nthreads) {
    if (f64)
        return fr_rnn_forward_f64(T, N, H, (const double *)xw, (const double *)Wh,
                                  (const double *)h0, (double *)hs, lengths, nthreads);
    return fr_rnn_forward_f32(T, N, H, (const float *)xw, (const float *)Wh, (const float *)h0,
                              (float *)hs, lengths, nthreads);
}

int fr_rnn_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh, const void *hs,
                    void *dA, void *dh, const int64_t *lengths, int nthreads) {
    if (f64)
        return fr_rnn_backward_f64(T, N, H, (const double *)dhs, (const double *)Wh,
                                   (const double *)hs, (double *)dA, (double *)dh, lengths,
                                   nthreads);
    return fr_rnn_backward_f32(T, N, H, (const float *)dhs, (const float *)Wh, (const float *)hs,
                               (float *)dA, (float *)dh, lengths, nthreads);
}

int fr_lstm_forward(int f64, int T, int N, int H, const void *xw, const void *Wh, const void *h0,
                    const void *c0, void *hs, void *cs, void *acts, const int64_t *lengths,
                    int nthreads) {
    if (f64)
        return fr_lstm_forward_f64(T, N, H, (const double *)xw, (const double *)Wh,
                                   (const double *)h0, (const double *)c0, (double *)hs,
                                   (double *)cs, (double *)acts, lengths, nthreads);
    return fr_lstm_forward_f32(T, N, H, (const float *)xw, (const float *)Wh, (const float *)h0,
                               (const float *)c0, (float *)hs, (float *)cs, (float *)acts, lengths,
                               nthreads);
}

int fr_lstm_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh, const void *cs,
                     const void *acts, const void *c0, void *dA, void *dh, void *dc,
                     const int64_t *lengths, int nthreads) {
    if (f64)
        return fr_lstm_backward_f64(T, N, H, (const double *)dhs, (const double *)Wh,
                                    (const double *)cs, (const double *)acts, (const double *)c0,
                                    (double *)dA, (double *)dh, (double *)dc, lengths, nthreads);
    return fr_lstm_backward_f32(T, N, H, (const float *)dhs, (const float *)Wh, (const float *)cs,
                                (const float *)acts, (const float *)c0, (float *)dA, (float *)dh,
                                (float *)dc, lengths, nthreads);
}

int fr_gru_forward(int f64, int T, int N, int H, const void *xw, const void *Wh, const void *h0,
                   void *hs, void *acts, void *rh, const int64_t *lengths, int nthreads) {
    if (f64)
        return fr_gru_forward_f64(T, N, H, (const double *)xw, (const double *)Wh,
                                  (const double *)h0, (double *)hs, (double *)acts, (double *)rh,
                                  lengths, nthreads);
    return fr_gru_forward_f32(T, N, H, (const float *)xw, (const float *)Wh, (const float *)h0,
                              (float *)hs, (float *)acts, (float *)rh, lengths, nthreads);
}

int fr_gru_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh, const void *hs,
                    const void *acts, const void *h0, void *dA, void *dh, const int64_t *lengths,
                    int nthreads) {
    if (f64)
        return fr_gru_backward_f64(T, N, H, (const double *)dhs, (const double *)Wh,
                                   (const double *)hs, (const double *)acts, (const double *)h0,
                                   (double *)dA, (double *)dh, lengths, nthreads);
    return fr_gru_backward_f32(T, N, H, (const float *)dhs, (const float *)Wh, (const float *)hs,
                               (const float *)acts, (const float *)h0, (float *)dA, (float *)dh,
                               lengths, nthreads);
}

int fr_gru_ra_forward(int f64, int T, int N, int H, const void *xw, const void *Wh,
                      const void *b_hn, const void *h0, void *hs, void *acts, void *hn,
                      const int64_t *lengths, int nthreads) {
    if (f64)
        return fr_gru_ra_forward_f64(T, N, H, (const double *)xw, (const double *)Wh,
                                     (const double *)b_hn, (const double *)h0, (double *)hs,
                                     (double *)acts, (double *)hn, lengths, nthreads);
    return fr_gru_ra_forward_f32(T, N, H, (const float *)xw, (const float *)Wh,
                                 (const float *)b_hn, (const float *)h0, (float *)hs,
                                 (float *)acts, (float *)hn, lengths, nthreads);
}

int fr_gru_ra_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh,
                       const void *hs, const void *acts, const void *hn, const void *h0, void *dA,
                       void *dhn, void *dh, const int64_t *lengths, int nthreads) {
    if (f64)
        return fr_gru_ra_backward_f64(T, N, H, (const double *)dhs, (const double *)Wh,
                                      (const double *)hs, (const double *)acts, (const double *)hn,
                                      (const double *)h0, (double *)dA, (double *)dhn,
                                      (double *)dh, lengths, nthreads);
    return fr_gru_ra_backward_f32(T, N, H, (const float *)dhs, (const float *)Wh,
                                  (const float *)hs, (const float *)acts, (const float *)hn,
                                  (const float *)h0, (float *)dA, (float *)dhn, (float *)dh,
                                  lengths, nthreads);
}

int fr_softmax_cross_entropy(int f64, long M, long V, const void *x, const int64_t *t, void *dx,
                             double *loss, int nthreads) {
    if (f64)
        return fr_softmax_cross_entropy_f64(M, V, (const double *)x, t, (double *)dx, loss,
                                            nthreads);
    return fr_softmax_cross_entropy_f32(M, V, (const float *)x, t, (float *)dx, loss, nthreads);
}

void fr_embedding_forward(int f64, long M, long D, const void *W, const int64_t *idx, void *out) {
    if (f64)
        fr_embedding_forward_f64(M, D, (const double *)W, idx, (double *)out);
    else
        fr_embedding_forward_f32(M, D, (const float *)W, idx, (float *)out);
}

void fr_embedding_backward(int f64, long M, long D, long V, const void *dout,
                           const int64_t *idx, void *dW) {
    if (f64)
        fr_embedding_backward_f64(M, D, V, (const double *)dout, idx, (double *)dW);
    else
        fr_embedding_backward_f32(M, D, V, (const float *)dout, idx, (float *)dW);
}

void fr_dropout(int f64, long n, const void *x, uint64_t seed, uint64_t thr, double keep_value,
                void *y, void *mask) {
    if (f64)
        fr_dropout_f64(n, (const double *)x, seed, thr, keep_value, (double *)y, (double *)mask);
    else
        fr_dropout_f32(n, (const float *)x, seed, thr, (float)keep_value, (float *)y,
                       (float *)mask);
}
