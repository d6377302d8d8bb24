"""Textbook compatibility: every public name of *Deep Learning from Scratch 2*'s
``common/time_layers.py``, so that a textbook script runs after one line changes::

    from common.time_layers import *   ->   from fastrnn.time_layers import *

That module re-exports ``np``, its non-time layers and functions (``from common.layers import
*``, ``from common.functions import ...``), the single-step cells and the time layers; the same
names are here. The time layers are fastrnn's fused ones (``fastrnn.layers``); the non-time
layers, the single-step cells (``RNN``, ``LSTM``, ``GRU``) and the functions are small NumPy
classes and functions with the textbook's interfaces and semantics (they work on NumPy or CuPy
arrays alike). ``GPU`` is False: pass CuPy arrays to run the time layers on the GPU instead.

Differences to know: fastrnn's time layers compute in the dtype of their weights (the
textbook's always return float32), and ``TimeGRU`` takes an optional bias (the textbook's GRU
has none; ``b=None`` gives a zero bias, which a training loop over ``params`` will update).
"""
import numpy as np

from .checks import array_module
from .layers import (TimeAffine, TimeBiLSTM, TimeDropout, TimeEmbedding, TimeLSTM, TimeRNN,
                     TimeSigmoidWithLoss, TimeSoftmaxWithLoss)
from .layers import TimeGRU as _FusedTimeGRU

GPU = False

__all__ = [
    "np", "GPU",
    # common/functions.py
    "sigmoid", "softmax", "cross_entropy_error",
    # common/layers.py
    "MatMul", "Affine", "Softmax", "SoftmaxWithLoss", "Sigmoid", "SigmoidWithLoss", "Dropout",
    "Embedding",
    # common/time_layers.py
    "RNN", "TimeRNN", "LSTM", "TimeLSTM", "GRU", "TimeGRU", "TimeEmbedding", "TimeAffine",
    "TimeSoftmaxWithLoss", "TimeDropout", "TimeBiLSTM", "TimeSigmoidWithLoss",
    "Simple_TimeSoftmaxWithLoss", "Simple_TimeAffine",
]


# ---------------------------------------------------------------------------------- functions
def sigmoid(x):
    """1 / (1 + exp(-x)), in the tanh form that does not overflow for large negative x."""
    return 0.5 * (1.0 + array_module(x).tanh(0.5 * x))


