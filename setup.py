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
    packages=find_packages(include=["fastrnn", "fastrnn.*", "benchmarks"]),
    package_data={"fastrnn": ["cuda/*.cu", "data/*.txt"]},
    # scipy: Numba's np.dot inside jitted code calls BLAS through scipy's cython_blas.
    # tqdm / matplotlib: progress and the perplexity plot of `fastrnn train`.
    install_requires=["numpy>=1.24", "numba>=0.59", "scipy>=1.10", "tqdm>=4.60",
                      "matplotlib>=3.7"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        "bench": ["torch", "matplotlib>=3.7"],
        "gpu": ["cupy-cuda13x"],
    },
    entry_points={"console_scripts": ["fastrnn = fastrnn.cli:main"]},
)
