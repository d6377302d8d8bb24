"""THE tolerance table of the fastrnn test suite, and the one comparison helper.

An element passes when ``|actual - reference| <= atol + rtol * |reference|``.

- ``output``: forward results (hidden states, gate activations, losses, gathered rows, ...).
- ``grad``:   backward results (dA, dh0, dc0, dhn, dx of the loss, dW of the embedding, ...).
- ``fd``:     float64 analytical gradients of the reference against central finite differences
              (step ``FD_EPS``); only float64 is meaningful there.

The dtype is the dtype of the computation under test. Backends are compared with the float64
reference run on the same (already rounded) inputs, so the float32 rows bound the whole float32
error of a kernel, not the difference of two float32 computations. Measured on this machine the
float32 NumPy reference stays within 0.15x of the float32 bounds over T <= 11, H <= 40, inputs up
to 3 sigma and recurrent weights up to 2/sqrt(H): the margin is for kernels that use cheaper (but
accurate) formulations of tanh / sigmoid. A kernel with a wrong gate, a wrong time index or a
lost term is off by 1e-2 or more and fails every row of this table.
"""
import numpy as np

TOLERANCES = {
    # kind:       {dtype: (atol, rtol)}
    "output": {np.dtype(np.float32): (1e-5, 1e-4), np.dtype(np.float64): (1e-12, 1e-10)},
    "grad": {np.dtype(np.float32): (5e-5, 5e-4), np.dtype(np.float64): (1e-11, 1e-9)},
    "fd": {np.dtype(np.float64): (1e-7, 1e-5)},
}

# Step of the central finite differences used with kind="fd".
FD_EPS = 1e-6


def to_numpy(a):
    """A NumPy array from a NumPy array, a CuPy array (``.get()``) or a scalar."""
    if hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":
        a = a.get()
    return np.asarray(a)


def tolerance(kind, dtype):
    """(atol, rtol) of ``kind`` for ``dtype``."""
    try:
        table = TOLERANCES[kind]
    except KeyError:
        raise ValueError(f"unknown tolerance kind {kind!r}; expected one of {list(TOLERANCES)}")
    dtype = np.dtype(dtype)
    if dtype not in table:
        raise ValueError(f"no {kind!r} tolerance for dtype {dtype}; have {list(map(str, table))}")
    return table[dtype]


def rms(a):
    """Root mean square of the finite elements of ``a`` (0 for none): the size of a typical
    element, the ``scale`` of a matrix product's result."""
    a = to_numpy(a).astype(np.float64)
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def assert_close(name, actual, ref, kind="output", dtype=None, scale=None):
    """Assert ``|actual - ref| <= atol + rtol*|ref|`` elementwise, with the table's bounds.

    ``scale``: for the results of matrix products (sums of many terms), where cancellation
    leaves some elements far smaller than the terms they sum and a float32 sum of K terms errs
    by about sqrt(K) ulps of the terms, not of the remainder. The bound is then
    ``atol + rtol*max(|ref|, scale)``; pass ``scale=rms(ref)``, the size of a typical element.

    ``dtype`` selects the table row (default: the dtype of ``actual``; non-float actuals use
    the float64 row). NaNs must sit at the same positions in both. The failure message names
    the tensor, the worst index (largest error relative to its bound), the actual and the
    reference values there, the error and the allowed bound. Lists (the optimizers' ops) are
    compared element by element."""
    if isinstance(actual, list) or isinstance(ref, list):
        if not (isinstance(actual, list) and isinstance(ref, list) and len(actual) == len(ref)):
            raise AssertionError(f"{name}: {actual!r:.80} and the reference {ref!r:.80} are not "
                                 f"lists of one length")
        for k, (x, y) in enumerate(zip(actual, ref)):
            assert_close(f"{name}[{k}]", x, y, kind, dtype, scale)
        return
    a = to_numpy(actual)
    r = to_numpy(ref)
    if dtype is None:
        dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    atol, rtol = tolerance(kind, dtype)
    if a.shape != r.shape:
        raise AssertionError(f"{name}: shape {a.shape} differs from the reference shape {r.shape}")
    if a.size == 0:
        return
    a64 = a.astype(np.float64)
    r64 = r.astype(np.float64)
    nan_a, nan_r = np.isnan(a64), np.isnan(r64)
    with np.errstate(invalid="ignore", over="ignore"):
        # A non-finite value on either side matches only the same value on the other side
        # (NaN and NaN, or inf of the same sign); anything else is an infinite error.
        finite = np.isfinite(a64) & np.isfinite(r64)
        same = (nan_a & nan_r) | (np.isinf(a64) & (a64 == r64))
        err = np.where(finite, np.abs(a64 - r64), np.where(same, 0.0, np.inf))
        size = np.where(np.isfinite(r64), np.abs(r64), 0.0)
        bound = atol + rtol * (size if scale is None else np.maximum(size, scale))
        ratio = err / bound
    bad = ~(err <= bound)
    if not bad.any():
        return
    worst = np.unravel_index(int(np.nanargmax(np.where(bad, ratio, -1.0))), a.shape)
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {a.size} elements out of tolerance ({kind}, "
        f"{np.dtype(dtype)}: atol={atol:g}, rtol={rtol:g}); "
        f"worst at index {tuple(map(int, worst))}: "
        f"actual={a64[worst]:.9g} reference={r64[worst]:.9g} |error|={err[worst]:.3e} > "
        f"allowed {bound[worst]:.3e}")


def central_difference(f, a, idx, eps=FD_EPS):
    """(f() at a[idx] + eps - f() at a[idx] - eps) / 2 eps; a[idx] is restored."""
    old = a[idx]
    a[idx] = old + eps
    fp = f()
    a[idx] = old - eps
    fm = f()
    a[idx] = old
    return (fp - fm) / (2 * eps)
