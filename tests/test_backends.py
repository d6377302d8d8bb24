"""Every backend op against the NumPy reference (DESIGN.md section 4).

Each test runs once per backend (``backend`` fixture: numpy, numba when ``fastrnn.kernels``
imports, cuda with the ``gpu`` marker). Inputs are drawn by hypothesis (shapes from 1 upward,
H not a multiple of 8 or 32, value scales that saturate the gates, zero and random initial
states), rounded to the dtype under test, and the reference is run in float64 on the same
rounded values, so the tolerance table bounds the backend's own error. Backward ops get the
same (rounded) forward results on both sides, so a forward and a backward bug are told apart.
"""
import inspect

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import fastrnn.reference as R
from tolerances import assert_close

CELLS = ("rnn", "lstm", "gru", "gru_ra")
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]
OPS = (
    "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
    "gru_backward", "gru_ra_forward", "gru_ra_backward", "embedding_forward",
    "embedding_backward", "softmax_cross_entropy", "dropout_forward",
)


def ref_call(name, *args):
    return getattr(R, name)(*args)


def as64(d):
    return {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}


def check_dtype(label, arr, dtype):
    assert arr.dtype == dtype, f"{label}: dtype {arr.dtype}, expected {np.dtype(dtype)}"


# ------------------------------------------------------------------------------ the op table
def test_backend_has_every_op_with_the_reference_signature(backend):
    import fastrnn.backend
    assert set(OPS) == set(fastrnn.backend.OPS), "test OPS list out of date with fastrnn.backend"
    for name in OPS:
        fn = backend.op(name)
        ref = inspect.signature(getattr(R, name))
        got = inspect.signature(fn)
        assert [(p.name, p.default) for p in got.parameters.values()] == \
               [(p.name, p.default) for p in ref.parameters.values()], \
            f"{backend.name}.{name}{got} differs from reference {name}{ref}"


# ------------------------------------------------------------------------------ recurrences
def check_recurrence(backend, rec, cell, dtype, T, N, H, zero_state=False, scale=1.0,
                     wscale=1.0, seed=0):
    """Forward and backward of ``cell`` on ``backend`` against the float64 reference."""
    p = rec.inputs(cell, T, N, H, dtype, seed, scale=scale, wscale=wscale,
                   zero_state=zero_state)
    saved = {k: v.copy() for k, v in p.items()}
    out = rec.forward(backend.call, cell, p)
    ref = rec.forward(ref_call, cell, as64(p))
    for k in rec.FORWARD_OUT[cell]:
        label = f"{backend.name} {cell}_forward {k} (T={T} N={N} H={H})"
        check_dtype(label, out[k], dtype)
        assert_close(label, out[k], ref[k], "output", dtype=dtype)
    for k, v in p.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=f"{cell}_forward modified input {k}")

    fwd = {k: v.astype(dtype) for k, v in ref.items()}
    dhs = np.random.default_rng(seed + 1).standard_normal((T, N, H)).astype(dtype)
    saved = {k: v.copy() for k, v in fwd.items()}
    gout = rec.backward(backend.call, cell, p, fwd, dhs)
    gref = rec.backward(ref_call, cell, as64(p), as64(fwd), dhs.astype(np.float64))
    for k in rec.BACKWARD_OUT[cell]:
        label = f"{backend.name} {cell}_backward {k} (T={T} N={N} H={H})"
        check_dtype(label, gout[k], dtype)
        assert_close(label, gout[k], gref[k], "grad", dtype=dtype)
    for k, v in fwd.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=f"{cell}_backward modified input {k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(T=st.integers(1, 8), N=st.integers(1, 6), H=st.integers(1, 40),
       zero_state=st.booleans(), scale=st.sampled_from([0.1, 1.0, 3.0]),
       wscale=st.sampled_from([0.5, 1.0, 2.0]), seed=st.integers(0, 2 ** 32 - 1))
