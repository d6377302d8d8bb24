"""Recurrences of the compiled CPU engine: output allocation around one C call per op.

Same names, parameters and results as ``fastrnn.reference.cells``; ``fastrnn.engine`` binds
them to the op contract, which validates the inputs (shapes, dtypes, exact C strides) before
any of these runs. Outputs are allocated here; the initial-state gradients start at zero
because the kernels use them as the running gradient.
"""
import numpy as np

from .. import threads as _threads
from . import _engine


def _run(kernel, inputs, outputs, lengths):
    """Run ``kernel`` unless the problem is empty (T, N or H = 0); return ``outputs``.
    lengths: int64 (N,) or None, validated by the contract."""
    if all(a.size for a in outputs):
        kernel(*inputs, *outputs, lengths, _threads.get_num_threads())
    return outputs


def _like(a, H):
    """An empty (T, N, H) buffer from a (T, N, *) array."""
    return np.empty(a.shape[:2] + (H,), dtype=a.dtype)


def rnn_forward(xw, Wh, h0, lengths=None):
    """h' = tanh(xw[t] + h @ Wh). Returns hs (T, N, H)."""
    return _run(_engine.rnn_forward, (xw, Wh, h0), (np.empty_like(xw),), lengths)[0]


def rnn_backward(dhs, Wh, hs, h0, lengths=None):
    """Returns (dA (T, N, H), dh0 (N, H))."""
    return _run(_engine.rnn_backward, (dhs, Wh, hs), (np.empty_like(dhs), np.zeros_like(h0)),
                lengths)


def lstm_forward(xw, Wh, h0, c0, lengths=None):
    """Returns hs, cs (T, N, H), acts (T, N, 4H) = [f|g|i|o]."""
    H = h0.shape[1]
    return _run(_engine.lstm_forward, (xw, Wh, h0, c0),
                (_like(xw, H), _like(xw, H), np.empty_like(xw)), lengths)


def lstm_backward(dhs, Wh, cs, acts, c0, lengths=None):
    """Returns (dA (T, N, 4H), dh0 (N, H), dc0 (N, H))."""
    return _run(_engine.lstm_backward, (dhs, Wh, cs, acts, c0),
                (np.empty_like(acts), np.zeros_like(c0), np.zeros_like(c0)), lengths)


def gru_forward(xw, Wh, h0, lengths=None):
    """GRU, reset before. Returns hs (T, N, H), acts (T, N, 3H) = [z|r|h~], rh (T, N, H)."""
    H = h0.shape[1]
    return _run(_engine.gru_forward, (xw, Wh, h0),
                (_like(xw, H), np.empty_like(xw), _like(xw, H)), lengths)


def gru_backward(dhs, Wh, hs, acts, h0, lengths=None):
    """Returns (dA (T, N, 3H), dh0 (N, H))."""
    return _run(_engine.gru_backward, (dhs, Wh, hs, acts, h0),
                (np.empty_like(acts), np.zeros_like(h0)), lengths)


def gru_ra_forward(xw, Wh, b_hn, h0, lengths=None):
    """GRU, reset after. Returns hs (T, N, H), acts (T, N, 3H) = [z|r|n], hn (T, N, H)."""
    H = h0.shape[1]
    return _run(_engine.gru_ra_forward, (xw, Wh, b_hn, h0),
                (_like(xw, H), np.empty_like(xw), _like(xw, H)), lengths)


def gru_ra_backward(dhs, Wh, hs, acts, hn, h0, lengths=None):
    """Returns (dA (T, N, 3H), dhn (T, N, H), dh0 (N, H))."""
    return _run(_engine.gru_ra_backward, (dhs, Wh, hs, acts, hn, h0),
                (np.empty_like(acts), np.empty_like(hn), np.zeros_like(h0)), lengths)
