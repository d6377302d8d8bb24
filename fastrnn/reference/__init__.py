"""The NumPy reference backend ("numpy"): the oracle for every other backend, and usable as one.

It takes NumPy or CuPy arrays. Its ops, like every backend's, are the implementations of
``cells`` and ``ops`` bound to ``fastrnn.contract`` (names, arguments, checks).
"""
from .. import contract
from . import cells, ops

contract.export(globals(), cells, ops)
