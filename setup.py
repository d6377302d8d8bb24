from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="fastrnn",
    version="0.1.0",
    description="Fused RNN / LSTM / GRU kernels (Numba CPU, CuPy CUDA) behind the classic NumPy "
                "time-layer API",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # Only the library: the repository's benchmarks/ scripts are not a package of their own
    # (`fastrnn bench` runs fastrnn.bench, which ships with the library).
    packages=find_packages(include=["fastrnn", "fastrnn.*"]),
    package_data={"fastrnn": ["cuda/*.cu", "data/*.txt"]},
    # scipy: its bundled OpenBLAS is where the Numba kernels look for a CBLAS when NumPy's
    # cannot be found (fastrnn/kernels/_blas.py). tqdm / matplotlib: progress and the plots of
    # `fastrnn train` and `fastrnn bench`. threadpoolctl: `--threads` of the CLI and benchmarks.
    install_requires=["numpy>=1.24", "numba>=0.59", "scipy>=1.10", "tqdm>=4.60",
                      "matplotlib>=3.7", "threadpoolctl>=3.1"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        "bench": ["torch"],
        "gpu": ["cupy-cuda13x"],
    },
    entry_points={"console_scripts": ["fastrnn = fastrnn.cli:main"]},
)
