/* fastrnn CPU engine: the thread pool, the scheduler of items within a parallel region, the
 * work buffer, instruction-set dispatch and the public entry points. The kernels themselves are
 * in impl.h, compiled here once per (instruction set, precision). */
#define _GNU_SOURCE /* posix_memalign, syscall and pthread_atfork under -std=c11 */
#include "engine.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(_WIN32)
#include <malloc.h>
#include <windows.h>
#define fr_yield() SwitchToThread()
static void *fr_alloc(size_t n) { return _aligned_malloc(n ? n : 64, 64); }
static void fr_free(void *p) { _aligned_free(p); }
#define FR_THREADS 0
#else
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#define fr_yield() sched_yield()
static void *fr_alloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}
static void fr_free(void *p) { free(p); }
#define FR_THREADS 1
#endif

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#define FR_FUTEX 1
static void fr_futex_wait(atomic_int *addr, int expected) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}
static void fr_futex_wake(atomic_int *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
#define FR_FUTEX 0
static void fr_futex_wait(atomic_int *addr, int expected) {
    (void)addr;
    (void)expected;
    fr_yield();
}
static void fr_futex_wake(atomic_int *addr) { (void)addr; }
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define fr_relax() _mm_pause()
#define FR_X86 1
#else
#define fr_relax() ((void)0)
#define FR_X86 0
#endif

#define FR_MAXT 64
#ifdef FR_PROFILE
/* Measurement builds only (-DFR_PROFILE, never the package): ns summed over calls. [0..3]
 * products before the recurrence, [4] the recurrence, [5..8] products after it, as thread 0
 * saw them; [12] / [13] time thread 0 / the others waited at phase ends, [14] / [15] how often. */
double fr_prof[16];
#endif

static long fr_now_ns(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Wait until *addr != value: spin for up to spin_ns (a wake-up in the ~100 ns range when every
 * thread has a core), then sleep on a futex that the changer wakes (`sleepers` tells it to).
 * On a core shared with another process a yielding waiter would hand that process a whole
 * time slice, while a sleeper is woken the moment the value changes. */
static void fr_wait_change(atomic_int *addr, int value, atomic_int *sleepers, long spin_ns) {
    if (atomic_load_explicit(addr, memory_order_acquire) != value) return;
    long t0 = fr_now_ns();
    for (int i = 1; atomic_load_explicit(addr, memory_order_acquire) == value; i++) {
        if (i % 64 || fr_now_ns() - t0 < spin_ns) {
            fr_relax();
            continue;
        }
        atomic_fetch_add(sleepers, 1);
        if (atomic_load(addr) == value) /* seq_cst: else the changer sees a sleeper */
            fr_futex_wait(addr, value);
        atomic_fetch_sub(sleepers, 1);
        t0 = fr_now_ns(); /* woken with no change (fr_pool_wake): spin again */
    }
}

/* Change *addr (seq_cst) and wake whoever sleeps on it. */
static void fr_publish(atomic_int *addr, int value, atomic_int *sleepers) {
    atomic_store(addr, value);
    if (atomic_load(sleepers) > 0) fr_futex_wake(addr);
}

/* ---------------------------------------------------------------------------- thread pool
 * One parallel region at a time runs fn(ctx, tid, nt) on the calling thread (tid 0) and nt - 1
 * persistent workers. Workers spin briefly after a region (the next layer's call usually
 * follows within microseconds), then sleep on a futex. A worker that has not started its part
 * when the caller finished the region (descheduled on a busy machine) is released from it: the
 * scheduler below lets the caller take over its items, so a region never waits for a thread
 * that is not running. A second thread calling in while a region runs gets one thread. The
 * engine uses its own pool rather than OpenMP's: an OpenMP runtime keeps its threads spinning
 * for a long while after each region, and on a machine with as many cores as threads they then
 * compete with NumPy's BLAS threads (measured: TimeLSTM N=20 T=35 D=H=200 forward + backward,
 * 11.7 ms with libgomp's default spin, 7.8 ms with passive waits). */
#define FR_POOL_SPIN_NS 100000

typedef void (*fr_task)(void *ctx, int tid, int nt);

static struct {
    int started; /* workers running: tids 1..started */
    atomic_int region; /* (count << 8) | nt of the latest region: workers wait for a change */
    atomic_int sleepers;
    atomic_int pending; /* workers of the current region that started and have not finished */
    atomic_int done_sleepers;
    atomic_int slot[FR_MAXT]; /* the region a worker is asked to join; -1 joined; 0 neither */
    fr_task fn;
    void *ctx;
} fr_pool;

#if FR_THREADS
static pthread_mutex_t fr_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fr_pool_once = PTHREAD_ONCE_INIT;

typedef struct {
    int tid, seen;
} fr_worker_arg;

static void *fr_worker(void *p) {
    fr_worker_arg a = *(fr_worker_arg *)p;
    free(p);
    for (;;) {
        fr_wait_change(&fr_pool.region, a.seen, &fr_pool.sleepers, FR_POOL_SPIN_NS);
        a.seen = atomic_load_explicit(&fr_pool.region, memory_order_acquire);
        if (a.tid >= (a.seen & 0xff)) continue;
        /* join only the region this worker saw: a stale value fails and it looks again */
        int asked = a.seen;
        if (!atomic_compare_exchange_strong(&fr_pool.slot[a.tid], &asked, -1)) continue;
        fr_pool.fn(fr_pool.ctx, a.tid, a.seen & 0xff);
        atomic_store(&fr_pool.slot[a.tid], 0);
        if (atomic_fetch_sub(&fr_pool.pending, 1) == 1 && atomic_load(&fr_pool.done_sleepers))
            fr_futex_wake(&fr_pool.pending);
    }
    return NULL;
}

/* A forked child has none of the parent's workers: it starts its own when it needs them. */
static void fr_pool_prefork(void) { pthread_mutex_lock(&fr_pool_lock); }
static void fr_pool_postfork_parent(void) { pthread_mutex_unlock(&fr_pool_lock); }
static void fr_pool_postfork_child(void) {
    fr_pool.started = 0;
    atomic_store(&fr_pool.sleepers, 0);
    atomic_store(&fr_pool.pending, 0);
    atomic_store(&fr_pool.done_sleepers, 0);
    for (int i = 0; i < FR_MAXT; i++) atomic_store(&fr_pool.slot[i], 0);
    pthread_mutex_init(&fr_pool_lock, NULL);
}
static void fr_pool_init(void) {
    pthread_atfork(fr_pool_prefork, fr_pool_postfork_parent, fr_pool_postfork_child);
}

/* Start workers up to tid nt - 1; returns how many threads the region can have. */
static int fr_pool_grow(int nt) {
    while (fr_pool.started < nt - 1) {
        fr_worker_arg *a = malloc(sizeof *a);
        if (!a) break;
        a->tid = fr_pool.started + 1;
        a->seen = atomic_load(&fr_pool.region);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &attr, fr_worker, a);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            free(a);
            break;
        }
        fr_pool.started++;
    }
    return fr_pool.started + 1 < nt ? fr_pool.started + 1 : nt;
}
#endif

