"""``python -m benchmarks.bench_train`` from a checkout = ``python -m fastrnn.bench.train``: see
``fastrnn/bench/train.py``."""
import sys

from fastrnn.bench.train import main

if __name__ == "__main__":
    sys.exit(main())