@example(T=1, N=1, H=1, zero_state=False, scale=1.0, wscale=1.0, seed=0)
@example(T=2, N=3, H=9, zero_state=True, scale=1.0, wscale=1.0, seed=1)
@example(T=3, N=2, H=33, zero_state=False, scale=3.0, wscale=2.0, seed=2)
def test_recurrence_matches_reference(backend, rec, cell, dtype, T, N, H, zero_state, scale,
                                      wscale, seed):
    check_recurrence(backend, rec, cell, dtype, T, N, H, zero_state, scale, wscale, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,N,H", [(12, 33, 70), (5, 64, 128), (4, 7, 200)])
def test_recurrence_larger_shapes_and_determinism(backend, rec, cell, dtype, T, N, H):
    """Sizes where a kernel may switch to blocked / parallel paths; two calls are identical."""
    check_recurrence(backend, rec, cell, dtype, T, N, H, seed=T * N * H)
    p = rec.inputs(cell, T, N, H, dtype, 7)
    a = rec.forward(backend.call, cell, p)
    b = rec.forward(backend.call, cell, p)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{cell}_forward {k} not reproducible")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), T=st.integers(2, 8), N=st.integers(1, 4), H=st.integers(1, 20),
       seed=st.integers(0, 2 ** 32 - 1))
def test_stateful_carry_matches_reference(backend, rec, cell, dtype, data, T, N, H, seed):
    """Two backend calls on xw[:k], xw[k:] with the carried state == the reference on all."""
    k = data.draw(st.integers(1, T - 1), label="k")
    p = rec.inputs(cell, T, N, H, dtype, seed)
    first = rec.forward(backend.call, cell, dict(p, xw=p["xw"][:k]))
    second = rec.forward(backend.call, cell,
                         dict(p, xw=p["xw"][k:], **rec.final_state(cell, first)))
    ref = rec.forward(ref_call, cell, as64(p))
    for name in ref:
        assert_close(f"{backend.name} {cell} carried {name} (k={k})",
                     np.concatenate([first[name], second[name]]), ref[name], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,N", [(0, 3), (4, 0), (0, 0)])
def test_recurrence_empty(backend, rec, cell, dtype, T, N):
    """N=0 or T=0: correctly shaped empty outputs (T=0: the state gradients are zero)."""
    H = 5
    G = rec.GATES[cell]
    p = rec.inputs(cell, T, N, H, dtype)
    out = rec.forward(backend.call, cell, p)
    ref = rec.forward(ref_call, cell, p)
    for k in ref:
        assert out[k].shape == ref[k].shape, f"{cell}_forward {k}: {out[k].shape} != {ref[k].shape}"
        check_dtype(f"{cell}_forward {k}", out[k], dtype)
    assert out["hs"].shape == (T, N, H)
    dhs = np.zeros((T, N, H), dtype)
    g = rec.backward(backend.call, cell, p, out, dhs)
    gref = rec.backward(ref_call, cell, p, ref, dhs)
    assert g["dA"].shape == (T, N, G * H)
    for k in gref:
        assert g[k].shape == gref[k].shape, f"{cell}_backward {k}: {g[k].shape} != {gref[k].shape}"
        check_dtype(f"{cell}_backward {k}", g[k], dtype)
        assert_close(f"{cell}_backward {k}", g[k], gref[k], "grad")


# -------------------------------------------------------------------- softmax cross-entropy
@pytest.mark.parametrize("dtype", DTYPES)
@given(M=st.integers(1, 40), V=st.integers(1, 50), ignore=st.sampled_from([0.0, 0.3, 1.0]),
       scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]), grad=st.booleans(),
       label_dtype=st.sampled_from([np.int32, np.int64]), seed=st.integers(0, 2 ** 32 - 1))
