"""Numba versions of the non-recurrent ops (embedding, softmax cross-entropy, dropout).

Same names, signatures and results as ``fastrnn.reference.ops``. Shapes: N batch, T time,
D embedding width, V vocabulary, M = N*T rows.
"""
import numpy as np
from numba import njit

from ..reference.ops import dropout_threshold
from ._vmath import vexp

# Serial on purpose (no prange): a Numba OpenMP pool between the layers' OpenBLAS calls cost
# more than it gained. Measured on the 2-core dev machine, affine + softmax + affine-backward at
# PTB shapes (700 x 100 @ 100 x 10000): 34 ms with one Numba thread, 38-40 ms with two (the
# softmax alone 6.2 vs 3.2 ms), 80 ms when the OpenMP workers spin (OMP_WAIT_POLICY=ACTIVE)
# and worse with another process busy; a pool would also slow a torch imported later if
# fastrnn set a passive wait policy for it.
_JIT = dict(cache=True, error_model="numpy", nogil=True)

# splitmix64 constants, as np.uint64: in Numba, uint64 mixed with a Python int is float64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


# -------------------------------------------------------------------------------- embedding
@njit(**_JIT)
def _gather(W, idx, out):
    for m in range(idx.shape[0]):
        out[m, :] = W[idx[m]]


def embedding_forward(W, idx):
    """W (V, D), idx (N, T) int -> (N, T, D) rows of W."""
    out = np.empty(idx.shape + (W.shape[1],), dtype=W.dtype)
    if out.size:
        _gather(W, idx.reshape(-1), out.reshape(-1, W.shape[1]))
    return out


@njit(**_JIT)
def _scatter_add(dout, idx, dW):
    # One pass: zero dW, then add every row of dout into its id's row (repeats accumulate).
    dW[:, :] = 0
    D = dW.shape[1]
    for m in range(idx.shape[0]):
        row, src = dW[idx[m]], dout[m]
        for j in range(D):
            row[j] += src[j]


def embedding_backward(dout, idx, dW):
    """Scatter-add dout (N, T, D) into dW (V, D) by idx (N, T); repeated ids accumulate.
    dW is overwritten in place (not accumulated into) and returned."""
    D = dW.shape[1]
    if dW.size:
        _scatter_add(dout.reshape(-1, D), idx.reshape(-1), dW)
    return dW


# ---------------------------------------------------------------------- softmax cross-entropy
# Reassociation only (no "nnan"/"ninf"): lets LLVM vectorize the reductions while a NaN or inf
# in the row still reaches the result (IEEE policy of fastrnn.contract).
_REASSOC = {"reassoc", "nsz", "contract"}


@njit(fastmath=_REASSOC, **_JIT)
def _row_max(a):
    # A NaN may or may not win the max; either way exp(x - max) below is NaN somewhere in the
    # row, so the row's sum, loss and gradient are NaN.
    m = a[0]
    for j in range(1, a.shape[0]):
        m = max(m, a[j])
    return m


@njit(fastmath=_REASSOC, **_JIT)
def _row_sum(a):
    s = a[0] - a[0]
    for j in range(a.shape[0]):
        s += a[j]
    return s


@njit(**_JIT)
def _row_exp(xr, mx, out):
    for j in range(xr.shape[0]):
        out[j] = vexp(xr[j] - mx)


@njit(**_JIT)
def _softmax_ce(x, t, dx, grad, scale, one):
    # Per row, while the V-row stays in cache: max, exp(x - max) written straight into dx (or a
    # scratch row when grad is False), its sum, then dx scaled in place. Rows labelled -1 add
    # nothing to the loss; their dx row is softmax * 0, as in the reference (NaN where the row
    # holds NaN or +inf). The loss is summed in float64.
    M, V = x.shape
    scratch = np.empty(0 if grad else V, x.dtype)
    zero = one - one
    acc = 0.0
    for m in range(M):
        lab = t[m]
        if lab < 0 and not grad:
            continue
        xr = x[m]
        e = dx[m] if grad else scratch
        mx = _row_max(xr)
        _row_exp(xr, mx, e)
        s = _row_sum(e)
        if grad:
            k = (scale if lab >= 0 else zero) / s
            el = e[lab] if lab >= 0 else zero
            for j in range(V):
                e[j] *= k
            if lab >= 0:
                e[lab] = (el / s - one) * scale
        if lab >= 0:
            acc += np.float64(xr[lab]) - np.float64(mx) - np.log(np.float64(s))
    return acc


def softmax_cross_entropy(x, t, grad=True):
    """Mean cross-entropy of softmax(x) over the rows whose label is not -1.

    Returns (loss, dx): loss a 0-d array of x.dtype, dx (M, V) or None when grad is False.
    Rows labelled -1 are left out of the loss and get dx = softmax * 0."""
    M, V = x.shape
    count = max(int(np.count_nonzero(t != -1)), 1)
    scale = x.dtype.type(1.0 / count)
    dx = np.empty_like(x) if grad else np.empty((0, V), x.dtype)
    total = 0.0
    if x.size:
        total = _softmax_ce(x, t, dx, bool(grad), scale, x.dtype.type(1))
    loss = np.asarray(-total / count, dtype=x.dtype)
    return loss, (dx if grad else None)


# ---------------------------------------------------------------------------------- dropout
@njit(**_JIT)
def _dropout(x, seed, thr, keep_value, y, mask):
    zero = keep_value - keep_value
    for k in range(x.shape[0]):
        z = seed + np.uint64(k + 1) * _GOLDEN
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z ^= z >> _S31
        m = keep_value if (z >> _S40) >= thr else zero
        mask[k] = m
        y[k] = x[k] * m


def dropout_forward(x, ratio, seed):
    """Inverted dropout. Returns (y, mask) with mask = keep / (1 - ratio) in x.dtype.

    The draw for flat index k is splitmix64(seed + (k + 1) * golden) >> 40, a 24-bit integer:
    bit-identical to the reference for the same seed."""
    y = np.empty_like(x)
    mask = np.empty_like(x)
    if x.size:
        keep_value = x.dtype.type(1.0 / (1.0 - ratio))
        _dropout(x.reshape(-1), np.uint64(seed), np.uint64(dropout_threshold(ratio)), keep_value,
                 y.reshape(-1), mask.reshape(-1))
    return y, mask
