"""Benchmarks of fastrnn, shipped with the library so that ``fastrnn bench`` runs anywhere.

- ``harness``  timing (warm-up, blocks, medians, p90), load monitoring, machine and library
  information, thread and OpenBLAS settings, child processes.
- ``columns``  what is timed for one cell: the reference backend, each fastrnn CPU backend,
  PyTorch, the matrix products alone; the sgemm peak and the FLOP limit; the check of every
  column against the reference before it is timed.
- ``report``   tables, the performance targets (pass/fail), JSON and the PNG chart.
- ``cells``    the cell benchmark (``fastrnn bench`` / ``python -m fastrnn.bench.cells``).
- ``train``    one training step of whole models, fastrnn vs the textbook layers vs PyTorch.
- ``load``     cold start, and step times while competitor processes load the machine.
- ``textbook`` the classic per-step NumPy layers (the baseline fastrnn replaces).
"""
