# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython binding of the C engine (src/engine.c): one call runs a whole recurrence, a whole
recurrent layer or a matrix product on the engine's own threads, with the GIL released.

Shapes were validated by the caller (fastrnn.engine, after the op contract's checks); here each
array's buffer is taken C-contiguous (``matmul``: C- or Fortran-contiguous) with the item size
of the op's precision, else TypeError / ValueError.
"""

from cpython.buffer cimport (PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint64_t

cdef extern from "src/engine.h" nogil:
    ctypedef struct fr_dims:
        int T, N, D, H
    int fr_cell(int op, int f64, const fr_dims *d, const void *const *inputs,
                void *const *outputs, const int64_t *lengths, int nthreads)
    int fr_matmul(int f64, long M, long K, long V, const void *A, long a_rs, long a_cs,
                  const void *B, long b_rs, long b_cs, void *C, long c_rs, long c_cs,
                  const void *bias, void *colsum, int accumulate, int nthreads)
    int fr_softmax_cross_entropy(int f64, long M, long V, const void *x, const int64_t *t,
                                 void *dx, double *loss, int nthreads)
    void fr_embedding_forward(int f64, long M, long D, const void *W, const int64_t *idx,
                              void *out)
    void fr_embedding_backward(int f64, long M, long D, long V, const void *dout,
                               const int64_t *idx, void *dW, int nthreads)
    void fr_dropout(int f64, long n, const void *x, uint64_t seed, uint64_t thr,
                    double keep_value, void *y, void *mask, int nthreads)
    int fr_axpby(int f64, int m, const long *n, double a, const void *const *x, double b,
                 void *const *y, int nthreads)
    int fr_sum_squares(int f64, int m, const long *n, const void *const *x, double *total,
                       int nthreads)
    long fr_selftest_takeover(long n, int nt)
    long fr_set_kc_bytes(long n)
    int fr_set_isa(const char *name)
    const char *fr_isa()
    int fr_max_threads()
    void fr_pool_wake()

ctypedef fused real:
    float
    double

# The ops of fr_cell, in the order of enum fr_op (src/engine.h).
CELL_OPS = (
    "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
    "gru_backward", "gru_ra_forward", "gru_ra_backward", "rnn_layer_forward",
    "rnn_layer_backward", "lstm_layer_forward", "lstm_layer_backward", "gru_layer_forward",
    "gru_layer_backward", "gru_ra_layer_forward", "gru_ra_layer_backward",
)
_OP_INDEX = {name: i for i, name in enumerate(CELL_OPS)}
DEF MAX_ARRAYS = 16


cdef int _done(int rc) except -1:
    if rc != 0:
        raise MemoryError("fastrnn engine: could not allocate a work buffer")
    return 0


cdef int _take(object arrays, Py_buffer *views, void **ptrs, int flags,
               Py_ssize_t itemsize) except -1:
    """Fill views / ptrs from arrays; on error, release what was taken and raise."""
    cdef int i = 0
    try:
        for a in arrays:
            PyObject_GetBuffer(a, &views[i], flags)
            i += 1
            if views[i - 1].itemsize != itemsize:
                raise TypeError(f"fastrnn engine: array {i - 1} has item size "
                                f"{views[i - 1].itemsize}, expected {itemsize}")
            ptrs[i - 1] = views[i - 1].buf
    except BaseException:
        while i > 0:
            i -= 1
            PyBuffer_Release(&views[i])
        raise
    return i


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


def pool_wake():
    """Wake the engine's sleeping worker threads ahead of an op (see fr_pool_wake)."""
    fr_pool_wake()


def max_threads():
    """The most threads one call of the engine uses (1 in a build without threads)."""
    return fr_max_threads()


def cell(str op, int T, int N, int D, int H, inputs, outputs, const int64_t[::1] lengths,
         int nthreads, bint f64):
    """Run recurrence or layer op ``op`` (engine.h): ``inputs`` and ``outputs`` are sequences
    of C-contiguous arrays in the contract's order, all float64 when f64 else float32."""
    cdef int index = _OP_INDEX[op]
    cdef fr_dims d
    d.T, d.N, d.D, d.H = T, N, D, H
    cdef Py_buffer views[2 * MAX_ARRAYS]
    cdef const void *inp[MAX_ARRAYS]
    cdef void *outp[MAX_ARRAYS]
    cdef Py_ssize_t itemsize = 8 if f64 else 4
    cdef int n_in = 0, n_out = 0, rc, i
    cdef const int64_t *lp = NULL
    if len(inputs) > MAX_ARRAYS or len(outputs) > MAX_ARRAYS:
        raise ValueError("fastrnn engine: too many arrays")
    if lengths is not None:
        lp = &lengths[0]
    n_in = _take(inputs, views, <void **>inp, PyBUF_C_CONTIGUOUS, itemsize)
    try:
        n_out = _take(outputs, views + MAX_ARRAYS, outp, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE,
                      itemsize)
        try:
            with nogil:
                rc = fr_cell(index, f64, &d, inp, outp, lp, nthreads)
            _done(rc)
        finally:
            for i in range(n_out):
                PyBuffer_Release(&views[MAX_ARRAYS + i])
    finally:
        for i in range(n_in):
            PyBuffer_Release(&views[i])


def matmul(A, B, C, bias, colsum, bint accumulate, int nthreads, bint f64):
    """C = A @ B (+ C when accumulate) (+ bias on every row); colsum receives the column sums
    of B. 2-D arrays, each C- or Fortran-contiguous, shapes (M, K), (K, V), (M, V) already
    checked; bias, colsum (V,) or None (only with a C-ordered C)."""
    cdef Py_buffer views[5]
    cdef void *ptrs[5]
    cdef Py_ssize_t itemsize = 8 if f64 else 4
    cdef int n = 0, rc, i
    cdef long M = A.shape[0], K = A.shape[1], V = B.shape[1]
    ptrs[3] = ptrs[4] = NULL
    n = _take((A, B), views, ptrs, PyBUF_ANY_CONTIGUOUS, itemsize)
    try:
        n += _take((C,), views + n, ptrs + 2, PyBUF_ANY_CONTIGUOUS | PyBUF_WRITABLE, itemsize)
        if bias is not None:
            n += _take((bias,), views + n, ptrs + 3, PyBUF_C_CONTIGUOUS, itemsize)
        if colsum is not None:
            n += _take((colsum,), views + n, ptrs + 4, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE,
                       itemsize)
        with nogil:
            rc = fr_matmul(f64, M, K, V, ptrs[0], views[0].strides[0] // itemsize,
                           views[0].strides[1] // itemsize, ptrs[1],
                           views[1].strides[0] // itemsize, views[1].strides[1] // itemsize,
                           ptrs[2], views[2].strides[0] // itemsize,
                           views[2].strides[1] // itemsize, ptrs[3], ptrs[4], accumulate,
                           nthreads)
        _done(rc)
    finally:
        for i in range(n):
            PyBuffer_Release(&views[i])


def softmax_cross_entropy(const real[:, ::1] x, const int64_t[::1] t, real[:, ::1] dx,
                          bint grad, int nthreads):
    """Mean cross-entropy over labelled rows; dx (M, V) written when grad. Returns the loss."""
    cdef long M = x.shape[0], V = x.shape[1]
    cdef double loss = 0
    cdef int rc
    with nogil:
        rc = fr_softmax_cross_entropy(real is double, M, V, &x[0, 0], &t[0],
                                      &dx[0, 0] if grad else NULL, &loss, nthreads)
    _done(rc)
    return loss


def embedding_forward(const real[:, ::1] W, const int64_t[::1] idx, real[:, ::1] out):
    with nogil:
        fr_embedding_forward(real is double, idx.shape[0], W.shape[1], &W[0, 0], &idx[0],
                             &out[0, 0])


def embedding_backward(const real[:, ::1] dout, const int64_t[::1] idx, real[:, ::1] dW,
                       int nthreads):
    with nogil:
        fr_embedding_backward(real is double, idx.shape[0], dW.shape[1], dW.shape[0],
                              &dout[0, 0], &idx[0], &dW[0, 0], nthreads)


def dropout(const real[::1] x, uint64_t seed, uint64_t thr, real keep_value, real[::1] y,
            real[::1] mask, int nthreads):
    with nogil:
        fr_dropout(real is double, x.shape[0], &x[0], seed, thr, keep_value, &y[0], &mask[0],
                   nthreads)


cdef class _Lists:
    """The buffers of one or two equally long lists of C-contiguous arrays (the second written
    in place), held until the object goes: ptrs[i] and ptrs[m + i], n[i] elements each."""
    cdef Py_buffer *views
    cdef void **ptrs
    cdef long *n
    cdef int m, taken

    def __cinit__(self, first, second, Py_ssize_t itemsize):
        self.m = len(first)
        if second is not None and len(second) != self.m:
            raise ValueError(f"fastrnn engine: lists of {self.m} and {len(second)} arrays")
        self.views = <Py_buffer *>PyMem_Malloc(2 * self.m * sizeof(Py_buffer) + 1)
        self.ptrs = <void **>PyMem_Malloc(2 * self.m * sizeof(void *) + 1)
        self.n = <long *>PyMem_Malloc(self.m * sizeof(long) + 1)
        if not self.views or not self.ptrs or not self.n:
            raise MemoryError("fastrnn engine: could not allocate a work buffer")
        self.taken = _take(first, self.views, self.ptrs, PyBUF_C_CONTIGUOUS, itemsize)
        cdef int i
        for i in range(self.m):
            self.n[i] = self.views[i].len // itemsize
        if second is None:
            return
        self.taken += _take(second, self.views + self.m, self.ptrs + self.m,
                            PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE, itemsize)
        for i in range(self.m):
            if self.views[self.m + i].len != self.views[i].len:
                raise ValueError(f"fastrnn engine: arrays {i} of the two lists differ in size")

    def __dealloc__(self):
        cdef int i
        if self.views:
            for i in range(self.taken):
                PyBuffer_Release(&self.views[i])
        PyMem_Free(self.views)
        PyMem_Free(self.ptrs)
        PyMem_Free(self.n)


def axpby(double a, xs, double b, ys, bint f64, int nthreads):
    """ys[i] = a xs[i] + b ys[i] in place (ys[i] = a xs[i] when b is 0), as a loop over i in
    order would; xs[i] may be ys[i] or overlap any of ys. All float64 when f64, else float32."""
    cdef _Lists L = _Lists(xs, ys, 8 if f64 else 4)
    cdef int rc
    with nogil:
        rc = fr_axpby(f64, L.m, L.n, a, <const void *const *>L.ptrs, b, L.ptrs + L.m, nthreads)
    _done(rc)


def sum_squares(xs, bint f64, int nthreads):
    """The sum of the squares of the elements of every array of xs, as a Python float."""
    cdef _Lists L = _Lists(xs, None, 8 if f64 else 4)
    cdef double total = 0
    cdef int rc
    with nogil:
        rc = fr_sum_squares(f64, L.m, L.n, <const void *const *>L.ptrs, &total, nthreads)
    _done(rc)
    return total


def selftest_takeover(long n, int nt):
    """Items of a parallel loop that thread 0 of nt runs when no other thread starts."""
    return fr_selftest_takeover(n, nt)


def set_kc_bytes(long n):
    """Bytes of a product tile's depth-block slice (n <= 0: the machine's default); returns the
    value in force. A test hook: results depend on it."""
    return fr_set_kc_bytes(n)
