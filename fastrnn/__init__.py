"""fastrnn: fused recurrent-network kernels behind the classic NumPy time-layer API.

Import ``fastrnn.layers`` for TimeRNN / TimeLSTM / TimeGRU / ...; the array type picks the
backend (NumPy -> the compiled CPU engine, or the Numba kernels where it was not built; CuPy ->
CUDA), see ``fastrnn.backend``. ``set_num_threads(n)`` sets the threads of the engine and of
NumPy's BLAS (``fastrnn.threads``). Importing prints nothing and does not import numba, cupy or
torch.
"""
import os
import sys
import tempfile


def _numba_cache_dir():
    """A per-user folder for Numba's on-disk JIT cache, never inside the installed package.

    Numba's default puts the cache next to the source files, i.e. inside site-packages, where
    pip neither owns nor removes it: a later ``pip install -e`` of the same checkout then found a
    leftover ``fastrnn/`` folder that shadowed the editable install."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    for path in (os.path.join(base, "fastrnn", "numba"),
                 os.path.join(tempfile.gettempdir(), f"fastrnn-{uid}", "numba")):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    return None


# Numba chooses where a cached function lives when the function is decorated, from the
# environment it read at import (or last compile), so this must precede every numba import.
if not os.environ.get("NUMBA_CACHE_DIR"):
    _dir = _numba_cache_dir()
    if _dir:
        os.environ["NUMBA_CACHE_DIR"] = _dir

# NumPy's OpenBLAS keeps its worker threads busy-waiting (a sched_yield loop) for about 2**28
# cycles after every threaded call, so they take turns on the cores with the compiled engine's
# threads that run next: measured, TimeLSTM N=20 T=35 D=H=650 forward + backward on 2 cores,
# 91.7 ms as OpenBLAS ships against 63.0 ms with a short timeout. OpenBLAS reads the variable
# once, when NumPy loads it, so this only takes effect where fastrnn is imported before NumPy
# (the `fastrnn` command is); README says how to set it otherwise.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .backend import get_backend, set_backend  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402

__version__ = "0.1.0"
__all__ = ["get_backend", "set_backend", "get_num_threads", "set_num_threads", "__version__"]
