# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython binding of the C engine (src/engine.c): one call runs a whole recurrence.

Arguments are the op contract's, followed by the preallocated outputs and the thread count;
shapes were validated by the caller (fastrnn.engine). Typed memoryviews check dtype and
C-contiguity again on entry, and the GIL is released for the whole time loop.
"""

from libc.stdint cimport int64_t, uint64_t

cdef extern from "src/engine.h" nogil:
    int fr_rnn_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *h0, float *hs, const int64_t *lengths, int nthreads)
    int fr_rnn_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *h0, double *hs, const int64_t *lengths, int nthreads)
    int fr_rnn_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *hs, float *dA, float *dh, const int64_t *lengths, int nthreads)
    int fr_rnn_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *hs, double *dA, double *dh, const int64_t *lengths, int nthreads)
    int fr_lstm_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *h0, const float *c0, float *hs, float *cs, float *acts, const int64_t *lengths, int nthreads)
    int fr_lstm_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *h0, const double *c0, double *hs, double *cs, double *acts, const int64_t *lengths, int nthreads)
    int fr_lstm_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *cs, const float *acts, const float *c0, float *dA, float *dh, float *dc, const int64_t *lengths, int nthreads)
    int fr_lstm_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *cs, const double *acts, const double *c0, double *dA, double *dh, double *dc, const int64_t *lengths, int nthreads)
    int fr_gru_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *h0, float *hs, float *acts, float *rh, const int64_t *lengths, int nthreads)
    int fr_gru_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *h0, double *hs, double *acts, double *rh, const int64_t *lengths, int nthreads)
    int fr_gru_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *hs, const float *acts, const float *h0, float *dA, float *dh, const int64_t *lengths, int nthreads)
    int fr_gru_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *hs, const double *acts, const double *h0, double *dA, double *dh, const int64_t *lengths, int nthreads)
    int fr_gru_ra_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *b_hn, const float *h0, float *hs, float *acts, float *hn, const int64_t *lengths, int nthreads)
    int fr_gru_ra_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *b_hn, const double *h0, double *hs, double *acts, double *hn, const int64_t *lengths, int nthreads)
    int fr_gru_ra_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *hs, const float *acts, const float *hn, const float *h0, float *dA, float *dhn, float *dh, const int64_t *lengths, int nthreads)
    int fr_gru_ra_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *hs, const double *acts, const double *hn, const double *h0, double *dA, double *dhn, double *dh, const int64_t *lengths, int nthreads)
    int fr_softmax_cross_entropy_f32(long M, long V, const float *x, const int64_t *t, float *dx, double *loss, int nthreads)
    void fr_embedding_forward_f32(long M, long D, const float *W, const int64_t *idx, float *out)
    void fr_embedding_backward_f32(long M, long D, long V, const float *dout, const int64_t *idx, float *dW)
    void fr_dropout_f32(long n, const float *x, uint64_t seed, uint64_t thr, float keep_value, float *y, float *mask)
    int fr_softmax_cross_entropy_f64(long M, long V, const double *x, const int64_t *t, double *dx, double *loss, int nthreads)
    void fr_embedding_forward_f64(long M, long D, const double *W, const int64_t *idx, double *out)
    void fr_embedding_backward_f64(long M, long D, long V, const double *dout, const int64_t *idx, double *dW)
    void fr_dropout_f64(long n, const double *x, uint64_t seed, uint64_t thr, double keep_value, double *y, double *mask)
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


def rnn_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0, real[:, :, ::1] hs, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_rnn_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], lp, nthreads)
        else:
            rc = fr_rnn_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], lp, nthreads)
    _done(rc)

def rnn_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs, real[:, :, ::1] dA, real[:, ::1] dh, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = dA.shape[2]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_rnn_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &dA[0, 0, 0], &dh[0, 0], lp, nthreads)
        else:
            rc = fr_rnn_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &dA[0, 0, 0], &dh[0, 0], lp, nthreads)
    _done(rc)

def lstm_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0, const real[:, ::1] c0, real[:, :, ::1] hs, real[:, :, ::1] cs, real[:, :, ::1] acts, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_lstm_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &c0[0, 0], &hs[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0], lp, nthreads)
        else:
            rc = fr_lstm_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &c0[0, 0], &hs[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0], lp, nthreads)
    _done(rc)

def lstm_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] cs, const real[:, :, ::1] acts, const real[:, ::1] c0, real[:, :, ::1] dA, real[:, ::1] dh, real[:, ::1] dc, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = c0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_lstm_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &cs[0, 0, 0], &acts[0, 0, 0], &c0[0, 0], &dA[0, 0, 0], &dh[0, 0], &dc[0, 0], lp, nthreads)
        else:
            rc = fr_lstm_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &cs[0, 0, 0], &acts[0, 0, 0], &c0[0, 0], &dA[0, 0, 0], &dh[0, 0], &dc[0, 0], lp, nthreads)
    _done(rc)

def gru_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0, real[:, :, ::1] hs, real[:, :, ::1] acts, real[:, :, ::1] rh, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_gru_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &rh[0, 0, 0], lp, nthreads)
        else:
            rc = fr_gru_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &rh[0, 0, 0], lp, nthreads)
    _done(rc)

def gru_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs, const real[:, :, ::1] acts, const real[:, ::1] h0, real[:, :, ::1] dA, real[:, ::1] dh, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = h0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_gru_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dh[0, 0], lp, nthreads)
        else:
            rc = fr_gru_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dh[0, 0], lp, nthreads)
    _done(rc)

def gru_ra_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[::1] b_hn, const real[:, ::1] h0, real[:, :, ::1] hs, real[:, :, ::1] acts, real[:, :, ::1] hn, const int64_t[::1] lengths, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_gru_ra_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &b_hn[0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], lp, nthreads)
        else:
            rc = fr_gru_ra_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &b_hn[0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], lp, nthreads)
    _done(rc)

def gru_ra_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs, const real[:, :, ::1] acts, const real[:, :, ::1] hn, const real[:, ::1] h0, real[:, :, ::1] dA, real[:, :, ::1] dhn, real[:, ::1] dh, const int64_t[::1] lengths, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = h0.shape[1]
    cdef int rc
    cdef const int64_t *lp = NULL
    if lengths is not None:
        lp = &lengths[0]
    with nogil:
        if real is float:
            rc = fr_gru_ra_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dhn[0, 0, 0], &dh[0, 0], lp, nthreads)
        else:
            rc = fr_gru_ra_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dhn[0, 0, 0], &dh[0, 0], lp, nthreads)
    _done(rc)


def softmax_cross_entropy(const real[:, ::1] x, const int64_t[::1] t, real[:, ::1] dx,
                          bint grad, int nthreads):
    """Mean cross-entropy over labelled rows; dx (M, V) written when grad. Returns the loss."""
    cdef long M = x.shape[0], V = x.shape[1]
    cdef double loss = 0
    with nogil:
        if real is float:
            fr_softmax_cross_entropy_f32(M, V, &x[0, 0], &t[0], &dx[0, 0] if grad else NULL,
                                         &loss, nthreads)
        else:
            fr_softmax_cross_entropy_f64(M, V, &x[0, 0], &t[0], &dx[0, 0] if grad else NULL,
                                         &loss, nthreads)
    return loss


def embedding_forward(const real[:, ::1] W, const int64_t[::1] idx, real[:, ::1] out):
    cdef long M = idx.shape[0], D = W.shape[1]
    with nogil:
        if real is float:
            fr_embedding_forward_f32(M, D, &W[0, 0], &idx[0], &out[0, 0])
        else:
            fr_embedding_forward_f64(M, D, &W[0, 0], &idx[0], &out[0, 0])


def embedding_backward(const real[:, ::1] dout, const int64_t[::1] idx, real[:, ::1] dW):
    cdef long M = idx.shape[0], D = dW.shape[1], V = dW.shape[0]
    with nogil:
        if real is float:
            fr_embedding_backward_f32(M, D, V, &dout[0, 0], &idx[0], &dW[0, 0])
        else:
            fr_embedding_backward_f64(M, D, V, &dout[0, 0], &idx[0], &dW[0, 0])


def dropout(const real[::1] x, uint64_t seed, uint64_t thr, real keep_value, real[::1] y,
            real[::1] mask):
    cdef long n = x.shape[0]
    with nogil:
        if real is float:
            fr_dropout_f32(n, &x[0], seed, thr, keep_value, &y[0], &mask[0])
        else:
            fr_dropout_f64(n, &x[0], seed, thr, keep_value, &y[0], &mask[0])
