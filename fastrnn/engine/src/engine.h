/* fastrnn CPU engine: whole-sequence RNN / LSTM / GRU recurrences in one call.
 *
 * Every function runs the full time loop of one op of the op contract (same arguments and
 * outputs as fastrnn.reference.cells, all arrays C-contiguous, time-major):
 *   T time, N batch, H hidden, G gates
 *   xw (T, N, G*H)  input projection plus bias       Wh (H, G*H)
 *   h0, c0 (N, H)   initial state                    hs, cs, rh, hn, dhs (T, N, H)
 *   acts, dA (T, N, G*H)
 * The caller (fastrnn/engine/_engine.pyx) validates shapes, allocates the outputs and zeroes
 * dh / dc (the initial-state gradients, also used as the running gradient) before the call.
 * T, N, H >= 1.
 *
 * lengths: (N,) steps of each row (0..T), or NULL for T everywhere; step t of row n is padding
 * when t >= lengths[n]: zero outputs, activations and gradients there.
 * nthreads: threads of the one parallel region the whole loop runs in (clamped to the work).
 * Returns 0, or a negative code: FR_ENOMEM when the packed-weight buffer cannot be allocated.
 */
#ifndef FASTRNN_ENGINE_H
#define FASTRNN_ENGINE_H

#include <stdint.h>

#define FR_ENOMEM (-1)

#define FR_DECLARE(REAL, SFX)                                                                      \
int fr_rnn_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,      \
                         REAL *hs, const int64_t *lengths, int nthreads);                          \
int fr_rnn_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh, const REAL *hs,    \
                          REAL *dA, REAL *dh, const int64_t *lengths, int nthreads);               \
int fr_lstm_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,     \
                          const REAL *c0, REAL *hs, REAL *cs, REAL *acts,                          \
                          const int64_t *lengths, int nthreads);                                   \
int fr_lstm_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh,                   \
                           const REAL *cs, const REAL *acts, const REAL *c0, REAL *dA,             \
                           REAL *dh, REAL *dc, const int64_t *lengths, int nthreads);              \
int fr_gru_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,      \
                         REAL *hs, REAL *acts, REAL *rh, const int64_t *lengths, int nthreads);    \
int fr_gru_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh, const REAL *hs,    \
                          const REAL *acts, const REAL *h0, REAL *dA, REAL *dh,                    \
                          const int64_t *lengths, int nthreads);                                   \
int fr_gru_ra_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh,                   \
                            const REAL *b_hn, const REAL *h0, REAL *hs, REAL *acts, REAL *hn,      \
                            const int64_t *lengths, int nthreads);                                 \
int fr_gru_ra_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh,                 \
                             const REAL *hs, const REAL *acts, const REAL *hn, const REAL *h0,     \
                             REAL *dA, REAL *dhn, REAL *dh, const int64_t *lengths,                \
                             int nthreads);

/* The other ops. M rows (ids, labels, scores), D embedding width, V vocabulary. Ids and labels
 * are int64; labels -1 are ignored. softmax_cross_entropy writes the mean loss over labelled
 * rows to *loss and, when dx is not NULL, its gradient (M, V). dropout keeps element k when the
 * 24-bit draw splitmix64(seed + (k+1) * golden) >> 40 is at least thr. */
#define FR_DECLARE_OPS(REAL, SFX)                                                               \
int fr_softmax_cross_entropy_##SFX(long M, long V, const REAL *x, const int64_t *t, REAL *dx, \
                                   double *loss, int nthreads);                                 \
void fr_embedding_forward_##SFX(long M, long D, const REAL *W, const int64_t *idx,            \
                                REAL *out);                                                     \
void fr_embedding_backward_##SFX(long M, long D, long V, const REAL *dout,                      \
                                 const int64_t *idx, REAL *dW);                               \
void fr_dropout_##SFX(long n, const REAL *x, unsigned long long seed, unsigned long long thr,   \
                      REAL keep_value, REAL *y, REAL *mask);

FR_DECLARE(float, f32)
FR_DECLARE(double, f64)
FR_DECLARE_OPS(float, f32)
FR_DECLARE_OPS(double, f64)

/* The same entry points with the precision as an argument (f64: double, else float), for the
 * binding: pointers are to arrays of that type. */
int fr_rnn_forward(int f64, int T, int N, int H, const void *xw, const void *Wh, const void *h0,
                   void *hs, const int64_t *lengths, int nthreads);
int fr_rnn_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh, const void *hs,
                    void *dA, void *dh, const int64_t *lengths, int nthreads);
int fr_lstm_forward(int f64, int T, int N, int H, const void *xw, const void *Wh, const void *h0,
                    const void *c0, void *hs, void *cs, void *acts, const int64_t *lengths,
                    int nthreads);
int fr_lstm_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh, const void *cs,
                     const void *acts, const void *c0, void *dA, void *dh, void *dc,
                     const int64_t *lengths, int nthreads);
int fr_gru_forward(int f64, int T, int N, int H, const void *xw, const void *Wh, const void *h0,
                   void *hs, void *acts, void *rh, const int64_t *lengths, int nthreads);
int fr_gru_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh, const void *hs,
                    const void *acts, const void *h0, void *dA, void *dh, const int64_t *lengths,
                    int nthreads);
int fr_gru_ra_forward(int f64, int T, int N, int H, const void *xw, const void *Wh,
                      const void *b_hn, const void *h0, void *hs, void *acts, void *hn,
                      const int64_t *lengths, int nthreads);
int fr_gru_ra_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh,
                       const void *hs, const void *acts, const void *hn, const void *h0, void *dA,
                       void *dhn, void *dh, const int64_t *lengths, int nthreads);

/* Instruction set the kernels run with: "avx512", "avx2" or "portable". fr_set_isa picks one
 * by name (NULL or "" = the best this CPU supports) and returns 0, or -1 for an unknown name,
 * -2 for one this CPU (or this build) cannot run. */
int fr_set_isa(const char *name);
const char *fr_isa(void);
/* The largest thread count the engine uses (1 in a build without OpenMP). */
int fr_max_threads(void);
int fr_softmax_cross_entropy(int f64, long M, long V, const void *x, const int64_t *t, void *dx,
                             double *loss, int nthreads);
void fr_embedding_forward(int f64, long M, long D, const void *W, const int64_t *idx, void *out);
void fr_embedding_backward(int f64, long M, long D, long V, const void *dout,
                           const int64_t *idx, void *dW);
void fr_dropout(int f64, long n, const void *x, uint64_t seed, uint64_t thr, double keep_value,
                void *y, void *mask);

#endif
