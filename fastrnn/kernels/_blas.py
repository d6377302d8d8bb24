"""GEMM callable from inside Numba kernels, bound to NumPy's own BLAS.

Why not ``np.dot(a, b, out)``: inside Numba it calls SciPy's BLAS, a second OpenBLAS build
(0.3.30 in scipy 1.17) next to NumPy's (0.3.31 in numpy 2.4). Measured on the 2-core EPYC dev
machine, single thread, float32: (20x650)@(650x2600) 1.26 ms through Numba's np.dot vs 1.01 ms
through NumPy's library; (20x200)@(200x800) 0.114 vs 0.076 ms. The per-step recurrent product
is most of an RNN's time, so that is the whole speed budget. Binding NumPy's library also keeps
one OpenBLAS thread pool in the process (the layer's big GEMMs use NumPy too) instead of two
pools spinning against each other on two cores, and gives BLAS's strided operands (a column
block of ``Wh`` or of a gate buffer, via ld*) and beta=1 accumulation with no copies.

How: the CBLAS ``?gemm`` address is looked up with ctypes and registered with LLVM under a
fixed name (``fastrnn_sgemm`` / ``fastrnn_dgemm``); kernels call it as a
``numba.types.ExternalFunction``. The compiled code refers to the symbol by name, so Numba's
on-disk cache stays valid: every process registers the name at import before any kernel loads.

Integer arguments are declared int64. ILP64 builds (NumPy's ``scipy_openblas64_``) take int64;
LP64 builds take int32, and passing an int64 there is still correct on the 64-bit ABIs NumPy
ships for (x86-64 SysV/Win64, AArch64): each integer argument travels in its own 64-bit
register or stack slot, and the callee reads the low 32 bits. Dimensions are far below 2**31.

Search order: NumPy's bundled OpenBLAS, SciPy's bundled OpenBLAS, a system CBLAS. If none is
found the import fails with an ImportError (the "numba" backend is then reported unavailable).
"""
import ctypes
import ctypes.util
import glob
import importlib.util
import os

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.extending import overload

# CBLAS enums
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_SYMBOLS = {  # our LLVM name -> candidate exported names, ILP64 first
    "fastrnn_sgemm": ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "scipy_cblas_sgemm",
                      "cblas_sgemm"),
    "fastrnn_dgemm": ("scipy_cblas_dgemm64_", "cblas_dgemm64_", "scipy_cblas_dgemm",
                      "cblas_dgemm"),
    "fastrnn_sgemv": ("scipy_cblas_sgemv64_", "cblas_sgemv64_", "scipy_cblas_sgemv",
                      "cblas_sgemv"),
    "fastrnn_dgemv": ("scipy_cblas_dgemv64_", "cblas_dgemv64_", "scipy_cblas_dgemv",
                      "cblas_dgemv"),
}


def _package_libs(package):
    """Shared libraries bundled in a package's wheel (numpy.libs/, numpy/.dylibs/, ...)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return []
    pkg_dir = os.path.dirname(spec.origin)
    found = []
    for d in (os.path.join(os.path.dirname(pkg_dir), package + ".libs"),
              os.path.join(pkg_dir, ".dylibs"), pkg_dir):
        for pattern in ("*openblas*.so*", "*openblas*.dylib", "*openblas*.dll"):
            found += sorted(glob.glob(os.path.join(d, pattern)))
    return found


def _candidates():
    yield from _package_libs("numpy")
    yield from _package_libs("scipy")
    for name in ("openblas", "cblas", "blas"):
        path = ctypes.util.find_library(name)
        if path:
            yield path


def _bind():
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        found = {}
        for ours, names in _SYMBOLS.items():
            for name in names:
                fn = getattr(lib, name, None)
                if fn is not None:
                    found[ours] = (ctypes.cast(fn, ctypes.c_void_p).value, name)
                    break
        if len(found) == len(_SYMBOLS):
            for ours, (addr, _) in found.items():
                llvm.add_symbol(ours, addr)
            return path, found["fastrnn_sgemm"][1]
    raise ImportError("fastrnn.kernels: no CBLAS sgemm/dgemm found (looked in NumPy's and "
                      "SciPy's bundled OpenBLAS and the system BLAS)")


LIBRARY, SYMBOL = _bind()

_i = types.int64
_p = types.intp


def _gemm_type(name, real):
    return types.ExternalFunction(
        name, types.void(_i, _i, _i, _i, _i, _i, real, _p, _i, _p, _i, real, _p, _i))


_sgemm = _gemm_type("fastrnn_sgemm", types.float32)
_dgemm = _gemm_type("fastrnn_dgemm", types.float64)


def _gemv_type(name, real):
    return types.ExternalFunction(
        name, types.void(_i, _i, _i, _i, real, _p, _i, _p, _i, real, _p, _i))


_sgemv = _gemv_type("fastrnn_sgemv", types.float32)
_dgemv = _gemv_type("fastrnn_dgemv", types.float64)

# Below this many rows of `a`, one GEMV per row beats GEMM: OpenBLAS's GEMM for tiny M is slow
# (it packs all of op(b) per call). Measured, 1 thread, float32, GEMM vs M GEMVs, in us:
# (Mx256)@(256x1024): M=1 67/14, M=2 70/28, M=3 103/37, M=4 58/56, M=8 81/111;
# (Mx650)@(650x2600): M=1 388/92, M=3 688/261, M=4 340/390.
GEMV_ROWS = 4


def gemm(a, b, c, beta, trans_b):
    """c = a @ op(b) + beta * c, op(b) = b.T if trans_b else b. Numba-only.

    a (M, K), op(b) (K, Nc), c (M, Nc): 2-D views whose last axis is unit-stride (row strides
    are free: column blocks of larger buffers are fine). Caller guarantees M, Nc, K > 0."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(gemm)
def _gemm_impl(a, b, c, beta, trans_b):
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in (a, b, c)):
        return None
    if a.dtype == types.float32:
        fn, fv, one = _sgemm, _sgemv, np.float32(1)
    elif a.dtype == types.float64:
        fn, fv, one = _dgemm, _dgemv, np.float64(1)
    else:
        return None

    def impl(a, b, c, beta, trans_b):
        isz = a.itemsize
        M, K = a.shape
        Nc = c.shape[1]
        lda, ldb, ldc = a.strides[0] // isz, b.strides[0] // isz, c.strides[0] // isz
        if M < GEMV_ROWS:
            # row m of c = op(b)^T a[m]: b is (K, Nc) -> y = b^T x; trans_b: b is (Nc, K) -> b x
            for m in range(M):
                if trans_b:
                    fv(ROW_MAJOR, NO_TRANS, Nc, K, one, b.ctypes.data, ldb,
                       a.ctypes.data + m * lda * isz, 1, beta, c.ctypes.data + m * ldc * isz, 1)
                else:
                    fv(ROW_MAJOR, TRANS, K, Nc, one, b.ctypes.data, ldb,
                       a.ctypes.data + m * lda * isz, 1, beta, c.ctypes.data + m * ldc * isz, 1)
        else:
            tb = TRANS if trans_b else NO_TRANS
            fn(ROW_MAJOR, NO_TRANS, tb, M, Nc, K, one, a.ctypes.data, lda, b.ctypes.data, ldb,
               beta, c.ctypes.data, ldc)
    return impl
