# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython binding of the C engine (src/engine.c): one call runs a whole recurrence.

Arguments are the op contract's, followed by the preallocated outputs and the thread count;
shapes were validated by the caller (fastrnn.engine). Typed memoryviews check dtype and
C-contiguity again on entry, and the GIL is released for the whole time loop.
"""

cdef extern from "src/engine.h" nogil:
    int fr_rnn_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *h0, float *hs, int nthreads)
    int fr_rnn_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *h0, double *hs, int nthreads)
    int fr_rnn_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *hs, float *dA, float *dh, int nthreads)
    int fr_rnn_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *hs, double *dA, double *dh, int nthreads)
    int fr_lstm_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *h0, const float *c0, float *hs, float *cs, float *acts, int nthreads)
    int fr_lstm_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *h0, const double *c0, double *hs, double *cs, double *acts, int nthreads)
    int fr_lstm_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *cs, const float *acts, const float *c0, float *dA, float *dh, float *dc, int nthreads)
    int fr_lstm_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *cs, const double *acts, const double *c0, double *dA, double *dh, double *dc, int nthreads)
    int fr_gru_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *h0, float *hs, float *acts, float *rh, int nthreads)
    int fr_gru_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *h0, double *hs, double *acts, double *rh, int nthreads)
    int fr_gru_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *hs, const float *acts, const float *h0, float *dA, float *dh, int nthreads)
    int fr_gru_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *hs, const double *acts, const double *h0, double *dA, double *dh, int nthreads)
    int fr_gru_ra_forward_f32(int T, int N, int H, const float *xw, const float *Wh, const float *b_hn, const float *h0, float *hs, float *acts, float *hn, int nthreads)
    int fr_gru_ra_forward_f64(int T, int N, int H, const double *xw, const double *Wh, const double *b_hn, const double *h0, double *hs, double *acts, double *hn, int nthreads)
    int fr_gru_ra_backward_f32(int T, int N, int H, const float *dhs, const float *Wh, const float *hs, const float *acts, const float *hn, const float *h0, float *dA, float *dhn, float *dh, int nthreads)
    int fr_gru_ra_backward_f64(int T, int N, int H, const double *dhs, const double *Wh, const double *hs, const double *acts, const double *hn, const double *h0, double *dA, double *dhn, double *dh, int nthreads)
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


def rnn_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0, real[:, :, ::1] hs, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_rnn_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], nthreads)
        else:
            rc = fr_rnn_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], nthreads)
    _done(rc)

def rnn_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs, real[:, :, ::1] dA, real[:, ::1] dh, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = dA.shape[2]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_rnn_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &dA[0, 0, 0], &dh[0, 0], nthreads)
        else:
            rc = fr_rnn_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &dA[0, 0, 0], &dh[0, 0], nthreads)
    _done(rc)

def lstm_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0, const real[:, ::1] c0, real[:, :, ::1] hs, real[:, :, ::1] cs, real[:, :, ::1] acts, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_lstm_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &c0[0, 0], &hs[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0], nthreads)
        else:
            rc = fr_lstm_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &c0[0, 0], &hs[0, 0, 0], &cs[0, 0, 0], &acts[0, 0, 0], nthreads)
    _done(rc)

def lstm_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] cs, const real[:, :, ::1] acts, const real[:, ::1] c0, real[:, :, ::1] dA, real[:, ::1] dh, real[:, ::1] dc, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = c0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_lstm_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &cs[0, 0, 0], &acts[0, 0, 0], &c0[0, 0], &dA[0, 0, 0], &dh[0, 0], &dc[0, 0], nthreads)
        else:
            rc = fr_lstm_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &cs[0, 0, 0], &acts[0, 0, 0], &c0[0, 0], &dA[0, 0, 0], &dh[0, 0], &dc[0, 0], nthreads)
    _done(rc)

def gru_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[:, ::1] h0, real[:, :, ::1] hs, real[:, :, ::1] acts, real[:, :, ::1] rh, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_gru_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &rh[0, 0, 0], nthreads)
        else:
            rc = fr_gru_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &rh[0, 0, 0], nthreads)
    _done(rc)

def gru_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs, const real[:, :, ::1] acts, const real[:, ::1] h0, real[:, :, ::1] dA, real[:, ::1] dh, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = h0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_gru_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dh[0, 0], nthreads)
        else:
            rc = fr_gru_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dh[0, 0], nthreads)
    _done(rc)

def gru_ra_forward(const real[:, :, ::1] xw, const real[:, ::1] Wh, const real[::1] b_hn, const real[:, ::1] h0, real[:, :, ::1] hs, real[:, :, ::1] acts, real[:, :, ::1] hn, int nthreads):
    cdef int T = hs.shape[0], N = hs.shape[1], H = h0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_gru_ra_forward_f32(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &b_hn[0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], nthreads)
        else:
            rc = fr_gru_ra_forward_f64(T, N, H, &xw[0, 0, 0], &Wh[0, 0], &b_hn[0], &h0[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], nthreads)
    _done(rc)

def gru_ra_backward(const real[:, :, ::1] dhs, const real[:, ::1] Wh, const real[:, :, ::1] hs, const real[:, :, ::1] acts, const real[:, :, ::1] hn, const real[:, ::1] h0, real[:, :, ::1] dA, real[:, :, ::1] dhn, real[:, ::1] dh, int nthreads):
    cdef int T = dA.shape[0], N = dA.shape[1], H = h0.shape[1]
    cdef int rc
    with nogil:
        if real is float:
            rc = fr_gru_ra_backward_f32(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dhn[0, 0, 0], &dh[0, 0], nthreads)
        else:
            rc = fr_gru_ra_backward_f64(T, N, H, &dhs[0, 0, 0], &Wh[0, 0], &hs[0, 0, 0], &acts[0, 0, 0], &hn[0, 0, 0], &h0[0, 0], &dA[0, 0, 0], &dhn[0, 0, 0], &dh[0, 0], nthreads)
    _done(rc)
