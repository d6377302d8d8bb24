"""Fast smoke check of the Numba kernels against the NumPy reference on fixed random cases.

The full hypothesis-driven equivalence suite is tests/test_backends.py; this file is a quick,
deterministic net for the kernel author (a few shapes per op, both dtypes, edge sizes) and
checks properties specific to fastrnn.kernels: bit-identical dropout masks, float32 staying
float32, empty inputs.
"""
import numpy as np
import pytest

import fastrnn.kernels as K
import fastrnn.reference as R

# |a - r| <= atol + rtol*|r|; (outputs, gradients) per dtype
TOL = {np.float32: ((1e-5, 1e-5), (1e-4, 1e-4)), np.float64: ((1e-10, 1e-10), (1e-10, 1e-10))}

SHAPES = [  # (T, N, D, H)
    (1, 1, 3, 1), (1, 4, 5, 7), (7, 1, 9, 13), (5, 3, 17, 11), (12, 6, 40, 33), (4, 2, 8, 64)]

CELLS = {  # name -> (G, extra forward inputs)
    "rnn": 1, "lstm": 4, "gru": 3, "gru_ra": 3}


def close(name, a, r, dtype, grad):
    atol, rtol = TOL[dtype][1 if grad else 0]
    a, r = np.asarray(a), np.asarray(r)
    assert a.shape == r.shape, f"{name}: shape {a.shape} != {r.shape}"
    assert a.dtype == r.dtype, f"{name}: dtype {a.dtype} != {r.dtype}"
    if a.size == 0:
        return
    err = np.abs(a.astype(np.float64) - r.astype(np.float64))
    bound = atol + rtol * np.abs(r.astype(np.float64))
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (f"{name}: worst index {worst}: {a[worst]} vs {r[worst]} "
                                  f"(err {err[worst]:.3g}, allowed {bound[worst]:.3g})")


def cell_args(cell, T, N, D, H, dtype, rng, scale=0.5):
    G = CELLS[cell]
    xw = (rng.standard_normal((T, N, G * H)) * 1.5).astype(dtype)
    Wh = (rng.standard_normal((H, G * H)) * scale / np.sqrt(max(H, 1))).astype(dtype)
    h0 = rng.standard_normal((N, H)).astype(dtype) * 0.5
    if cell == "lstm":
        return xw, Wh, h0, rng.standard_normal((N, H)).astype(dtype)
    if cell == "gru_ra":
        return xw, Wh, rng.standard_normal(H).astype(dtype) * 0.1, h0
    return xw, Wh, h0


