# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython binding of the C engine (src/engine.c): one call runs a whole recurrence.

Arguments are the op contract's, followed by the preallocated outputs and the thread count;
shapes were validated by the caller (fastrnn.engine). Typed memoryviews check dtype and
C-contiguity again on entry, and the GIL is released for the whole time loop.
"""

from libc.stdint cimport int64_t, uint64_t

cdef extern from "src/engine.h" nogil:
    int fr_rnn_forward(int f64, int T, int N, int H, const void *xw, const void *Wh,
                       const void *h0, void *hs, const int64_t *lengths, int nthreads)
    int fr_rnn_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh,
                        const void *hs, void *dA, void *dh, const int64_t *lengths, int nthreads)
    int fr_lstm_forward(int f64, int T, int N, int H, const void *xw, const void *Wh,
                        const void *h0, const void *c0, void *hs, void *cs, void *acts,
                        const int64_t *lengths, int nthreads)
    int fr_lstm_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh,
                         const void *cs, const void *acts, const void *c0, void *dA, void *dh,
                         void *dc, const int64_t *lengths, int nthreads)
    int fr_gru_forward(int f64, int T, int N, int H, const void *xw, const void *Wh,
                       const void *h0, void *hs, void *acts, void *rh, const int64_t *lengths,
                       int nthreads)
    int fr_gru_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh,
                        const void *hs, const void *acts, const void *h0, void *dA, void *dh,
                        const int64_t *lengths, int nthreads)
    int fr_gru_ra_forward(int f64, int T, int N, int H, const void *xw, const void *Wh,
                          const void *b_hn, const void *h0, void *hs, void *acts, void *hn,
                          const int64_t *lengths, int nthreads)
    int fr_gru_ra_backward(int f64, int T, int N, int H, const void *dhs, const void *Wh,
                           const void *hs, const void *acts, const void *hn, const void *h0,
                           void *dA, void *dhn, void *dh, const int64_t *lengths, int nthreads)
    int fr_softmax_cross_entropy(int f64, long M, long V, const void *x, const int64_t *t,
                                 void *dx, double *loss, int nthreads)
    void fr_embedding_forward(int f64, long M, long D, const void *W, const int64_t *idx,
                              void *out)
    void fr_embedding_backward(int f64, long M, long D, long V, const void *dout,
                               const int64_t *idx, void *dW)
    void fr_dropout(int f64, long n, const void *x, uint64_t seed, uint64_t thr,
                    double keep_value, void *y, void *mask)
    int fr_set_isa(const char *name)
    const char *fr_isa()
    int fr_max_threads()

ctypedef fused real:
    float
    double


cdef int _done(int rc) except -1:
    if rc != 0:
        raise MemoryError("fastrnn engine: could not allocate the packed weight buffer")
    return 0


def set_isa(str name):
    """Run the kernels with instruction set ``name`` ("avx512", "avx2", "portable"; "" = best)."""
    rc = fr_set_isa(name.encode())
    if rc == -1:
        raise ValueError(f"unknown instruction set {name!r}; expected avx512, avx2 or portable")
    if rc == -2:
        raise ValueError(f"this CPU cannot run the {name!r} kernels (best: {isa()})")


def isa():
    """The instruction set the kernels run with."""
    return fr_isa().decode()


def max_threads():
    """Processors OpenMP sees (1 in a build without OpenMP)."""
    return fr_max_threads()



def rnn_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0,
                real[:, :, ::1] hs, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_rnn_forward(real is double, T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0],
                            &hs[0, 0, 0], lp, nthreads)
    _done(rc)


def rnn_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs,
                 real[:, :, ::1] dA, real[:, ::1] dh, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = dA.shape[2], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_rnn_backward(real is double, T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0],
                             &dA[0, 0, 0], &dh[0, 0], lp, nthreads)
    _done(rc)


def lstm_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0,
                 const real[:, ::1] c0, real[:, :, ::1] hs, real[:, :, ::1] cs,
                 real[:, :, ::1] acts, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_lstm_forward(real is double, T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0],
                             &c0[0, 0], &hs[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0], lp, nthreads)
    _done(rc)


def lstm_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] cs,
                  const real[:, :, ::1] acts, const real[:, ::1] c0, real[:, :, ::1] dA,
                  real[:, ::1] dh, real[:, ::1] dc, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = c0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_lstm_backward(real is double, T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &cs[0, 0, 0],
                              &acts[0, 0, 0], &c0[0, 0], &dA[0, 0, 0], &dh[0, 0], &dc[0, 0], lp,
                              nthreads)
    _done(rc)


def gru_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0,
                real[:, :, ::1] hs, real[:, :, ::1] acts, real[:, :, ::1] rh,
                const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_gru_forward(real is double, T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0],
                            &hs[0, 0, 0], &acts[0, 0, 0], &rh[0, 0, 0], lp, nthreads)
    _done(rc)


def gru_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs,
                 const real[:, :, ::1] acts, const real[:, ::1] h0, real[:, :, ::1] dA,
                 real[:, ::1] dh, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = h0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_gru_backward(real is double, T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0],
                             &acts[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dh[0, 0], lp, nthreads)
    _done(rc)


def gru_ra_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[::1] b_hn,
                   const real[:, ::1] h0, real[:, :, ::1] hs, real[:, :, ::1] acts,
                   real[:, :, ::1] hn, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_gru_ra_forward(real is double, T, N, H, &xw[0, 0, 0], &Wh[0, 0], &b_hn[0],
                               &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], lp, nthreads)
    _done(rc)


def gru_ra_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs,
                    const real[:, :, ::1] acts, const real[:, :, ::1] hn, const real[:, ::1] h0,
                    real[:, :, ::1] dA, real[:, :, ::1] dhn, real[:, ::1] dh,
                    const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = h0.shape[1], rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        rc = fr_gru_ra_backward(real is double, T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0],
                                &acts[0, 0, 0], &hn[0, 0, 0], &h0[0, 0], &dA[0, 0, 0],
                                &dhn[0, 0, 0], &dh[0, 0], lp, nthreads)
    _done(rc)


def softmax_cross_entropy(const real[:, ::1] x, const int64_t[::1] t, real[:, ::1] dx,
                          bint grad, int nthreads):
    """Mean cross-entropy over labelled rows; dx (M, V) written when grad. Returns the loss."""
    cdef long M = x.shape[0], V = x.shape[1]
    cdef double loss = 0
    with nogil:
        fr_softmax_cross_entropy(real is double, M, V, &x[0, 0], &t[0],
                                 &dx[0, 0] if grad else NULL, &loss, nthreads)
    return loss


def embedding_forward(const real[:, ::1] W, const int64_t[::1] idx, real[:, ::1] out):
    with nogil:
        fr_embedding_forward(real is double, idx.shape[0], W.shape[1], &W[0, 0], &idx[0],
                             &out[0, 0])


def embedding_backward(const real[:, ::1] dout, const int64_t[::1] idx, real[:, ::1] dW):
    with nogil:
        fr_embedding_backward(real is double, idx.shape[0], dW.shape[1], dW.shape[0],
                              &dout[0, 0], &idx[0], &dW[0, 0])


def dropout(const real[::1] x, uint64_t seed, uint64_t thr, real keep_value, real[::1] y,
            real[::1] mask):
    with nogil:
        fr_dropout(real is double, x.shape[0], &x[0], seed, thr, keep_value, &y[0], &mask[0])