def softmax(x):
    """Softmax over the last axis (the textbook's: rows of a 2-D array, or a 1-D vector)."""
    xp = array_module(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    """Mean over the batch of -log(y[t] + 1e-7); ``t`` as ids (N,) or one-hot like ``y``; a 1-D
    ``y`` is one example."""
    xp = array_module(y)
    if y.ndim == 1:
        y, t = y.reshape(1, -1), t.reshape(1, -1)
    if t.size == y.size:
        t = t.argmax(axis=1)
    t = t.reshape(-1)
    n = y.shape[0]
    return -xp.sum(xp.log(y[xp.arange(n), t] + 1e-7)) / n


# -------------------------------------------------------------------------- non-time layers
class MatMul:
    """x (N, D) @ W (D, M)."""

    def __init__(self, W):
        self.params = [W]
        self.grads = [array_module(W).zeros_like(W)]
        self.x = None

    def forward(self, x):
        self.x = x
        return x @ self.params[0]

    def backward(self, dout):
        self.grads[0][...] = self.x.T @ dout
        return dout @ self.params[0].T


class Affine(MatMul):
    """x (N, D) @ W (D, M) + b (M,)."""

    def __init__(self, W, b):
        super().__init__(W)
        self.params.append(b)
        self.grads.append(array_module(b).zeros_like(b))

    def forward(self, x):
        return super().forward(x) + self.params[1]

    def backward(self, dout):
        self.grads[1][...] = dout.sum(axis=0)
        return super().backward(dout)


class Softmax:
    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        self.out = softmax(x)
        return self.out

    def backward(self, dout):
        y = self.out
        return y * (dout - (y * dout).sum(axis=-1, keepdims=True))


class SoftmaxWithLoss:
    """Softmax then cross-entropy, mean over the batch; ids (N,) or one-hot (N, V) labels."""

    def __init__(self):
        self.params, self.grads = [], []
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.y = softmax(x)
        self.t = t.argmax(axis=1) if t.size == self.y.size else t
        return cross_entropy_error(self.y, self.t)

    def backward(self, dout=1):
        xp = array_module(self.y)
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[xp.arange(n), self.t] -= 1
        return dx * (dout / n)


class Sigmoid:
    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class SigmoidWithLoss:
    """Sigmoid then binary cross-entropy against 0/1 ids, mean over the batch."""

    def __init__(self):
        self.params, self.grads = [], []
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        xp = array_module(x)
        self.t = t
        self.y = sigmoid(x)
        self.loss = cross_entropy_error(xp.stack((1 - self.y, self.y), axis=-1).reshape(-1, 2),
                                        t.reshape(-1))
        return self.loss

    def backward(self, dout=1):
        return (self.y - self.t) * dout / self.t.shape[0]


class Dropout:
    """The textbook's non-inverted dropout: training keeps each unit with probability
    1 - ratio (``np.random``), evaluation scales by 1 - ratio."""

    def __init__(self, dropout_ratio=0.5):
        self.params, self.grads = [], []
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        xp = array_module(x)
        if train_flg:
            self.mask = xp.asarray(np.random.rand(*x.shape) > self.dropout_ratio)
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class Embedding:
    """Rows W[idx]; the gradient adds repeated ids up."""

    def __init__(self, W):
        self.params = [W]
        self.grads = [array_module(W).zeros_like(W)]
        self.idx = None

    def forward(self, idx):
        self.idx = idx
        return self.params[0][idx]

    def backward(self, dout):
        dW = self.grads[0]
        dW[...] = 0
        array_module(dW).add.at(dW, self.idx, dout)
        return None


# ------------------------------------------------------------------------ single-step cells
class RNN:
    """One step: h_next = tanh(x @ Wx + h_prev @ Wh + b)."""

    def __init__(self, Wx, Wh, b):
        xp = array_module(Wx)
        self.params = [Wx, Wh, b]
        self.grads = [xp.zeros_like(Wx), xp.zeros_like(Wh), xp.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        h_next = array_module(x).tanh(x @ Wx + h_prev @ Wh + b)
        self.cache = (x, h_prev, h_next)
        return h_next

    def backward(self, dh_next):
        x, h_prev, h_next = self.cache
        da = dh_next * (1 - h_next ** 2)
        return _step_grads(self, x, h_prev, da)


def _step_grads(cell, x, h_prev, dA):
    """Write dWx, dWh, db of a step with pre-activation gradient dA; return (dx, dh_prev)."""
    Wx, Wh = cell.params[:2]
    cell.grads[0][...] = x.T @ dA
    cell.grads[1][...] = h_prev.T @ dA
    cell.grads[2][...] = dA.sum(axis=0)
    return dA @ Wx.T, dA @ Wh.T


class LSTM:
    """One step, gates [f | g | i | o]: c_next = f*c_prev + g*i, h_next = o*tanh(c_next)."""

    def __init__(self, Wx, Wh, b):
        xp = array_module(Wx)
        self.params = [Wx, Wh, b]
        self.grads = [xp.zeros_like(Wx), xp.zeros_like(Wh), xp.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        xp = array_module(x)
        H = h_prev.shape[1]
        A = x @ Wx + h_prev @ Wh + b
        f, i, o = (sigmoid(A[:, k * H:(k + 1) * H]) for k in (0, 2, 3))
        g = xp.tanh(A[:, H:2 * H])
        c_next = f * c_prev + g * i
        tc = xp.tanh(c_next)
        self.cache = (x, h_prev, c_prev, f, g, i, o, tc)
        return o * tc, c_next

    def backward(self, dh_next, dc_next):
        x, h_prev, c_prev, f, g, i, o, tc = self.cache
        xp = array_module(x)
        ds = dc_next + dh_next * o * (1 - tc ** 2)
        dA = xp.concatenate((ds * c_prev * f * (1 - f), ds * i * (1 - g ** 2),
                             ds * g * i * (1 - i), dh_next * tc * o * (1 - o)), axis=1)
        dx, dh_prev = _step_grads(self, x, h_prev, dA)
        return dx, dh_prev, ds * f


class GRU:
    """One step, the textbook's bias-free GRU with gates [z | r | h~]:
    h~ = tanh(x Wx_h + (r*h_prev) Wh_h), h_next = (1-z)*h_prev + z*h~. Gradients in ``dWx``
    and ``dWh`` (this class has no params / grads lists, as in the textbook)."""

    def __init__(self, Wx, Wh):
        self.Wx, self.Wh = Wx, Wh
        self.dWx, self.dWh = None, None
        self.cache = None

    def forward(self, x, h_prev):
        xp = array_module(x)
        H = self.Wh.shape[0]
        Wx, Wh = self.Wx, self.Wh
        zr = sigmoid(x @ Wx[:, :2 * H] + h_prev @ Wh[:, :2 * H])
        z, r = zr[:, :H], zr[:, H:]
        h_hat = xp.tanh(x @ Wx[:, 2 * H:] + (r * h_prev) @ Wh[:, 2 * H:])
        self.cache = (x, h_prev, z, r, h_hat)
        return (1 - z) * h_prev + z * h_hat

    def backward(self, dh_next):
        xp = array_module(dh_next)
        x, h_prev, z, r, h_hat = self.cache
        H = self.Wh.shape[0]
        Wx, Wh = self.Wx, self.Wh
        dt = dh_next * z * (1 - h_hat ** 2)  # candidate pre-activation
        drh = dt @ Wh[:, 2 * H:].T           # gradient of r * h_prev
        dz = dh_next * (h_hat - h_prev) * z * (1 - z)
        dr = drh * h_prev * r * (1 - r)
        dzr = xp.concatenate((dz, dr), axis=1)
        self.dWx = xp.concatenate((x.T @ dzr, x.T @ dt), axis=1)
        self.dWh = xp.concatenate((h_prev.T @ dzr, (r * h_prev).T @ dt), axis=1)
        dx = dzr @ Wx[:, :2 * H].T + dt @ Wx[:, 2 * H:].T
        dh_prev = dh_next * (1 - z) + drh * r + dzr @ Wh[:, :2 * H].T
        return dx, dh_prev


# ------------------------------------------------------------------- time layers, textbook form
class TimeGRU(_FusedTimeGRU):
    """fastrnn's fused TimeGRU, also callable as the textbook's ``TimeGRU(Wx, Wh,
    stateful=False)``: without ``b`` the bias is zeros. ``Wx``, ``Wh``, ``dWx``, ``dWh`` are
    the textbook's attribute names for ``params[0:2]`` and ``grads[0:2]``."""

    def __init__(self, Wx, Wh, b=None, stateful=False, reset_after=False, b_hn=None):
        if b is None or isinstance(b, bool):  # TimeGRU(Wx, Wh, True): the textbook's stateful
            stateful = stateful or bool(b)
            b = array_module(Wx).zeros(Wx.shape[1], dtype=Wx.dtype)
        super().__init__(Wx, Wh, b, stateful, reset_after, b_hn)

    Wx = property(lambda self: self.params[0])
    Wh = property(lambda self: self.params[1])
    dWx = property(lambda self: self.grads[0])
    dWh = property(lambda self: self.grads[1])


# Without ignored labels the textbook's per-step variant gives the same mean loss.
Simple_TimeSoftmaxWithLoss = TimeSoftmaxWithLoss


class Simple_TimeAffine(TimeAffine):
    """TimeAffine with the textbook's attribute names ``W``, ``b``, ``dW``, ``db``."""

    W = property(lambda self: self.params[0])
    b = property(lambda self: self.params[1])
    dW = property(lambda self: self.grads[0])
    db = property(lambda self: self.grads[1])
