"""Shared test set-up: markers, hypothesis profiles, the backend fixture, recurrence helpers.

Markers
    slow  long-running tests; deselect with ``pytest -m "not slow"``.
    gpu   needs CuPy and a CUDA device; skipped (with the reason) where either is absent.

Hypothesis profiles (``HYPOTHESIS_PROFILE=name``; ``ci`` is the default when ``CI`` is set)
    dev       20 examples per test, no deadline (the first call of a Numba op compiles it).
    ci        30 examples, derandomized (the same examples on every run), no example database.
    thorough  300 examples, for a long local run before a release.

Backends
    The ``backend`` fixture runs a test once per backend: "numpy" (the reference), "numba"
    (``fastrnn.kernels``, skipped while it cannot be imported) and "cuda" (``fastrnn.cuda``,
    marked ``gpu``; skipped without CuPy, without a device, or while it cannot be imported).
    cupy is imported only inside that fixture, never at collection.
"""
import importlib
import os
import sys
import types
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Make ``from tolerances import ...`` work whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tolerances import to_numpy  # noqa: E402

# ------------------------------------------------------------------------------ hypothesis
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("dev", max_examples=20, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile("ci", max_examples=30, deadline=None, suppress_health_check=_HEALTH,
                          derandomize=True, database=None, print_blob=True)
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=_HEALTH)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# --------------------------------------------------------------------------------- markers
def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test; deselect with -m 'not slow'")
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA device (skipped otherwise)")


# -------------------------------------------------------------------------------- backends
class Backend:
    """One backend under test: its op module and the array module its ops take.

    ``call(op, *args)`` moves NumPy arguments to the backend's device, runs the op and brings
    every array result back as NumPy (tuples and None kept), so a test is written once."""

    def __init__(self, name, module, xp):
        self.name, self.module, self.xp = name, module, xp

    def __repr__(self):
        return f"Backend({self.name})"

    def op(self, name):
        fn = getattr(self.module, name, None)
        if fn is None:
            pytest.fail(f"backend {self.name!r} ({self.module.__name__}) has no op {name!r}")
        return fn

    def asarray(self, a):
        if isinstance(a, np.ndarray) and self.xp is not np:
            return self.xp.asarray(a)
        return a

    def asnumpy(self, a):
        if a is None or isinstance(a, (int, float, bool)):
            return a
        if isinstance(a, tuple):
            return tuple(self.asnumpy(x) for x in a)
        return to_numpy(a)

    def call(self, name, *args, **kwargs):
        out = self.op(name)(*(self.asarray(a) for a in args),
                            **{k: self.asarray(v) for k, v in kwargs.items()})
        return self.asnumpy(out)


def _import_backend(modname, what):
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        pytest.skip(f"{what}: `import {modname}` fails ({type(e).__name__}: {e})")
    if getattr(module, "__file__", None) is None:
        pytest.skip(f"{what}: {modname} is an empty namespace package (no __init__.py yet)")
    return module


def load_backend(name):
    """The Backend for ``name``, or a pytest skip that says why it is unavailable here."""
    if name == "numpy":
        import fastrnn.reference
        return Backend("numpy", fastrnn.reference, np)
    if name == "numba":
        return Backend("numba", _import_backend("fastrnn.kernels", "Numba backend"), np)
    if name == "cuda":
        try:
            import cupy
        except ImportError as e:
            pytest.skip(f"CUDA backend: cupy is not installed ({e})")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # no driver, no device
            pytest.skip(f"CUDA backend: no usable CUDA device ({type(e).__name__}: {e})")
        if count < 1:
            pytest.skip("CUDA backend: no CUDA device")
        return Backend("cuda", _import_backend("fastrnn.cuda", "CUDA backend"), cupy)
    raise ValueError(name)


BACKEND_PARAMS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("numba", id="numba"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="session", params=BACKEND_PARAMS)
def backend(request):
    """Each available backend in turn (session-scoped, so hypothesis tests can use it)."""
    return load_backend(request.param)


