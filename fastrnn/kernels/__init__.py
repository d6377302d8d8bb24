"""The Numba CPU backend ("numba"): fused kernels behind the ops of ``fastrnn.contract``.

The implementations in ``cells`` and ``ops`` are bound to the contract exactly like the
reference's, so validation and the C layout of every input happen there, once, for every
backend. The first call of each op compiles (or loads Numba's on-disk cache).
"""
from .. import contract
from ..reference import layer
from ..reference import ops as reference_ops
from . import cells, ops

# Layer ops: the Numba recurrences between NumPy's matrix products; linear ops: NumPy's.
contract.export(globals(), cells, layer.layer_ops(cells), ops, reference_ops)
