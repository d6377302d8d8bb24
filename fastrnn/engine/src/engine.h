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
 * nthreads: threads of the one parallel region the whole loop runs in (clamped to the work).
 * Returns 0, or a negative code: FR_ENOMEM when the packed-weight buffer cannot be allocated.
 */
#ifndef FASTRNN_ENGINE_H
#define FASTRNN_ENGINE_H

#define FR_ENOMEM (-1)

#define FR_DECLARE(REAL, SFX)                                                                   \
int fr_rnn_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,   \
                         REAL *hs, int nthreads);                                               \
int fr_rnn_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh,                 \
                          const REAL *hs, REAL *dA, REAL *dh, int nthreads);                    \
int fr_lstm_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,  \
                          const REAL *c0, REAL *hs, REAL *cs, REAL *acts, int nthreads);        \
int fr_lstm_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh,                \
                           const REAL *cs, const REAL *acts, const REAL *c0, REAL *dA,          \
                           REAL *dh, REAL *dc, int nthreads);                                   \
int fr_gru_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh, const REAL *h0,   \
                         REAL *hs, REAL *acts, REAL *rh, int nthreads);                         \
int fr_gru_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh,                 \
                          const REAL *hs, const REAL *acts, const REAL *h0, REAL *dA,           \
                          REAL *dh, int nthreads);                                              \
int fr_gru_ra_forward_##SFX(int T, int N, int H, const REAL *xw, const REAL *Wh,                \
                            const REAL *b_hn, const REAL *h0, REAL *hs, REAL *acts, REAL *hn,   \
                            int nthreads);                                                      \
int fr_gru_ra_backward_##SFX(int T, int N, int H, const REAL *dhs, const REAL *Wh,              \
                             const REAL *hs, const REAL *acts, const REAL *hn, const REAL *h0,  \
                             REAL *dA, REAL *dhn, REAL *dh, int nthreads);

FR_DECLARE(float, f32)
FR_DECLARE(double, f64)

/* Instruction set the kernels run with: "avx512", "avx2" or "portable". fr_set_isa picks one
 * by name (NULL or "" = the best this CPU supports) and returns 0, or -1 for an unknown name,
 * -2 for one this CPU (or this build) cannot run. */
int fr_set_isa(const char *name);
const char *fr_isa(void);
/* The largest thread count the engine uses (1 in a build without OpenMP). */
int fr_max_threads(void);

#endif