@pytest.fixture(scope="session")
def reference():
    """The reference backend, always NumPy."""
    return load_backend("numpy")


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test id: deterministic per test, different across."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# ---------------------------------------------------------------------- recurrence helpers
CELLS = ("rnn", "lstm", "gru", "gru_ra")
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "gru_ra": 3}
STATE = {"rnn": ("h0",), "lstm": ("h0", "c0"), "gru": ("h0",), "gru_ra": ("h0",)}
FORWARD_OUT = {"rnn": ("hs",), "lstm": ("hs", "cs", "acts"), "gru": ("hs", "acts", "rh"),
               "gru_ra": ("hs", "acts", "hn")}
BACKWARD_OUT = {"rnn": ("dA", "dh0"), "lstm": ("dA", "dh0", "dc0"), "gru": ("dA", "dh0"),
                "gru_ra": ("dA", "dhn", "dh0")}
# Argument names of each op, in order (the signatures every backend shares).
FORWARD_ARGS = {"rnn": ("xw", "Wh", "h0"), "lstm": ("xw", "Wh", "h0", "c0"),
                "gru": ("xw", "Wh", "h0"), "gru_ra": ("xw", "Wh", "b_hn", "h0")}
BACKWARD_ARGS = {"rnn": ("dhs", "Wh", "hs", "h0"), "lstm": ("dhs", "Wh", "cs", "acts", "c0"),
                 "gru": ("dhs", "Wh", "hs", "acts", "h0"),
                 "gru_ra": ("dhs", "Wh", "hs", "acts", "hn", "h0")}


def recurrence_inputs(cell, T, N, H, dtype=np.float64, seed=0, *, scale=1.0, wscale=1.0,
                      zero_state=False):
    """Random inputs of ``cell`` as a dict (xw, Wh, h0 [, c0] [, b_hn]).

    xw ~ scale * N(0, 1) (scale 3 saturates gates); Wh ~ wscale * N(0, 1/H); states are
    zeros or random (h0 in (-1, 1) like a tanh output, c0 unbounded)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    p = {"xw": rng.standard_normal((T, N, G * H)) * scale,
         "Wh": rng.standard_normal((H, G * H)) * (wscale / np.sqrt(H))}
    p["h0"] = np.zeros((N, H)) if zero_state else np.tanh(2 * rng.standard_normal((N, H)))
    if cell == "lstm":
        p["c0"] = np.zeros((N, H)) if zero_state else 1.5 * rng.standard_normal((N, H))
    if cell == "gru_ra":
        p["b_hn"] = 0.5 * rng.standard_normal(H)
    return {k: v.astype(dtype) for k, v in p.items()}


def run_forward(call, cell, p):
    """Forward op of ``cell`` through ``call(op_name, *args)``: a dict of named outputs."""
    out = call(f"{cell}_forward", *(p[k] for k in FORWARD_ARGS[cell]))
    if not isinstance(out, tuple):
        out = (out,)
    assert len(out) == len(FORWARD_OUT[cell]), f"{cell}_forward returned {len(out)} values"
    return dict(zip(FORWARD_OUT[cell], out))


def run_backward(call, cell, p, fwd, dhs):
    """Backward op of ``cell`` given inputs ``p``, forward outputs ``fwd``: a dict of outputs."""
    env = dict(p, **fwd, dhs=dhs)
    out = call(f"{cell}_backward", *(env[k] for k in BACKWARD_ARGS[cell]))
    assert isinstance(out, tuple) and len(out) == len(BACKWARD_OUT[cell]), \
        f"{cell}_backward returned {type(out).__name__} of the wrong length"
    return dict(zip(BACKWARD_OUT[cell], out))


def final_state(cell, fwd):
    """The state after the last step, as initial-state keyword values for the next call."""
    st = {"h0": fwd["hs"][-1]}
    if cell == "lstm":
        st["c0"] = fwd["cs"][-1]
    return st


@pytest.fixture(scope="session")
def rec():
    """Recurrence helpers (see the module-level functions of conftest)."""
    return types.SimpleNamespace(
        CELLS=CELLS, GATES=GATES, STATE=STATE, FORWARD_OUT=FORWARD_OUT,
        BACKWARD_OUT=BACKWARD_OUT, FORWARD_ARGS=FORWARD_ARGS, BACKWARD_ARGS=BACKWARD_ARGS,
        inputs=recurrence_inputs, forward=run_forward, backward=run_backward,
        final_state=final_state)
