from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# The compiled CPU engine (fastrnn/engine): Cython binding over C kernels with their own threads
# (POSIX threads; Windows builds run one thread). It is optional: without a C compiler (or
# without Cython at build time) the package installs without it and fastrnn runs its Numba
# kernels instead, saying so once at run time.
ENGINE = "fastrnn.engine._engine"


class OptionalBuildExt(build_ext):
    """Build the engine, else skip it with one warning."""

    def build_extension(self, ext):
        if self.compiler.compiler_type == "msvc":
            ext.extra_compile_args, ext.extra_link_args = ["/O2"], []
        else:
            ext.extra_compile_args = ["-O3", "-ffp-contract=fast", "-fno-trapping-math",
                                      "-std=c11", "-pthread"]
            ext.extra_link_args = ["-pthread"]
        try:
            return super().build_extension(ext)
        except Exception as e:  # a compiler error or a missing compiler
            self._skipped = True
            self.warn(f"fastrnn: the compiled CPU engine was not built ({e}); fastrnn will "
                      f"run its Numba kernels instead")

    def run(self):
        self._skipped = False
        try:
            super().run()
        except Exception as e:  # no compiler at all, or the copy of an extension never built
            if not self._skipped:
                self.warn(f"fastrnn: the compiled CPU engine was not built ({e}); fastrnn will "
                          f"run its Numba kernels instead")


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    ext = Extension(ENGINE, ["fastrnn/engine/_engine.pyx", "fastrnn/engine/src/engine.c"],
                    depends=["fastrnn/engine/src/engine.h", "fastrnn/engine/src/impl.h"])
    return cythonize([ext], compiler_directives={"language_level": "3"}, quiet=True)


setup(
    name="fastrnn",
    version="0.1.0",
    description="Fused RNN / LSTM / GRU kernels (compiled C and Numba on the CPU, CuPy CUDA) "
                "behind the classic NumPy time-layer API",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # Only the library: the repository's benchmarks/ scripts are not a package of their own
    # (`fastrnn bench` runs fastrnn.bench, which ships with the library).
    packages=find_packages(include=["fastrnn", "fastrnn.*"]),
    package_data={"fastrnn": ["cuda/*.cu", "data/*.txt", "engine/src/*.c", "engine/src/*.h"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    # scipy: its bundled OpenBLAS is where the Numba kernels look for a CBLAS when NumPy's
    # cannot be found (fastrnn/kernels/_blas.py). tqdm / matplotlib: progress and the plots of
    # `fastrnn train` and `fastrnn bench`. threadpoolctl: one thread count for the engine and
    # NumPy's BLAS (fastrnn.set_num_threads, `--threads`).
    install_requires=["numpy>=1.24", "numba>=0.59", "scipy>=1.10", "tqdm>=4.60",
                      "matplotlib>=3.7", "threadpoolctl>=3.1"],
    extras_require={
        # sphinx: the API reference (docs/api) is built with warnings as errors by a test.
        "test": ["pytest>=7", "hypothesis>=6.80", "sphinx>=7"],
        "docs": ["sphinx>=7"],
        "bench": ["torch"],
        "gpu": ["cupy-cuda13x"],
    },
    entry_points={"console_scripts": ["fastrnn = fastrnn.cli:main"]},
)