def run_cell(mod, cell, fargs, dhs):
    fwd = getattr(mod, f"{cell}_forward")(*fargs)
    bwd_fn = getattr(mod, f"{cell}_backward")
    if cell == "rnn":
        xw, Wh, h0 = fargs
        bwd = bwd_fn(dhs, Wh, fwd, h0)
        return (fwd,), bwd
    if cell == "lstm":
        xw, Wh, h0, c0 = fargs
        hs, cs, acts = fwd
        return fwd, bwd_fn(dhs, Wh, cs, acts, c0)
    if cell == "gru":
        xw, Wh, h0 = fargs
        hs, acts, rh = fwd
        return fwd, bwd_fn(dhs, Wh, hs, acts, h0)
    xw, Wh, b_hn, h0 = fargs
    hs, acts, hn = fwd
    return fwd, bwd_fn(dhs, Wh, hs, acts, hn, h0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_matches_reference(cell, shape, dtype):
    T, N, D, H = shape
    rng = np.random.default_rng(hash((cell, shape)) % 2 ** 32)
    fargs = cell_args(cell, T, N, D, H, dtype, rng)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)
    kf, kb = run_cell(K, cell, fargs, dhs)
    rf, rb = run_cell(R, cell, fargs, dhs)
    for i, (a, r) in enumerate(zip(kf, rf)):
        close(f"{cell} forward output {i}", a, r, dtype, grad=False)
    for i, (a, r) in enumerate(zip(kb, rb)):
        close(f"{cell} backward output {i}", a, r, dtype, grad=True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_saturated_and_long(cell):
    # large pre-activations saturate the gates (exp clamping path) and T=60 accumulates error
    rng = np.random.default_rng(1)
    fargs = cell_args(cell, 60, 3, 4, 20, np.float32, rng, scale=3.0)
    fargs = (fargs[0] * 20,) + fargs[1:]
    dhs = rng.standard_normal((60, 3, 20)).astype(np.float32)
    kf, kb = run_cell(K, cell, fargs, dhs)
    rf, rb = run_cell(R, cell, fargs, dhs)
    for a, r in zip(kf + kb, rf + rb):
        assert np.all(np.isfinite(a))
        close(cell, a, r, np.float32, grad=True)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("T,N,H", [(0, 3, 5), (4, 0, 5), (0, 0, 5), (3, 2, 0)])
def test_cell_empty(cell, T, N, H):
    fargs = cell_args(cell, T, N, 4, H, np.float32, np.random.default_rng(0))
    dhs = np.ones((T, N, H), np.float32)
    kf, kb = run_cell(K, cell, fargs, dhs)
    rf, rb = run_cell(R, cell, fargs, dhs)
    for a, r in zip(kf + kb, rf + rb):
        close(cell, a, r, np.float32, grad=True)


def test_cell_noncontiguous_and_readonly():
    rng = np.random.default_rng(2)
    xw, Wh, h0, c0 = cell_args("lstm", 5, 3, 4, 6, np.float64, rng)
    xw_nc = np.asfortranarray(xw)
    WhT = np.ascontiguousarray(Wh.T).T  # a transposed view
    h0.flags.writeable = False
    a = K.lstm_forward(xw_nc, WhT, h0, c0)
    r = R.lstm_forward(xw, Wh, h0, c0)
    for x, y in zip(a, r):
        close("lstm", x, y, np.float64, grad=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding(dtype):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((50, 13)).astype(dtype)
    for idx in (rng.integers(0, 50, (4, 9)), np.full((3, 5), 7, np.int32),
                rng.integers(0, 50, (1, 1)).astype(np.uint16), np.zeros((0, 4), np.int64)):
        close("embedding_forward", K.embedding_forward(W, idx), R.embedding_forward(W, idx),
              dtype, grad=False)
        dout = rng.standard_normal(idx.shape + (13,)).astype(dtype)
        dWk = np.full_like(W, 123.0)
        dWr = np.full_like(W, 123.0)
        out = K.embedding_backward(dout, idx, dWk)
        assert out is dWk
        close("embedding_backward", dWk, R.embedding_backward(dout, idx, dWr), dtype, grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,V", [(1, 1), (7, 5), (33, 1000), (0, 4)])
@pytest.mark.parametrize("grad", [True, False])
def test_softmax_cross_entropy(dtype, M, V, grad):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((M, V)) * 4).astype(dtype)
    t = rng.integers(-1, V, M)
    lk, dk = K.softmax_cross_entropy(x, t, grad=grad)
    lr, dr = R.softmax_cross_entropy(x, t, grad=grad)
    close("loss", lk, lr, dtype, grad=False)
    if grad:
        close("dx", dk, dr, dtype, grad=True)
    else:
        assert dk is None and dr is None
    t_all = np.full(M, -1)
    lk, dk = K.softmax_cross_entropy(x, t_all)
    assert float(lk) == 0.0 and not np.any(dk)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 0.9])
def test_dropout_bit_identical(dtype, ratio):
    x = np.random.default_rng(5).standard_normal((3, 7, 11)).astype(dtype)
    for seed in (0, 1, 2 ** 63 + 12345, 2 ** 64 - 1):
        yk, mk = K.dropout_forward(x, ratio, seed)
        yr, mr = R.dropout_forward(x, ratio, seed)
        assert mk.dtype == mr.dtype == dtype
        np.testing.assert_array_equal(mk, mr)
        np.testing.assert_array_equal(yk, yr)
