"""Input validation shared by every backend.

Numba and CUDA kernels do not bounds-check, so every public op of every backend is wrapped by
``checked``: it validates ranks, shapes, dtypes and index ranges (raising ``ValueError`` or
``TypeError`` that states the expected and the actual shape or dtype) and hands the kernel
C-contiguous arrays, so slices and transposes give correct results. Non-finite values are not
checked here (the layers do that, see ``fastrnn.layers``).
"""
import functools
import inspect
import sys

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Gates per recurrence: the op name prefix -> G.
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "gru_ra": 3}

# Expected shape of every recurrence argument, from T time, N batch, H hidden, G gates.
_RECURRENCE_SHAPES = {
    "xw": lambda T, N, H, G: (T, N, G * H),
    "dhs": lambda T, N, H, G: (T, N, H),
    "hs": lambda T, N, H, G: (T, N, H),
    "cs": lambda T, N, H, G: (T, N, H),
    "hn": lambda T, N, H, G: (T, N, H),
    "acts": lambda T, N, H, G: (T, N, G * H),
    "Wh": lambda T, N, H, G: (H, G * H),
    "h0": lambda T, N, H, G: (N, H),
    "c0": lambda T, N, H, G: (N, H),
    "b_hn": lambda T, N, H, G: (H,),
}
_SYMBOLIC = {
    "xw": "(T, N, G*H)", "dhs": "(T, N, H)", "hs": "(T, N, H)", "cs": "(T, N, H)",
    "hn": "(T, N, H)", "acts": "(T, N, G*H)", "Wh": "(H, G*H)", "h0": "(N, H)", "c0": "(N, H)",
    "b_hn": "(H,)",
}


def array_module(a):
    """numpy for NumPy arrays, cupy for CuPy arrays (cupy is never imported here)."""
    if type(a).__module__.split(".")[0] == "cupy":
        return sys.modules["cupy"]
    return np


def is_array(a):
    return isinstance(a, np.ndarray) or type(a).__module__.split(".")[0] == "cupy"


def require_array(op, name, a):
    if not is_array(a):
        raise TypeError(f"{op}: {name} must be a NumPy or CuPy array, got {type(a).__name__}")


def require_float(op, name, a, dtype=None):
    require_array(op, name, a)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype} (the dtype of the other inputs), "
                        f"got {a.dtype}")


def require_int(op, name, a):
    require_array(op, name, a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be an integer array, got dtype {a.dtype}")


def require_shape(op, name, a, shape, symbolic=None):
    if tuple(a.shape) != tuple(shape):
        sym = f" {symbolic} =" if symbolic else ""
        raise ValueError(f"{op}: {name} must have shape{sym} {tuple(shape)}, got {tuple(a.shape)}")


def require_rank(op, name, a, ndim, symbolic):
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {symbolic}, got shape {tuple(a.shape)}")


def require_range(op, name, a, lo, hi):
    """Every element of the integer array a in [lo, hi)."""
    if a.size == 0:
        return
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax >= hi:
        bad = amin if amin < lo else amax
        raise ValueError(f"{op}: {name} must lie in [{lo}, {hi}), found {bad}")


def contiguous(a):
    return array_module(a).ascontiguousarray(a)


def _check_recurrence(op, names, args):
    G = GATES[op.rsplit("_", 1)[0]]
    first, Wh = args[0], args[names.index("Wh")]
    for name, a in zip(names, args):
        require_float(op, name, a, first.dtype if is_array(first) else None)
    require_rank(op, names[0], first, 3, _SYMBOLIC[names[0]])
    require_rank(op, "Wh", Wh, 2, "(H, G*H)")
    T, N = first.shape[:2]
    H = Wh.shape[0]
    for name, a in zip(names, args):
        require_shape(op, name, a, _RECURRENCE_SHAPES[name](T, N, H, G),
                      _SYMBOLIC[name].replace("G*H", f"{G}*H"))
    return tuple(contiguous(a) for a in args)


def _check_embedding_forward(op, names, args):
    W, idx = args
    require_float(op, "W", W)
    require_rank(op, "W", W, 2, "(V, D)")
    require_int(op, "idx", idx)
    require_range(op, "idx", idx, 0, W.shape[0])
    return contiguous(W), contiguous(idx)


def _check_embedding_backward(op, names, args):
    dout, idx, dW = args
    require_float(op, "dW", dW)
    require_rank(op, "dW", dW, 2, "(V, D)")
    require_float(op, "dout", dout, dW.dtype)
    require_int(op, "idx", idx)
    require_shape(op, "dout", dout, tuple(idx.shape) + (dW.shape[1],), "idx.shape + (D,)")
    require_range(op, "idx", idx, 0, dW.shape[0])
    if not dW.flags.c_contiguous:
        raise ValueError(f"{op}: dW is written in place and must be C-contiguous")
    return contiguous(dout), contiguous(idx), dW


def _check_softmax_cross_entropy(op, names, args):
    x, t = args[:2]
    require_float(op, "x", x)
    require_rank(op, "x", x, 2, "(M, V)")
    if x.shape[1] == 0:
        raise ValueError(f"{op}: x must have shape (M, V) with V >= 1 classes, got "
                         f"{tuple(x.shape)}")
    require_int(op, "t", t)
    require_shape(op, "t", t, (x.shape[0],), "(M,)")
    require_range(op, "t", t, -1, x.shape[1])
    return (contiguous(x), contiguous(t)) + tuple(args[2:])


def _check_dropout_forward(op, names, args):
    x, ratio, seed = args
    require_float(op, "x", x)
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"{op}: ratio must lie in [0, 1), got {ratio}")
    if not 0 <= int(seed) < 2 ** 64:
        raise ValueError(f"{op}: seed must lie in [0, 2**64), got {seed}")
    return contiguous(x), float(ratio), int(seed)


_CHECKS = {
    "embedding_forward": _check_embedding_forward,
    "embedding_backward": _check_embedding_backward,
    "softmax_cross_entropy": _check_softmax_cross_entropy,
    "dropout_forward": _check_dropout_forward,
}


def checked(fn):
    """Wrap a backend op so that its arguments are validated (and made contiguous) first.

    The check is chosen by the op's name; recurrences are checked from their parameter names
    (xw, Wh, h0, ... see _RECURRENCE_SHAPES). Empty inputs (N=0 or T=0) pass through: every
    backend returns correctly shaped empty outputs for them."""
    op = fn.__name__
    signature = inspect.signature(fn)
    params = list(signature.parameters)
    check = _CHECKS.get(op)
    if check is None:
        names = [p for p in params if p in _RECURRENCE_SHAPES]
        if op.rsplit("_", 1)[0] not in GATES or not names:
            raise LookupError(f"no input check defined for op {op!r}")

        def check(op, _names, args):
            n = len(names)
            return _check_recurrence(op, names, args[:n]) + tuple(args[n:])

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return fn(*check(op, params, tuple(bound.arguments.values())))

    return wrapper
