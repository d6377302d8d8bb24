"""``python -m benchmarks.bench_cells`` from a checkout = ``fastrnn bench``: see
``fastrnn/bench/cells.py`` (the benchmarks ship inside the package)."""
import sys

from fastrnn.bench.cells import main

if __name__ == "__main__":
    sys.exit(main())
