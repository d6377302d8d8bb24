"""Non-recurrent ops of the compiled CPU engine: linear, embedding, softmax cross-entropy,
dropout, and the optimizers' sum of squares and axpby over lists of arrays.

Same names, parameters and results as ``fastrnn.reference.ops``; ``fastrnn.engine`` binds them
to the op contract, which validates every input first (ids in [0, V), labels in [-1, V), ...).
Shapes: N batch, T time, D embedding or input width, V vocabulary or output width, M = N*T
rows. The linear ops run the engine's own matrix product on its threads (no BLAS pool beside
them); W and dW may be in Fortran order (a tied weight ``embed_W.T``) and are used in place.
"""
import numpy as np

from .. import threads as _threads
from ..reference import ops as _reference
from ..reference.ops import dropout_threshold
from . import _engine

# linear_backward computes dW^T for outputs narrower than this many columns (V) when the
# product has at least NARROW_MIN_MD elements of x (below that the two orders cost the same)
NARROW_V = 64
NARROW_MIN_MD = 1 << 16


def _matmul(A, B, C, bias=None, colsum=None):
    _engine.matmul(A, B, C, bias, colsum, False, _threads.get_num_threads(),
                   C.dtype == np.float64)


def linear_forward(x, W, b):
    """x (M, D) @ W (D, V) + b -> (M, V)."""
    (M, D), V = x.shape, W.shape[1]
    if not (M and D and V):
        return _reference.linear_forward(x, W, b)
    y = np.empty((M, V), dtype=x.dtype)
    _matmul(x, W, y, bias=b)
    return y


def linear_backward(dy, x, W, dW, db):
    """dx = dy @ W.T; dW = x.T @ dy and db = column sums of dy, in place. Returns (dx, dW, db)."""
    (M, V), D = dy.shape, x.shape[1]
    if not (M and D and V):
        return _reference.linear_backward(dy, x, W, dW, db)
    dx = np.empty((M, D), dtype=dy.dtype)
    _matmul(dy, W.T, dx)
    if dW.flags.c_contiguous and V < NARROW_V and M * D >= NARROW_MIN_MD:
        # dW^T = dy^T x: the product then packs the narrow dy transposed rather than the wide
        # x, and its output rows span D (char LM, V = 28, D = 256, M = 1120: 0.34 -> 0.18 ms
        # on 2 threads). Each element sums the same products in the same order either way.
        dWt = np.empty((V, D), dtype=dy.dtype)
        _matmul(dy.T, x, dWt)
        dW[...] = dWt.T
        np.add.reduce(dy, axis=0, out=db)
    elif dW.flags.c_contiguous:
        _matmul(x.T, dy, dW, colsum=db)  # db from the packing of dy, which reads it anyway
    else:  # Fortran order (a tied weight): written as dW^T = dy^T x in C order
        _matmul(x.T, dy, dW)
        np.add.reduce(dy, axis=0, out=db)
    return dx, dW, db


def _ids(idx):
    """Ids / labels as the int64 vector the kernels index with."""
    return np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)


def embedding_forward(W, idx):
    """W (V, D), idx (N, T) int -> (N, T, D) rows of W."""
    out = np.empty(idx.shape + (W.shape[1],), dtype=W.dtype)
    if out.size:
        _engine.embedding_forward(W, _ids(idx), out.reshape(-1, W.shape[1]))
    return out


def embedding_backward(dout, idx, dW):
    """Scatter-add dout (N, T, D) into dW (V, D) by idx (N, T); repeated ids accumulate.
    dW is overwritten in place (not accumulated into) and returned."""
    if dW.size == 0:
        return dW
    if idx.size == 0:
        dW[...] = 0
        return dW
    _engine.embedding_backward(dout.reshape(idx.size, dW.shape[1]), _ids(idx), dW,
                               _threads.get_num_threads())
    return dW


def softmax_cross_entropy(x, t, grad=True):
    """Mean cross-entropy of softmax(x) over the rows whose label is not -1: (loss, dx)."""
    M, V = x.shape
    dx = np.empty_like(x) if grad else None
    if M == 0:
        return np.asarray(0, dtype=x.dtype), dx
    loss = _engine.softmax_cross_entropy(x, _ids(t), dx if grad else x, grad,
                                         _threads.get_num_threads())
    return np.asarray(loss, dtype=x.dtype), dx


def dropout_forward(x, ratio, seed):
    """Inverted dropout: (y, mask), mask = keep / (1 - ratio) in x.dtype."""
    y = np.empty_like(x)
    mask = np.empty_like(x)
    if x.size:
        keep_value = x.dtype.type(1.0 / (1.0 - ratio))
        _engine.dropout(x.reshape(-1), seed, dropout_threshold(ratio), keep_value,
                        y.reshape(-1), mask.reshape(-1), _threads.get_num_threads())
    return y, mask


def sum_squares(xs):
    """The sum of the squares of the elements of every array of xs (float64 sums of blocks); a
    0-d array of their dtype."""
    dtype = xs[0].dtype
    total = _engine.sum_squares(xs, dtype == np.float64, _threads.get_num_threads())
    return np.asarray(total, dtype=dtype)


def axpby(a, xs, b, ys):
    """ys[k] = a*xs[k] + b*ys[k] in place (ys[k] = a*xs[k] when b is 0), as a loop over k in
    order would: xs[k] may be ys[k] or overlap any of ys (the engine takes overlaps apart).
    Returns ys."""
    _engine.axpby(a, xs, b, ys, ys[0].dtype == np.float64, _threads.get_num_threads())
    return ys
