"""Recurrences and whole recurrent layers of the compiled CPU engine: one C call per op.

Every recurrence op (``lstm_forward``, ...) and layer op (``lstm_layer_forward``, ...) of
``fastrnn.contract`` is made here from the contract's own description of it: the op's float
arguments go to the engine in the contract's order, its results are allocated from their
symbolic shapes (the weight gradients a layer backward writes in place are the arrays it was
given), and ``_engine.cell`` runs the op in one parallel region. ``fastrnn.engine`` binds them
to the contract, which validates the inputs (shapes, dtypes, exact C strides) first.

Empty problems (T, N, H or, for a layer, D = 0) never reach the engine: a recurrence returns
its empty results with zero initial-state gradients, a layer op is composed from these
recurrences and NumPy products exactly as the reference composes its own
(``fastrnn.reference.layer``).
"""
import sys

import numpy as np

from .. import contract
from .. import threads as _threads
from ..checks import FLOAT, OUT_KINDS
from ..reference import layer as _layer
from . import _engine

_STATE_GRADS = ("dh0", "dc0")  # running gradients: zero when the recurrence is empty


def _sizes(op, args):
    """The op's size symbols (N, T, D, H) read from its arguments, as the contract declares."""
    return {sym: args[op.arg_index[name]].shape[op.arg_by_name[name].dims.index(sym)]
            for sym, name in op.sizes.items()}


def _shape(op, dims, sizes):
    return tuple(op.gates * sizes["H"] if s == "G*H" else sizes[s] for s in dims)


def _make(name):
    op = contract.OPS_BY_NAME[name]
    inputs = [i for i, a in enumerate(op.args) if a.kind == FLOAT]
    written = {a.name: i for i, a in enumerate(op.args) if a.kind in OUT_KINDS}
    returns = [(n, contract.Arg(n, FLOAT, s).dims) for n, s in op.returns]
    layer = "_layer_" in name

    def impl(*args):
        lengths = args[-1]
        sizes = _sizes(op, args)
        dtype = args[0].dtype
        outs = []
        for n, dims in returns:
            if n in written:
                outs.append(args[written[n]])
            else:
                alloc = np.zeros if n in _STATE_GRADS else np.empty
                outs.append(alloc(_shape(op, dims, sizes), dtype=dtype))
        T, N, H, D = sizes["T"], sizes["N"], sizes["H"], sizes.get("D", 1)
        if not (T and N and H and D):
            return _composed[name](*args) if layer else _result(outs)
        _engine.cell(name, T, N, D if layer else 0, H, [args[i] for i in inputs], outs,
                     lengths, _threads.get_num_threads(), dtype == np.float64)
        return _result(outs)

    impl.__name__ = impl.__qualname__ = name
    impl.__signature__ = op.signature
    impl.__doc__ = f"{name}: the compiled engine's implementation (one C call)."
    return impl


def _result(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


_NAMES = [f"{cell}{level}_{direction}" for cell in contract.CELLS for level in ("", "_layer")
          for direction in ("forward", "backward")]
for _name in _NAMES:
    setattr(sys.modules[__name__], _name, _make(_name))
# Layer ops of empty problems: composed from the recurrences above.
_composed = _layer.layer_ops(sys.modules[__name__])

__all__ = list(_NAMES)
