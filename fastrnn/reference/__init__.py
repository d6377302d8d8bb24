"""The NumPy reference backend ("numpy"): the oracle for every other backend, and usable as one.

It takes NumPy or CuPy arrays. Its ops, like every backend's, are the implementations of
``cells``, ``ops`` and the layer ops ``layer`` composes from ``cells``, bound to
``fastrnn.contract`` (names, arguments, checks).
"""
from .. import contract
from . import cells, layer, ops

contract.export(globals(), cells, layer.layer_ops(cells), ops)