/* Wake the sleeping workers ahead of an op, with no region for them yet: they spin for
 * FR_POOL_SPIN_NS, then sleep again. A worker woken from its futex reaches its core only tens
 * of microseconds later (40-85 us on the development VM), and a region's owner-split items
 * then wait for it or fall to the caller; woken while the caller still checks the op's
 * arguments in Python, it is there when the region starts. */
void fr_pool_wake(void) {
#if FR_THREADS
    if (atomic_load(&fr_pool.sleepers) > 0) fr_futex_wake(&fr_pool.region);
#endif
}

/* Run fn on nt threads (fewer when the pool is busy or cannot grow). */
static void fr_parallel(fr_task fn, void *ctx, int nt) {
#if FR_THREADS
    if (nt > FR_MAXT) nt = FR_MAXT;
    if (nt > 1) {
        pthread_once(&fr_pool_once, fr_pool_init);
        if (pthread_mutex_trylock(&fr_pool_lock) == 0) {
            nt = fr_pool_grow(nt);
            if (nt > 1) {
                fr_pool.fn = fn;
                fr_pool.ctx = ctx;
                atomic_store(&fr_pool.pending, nt - 1);
                unsigned r = (unsigned)atomic_load(&fr_pool.region);
                int region = (int)((((r >> 8) + 1) << 8) & 0x7fffff00u) | nt;
                for (int i = 1; i < nt; i++) atomic_store(&fr_pool.slot[i], region);
                fr_publish(&fr_pool.region, region, &fr_pool.sleepers);
                fn(ctx, 0, nt);
                /* release the workers that never started */
                for (int i = 1; i < nt; i++) {
                    int asked = region;
                    if (atomic_compare_exchange_strong(&fr_pool.slot[i], &asked, 0))
                        atomic_fetch_sub(&fr_pool.pending, 1);
                }
                int left;
                while ((left = atomic_load(&fr_pool.pending)) > 0)
                    fr_wait_change(&fr_pool.pending, left, &fr_pool.done_sleepers,
                                   FR_POOL_SPIN_NS);
                pthread_mutex_unlock(&fr_pool_lock);
                return;
            }
            pthread_mutex_unlock(&fr_pool_lock);
        }
    }
#endif
    fn(ctx, 0, 1);
}

