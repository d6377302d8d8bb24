"""The classic NumPy time layers, written the textbook way: the baseline fastrnn replaces.

A benchmark baseline only (never used by the library or as a test oracle): the structure of the
"Deep Learning from Scratch 2" layers that users start from. A Python object per time step, the
input product ``x @ Wx`` done step by step inside the loop, ``np.add.at`` for the embedding
gradient, softmax and its gradient in separate NumPy passes. Same API as ``fastrnn.layers``
(``params``, ``grads`` written in place, ``forward``, ``backward``), so one model class runs on
either. Shapes: N batch, T time, D input, H hidden, V vocabulary.
"""
import numpy as np

from ..time_layers import Embedding


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# The textbook's embedding gathers rows for any id shape, so its time version is the same layer.
TimeEmbedding = Embedding


class _LSTMStep:
    def __init__(self, Wx, Wh, b):
        self.Wx, self.Wh, self.b = Wx, Wh, b

    def forward(self, x, h_prev, c_prev):
        H = h_prev.shape[1]
        A = x @ self.Wx + h_prev @ self.Wh + self.b
        f, g = _sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H])
        i, o = _sigmoid(A[:, 2 * H:3 * H]), _sigmoid(A[:, 3 * H:])
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c ** 2)
        dc_prev = ds * f
        df = ds * c_prev * f * (1 - f)
        dg = ds * i * (1 - g ** 2)
        di = ds * g * i * (1 - i)
        do = dh_next * tanh_c * o * (1 - o)
        dA = np.hstack((df, dg, di, do))
        grads = (x.T @ dA, h_prev.T @ dA, dA.sum(axis=0))
        return dA @ self.Wx.T, dA @ self.Wh.T, dc_prev, grads


class TimeLSTM:
    def __init__(self, Wx, Wh, b, stateful=False):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.stateful = stateful
        self.h = self.c = None
        self.steps = []

    def forward(self, xs):
        Wx, Wh, b = self.params
        N, T, _ = xs.shape
        H = Wh.shape[0]
        hs = np.empty((N, T, H), dtype=Wx.dtype)
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype=Wx.dtype)
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H), dtype=Wx.dtype)
        self.steps = []
        for t in range(T):
            step = _LSTMStep(Wx, Wh, b)
            self.h, self.c = step.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h
            self.steps.append(step)
        return hs

    def backward(self, dhs):
        Wx = self.params[0]
        N, T, H = dhs.shape
        dxs = np.empty((N, T, Wx.shape[0]), dtype=dhs.dtype)
        dh = np.zeros((N, H), dtype=dhs.dtype)
        dc = np.zeros_like(dh)
        total = [np.zeros_like(g) for g in self.grads]
        for t in reversed(range(T)):
            dx, dh, dc, grads = self.steps[t].backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for acc, g in zip(total, grads):
                acc += g
        for g, acc in zip(self.grads, total):
            g[...] = acc
        self.dh = dh
        return dxs


class TimeAffine:
    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        N, T, D = x.shape
        W, b = self.params
        self.x = x
        return (x.reshape(N * T, -1) @ W + b).reshape(N, T, -1)

    def backward(self, dout):
        x = self.x
        N, T, D = x.shape
        W = self.params[0]
        dout = dout.reshape(N * T, -1)
        rx = x.reshape(N * T, -1)
        self.grads[0][...] = rx.T @ dout
        self.grads[1][...] = dout.sum(axis=0)
        return (dout @ W.T).reshape(*x.shape)


class TimeSoftmaxWithLoss:
    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None

    def forward(self, xs, ts):
        N, T, V = xs.shape
        mask = ts != -1
        xs, ts, mask = xs.reshape(N * T, V), ts.reshape(N * T), mask.reshape(N * T)
        ys = np.exp(xs - xs.max(axis=1, keepdims=True))
        ys /= ys.sum(axis=1, keepdims=True)
        ls = np.log(ys[np.arange(N * T), ts]) * mask
        self.cache = (ts, ys, mask, (N, T, V))
        return -ls.sum() / mask.sum()

    def backward(self, dout=1):
        ts, ys, mask, (N, T, V) = self.cache
        dx = ys.copy()
        dx[np.arange(N * T), ts] -= 1
        dx *= dout / mask.sum()
        dx *= mask[:, None]
        return dx.reshape(N, T, V)


class TimeDropout:
    def __init__(self, dropout_ratio=0.5):
        self.params, self.grads = [], []
        self.dropout_ratio = dropout_ratio
        self.mask = None
        self.train_flg = True

    def forward(self, xs):
        if self.train_flg:
            flg = np.random.rand(*xs.shape) > self.dropout_ratio
            self.mask = flg.astype(np.float32) / (1.0 - self.dropout_ratio)
            return xs * self.mask
        return xs

    def backward(self, dout):
        return dout * self.mask
