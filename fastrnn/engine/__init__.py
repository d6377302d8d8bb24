"""The compiled CPU backend ("cpu"): whole recurrences in one C call, OpenMP threads inside.

Same op names, signatures and results as ``fastrnn.reference``. The eight recurrence ops run
in the C engine (``src/engine.c``, bound by the Cython module ``_engine``): one parallel region
per call, each thread owning a slice of hidden units with all their gate columns, its slice of
``Wh`` packed once per call into panels for a register-blocked SIMD microkernel, the step's
product and gate math fused, one barrier per step (two for the reset-before GRU). The
instruction set is picked at run time (AVX-512, AVX2 or a portable build); the environment
variable ``FASTRNN_ENGINE_ISA=avx512|avx2|portable`` or ``set_isa`` forces one. Results do not
depend on the thread count: every output element is summed in the same order whatever the
split. The embedding, softmax and dropout ops are those of the Numba backend, imported on first
use so that a recurrent layer alone never pays Numba's import and compile.

Importing this module fails with ImportError when the extension was not built (no C compiler
at install time); ``fastrnn.backend`` then falls back to the Numba backend.
"""
import importlib
import os

import numpy as np

from .. import threads as _threads
from ..checks import checked
from . import _engine

__all__ = ["set_isa", "isa"]


def set_isa(name=None):
    """Force instruction set ``name`` ("avx512", "avx2", "portable"), or None for the best."""
    _engine.set_isa(name or "")


def isa():
    """The instruction set the kernels run with."""
    return _engine.isa()


if os.environ.get("FASTRNN_ENGINE_ISA", "").strip():
    try:
        set_isa(os.environ["FASTRNN_ENGINE_ISA"].strip().lower())
    except ValueError as e:
        raise ValueError(f"FASTRNN_ENGINE_ISA: {e}") from None


def _run(kernel, inputs, outputs):
    """Run ``kernel`` unless the problem is empty (T, N or H = 0); return ``outputs``."""
    if all(a.size for a in outputs):
        kernel(*inputs, *outputs, _threads.get_num_threads())
    return outputs


def _like(a, H):
    """An empty (T, N, H) buffer from a (T, N, *) array."""
    return np.empty(a.shape[:2] + (H,), dtype=a.dtype)


def rnn_forward(xw, Wh, h0):
    """h' = tanh(xw[t] + h @ Wh). Returns hs (T, N, H)."""
    return _run(_engine.rnn_forward, (xw, Wh, h0), (np.empty_like(xw),))[0]


def rnn_backward(dhs, Wh, hs, h0):
    """Returns (dA (T, N, H), dh0 (N, H))."""
    return _run(_engine.rnn_backward, (dhs, Wh, hs), (np.empty_like(dhs), np.zeros_like(h0)))


def lstm_forward(xw, Wh, h0, c0):
    """Returns hs, cs (T, N, H), acts (T, N, 4H) = [f|g|i|o]."""
    H = h0.shape[1]
    return _run(_engine.lstm_forward, (xw, Wh, h0, c0),
                (_like(xw, H), _like(xw, H), np.empty_like(xw)))


def lstm_backward(dhs, Wh, cs, acts, c0):
    """Returns (dA (T, N, 4H), dh0 (N, H), dc0 (N, H))."""
    return _run(_engine.lstm_backward, (dhs, Wh, cs, acts, c0),
                (np.empty_like(acts), np.zeros_like(c0), np.zeros_like(c0)))


def gru_forward(xw, Wh, h0):
    """GRU, reset before. Returns hs (T, N, H), acts (T, N, 3H) = [z|r|h~], rh (T, N, H)."""
    H = h0.shape[1]
    return _run(_engine.gru_forward, (xw, Wh, h0),
                (_like(xw, H), np.empty_like(xw), _like(xw, H)))


def gru_backward(dhs, Wh, hs, acts, h0):
    """Returns (dA (T, N, 3H), dh0 (N, H))."""
    return _run(_engine.gru_backward, (dhs, Wh, hs, acts, h0),
                (np.empty_like(acts), np.zeros_like(h0)))


def gru_ra_forward(xw, Wh, b_hn, h0):
    """GRU, reset after. Returns hs (T, N, H), acts (T, N, 3H) = [z|r|n], hn (T, N, H)."""
    H = h0.shape[1]
    return _run(_engine.gru_ra_forward, (xw, Wh, b_hn, h0),
                (_like(xw, H), np.empty_like(xw), _like(xw, H)))


def gru_ra_backward(dhs, Wh, hs, acts, hn, h0):
    """Returns (dA (T, N, 3H), dhn (T, N, H), dh0 (N, H))."""
    return _run(_engine.gru_ra_backward, (dhs, Wh, hs, acts, hn, h0),
                (np.empty_like(acts), np.empty_like(hn), np.zeros_like(h0)))


_RECURRENCES = ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
                "gru_backward", "gru_ra_forward", "gru_ra_backward")
for _name in _RECURRENCES:
    globals()[_name] = checked(globals()[_name])


def _from_numba(name):
    def op(*args, **kwargs):
        return getattr(importlib.import_module("fastrnn.kernels"), name)(*args, **kwargs)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"The Numba backend's {name} (imported on first use)."
    return op


for _name in ("embedding_forward", "embedding_backward", "softmax_cross_entropy",
              "dropout_forward"):
    globals()[_name] = _from_numba(_name)
