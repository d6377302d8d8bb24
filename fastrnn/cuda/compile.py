"""The one place CUDA sources are compiled: ``cupy.RawModule`` per (source, device, dtype, options).

Sources are the ``.cu`` files beside this module. The element type is a define
(``-DFASTRNN_REAL=float|double``) so every kernel is ``extern "C"`` with a fixed name; the
persistent kernels are only built into the cooperative variant (``-DFASTRNN_COOP``), whose
kernels CuPy launches with ``cuLaunchCooperativeKernel``. CuPy is imported on first use, so
``compile_options`` and ``source_path`` work (and are tested) without it.
"""
import functools
import pathlib
import threading

import numpy as np

SOURCE_DIR = pathlib.Path(__file__).resolve().parent
SOURCES = ("recurrence.cu", "ops.cu")
STD = "-std=c++17"

_REAL = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_modules = {}
_lock = threading.Lock()


def source_path(name):
    if name not in SOURCES:
        raise ValueError(f"unknown CUDA source {name!r}; expected one of {', '.join(SOURCES)}")
    return SOURCE_DIR / name


@functools.lru_cache(maxsize=None)
def source_text(name):
    return source_path(name).read_text()


def real_name(dtype):
    dt = np.dtype(dtype)
    if dt not in _REAL:
        raise TypeError(f"CUDA kernels take float32 or float64, got {dt}")
    return _REAL[dt]


def compile_options(dtype, cooperative=False, extra=()):
    """NVRTC options for one module variant (also what tests/test_cuda.py passes to nvcc)."""
    opts = (STD, f"-DFASTRNN_REAL={real_name(dtype)}")
    if cooperative:
        opts += ("-DFASTRNN_COOP",)
    return opts + tuple(extra)


def _cuda_include_options():
    """-I for the toolkit headers: NVRTC does not always find <cooperative_groups.h> itself."""
    import os
    import cupy

    roots = [cupy.cuda.get_cuda_path(), os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME")]
    for root in roots:
        if root and (pathlib.Path(root) / "include" / "cooperative_groups.h").is_file():
            return (f"-I{pathlib.Path(root) / 'include'}",)
    return ()


def get_module(name, dtype, cooperative=False, extra=()):
    """The compiled module of source ``name`` for ``dtype`` on the current device (memoized;
    CuPy also caches the binary on disk across processes)."""
    import cupy

    device = cupy.cuda.Device().id
    key = (name, device, np.dtype(dtype).str, bool(cooperative), tuple(extra))
    module = _modules.get(key)
    if module is None:
        with _lock:
            module = _modules.get(key)
            if module is None:
                options = compile_options(dtype, cooperative, extra)
                if cooperative:
                    options += _cuda_include_options()
                module = cupy.RawModule(code=source_text(name), options=options,
                                        enable_cooperative_groups=bool(cooperative))
                _modules[key] = module
    return module


def get_kernel(source, name, dtype, cooperative=False, smem_bytes=0):
    """A kernel of a memoized module, loaded now (so that a later stream capture does not load
    modules) and allowed ``smem_bytes`` of dynamic shared memory."""
    kernel = get_module(source, dtype, cooperative).get_function(name)
    if smem_bytes > 48 * 1024 and kernel.max_dynamic_shared_size_bytes < smem_bytes:
        kernel.max_dynamic_shared_size_bytes = int(smem_bytes)
    return kernel
