"""Picks the op module for an array: NumPy arrays -> the compiled CPU engine ("cpu") when it is
built, else the Numba kernels ("numba"); CuPy arrays -> the CUDA kernels ("cuda").

Every backend exports the ops of ``fastrnn.contract`` (``OPS`` here) with the same names and
arguments. "numpy" is the reference backend and takes NumPy or CuPy arrays; "numba" and "cpu"
take NumPy arrays only and "cuda" CuPy arrays only. An unknown name, a backend that cannot be
imported, or an array the chosen backend cannot take is a ``ValueError`` that says so.

Choosing a backend, strongest first:

- ``with use(name):`` forces ``name`` for the block, in the current thread (or asyncio task)
  only: it is a ``contextvars`` variable, so other threads keep their own choice;
- ``set_backend(name)`` sets the process-wide default (``None``: the automatic rule);
- the environment variable ``FASTRNN_BACKEND=numpy|numba|cpu|cuda``, read when the default is
  first needed.

When the automatic rule falls back from "cpu" to "numba" because the engine is not built, it
warns once per process.
"""
import contextlib
import contextvars
import importlib
import os
import threading
import warnings

from .checks import array_module
from .contract import NAMES as OPS

BACKENDS = {"numpy": "fastrnn.reference", "numba": "fastrnn.kernels", "cpu": "fastrnn.engine",
            "cuda": "fastrnn.cuda"}
# Which array type each backend takes; "numpy" takes both.
_TAKES = {"numba": "numpy", "cpu": "numpy", "cuda": "cupy"}

_UNSET = object()
_default = _UNSET  # process default; _UNSET: not decided yet (read FASTRNN_BACKEND)
_override = contextvars.ContextVar("fastrnn_backend_override", default=_UNSET)
_auto_cpu = None   # the automatic NumPy backend, decided once
_auto_lock = threading.Lock()


def _validate_name(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown fastrnn backend {name!r}; expected one of "
                         f"{', '.join(BACKENDS)} (or None for automatic)")
    return name


_loaded = {}  # name -> its op module, once imported and found complete


def load(name):
    """The op module of backend ``name``; a clear ValueError if it cannot be imported."""
    module = _loaded.get(name)
    if module is not None:  # every op call dispatches through here
        return module
    _validate_name(name)
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as e:
        raise ValueError(f"fastrnn backend {name!r} is not available: {e}") from e
    missing = [op for op in OPS if not hasattr(module, op)]
    if missing:
        raise ValueError(f"fastrnn backend {name!r} is incomplete: {BACKENDS[name]} lacks "
                         f"{', '.join(missing)}")
    _loaded[name] = module
    return module


def set_backend(name):
    """Set the process-wide backend ("numpy", "numba", "cpu", "cuda"), or None for automatic.
    A ``use`` block in force in the calling thread still wins inside that block."""
    global _default
    if name is not None:
        load(name)
    _default = name


def _process_default():
    global _default
    if _default is _UNSET:
        env = os.environ.get("FASTRNN_BACKEND", "").strip().lower() or None
        if env is not None:
            try:
                _validate_name(env)
            except ValueError as e:
                raise ValueError(f"FASTRNN_BACKEND: {e}") from None
        _default = env
    return _default


def get_backend():
    """The forced backend name in this thread (``use``, else the process default), or None
    when the array type decides."""
    name = _override.get()
    return _process_default() if name is _UNSET else name


@contextlib.contextmanager
def use(name):
    """Run a block with backend ``name`` forced (None: automatic) in this thread only, then
    restore the previous choice."""
    if name is not None:
        load(name)
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def _automatic_numpy_backend():
    global _auto_cpu
    if _auto_cpu is not None:
        return _auto_cpu
    with _auto_lock:
        if _auto_cpu is None:
            try:
                load("cpu")
                _auto_cpu = "cpu"
            except ValueError as e:
                _auto_cpu = "numba"
                warnings.warn(f"fastrnn: the compiled CPU engine is not available ({e}); using "
                              f"the Numba kernels. Build it with `pip install .` (needs a C "
                              f"compiler).", RuntimeWarning, stacklevel=4)
    return _auto_cpu


def name_for(array):
    """The backend name that ops on ``array`` dispatch to."""
    on_gpu = array_module(array).__name__ == "cupy"
    name = get_backend()
    if name is None:
        return "cuda" if on_gpu else _automatic_numpy_backend()
    takes = _TAKES.get(name)
    if takes == "numpy" and on_gpu:
        raise ValueError(f"backend {name!r} takes NumPy arrays, got a CuPy array; use 'cuda' or "
                         f"'numpy', or set_backend(None)")
    if takes == "cupy" and not on_gpu:
        raise ValueError(f"backend {name!r} takes CuPy arrays, got a NumPy array; use 'cpu', "
                         f"'numba' or 'numpy', or set_backend(None)")
    return name


def ops_for(array):
    """The op module (see OPS) for ``array``."""
    return load(name_for(array))
