"""Plain NumPy versions of the non-recurrent ops (linear, embedding, softmax cross-entropy,
dropout, and the optimizers' sum of squares and axpby).

Shapes: N batch, T time, D embedding or input width, V vocabulary or output width, M = N*T rows.
"""
import threading

import numpy as np

from ..checks import array_module

# splitmix64 constants: the dropout mask is a pure function of (seed, flat index), so every
# backend (NumPy, Numba, CUDA) draws the bit-identical mask for the same seed.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def linear_forward(x, W, b):
    """x (M, D) @ W (D, V) + b (V,) -> (M, V)."""
    y = x @ W
    y += b
    return y


def linear_backward(dy, x, W, dW, db):
    """dy (M, V) -> dx (M, D) = dy @ W.T; dW = x.T @ dy and db = column sums of dy, written in
    place. Returns (dx, dW, db)."""
    dW[...] = x.T @ dy
    db[...] = dy.sum(axis=0)
    return dy @ W.T, dW, db


def embedding_forward(W, idx):
    """W (V, D), idx (N, T) int -> (N, T, D) rows of W."""
    return W[idx]


def embedding_backward(dout, idx, dW):
    """Scatter-add dout (N, T, D) into dW (V, D) by idx (N, T); repeated ids accumulate.
    dW is overwritten in place (not accumulated into) and returned."""
    dW[...] = 0
    np.add.at(dW, idx.reshape(-1), dout.reshape(idx.size, dW.shape[1]))
    return dW


def softmax_cross_entropy(x, t, grad=True):
    """Mean cross-entropy of softmax(x) over the rows whose label is not -1.

    x (M, V) scores, t (M,) int labels in [-1, V). Returns (loss, dx): loss a 0-d array of
    x.dtype, dx (M, V) the gradient of that mean loss (None when grad is False). Rows with
    label -1 are left out of the loss and get dx = softmax * 0 (zeros for finite scores, NaN
    where the row holds NaN or +inf); if every label is -1 the loss is 0."""
    valid = t != -1
    count = max(int(valid.sum()), 1)
    rows = np.arange(x.shape[0])
    tt = np.where(valid, t, 0)
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    logp = x[rows, tt] - m[:, 0] - np.log(s[:, 0])
    loss = np.asarray(-logp[valid].sum() / count, dtype=x.dtype)
    if not grad:
        return loss, None
    dx = e / s
    dx[rows, tt] -= 1
    dx *= (valid / count).astype(x.dtype)[:, None]
    return loss, dx.astype(x.dtype, copy=False)


def dropout_threshold(ratio):
    """Drop an element when its 24-bit uniform draw is below this integer threshold."""
    return int(np.ceil(ratio * (1 << 24)))


def dropout_forward(x, ratio, seed):
    """Inverted dropout. Returns (y, mask) with mask = keep / (1 - ratio) in x.dtype.

    The draw for flat index k is splitmix64(seed + (k + 1) * golden) >> 40, a 24-bit integer."""
    k = np.arange(1, x.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    keep = (z >> np.uint64(40)) >= np.uint64(dropout_threshold(ratio))
    mask = (keep * (1.0 / (1.0 - ratio))).astype(x.dtype).reshape(x.shape)
    return x * mask, mask


# Chunks of elementwise NumPy work (the flat ops here, Adam in fastrnn.optim): small enough
# to stay in cache, large enough that a ufunc's per-call cost does not matter, so that no
# temporary is as large as a parameter.
CHUNK = 1 << 16
_scratch = threading.local()


def chunks(dtype, *arrays):
    """(scratch1, scratch2, flat views...) per chunk of the arrays (C-contiguous, one size):
    two per-thread scratch chunks of ``dtype`` cut to the chunk's size, then each array's
    slice."""
    pair = getattr(_scratch, dtype.name, None)
    if pair is None:
        pair = (np.empty(CHUNK, dtype), np.empty(CHUNK, dtype))
        setattr(_scratch, dtype.name, pair)
    flats = [a.reshape(-1) for a in arrays]
    for i in range(0, flats[0].size, CHUNK):
        views = [f[i:i + CHUNK] for f in flats]
        n = views[0].size
        yield (pair[0][:n], pair[1][:n], *views)


def sum_squares(xs):
    """The sum of the squares of the elements of every array of xs, in float64; a 0-d array of
    their dtype."""
    xp = array_module(xs[0])
    total = 0.0
    for x in xs:
        flat = x.reshape(-1)
        if xp is not np:
            total = total + (flat.astype(np.float64) ** 2).sum()  # stays on the device
        else:
            # einsum casts chunk by chunk (no float64 copy of x) and calls no BLAS (see
            # fastrnn.optim)
            total += float(np.einsum("i,i->", flat, flat, dtype=np.float64))
    return xp.asarray(total, dtype=xs[0].dtype)


def axpby(a, xs, b, ys):
    """ys[k] = a*xs[k] + b*ys[k] in place for k in order (ys[k] = a*xs[k] when b is 0, without
    reading it); returns ys. See axpby_one for overlaps."""
    for x, y in zip(xs, ys):
        axpby_one(a, x, b, y)
    return ys


def axpby_one(a, x, b, y):
    """y = a*x + b*y in place (y = a*x when b is 0, without reading y); x may be y, or overlap
    it (x is read as it was before the call). Returns y. Takes y of any layout (the contract
    passes C-strided ones; fastrnn.optim also strided views of a parameter)."""
    t = y.dtype.type
    if array_module(y) is not np or not y.flags.c_contiguous:  # whole-array expressions
        ax = t(a) * x
        if b == 0:
            y[...] = ax
        else:
            y *= t(b)
            y += ax
        return y
    if x.reshape(-1).ctypes.data != y.ctypes.data and np.may_share_memory(x, y):
        x = x.copy()  # a partial overlap: read x as it was
    for s, _, xc, yc in chunks(y.dtype, x, y):
        np.multiply(xc, t(a), out=s)  # before y changes: x may be y
        if b == 0:
            yc[...] = s
        else:
            if b != 1:
                yc *= t(b)
            yc += s
    return y