/* ---------------------------------------------------------------------------- scheduling
 * The work of a region comes in phases (a product with its gate epilogue; a backward gate
 * pass; packing; a block of a matrix product), each cut into items. Every thread owns a fixed
 * range of items and claims its own first, so that with every thread on a core each keeps its
 * panels in its own cache, exactly as a static split would; then it claims what the others
 * have not started. A phase ends when all its items are done (a count, not a barrier): a
 * thread that the OS has descheduled holds up nobody unless it is inside an item, and finds
 * the phases it missed already done when it wakes. */
#define FR_SPIN_NS 20000

typedef struct {
    _Alignas(64) atomic_long v; /* one cache line each: claims of one owner */
} fr_counter;

typedef struct {
    fr_counter claim[FR_MAXT]; /* items claimed from each owner's range, over all phases */
    fr_counter done;           /* items finished, over all phases */
    _Alignas(64) atomic_int epoch; /* bumped as phases finish (fr_finish): what sleepers wait on */
    atomic_int sleepers;
} fr_sched;

/* One thread's view: how many items each owner's range held in the phases before this one;
 * `reverse` hands out each range's items last first (see fr_next). */
typedef struct {
    int tid, nt, reverse;
    long base[FR_MAXT];
    long target;
} fr_local;

static void fr_sched_init(fr_sched *s) {
    for (int r = 0; r < FR_MAXT; r++) atomic_init(&s->claim[r].v, 0);
    atomic_init(&s->done.v, 0);
    atomic_init(&s->epoch, 0);
    atomic_init(&s->sleepers, 0);
}

static void fr_local_init(fr_local *l, int tid, int nt) {
    l->tid = tid;
    l->nt = nt;
    l->reverse = 0;
    l->target = 0;
    for (int r = 0; r < nt; r++) l->base[r] = 0;
}

/* Owner r's units [*u0, *u1) of n: near-equal contiguous ranges. */
static inline void fr_range(long n, int r, int nt, long *u0, long *u1) {
    *u0 = n * r / nt;
    *u1 = n * (r + 1) / nt;
}

/* Items in each owner's range for a phase over n units in items of U. */
static void fr_lens(const fr_local *l, long n, long U, long *lens) {
    for (int r = 0; r < l->nt; r++) {
        long u0, u1;
        fr_range(n, r, l->nt, &u0, &u1);
        lens[r] = (u1 - u0 + U - 1) / U;
    }
}

/* The done count that completes the current phase. */
static long fr_target(const fr_local *l, long n, long U) {
    long lens[FR_MAXT], end = l->target;
    fr_lens(l, n, U, lens);
    for (int r = 0; r < l->nt; r++) end += lens[r];
    return end;
}