@example(M=1, V=1, ignore=0.0, scale=1.0, grad=True, label_dtype=np.int64, seed=0)
@example(M=5, V=3, ignore=1.0, scale=1.0, grad=True, label_dtype=np.int64, seed=0)
def test_softmax_cross_entropy_matches_reference(backend, dtype, M, V, ignore, scale, grad,
                                                 label_dtype, seed):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((M, V))).astype(dtype)
    t = rng.integers(0, V, M).astype(label_dtype)
    t[rng.random(M) < ignore] = -1
    loss, dx = backend.call("softmax_cross_entropy", x, t, grad)
    rloss, rdx = R.softmax_cross_entropy(x.astype(np.float64), t)
    label = f"{backend.name} softmax_cross_entropy (M={M} V={V}, {int((t == -1).sum())} ignored)"
    assert np.shape(loss) == (), f"{label}: loss shape {np.shape(loss)}, expected ()"
    check_dtype(label + " loss", np.asarray(loss), dtype)
    assert_close(label + " loss", loss, rloss, "output", dtype=dtype)
    if not grad:
        assert dx is None, f"{label}: dx must be None when grad=False"
        return
    check_dtype(label + " dx", dx, dtype)
    assert_close(label + " dx", dx, rdx, "grad", dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_empty(backend, dtype):
    x = np.zeros((0, 4), dtype)
    t = np.zeros(0, np.int64)
    loss, dx = backend.call("softmax_cross_entropy", x, t)
    rloss, rdx = R.softmax_cross_entropy(x, t)
    assert dx.shape == (0, 4) and np.shape(loss) == ()
    assert_close("loss (M=0)", loss, rloss)


# -------------------------------------------------------------------------------- embedding
@pytest.mark.parametrize("dtype", DTYPES)
@given(V=st.integers(1, 20), D=st.integers(1, 17), N=st.integers(1, 5), T=st.integers(1, 7),
       id_dtype=st.sampled_from([np.int32, np.int64]), seed=st.integers(0, 2 ** 32 - 1))
@example(V=1, D=1, N=1, T=1, id_dtype=np.int64, seed=0)
@example(V=2, D=9, N=5, T=7, id_dtype=np.int32, seed=1)  # every id repeated many times
def test_embedding_matches_reference(backend, dtype, V, D, N, T, id_dtype, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((V, D)).astype(dtype)
    idx = rng.integers(0, V, (N, T)).astype(id_dtype)
    out = backend.call("embedding_forward", W, idx)
    ref = R.embedding_forward(W, idx)
    check_dtype("embedding_forward", out, dtype)
    assert out.shape == (N, T, D)
    np.testing.assert_array_equal(out, ref, err_msg=f"{backend.name} embedding_forward")

    dout = rng.standard_normal((N, T, D)).astype(dtype)
    dW = backend.asarray(np.full((V, D), np.nan, dtype))  # must be overwritten, not added to
    ret = backend.op("embedding_backward")(backend.asarray(dout), backend.asarray(idx), dW)
    assert ret is dW, f"{backend.name} embedding_backward must write into dW and return it"
    rdW = R.embedding_backward(dout.astype(np.float64), idx, np.empty((V, D)))
    got = backend.asnumpy(dW)
    check_dtype("embedding_backward dW", got, dtype)
    assert_close(f"{backend.name} embedding_backward dW (V={V} N={N} T={T})", got, rdW, "grad",
                 dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,T", [(0, 3), (2, 0)])
def test_embedding_empty(backend, dtype, N, T):
    W = np.ones((4, 3), dtype)
    idx = np.zeros((N, T), np.int64)
    out = backend.call("embedding_forward", W, idx)
    assert out.shape == (N, T, 3)
    check_dtype("embedding_forward", out, dtype)
    dW = backend.asarray(np.ones((4, 3), dtype))
    backend.op("embedding_backward")(backend.asarray(np.zeros((N, T, 3), dtype)),
                                     backend.asarray(idx), dW)
    assert not backend.asnumpy(dW).any(), "embedding_backward with no ids must zero dW"


# ---------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.lists(st.integers(1, 30), min_size=1, max_size=3).map(tuple),
       ratio=st.one_of(st.sampled_from([0.0, 0.5]), st.floats(0.0, 0.95)),
       seed=st.integers(0, 2 ** 64 - 1))
@example(shape=(3, 4), ratio=0.5, seed=2 ** 64 - 1)
@example(shape=(1,), ratio=0.0, seed=0)
@example(shape=(20, 35, 30), ratio=0.5, seed=2 ** 63)
def test_dropout_mask_bit_identical_to_reference(backend, dtype, shape, ratio, seed):
    x = np.random.default_rng(seed % 2 ** 32).standard_normal(shape).astype(dtype)
    y, mask = backend.call("dropout_forward", x, ratio, seed)
    ry, rmask = R.dropout_forward(x, ratio, seed)
    check_dtype("dropout mask", mask, dtype)
    check_dtype("dropout y", y, dtype)
    assert mask.shape == y.shape == x.shape
    diff = np.flatnonzero(mask.reshape(-1) != rmask.reshape(-1))
    assert diff.size == 0, (f"{backend.name} dropout mask differs from the reference at "
                            f"{diff.size} of {mask.size} flat indices (first {diff[:5]}) for "
                            f"seed={seed} ratio={ratio!r}")
    assert_close(f"{backend.name} dropout y", y, ry, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_empty(backend, dtype):
    y, mask = backend.call("dropout_forward", np.zeros((0, 5), dtype), 0.5, 3)
    assert y.shape == mask.shape == (0, 5)
