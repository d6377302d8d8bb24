"""Picks the op table for an array: NumPy arrays -> Numba kernels, CuPy arrays -> CUDA kernels.

``FASTRNN_BACKEND=numpy|numba|cuda`` (read when the first op is looked up) or
``set_backend(name)`` overrides the choice; ``set_backend(None)`` restores the automatic rule.
"numpy" is the reference backend and takes NumPy or CuPy arrays; "numba" takes NumPy arrays
only and "cuda" CuPy arrays only. An unknown name, a missing package, or an array the chosen
backend cannot take is a ``ValueError`` that says so.
"""
import contextlib
import importlib
import os

from .checks import array_module

BACKENDS = {"numpy": "fastrnn.reference", "numba": "fastrnn.kernels", "cuda": "fastrnn.cuda"}

# The ops every backend module provides, with the same names and signatures.
OPS = (
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
    "gru_ra_forward", "gru_ra_backward",
    "embedding_forward", "embedding_backward",
    "softmax_cross_entropy", "dropout_forward",
)

_UNSET = object()
_override = _UNSET  # _UNSET: not decided yet (read FASTRNN_BACKEND); None: automatic


def _validate_name(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown fastrnn backend {name!r}; expected one of "
                         f"{', '.join(BACKENDS)} (or None for automatic)")
    return name


def load(name):
    """The op module of backend ``name``; a clear ValueError if it cannot be imported."""
    _validate_name(name)
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as e:
        raise ValueError(f"fastrnn backend {name!r} is not available: {e}") from e
    missing = [op for op in OPS if not hasattr(module, op)]
    if missing:
        raise ValueError(f"fastrnn backend {name!r} is incomplete: {BACKENDS[name]} lacks "
                         f"{', '.join(missing)}")
    return module


def set_backend(name):
    """Force backend ``name`` ("numpy", "numba", "cuda") for every op, or None for automatic."""
    global _override
    if name is not None:
        load(name)
    _override = name


def get_backend():
    """The forced backend name, or None when the array type decides."""
    global _override
    if _override is _UNSET:
        env = os.environ.get("FASTRNN_BACKEND", "").strip().lower() or None
        if env is not None:
            try:
                _validate_name(env)
            except ValueError as e:
                raise ValueError(f"FASTRNN_BACKEND: {e}") from None
        _override = env
    return _override


@contextlib.contextmanager
def use(name):
    """Run a block with backend ``name`` forced, then restore the previous choice."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def name_for(array):
    """The backend name that ops on ``array`` dispatch to."""
    on_gpu = array_module(array).__name__ == "cupy"
    name = get_backend()
    if name is None:
        return "cuda" if on_gpu else "numba"
    if name == "numba" and on_gpu:
        raise ValueError("backend 'numba' takes NumPy arrays, got a CuPy array; use 'cuda' or "
                         "'numpy', or set_backend(None)")
    if name == "cuda" and not on_gpu:
        raise ValueError("backend 'cuda' takes CuPy arrays, got a NumPy array; use 'numba' or "
                         "'numpy', or set_backend(None)")
    return name


def ops_for(array):
    """The op module (see OPS) for ``array``."""
    return load(name_for(array))
