"""The compiled CPU backend ("cpu"): every op in C; a whole recurrent layer, forward or
backward, in one call.

Same op names, signatures and results as ``fastrnn.reference``. The recurrence ops, the layer
ops and the linear ops run in the C engine (``src/engine.c``, bound by the Cython module
``_engine``) on the engine's own threads, one parallel region per call. A layer op does the
input projection, the recurrence and the weight / input gradients in that one region with one
register-blocked SIMD microkernel: each tile of hidden units (all their gate columns) has its
slice of ``Wh`` packed once per call into panels, the step's product and gate math are fused,
and the big products around the recurrence are blocked for the caches. Threads meet once per
step (twice for the reset-before GRU) and take over a late thread's unstarted items
(``src/engine.c``). The instruction set is picked at run time (AVX-512, AVX2 or a portable
build); the environment variable ``FASTRNN_ENGINE_ISA=avx512|avx2|portable`` or ``set_isa``
forces one. Results do not depend on the thread count: every output element is summed in the
same order whatever the split. Embedding, softmax cross-entropy, dropout and the optimizers'
``sum_squares`` / ``axpby`` run on the same threads too (``ops``), so this backend never
imports Numba: nothing compiles at run time.

Importing this module fails with ImportError when the extension was not built (no C compiler
at install time); ``fastrnn.backend`` then falls back to the Numba backend.
"""
import os

from .. import contract

try:
    from . import _engine
except ImportError as e:  # built without a C compiler: the backend reports itself unavailable
    raise ImportError("the compiled extension fastrnn.engine._engine is not built") from e
from . import cells, ops  # noqa: E402


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


contract.export(globals(), cells, ops, before=_engine.pool_wake)
__all__ += ["set_isa", "isa"]
