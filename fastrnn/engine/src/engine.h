/* fastrnn CPU engine: whole-sequence RNN / LSTM / GRU recurrences, whole recurrent layers, and
 * matrix products, each in one call on the engine's own threads.
 *
 * Letters: T time, N batch, D input width, H hidden, G gates, M rows, V output columns.
 *
 * Recurrence and layer ops (fr_cell): the arguments of the op contract (fastrnn/contract.py),
 * arrays only and in the contract's order, then the outputs in the order the contract returns
 * them. Every array is C-contiguous and has the contract's shape. The caller allocates every
 * output, zeroes nothing, and has validated every shape; T, N, H (and D) are >= 1.
 *
 *   recurrence ops (time-major):   xw (T, N, G*H), hs, cs, rh, hn, dhs (T, N, H),
 *                                  acts, dA (T, N, G*H), Wh (H, G*H), h0, c0 (N, H)
 *   layer ops (the whole layer):   xs, dxs (N, T, D) and hs, dhs (N, T, H) batch-major; the
 *                                  saved cs, acts, rh, hn time-major as above; Wx (D, G*H),
 *                                  b (G*H,), b_hn (H,); the weight gradients dWx, dWh, db,
 *                                  db_hn are outputs of the backward op
 *
 * lengths: (N,) steps of each row (0..T), or NULL for T everywhere; step t of row n is padding
 * when t >= lengths[n]: zero outputs, activations and gradients there.
 * nthreads: the most threads the call may use (it uses fewer where the work is small).
 * Returns 0, or FR_ENOMEM when a work buffer cannot be allocated.
 */
#ifndef FASTRNN_ENGINE_H
#define FASTRNN_ENGINE_H

#include <stdint.h>

#define FR_ENOMEM (-1)

/* The ops of fr_cell, in the contract's order of fastrnn/contract.py. */
enum fr_op {
    FR_RNN_FORWARD, FR_RNN_BACKWARD, FR_LSTM_FORWARD, FR_LSTM_BACKWARD,
    FR_GRU_FORWARD, FR_GRU_BACKWARD, FR_GRU_RA_FORWARD, FR_GRU_RA_BACKWARD,
    FR_RNN_LAYER_FORWARD, FR_RNN_LAYER_BACKWARD, FR_LSTM_LAYER_FORWARD, FR_LSTM_LAYER_BACKWARD,
    FR_GRU_LAYER_FORWARD, FR_GRU_LAYER_BACKWARD, FR_GRU_RA_LAYER_FORWARD,
    FR_GRU_RA_LAYER_BACKWARD,
    FR_OP_COUNT
};

typedef struct {
    int T, N, D, H; /* D is unused by the recurrence ops */
} fr_dims;

/* Run op `op` in double (f64) or float precision. `in` and `out` hold the op's array
 * arguments and results as described above. */
int fr_cell(int op, int f64, const fr_dims *d, const void *const *in, void *const *out,
            const int64_t *lengths, int nthreads);

/* C = A @ B (+ C when accumulate) (+ bias[j] on every row when bias is not NULL), with A (M, K),
 * B (K, V), C (M, V) addressed through element strides: A[i, k] = A[i*a_rs + k*a_cs] and
 * likewise for B and C. One of each matrix's two strides must be 1 (C and Fortran order and
 * their views); M, K, V >= 1. colsum, when not NULL, receives the column sums of B (V,) (a
 * bias gradient); bias and colsum need C with c_cs = 1. Results do not depend on the thread
 * count. */
int fr_matmul(int f64, long M, long K, long V, const void *A, long a_rs, long a_cs,
              const void *B, long b_rs, long b_cs, void *C, long c_rs, long c_cs,
              const void *bias, void *colsum, int accumulate, int nthreads);

/* The other ops. M rows (ids, labels, scores), D embedding width, V vocabulary. Ids and labels
 * are int64; labels -1 are ignored. softmax_cross_entropy writes the mean loss over labelled
 * rows to *loss and, when dx is not NULL, its gradient (M, V). embedding_backward overwrites dW
 * (V, D) with the scatter-add of dout (M, D) by idx. dropout keeps element k when the 24-bit
 * draw splitmix64(seed + (k+1) * golden) >> 40 is at least thr.
 *
 * The optimizers' ops over lists of m C-contiguous arrays of n[i] elements, in one parallel
 * loop: axpby sets y[i] = a x[i] + b y[i] (y[i] = a x[i] when b is 0: y[i] is not read), as a
 * loop over i in order would (x[i] may be y[i] or overlap any y); sum_squares writes the sum
 * of the squares of every x[i]'s elements to *total (blocks summed in REAL lanes, then in
 * double, in order). Results do not depend on the thread count. */
int fr_softmax_cross_entropy(int f64, long M, long V, const void *x, const int64_t *t, void *dx,
                             double *loss, int nthreads);
void fr_embedding_forward(int f64, long M, long D, const void *W, const int64_t *idx, void *out);
void fr_embedding_backward(int f64, long M, long D, long V, const void *dout,
                           const int64_t *idx, void *dW, int nthreads);
void fr_dropout(int f64, long n, const void *x, uint64_t seed, uint64_t thr, double keep_value,
                void *y, void *mask, int nthreads);
int fr_axpby(int f64, int m, const long *n, double a, const void *const *x, double b,
             void *const *y, int nthreads);
int fr_sum_squares(int f64, int m, const long *n, const void *const *x, double *total,
                   int nthreads);

/* Wake the engine's sleeping worker threads ahead of an op (they spin a while, then sleep
 * again): their wake-up then overlaps the caller's own preparations. */
void fr_pool_wake(void);

/* Test hook: the bytes of a product tile's depth-block slice (32 KB to 256 KB; n <= 0: this
 * machine's default, from its L2). Returns the value now in force. Results depend on it (the
 * depth blocks are summed in order), so it is set only between calls. */
long fr_set_kc_bytes(long n);

/* Test hook: a parallel loop of n items run by thread 0 of nt alone, as when the other threads
 * of a region never start; returns how many items ran (n: thread 0 took over the rest). */
long fr_selftest_takeover(long n, int nt);

/* Instruction set the kernels run with: "avx512", "avx2" or "portable". fr_set_isa picks one
 * by name (NULL or "" = the best this CPU supports) and returns 0, or -1 for an unknown name,
 * -2 for one this CPU (or this build) cannot run. */
int fr_set_isa(const char *name);
const char *fr_isa(void);
/* The largest thread count the engine uses (1 in a build without threads). */
int fr_max_threads(void);

#endif