/* Claim the next unstarted item of owner r (its range holds len items): its index, or -1. */
static long fr_claim(fr_sched *s, const fr_local *l, int r, long len) {
    long c = atomic_load_explicit(&s->claim[r].v, memory_order_relaxed);
    while (c < l->base[r] + len)
        if (atomic_compare_exchange_weak_explicit(&s->claim[r].v, &c, c + 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return c - l->base[r];
    return -1;
}

/* A claimed item: units [a, a + cnt); k counts the owners scanned; end completes the phase. */
typedef struct {
    int k;
    long a, cnt, end;
} fr_item;

/* The next item of the phase over n units in items of U: own range first, then the others'.
 * With l->reverse, each range's items come last first: a recurrence alternates the direction
 * from step to step, so that the tiles a thread used last, whose panels are still in its
 * cache, come first in the next step. (A thread's panels of a large Wh, 3.4 MB each at H = 650
 * on 2 threads, do not fit its 2 MB L2; walked in one direction, each step evicted a panel
 * just before it was needed again.) */
static int fr_next(fr_sched *s, fr_local *l, long n, long U, fr_item *it) {
    for (; it->k < l->nt; it->k++) {
        int r = (l->tid + it->k) % l->nt;
        long u0, u1, len;
        fr_range(n, r, l->nt, &u0, &u1);
        len = (u1 - u0 + U - 1) / U;
        long i = fr_claim(s, l, r, len);
        if (i >= 0) {
            it->a = u0 + (l->reverse ? len - 1 - i : i) * U;
            it->cnt = u1 - it->a < U ? u1 - it->a : U;
            return 1;
        }
    }
    return 0;
}

/* Mark an item done; `end` is the done count at which its phase is complete. With phases
 * passed (fr_pass), the last item to finish may belong to an earlier phase than the one a
 * sleeper waits for: any item that brings the count to its own phase's end or past it wakes
 * the sleepers, who check the count again. */
static void fr_finish(fr_sched *s, long end) {
    if (atomic_fetch_add(&s->done.v, 1) + 1 >= end) {
        atomic_fetch_add(&s->epoch, 1);
        if (atomic_load(&s->sleepers) > 0) fr_futex_wake(&s->epoch);
    }
}

/* End of a phase over n units in items of U without waiting for its items: the next phase's
 * can be claimed meanwhile, where it does not read what this one writes. Every item is
 * claimed when a thread gets here (fr_next claims the others' after its own), and the next
 * fr_sync waits for this phase's items too. */
static void fr_pass(fr_local *l, long n, long U) {
    long lens[FR_MAXT];
    fr_lens(l, n, U, lens);
    for (int r = 0; r < l->nt; r++) {
        l->target += lens[r];
        l->base[r] += lens[r];
    }
}

/* End of a phase over n units in items of U: wait until every item is done, this phase's and
 * those of the phases passed before it. */
static void fr_sync(fr_sched *s, fr_local *l, long n, long U) {
    fr_pass(l, n, U);
    long end = l->target;
    if (l->nt <= 1) return;
    if (atomic_load_explicit(&s->done.v, memory_order_acquire) >= end) return;
    long t0 = fr_now_ns();
    for (int i = 1; atomic_load_explicit(&s->done.v, memory_order_acquire) < end; i++) {
        if (i % 64 || fr_now_ns() - t0 < FR_SPIN_NS) {
            fr_relax();
            continue;
        }
        int e = atomic_load(&s->epoch);
        atomic_fetch_add(&s->sleepers, 1);
        if (atomic_load(&s->done.v) < end) /* seq_cst: else the finisher sees a sleeper */
            fr_futex_wait(&s->epoch, e);
        atomic_fetch_sub(&s->sleepers, 1);
    }
#ifdef FR_PROFILE
    fr_prof[12 + (l->tid > 0)] += fr_now_ns() - t0; /* every wait, thread 0 and the others */
    fr_prof[14 + (l->tid > 0)] += 1;
#endif
}

/* Loop over the items of a phase over n units in items of U (end it with fr_sync(s, L, n, U)):
 * the body sees FIRST (the item's first unit) and COUNT (its units). */
#define FOR_ITEMS(S, L, n, U, FIRST, COUNT)                                                     \
    for (fr_item it_ = {0, 0, 0, fr_target((L), (n), (U))}; fr_next((S), (L), (n), (U), &it_); \
         fr_finish((S), it_.end))                                                               \
        for (long FIRST = it_.a, COUNT = it_.cnt, once_ = 1; once_; once_ = 0)

/* A region whose work is n independent units in items of U: fn(ctx, first, count) per item.
 * The items are claimed through the scheduler, so the caller takes over the range of a worker
 * that never started (fr_parallel releases such a worker) and every item runs exactly once; a
 * static split by thread would silently skip that worker's share. */
typedef void (*fr_item_fn)(void *ctx, long first, long count);
typedef struct {
    fr_sched sch;
    fr_item_fn fn;
    void *ctx;
    long n, U;
} fr_loop;

static void fr_loop_worker(void *arg, int tid, int nt) {
    fr_loop *f = (fr_loop *)arg;
    fr_local L;
    fr_local_init(&L, tid, nt);
    FOR_ITEMS(&f->sch, &L, f->n, f->U, a, cnt) f->fn(f->ctx, a, cnt);
}

static void fr_for(fr_item_fn fn, void *ctx, long n, long U, int nt) {
    fr_loop f;
    fr_sched_init(&f.sch);
    f.fn = fn, f.ctx = ctx, f.n = n, f.U = U < 1 ? 1 : U;
    fr_parallel(fr_loop_worker, &f, nt);
}

/* Items of U for n units, about `per` per thread: a worker released from the region leaves
 * items small enough for the others to share. */
static long fr_item_units(long n, int nt, int per) {
    long U = n / ((long)nt * per);
    return U < 1 ? 1 : U;
}

static void fr_count_items(void *ctx, long first, long count) {
    (void)first;
    *(long *)ctx += count;
}

long fr_selftest_takeover(long n, int nt) {
    long done = 0;
    fr_loop f;
    fr_sched_init(&f.sch);
    f.fn = fr_count_items, f.ctx = &done, f.n = n, f.U = 1;
    fr_loop_worker(&f, 0, nt < 1 ? 1 : (nt > FR_MAXT ? FR_MAXT : nt));
    return done;
}

/* ---------------------------------------------------------------------------- work buffer
 * One cached buffer serves the calls that find it free: a fresh multi-megabyte allocation is
 * mapped page by page on first touch, which costs as much as a small call. Buffers above
 * FR_WS_MAX are allocated per call and returned. */
#define FR_WS_MAX ((size_t)256 << 20)
static struct {
    atomic_int busy;
    void *p;
    size_t n;
} fr_ws;

static void *fr_ws_get(size_t n, int *cached) {
    int free_ = 0;
    *cached = 0;
    if (n <= FR_WS_MAX && atomic_compare_exchange_strong(&fr_ws.busy, &free_, 1)) {
        if (fr_ws.n < n) {
            fr_free(fr_ws.p);
            fr_ws.n = n + n / 4; /* room to grow a little without a new mapping */
            fr_ws.p = fr_alloc(fr_ws.n);
            if (!fr_ws.p) fr_ws.n = 0;
        }
        if (fr_ws.p) {
            *cached = 1;
            return fr_ws.p;
        }
        atomic_store(&fr_ws.busy, 0);
    }
    return fr_alloc(n);
}

static void fr_ws_put(void *p, int cached) {
    if (cached)
        atomic_store(&fr_ws.busy, 0);
    else
        fr_free(p);
}

/* ---------------------------------------------------------------------------- product depth
 * A product's depth blocks (impl.h) are sized in bytes of one 4-vector tile's slice of packed
 * B: the chunk's block of B (four such slices) then takes half of a core's L2, where it stays
 * while every row block of A passes it. Deeper blocks load and store C fewer times; measured
 * on a 2 MB L2, 256 KB slices beat 128 KB on every large product and 384 KB lost (see
 * NOTES.md). */
#define FR_KC_BYTES_MAX (256L << 10)
#define FR_KC_BYTES_MIN (32L << 10)
static atomic_long fr_kc_set; /* a test's choice, or 0 */

/* One core's L2 in bytes (1 MB where the C library does not report it). */
static long fr_l2_bytes(void) {
    static atomic_long l2; /* the same answer every time: a benign race */
    long b = atomic_load_explicit(&l2, memory_order_relaxed);
    if (b) return b;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    b = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (b <= 0) b = 1L << 20;
    atomic_store_explicit(&l2, b, memory_order_relaxed);
    return b;
}

static long fr_kc_clamp(long n) {
    return n < FR_KC_BYTES_MIN ? FR_KC_BYTES_MIN : (n > FR_KC_BYTES_MAX ? FR_KC_BYTES_MAX : n);
}

static long fr_kc_bytes(void) {
    long b = atomic_load_explicit(&fr_kc_set, memory_order_relaxed);
    return b ? b : fr_kc_clamp(fr_l2_bytes() / 8 / 4096 * 4096);
}

long fr_set_kc_bytes(long n) {
    atomic_store(&fr_kc_set, n > 0 ? fr_kc_clamp(n) : 0);
    return fr_kc_bytes();
}

/* ---------------------------------------------------------------------------- kernels */
enum { MK_ZERO, MK_LOAD, MK_BIAS }; /* how a microkernel starts its sums (impl.h) */
typedef int (*fr_cell_fn)(const fr_dims *, const void *const *, void *const *, const int64_t *,
                          int);
typedef int (*fr_matmul_fn)(long, long, long, const void *, long, long, const void *, long, long,
                            void *, long, long, const void *, void *, int, int);
typedef int (*fr_softmax_fn)(long, long, const void *, const int64_t *, void *, double *, int);
typedef void (*fr_embedding_backward_fn)(long, long, long, const void *, const int64_t *, void *,
                                         int);
typedef void (*fr_dropout_fn)(long, const void *, uint64_t, uint64_t, double, void *, void *, int);
typedef int (*fr_axpby_fn)(int, const long *, double, const void *const *, double,
                           void *const *, int);
typedef int (*fr_sum_squares_fn)(int, const long *, const void *const *, double *, int);

#define ATTR
#define VL 4
#define MR1 8
#define MR2 6
#define MR3 4
#define MR4 3
#define NV_MAX 4
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
#undef NV_MAX
#define NV_MAX 2 /* AVX2 (16 registers): 2 vectors x 6 rows, not 4 x 3 (impl.h, GEMM_TU) */
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
#undef NV_MAX

#define ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define MR1 8
#define MR2 12
#define MR3 8
#define MR4 6
#define NV_MAX 4
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

int fr_max_threads(void) { return FR_THREADS ? FR_MAXT : 1; }

/* The (instruction set, precision) variant of a kernel family: TABLE(suffix) names it. */
#if FR_X86
#define PICK(var, f64, TABLE)                                                                  \
    do {                                                                                       \
        if (isa == ISA_UNSET) isa = isa_best();                                                \
        if (isa == ISA_AVX512)                                                                 \
            var = (f64) ? TABLE(f64_avx512) : TABLE(f32_avx512);                               \
        else if (isa == ISA_AVX2)                                                              \
            var = (f64) ? TABLE(f64_avx2) : TABLE(f32_avx2);                                   \
        else                                                                                   \
            var = (f64) ? TABLE(f64_portable) : TABLE(f32_portable);                           \
    } while (0)
#else
#define PICK(var, f64, TABLE) var = (f64) ? TABLE(f64_portable) : TABLE(f32_portable)
#endif

#define CELL_TABLE(s) cell_ops_##s
#define MATMUL_FN(s) (fr_matmul_fn) matmul_##s
#define SOFTMAX_FN(s) (fr_softmax_fn) softmax_cross_entropy_##s
#define EMBEDDING_BACKWARD_FN(s) embedding_backward_##s
#define DROPOUT_FN(s) dropout_##s
#define AXPBY_FN(s) axpby_##s
#define SUM_SQUARES_FN(s) sum_squares_##s

int fr_cell(int op, int f64, const fr_dims *d, const void *const *in, void *const *out,
            const int64_t *lengths, int nthreads) {
    const fr_cell_fn *table;
    PICK(table, f64, CELL_TABLE);
    return table[op](d, in, out, lengths, nthreads);
}

int fr_matmul(int f64, long M, long K, long V, const void *A, long a_rs, long a_cs,
              const void *B, long b_rs, long b_cs, void *C, long c_rs, long c_cs,
              const void *bias, void *colsum, int accumulate, int nthreads) {
    fr_matmul_fn fn;
    PICK(fn, f64, MATMUL_FN);
    return fn(M, K, V, A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, c_cs, bias, colsum, accumulate,
              nthreads);
}

int fr_softmax_cross_entropy(int f64, long M, long V, const void *x, const int64_t *t, void *dx,
                             double *loss, int nthreads) {
    fr_softmax_fn fn;
    PICK(fn, f64, SOFTMAX_FN);
    return fn(M, V, x, t, dx, loss, nthreads);
}

/* ---------------------------------------------------------------------------- other ops */
void fr_embedding_forward(int f64, long M, long D, const void *W, const int64_t *idx, void *out) {
    const size_t row = (size_t)D * (f64 ? sizeof(double) : sizeof(float));
    for (long m = 0; m < M; m++)
        memcpy((char *)out + (size_t)m * row, (const char *)W + (size_t)idx[m] * row, row);
}

void fr_embedding_backward(int f64, long M, long D, long V, const void *dout,
                           const int64_t *idx, void *dW, int nthreads) {
    fr_embedding_backward_fn fn;
    PICK(fn, f64, EMBEDDING_BACKWARD_FN);
    fn(M, D, V, dout, idx, dW, nthreads);
}

void fr_dropout(int f64, long n, const void *x, uint64_t seed, uint64_t thr, double keep_value,
                void *y, void *mask, int nthreads) {
    fr_dropout_fn fn;
    PICK(fn, f64, DROPOUT_FN);
    fn(n, x, seed, thr, keep_value, y, mask, nthreads);
}

/* A byte range of one array of fr_axpby's lists; written: one of ys. */
typedef struct {
    uintptr_t lo, hi;
    int written;
} fr_span;

static int fr_span_cmp(const void *p, const void *q) {
    const fr_span *a = (const fr_span *)p, *b = (const fr_span *)q;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Whether some y[i] overlaps another array of the lists (x[i] that is exactly y[i] aside):
 * the spans sorted by start, an overlap is a span that starts before the end of an earlier
 * one, with a y among the two. 1 yes, 0 no, -1 out of memory. */
static int fr_lists_overlap(int m, const long *n, const void *const *x, void *const *y,
                            size_t size) {
    fr_span *s = (fr_span *)malloc((size_t)(2 * m + 1) * sizeof(fr_span));
    if (!s) return -1;
    int k = 0;
    for (int i = 0; i < m; i++) {
        if (!n[i]) continue;
        const uintptr_t len = (uintptr_t)n[i] * size;
        s[k++] = (fr_span){(uintptr_t)y[i], (uintptr_t)y[i] + len, 1};
        if (x[i] != y[i]) s[k++] = (fr_span){(uintptr_t)x[i], (uintptr_t)x[i] + len, 0};
    }
    qsort(s, (size_t)k, sizeof(fr_span), fr_span_cmp);
    uintptr_t end_any = 0, end_written = 0;
    int found = 0;
    for (int j = 0; j < k && !found; j++) {
        found = s[j].lo < (s[j].written ? end_any : end_written);
        if (s[j].hi > end_any) end_any = s[j].hi;
        if (s[j].written && s[j].hi > end_written) end_written = s[j].hi;
    }
    free(s);
    return found;
}

int fr_axpby(int f64, int m, const long *n, double a, const void *const *x, double b,
             void *const *y, int nthreads) {
    fr_axpby_fn fn;
    PICK(fn, f64, AXPBY_FN);
    const size_t size = f64 ? sizeof(double) : sizeof(float);
    int overlap = fr_lists_overlap(m, n, x, y, size);
    if (overlap < 0) return FR_ENOMEM;
    if (!overlap) return fn(m, n, a, x, b, y, nthreads);
    /* Pair by pair, in order, each x read as it is when its turn comes (a copy where it
     * overlaps its own y without being it). */
    for (int i = 0; i < m; i++) {
        const void *xi = x[i];
        void *copy = NULL;
        const uintptr_t len = (uintptr_t)n[i] * size;
        if (n[i] && x[i] != y[i] && (uintptr_t)x[i] < (uintptr_t)y[i] + len &&
            (uintptr_t)y[i] < (uintptr_t)x[i] + len) {
            if (!(copy = malloc(len))) return FR_ENOMEM;
            memcpy(copy, x[i], len);
            xi = copy;
        }
        int rc = fn(1, n + i, a, &xi, b, y + i, nthreads);
        free(copy);
        if (rc) return rc;
    }
    return 0;
}

int fr_sum_squares(int f64, int m, const long *n, const void *const *x, double *total,
                   int nthreads) {
    fr_sum_squares_fn fn;
    PICK(fn, f64, SUM_SQUARES_FN);
    return fn(m, n, x, total, nthreads);
}
