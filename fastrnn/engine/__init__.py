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

from .. import contract
from . import _engine, cells

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


def _numba_op(name):
    """The Numba backend's implementation of ``name``, imported on its first call."""
    def impl(*args):
        return getattr(importlib.import_module("fastrnn.kernels.ops"), name)(*args)
    impl.__name__ = impl.__qualname__ = name
    impl.__signature__ = contract.OPS_BY_NAME[name].signature
    return impl


contract.export(globals(), cells, {name: _numba_op(name) for name in contract.NAMES
                                   if not hasattr(cells, name)})
__all__ += ["set_isa", "isa"]
