"""Every backend against the NumPy reference: the one equivalence suite.

Each test runs once per backend except the reference (``candidate`` fixture: every entry of
``fastrnn.backend.BACKENDS``, skipped with the reason where it is unavailable, cuda with the
``gpu`` marker). Inputs come from conftest's generators (``recurrence_inputs``, ``op_inputs``),
drawn by hypothesis: N and T from 0, H in 1..40 and 67 (not multiples of 8 or 16), value
scales that saturate the gates, zero and random initial states, and every memory layout of
``conftest.LAYOUTS`` (Fortran order, strided, reversed, zero strides). They are rounded to the
dtype under test and the reference runs in float64 on the same rounded values, so the one table
in tests/tolerances.py bounds the backend's own error. Backward ops get the same (rounded)
forward results on both sides, so a forward and a backward bug are told apart.

Non-finite inputs follow the IEEE policy of ``fastrnn.contract``: a NaN or inf in any input
gives non-finite outputs exactly where the reference's are, and the same values elsewhere.
"""
import inspect

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import fastrnn.backend
import fastrnn.reference as R
from conftest import LAYOUTS, layout, op_inputs
from fastrnn import contract
from fastrnn.checks import FLOAT, FLOATS
from tolerances import assert_close, rms

CELLS = contract.CELLS
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]
HIDDEN = st.one_of(st.integers(1, 40), st.just(67))


def ref_call(name, *args):
    return getattr(R, name)(*args)


def as64(d):
    return {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}


def check_dtype(label, arr, dtype):
    assert arr.dtype == dtype, f"{label}: dtype {arr.dtype}, expected {np.dtype(dtype)}"


def caller(backend, kind, keep=()):
    """``call(op, *args)`` on ``backend`` with every array argument in memory layout ``kind``,
    except the arrays in ``keep`` (written in place: they stay C-ordered)."""
    def call(name, *args):
        args = [backend.asarray(a) if any(a is k for k in keep) else
                layout(backend.xp, a, kind) if isinstance(a, np.ndarray) else a for a in args]
        return backend.asnumpy(backend.op(name)(*args))
    return call


def kind_of(op):
    return "grad" if op.endswith("backward") else "output"


# ------------------------------------------------------------------------------ the op table
def test_backend_exports_every_op_with_the_contract_signature(backend):
    for op in contract.OPS:
        fn = backend.op(op.name)
        got = [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]
        assert got == [(a.name, a.default) for a in op.args], \
            f"{backend.name}.{op.name}{inspect.signature(fn)} differs from {op.name}{op.signature}"
    assert tuple(fastrnn.backend.OPS) == contract.NAMES


# ------------------------------------------------------------------------------ recurrences
def check_recurrence(backend, rec, cell, dtype, T, N, H, zero_state=False, scale=1.0,
                     wscale=1.0, seed=0, kind="c", lengths=None):
    """Forward and backward of ``cell`` on ``backend`` against the float64 reference."""
    call = caller(backend, kind)
    p = rec.inputs(cell, T, N, H, dtype, seed, scale=scale, wscale=wscale,
                   zero_state=zero_state)
    where = f"(T={T} N={N} H={H}, {kind} inputs, lengths {lengths})"
    ref = compare_and_check_inputs(backend, cell, "forward", where, dtype, p,
                                   lambda: rec.forward(call, cell, p, lengths),
                                   lambda: rec.forward(ref_call, cell, as64(p), lengths))
    fwd = {k: v.astype(dtype) for k, v in ref.items()}
    dhs = np.random.default_rng(seed + 1).standard_normal((T, N, H)).astype(dtype)
    compare_and_check_inputs(backend, cell, "backward", where, dtype, fwd,
                             lambda: rec.backward(call, cell, p, fwd, dhs, lengths),
                             lambda: rec.backward(ref_call, cell, as64(p), as64(fwd),
                                                  dhs.astype(np.float64), lengths))


def compare_and_check_inputs(backend, cell, direction, where, dtype, inputs, run, run_ref,
                             products=()):
    """Every output of ``run()`` has ``dtype`` and matches ``run_ref()``; ``inputs`` are left
    unchanged. Outputs named in ``products`` are sums of many products, bounded relative to
    their typical element (``tolerances.assert_close``'s scale). Returns the reference's
    outputs."""
    saved = {k: v.copy() for k, v in inputs.items()}
    out, ref = run(), run_ref()
    for k in ref:
        label = f"{backend.name} {cell}_{direction} {k} {where}"
        check_dtype(label, out[k], dtype)
        assert_close(label, out[k], ref[k], kind_of(direction), dtype=dtype,
                     scale=rms(ref[k]) if k in products else None)
    for k, v in inputs.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=f"{cell}_{direction} modified {k}")
    return ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(T=st.integers(0, 8), N=st.integers(0, 6), H=HIDDEN, zero_state=st.booleans(),
       scale=st.sampled_from([0.1, 1.0, 3.0]), wscale=st.sampled_from([0.5, 1.0, 2.0]),
       seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(LAYOUTS))
@example(T=1, N=1, H=1, zero_state=False, scale=1.0, wscale=1.0, seed=0, kind="zero_stride")
@example(T=3, N=1, H=1, zero_state=False, scale=1.0, wscale=1.0, seed=4, kind="reversed")
@example(T=2, N=3, H=9, zero_state=True, scale=1.0, wscale=1.0, seed=1, kind="c")
@example(T=3, N=2, H=33, zero_state=False, scale=3.0, wscale=2.0, seed=2, kind="fortran")
@example(T=4, N=5, H=67, zero_state=False, scale=1.0, wscale=1.0, seed=3, kind="strided")
@example(T=2, N=3, H=0, zero_state=False, scale=1.0, wscale=1.0, seed=5, kind="c")
def test_recurrence_matches_reference(candidate, rec, cell, dtype, T, N, H, zero_state, scale,
                                      wscale, seed, kind):
    check_recurrence(candidate, rec, cell, dtype, T, N, H, zero_state, scale, wscale, seed, kind)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), T=st.integers(1, 7), N=st.integers(1, 6), H=HIDDEN,
       seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(LAYOUTS))
@example(data=None, T=3, N=4, H=5, seed=0, kind="c")
def test_recurrence_with_lengths_matches_reference(candidate, rec, cell, dtype, data, T, N, H,
                                                   seed, kind):
    # Per-row lengths from 0 to T (the explicit example: 0, T and two in between).
    if data is None:
        lengths = np.array([0, T, 1, 2])
    else:
        lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)))
    check_recurrence(candidate, rec, cell, dtype, T, N, H, seed=seed, kind=kind,
                     lengths=lengths)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,N,H", [(12, 33, 70), (5, 64, 128), (4, 7, 200)])
def test_recurrence_larger_shapes_and_determinism(candidate, rec, cell, dtype, T, N, H):
    """Sizes where a kernel may switch to blocked / parallel paths; two calls are identical."""
    check_recurrence(candidate, rec, cell, dtype, T, N, H, seed=T * N * H)
    p = rec.inputs(cell, T, N, H, dtype, 7)
    a = rec.forward(candidate.call, cell, p)
    b = rec.forward(candidate.call, cell, p)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{cell}_forward {k} not reproducible")


@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_saturated_and_long(candidate, rec, cell):
    """Pre-activations near +-60 saturate every gate (the exp clamping path) and T=60
    accumulates rounding: float32 stays finite and within the float32 table."""
    check_recurrence(candidate, rec, cell, np.float32, 60, 3, 20, scale=60.0, wscale=3.0, seed=1)


@pytest.mark.parametrize("cell", CELLS)
def test_huge_recurrent_weights_float32(candidate, rec, cell):
    """|Wh| near 1e30 in float32: every gate saturates to exactly 0 or 1 as in the float32
    reference (no denormal floor such as 6e-39 that a later step multiplies by 1e30), so the
    backward pass, fed each side's own forward results, is finite exactly where the
    reference's is."""
    for seed in range(20):
        p = rec.inputs(cell, 5, 3, 4, np.float32, seed)
        p["Wh"] = (np.random.default_rng(seed).uniform(-1, 1, p["Wh"].shape) * 1e30).astype(
            np.float32)
        dhs = np.random.default_rng(seed + 1).standard_normal((5, 3, 4)).astype(np.float32)
        with np.errstate(all="ignore"):
            ref = rec.forward(ref_call, cell, p)
            out = rec.forward(candidate.call, cell, p)
            gref = rec.backward(ref_call, cell, p, ref, dhs)
            gout = rec.backward(candidate.call, cell, p, out, dhs)
        if "acts" in ref:
            saturated = (ref["acts"] == 0) | (np.abs(ref["acts"]) == 1)
            np.testing.assert_array_equal(out["acts"][saturated], ref["acts"][saturated],
                                          err_msg=f"{cell} seed {seed}: saturated gates differ")
        for k in gref:
            np.testing.assert_array_equal(
                np.isfinite(gout[k]), np.isfinite(gref[k]),
                err_msg=f"{candidate.name} {cell}_backward {k} seed {seed}: finite elsewhere "
                        f"than the float32 reference")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), T=st.integers(2, 8), N=st.integers(1, 4), H=st.integers(1, 20),
       seed=st.integers(0, 2 ** 32 - 1))
def test_stateful_carry_matches_reference(candidate, rec, cell, dtype, data, T, N, H, seed):
    """Two backend calls on xw[:k], xw[k:] with the carried state == the reference on all."""
    k = data.draw(st.integers(1, T - 1), label="k")
    p = rec.inputs(cell, T, N, H, dtype, seed)
    first = rec.forward(candidate.call, cell, dict(p, xw=p["xw"][:k]))
    second = rec.forward(candidate.call, cell,
                         dict(p, xw=p["xw"][k:], **rec.final_state(cell, first)))
    ref = rec.forward(ref_call, cell, as64(p))
    for name in ref:
        assert_close(f"{candidate.name} {cell} carried {name} (k={k})",
                     np.concatenate([first[name], second[name]]), ref[name], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,N,H", [(0, 3, 5), (4, 0, 5), (0, 0, 5), (3, 2, 0)])
def test_recurrence_empty(candidate, rec, cell, dtype, T, N, H):
    """N=0, T=0 or H=0: correctly shaped empty outputs (T=0: the state gradients are zero)."""
    G = rec.GATES[cell]
    p = rec.inputs(cell, T, N, H, dtype)
    out = rec.forward(candidate.call, cell, p)
    ref = rec.forward(ref_call, cell, p)
    for k in ref:
        assert out[k].shape == ref[k].shape, f"{cell}_forward {k}: {out[k].shape} != {ref[k].shape}"
        check_dtype(f"{cell}_forward {k}", out[k], dtype)
    assert out["hs"].shape == (T, N, H)
    dhs = np.ones((T, N, H), dtype)
    g = rec.backward(candidate.call, cell, p, out, dhs)
    gref = rec.backward(ref_call, cell, p, ref, dhs)
    assert g["dA"].shape == (T, N, G * H)
    for k in gref:
        assert g[k].shape == gref[k].shape, f"{cell}_backward {k}: {g[k].shape} != {gref[k].shape}"
        check_dtype(f"{cell}_backward {k}", g[k], dtype)
        assert_close(f"{cell}_backward {k}", g[k], gref[k], "grad")


def test_read_only_inputs(candidate, rec):
    p = rec.inputs("lstm", 5, 3, 6, np.float64, 2)
    for v in p.values():
        v.flags.writeable = False
    out = rec.forward(candidate.call, "lstm", p)
    ref = rec.forward(ref_call, "lstm", p)
    for k in ref:
        assert_close(f"{candidate.name} lstm_forward {k} (read-only inputs)", out[k], ref[k])


# -------------------------------------------------------------------------------- layer ops
def check_layer(backend, rec, cell, dtype, N, T, D, H, seed=0, kind="c", lengths=None,
                scale=1.0, wscale=1.0, zero_state=False):
    """Layer forward and backward of ``cell`` on ``backend`` against the float64 reference;
    the weight gradients are written into NaN-filled arrays, which must be overwritten."""
    call = caller(backend, kind)
    p = rec.layer_inputs(cell, N, T, D, H, dtype, seed, scale=scale, wscale=wscale,
                         zero_state=zero_state)
    where = f"(N={N} T={T} D={D} H={H}, {kind} inputs, lengths {lengths})"
    ref = compare_and_check_inputs(backend, cell, "layer_forward", where, dtype, p,
                                   lambda: rec.layer_forward(call, cell, p, lengths),
                                   lambda: rec.layer_forward(ref_call, cell, as64(p), lengths))
    fwd = {k: v.astype(dtype) for k, v in ref.items()}
    dhs = np.random.default_rng(seed + 1).standard_normal((N, T, H)).astype(dtype)
    written = rec.written(cell, N, T, D, H, dtype)
    call_b = caller(backend, kind, keep=tuple(written.values()))
    compare_and_check_inputs(backend, cell, "layer_backward", where, dtype, dict(p, **fwd),
                             lambda: rec.layer_backward(call_b, cell, p, fwd, dhs, lengths,
                                                        written),
                             lambda: rec.layer_backward(ref_call, cell, as64(p), as64(fwd),
                                                        dhs.astype(np.float64), lengths),
                             products=("dxs", "dWx", "dWh", "db", "db_hn"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(N=st.integers(0, 6), T=st.integers(0, 7), D=st.integers(1, 30), H=HIDDEN,
       zero_state=st.booleans(), scale=st.sampled_from([0.1, 1.0, 3.0]),
       seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(LAYOUTS))
@example(N=1, T=1, D=1, H=1, zero_state=False, scale=1.0, seed=0, kind="c")
@example(N=3, T=4, D=0, H=5, zero_state=False, scale=1.0, seed=1, kind="c")
@example(N=5, T=3, D=17, H=67, zero_state=False, scale=3.0, seed=2, kind="fortran")
@example(N=0, T=3, D=4, H=5, zero_state=False, scale=1.0, seed=3, kind="c")
@example(N=2, T=0, D=4, H=5, zero_state=False, scale=1.0, seed=4, kind="strided")
def test_layer_ops_match_reference(candidate, rec, cell, dtype, N, T, D, H, zero_state, scale,
                                   seed, kind):
    check_layer(candidate, rec, cell, dtype, N, T, D, H, seed, kind, scale=scale,
                zero_state=zero_state)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), N=st.integers(1, 6), T=st.integers(1, 7), D=st.integers(1, 20),
       H=HIDDEN, seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(LAYOUTS))
@example(data=None, N=4, T=3, D=6, H=5, seed=0, kind="c")
def test_layer_ops_with_lengths_match_reference(candidate, rec, cell, dtype, data, N, T, D, H,
                                                seed, kind):
    if data is None:
        lengths = np.array([0, T, 1, 2])
    else:
        lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)))
    check_layer(candidate, rec, cell, dtype, N, T, D, H, seed, kind, lengths=lengths)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("N,T,D,H", [(33, 12, 70, 70), (64, 5, 28, 128), (7, 4, 300, 200),
                                     (1, 30, 16, 64)])
def test_layer_ops_larger_shapes_and_determinism(candidate, rec, cell, dtype, N, T, D, H):
    """Sizes where products and recurrences block, split over threads and switch paths; two
    calls are identical."""
    check_layer(candidate, rec, cell, dtype, N, T, D, H, seed=N * T * H)
    p = rec.layer_inputs(cell, N, T, D, H, dtype, 7)
    a = rec.layer_forward(candidate.call, cell, p)
    b = rec.layer_forward(candidate.call, cell, p)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{cell}_layer_forward {k} not "
                                                          f"reproducible")


@pytest.mark.parametrize("cell", CELLS)
# the engine writes hs_kept in its steps up to 2 MiB of hs, and copies a larger one at the end of
# its region
@pytest.mark.parametrize("N,T,D,H", [(3, 4, 5, 6), (64, 40, 4, 256)])
def test_layer_forward_keeps_hs_in_an_array_of_its_own(candidate, rec, cell, N, T, D, H):
    # hs_kept goes to the backward while hs goes on to the next layer, which may change it
    p = rec.layer_inputs(cell, N, T, D, H, np.float32, 1)
    out = rec.layer_forward(candidate.call, cell, p)
    np.testing.assert_array_equal(out["hs_kept"], out["hs"])
    if candidate.xp is np:
        raw = rec.layer_forward(lambda name, *a: candidate.op(name)(*a), cell, p)
        assert not np.shares_memory(raw["hs"], raw["hs_kept"]), \
            f"{candidate.name} {cell}: hs_kept is hs"


def test_layer_backward_writes_and_returns_the_arrays_it_was_given(candidate, rec):
    if candidate.xp is not np:
        pytest.skip("identity of host arrays")
    p = rec.layer_inputs("gru_ra", 3, 4, 5, 6, np.float64, 1)
    fwd = rec.layer_forward(candidate.call, "gru_ra", p)
    written = rec.written("gru_ra", 3, 4, 5, 6, np.float64)
    out = rec.layer_backward(lambda name, *a: candidate.op(name)(*a), "gru_ra", p, fwd,
                             np.ones((3, 4, 6)), None, written)
    for name, arr in written.items():
        assert out[name] is arr, f"{candidate.name}: {name} is not the array it was given"
        assert np.isfinite(arr).all(), f"{candidate.name}: {name} was not overwritten"


# ------------------------------------------------------------------------------- linear ops
@pytest.mark.parametrize("dtype", DTYPES)
@given(M=st.integers(0, 40), D=st.integers(0, 40), V=st.integers(1, 70),
       w_order=st.sampled_from(["C", "F"]), dw_order=st.sampled_from(["C", "F"]),
       seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(LAYOUTS))
@example(M=1, D=1, V=1, w_order="C", dw_order="C", seed=0, kind="c")
@example(M=300, D=100, V=1000, w_order="F", dw_order="F", seed=1, kind="c")
@example(M=70, D=650, V=33, w_order="C", dw_order="C", seed=2, kind="c")
@example(M=300, D=260, V=28, w_order="C", dw_order="C", seed=4, kind="strided")  # narrow V
@example(M=0, D=5, V=3, w_order="F", dw_order="C", seed=3, kind="c")
def test_linear_ops_match_reference(candidate, dtype, M, D, V, w_order, dw_order, seed, kind):
    """y = x W + b and its gradients; W and dW in C or Fortran order (a tied weight is the
    transpose of the embedding matrix), passed through as they are."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, D)).astype(dtype)
    W = np.asarray(rng.standard_normal((D, V)), dtype=dtype, order=w_order)
    b = rng.standard_normal(V).astype(dtype)
    dy = rng.standard_normal((M, V)).astype(dtype)
    xp = candidate.xp
    Wd = xp.asarray(W, order=w_order)
    label = f"{candidate.name} linear (M={M} D={D} V={V}, W {w_order}, dW {dw_order})"
    y = candidate.asnumpy(candidate.op("linear_forward")(layout(xp, x, kind), Wd,
                                                         layout(xp, b, kind)))
    ry = R.linear_forward(*(a.astype(np.float64) for a in (x, W, b)))
    assert_close(label + " y", y, ry, dtype=dtype, scale=rms(ry))
    dW = xp.asarray(np.full((D, V), np.nan, dtype), order=dw_order)
    db = xp.asarray(np.full(V, np.nan, dtype))
    dx, dW_out, db_out = candidate.op("linear_backward")(layout(xp, dy, kind),
                                                         layout(xp, x, kind), Wd, dW, db)
    assert dW_out is dW and db_out is db, f"{label}: dW / db are not the arrays given"
    rdx, rdW, rdb = R.linear_backward(dy.astype(np.float64), x.astype(np.float64),
                                      W.astype(np.float64), np.empty((D, V)), np.empty(V))
    for name, got, want in (("dx", dx, rdx), ("dW", dW, rdW), ("db", db, rdb)):
        got = candidate.asnumpy(got)
        check_dtype(f"{label} {name}", got, dtype)
        assert_close(f"{label} {name}", got, want, "grad", dtype=dtype, scale=rms(want))


# -------------------------------------------------------------------- softmax cross-entropy
@pytest.mark.parametrize("dtype", DTYPES)
@given(M=st.integers(0, 40), V=st.integers(1, 50), ignore=st.sampled_from([0.0, 0.3, 1.0]),
       scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]), grad=st.booleans(),
       label_dtype=st.sampled_from([np.int32, np.int64]), seed=st.integers(0, 2 ** 32 - 1),
       kind=st.sampled_from(LAYOUTS))
@example(M=1, V=1, ignore=0.0, scale=1.0, grad=True, label_dtype=np.int64, seed=0, kind="c")
@example(M=5, V=3, ignore=1.0, scale=1.0, grad=True, label_dtype=np.int64, seed=0, kind="c")
@example(M=0, V=4, ignore=0.0, scale=1.0, grad=True, label_dtype=np.int64, seed=0, kind="c")
@example(M=33, V=1000, ignore=0.3, scale=4.0, grad=True, label_dtype=np.int64, seed=3,
         kind="strided")
def test_softmax_cross_entropy_matches_reference(candidate, dtype, M, V, ignore, scale, grad,
                                                 label_dtype, seed, kind):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((M, V))).astype(dtype)
    t = rng.integers(0, V, M).astype(label_dtype)
    t[rng.random(M) < ignore] = -1
    loss, dx = caller(candidate, kind)("softmax_cross_entropy", x, t, grad)
    rloss, rdx = R.softmax_cross_entropy(x.astype(np.float64), t)
    label = f"{candidate.name} softmax_cross_entropy (M={M} V={V}, {int((t == -1).sum())} ignored)"
    assert np.shape(loss) == (), f"{label}: loss shape {np.shape(loss)}, expected ()"
    check_dtype(label + " loss", np.asarray(loss), dtype)
    assert_close(label + " loss", loss, rloss, "output", dtype=dtype)
    if (t == -1).all():
        assert float(loss) == 0.0, f"{label}: loss {loss} with every label ignored"
    if not grad:
        assert dx is None, f"{label}: dx must be None when grad=False"
        return
    check_dtype(label + " dx", dx, dtype)
    assert_close(label + " dx", dx, rdx, "grad", dtype=dtype)


# -------------------------------------------------------------------------------- embedding
@pytest.mark.parametrize("dtype", DTYPES)
@given(V=st.integers(1, 20), D=st.integers(0, 17), N=st.integers(0, 5), T=st.integers(0, 7),
       id_dtype=st.sampled_from([np.int32, np.int64, np.uint16]),
       seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(LAYOUTS))
@example(V=1, D=1, N=1, T=1, id_dtype=np.int64, seed=0, kind="c")
@example(V=2, D=9, N=5, T=7, id_dtype=np.int32, seed=1, kind="c")  # every id repeated often
@example(V=3, D=4, N=1, T=1, id_dtype=np.int64, seed=2, kind="zero_stride")
def test_embedding_matches_reference(candidate, dtype, V, D, N, T, id_dtype, seed, kind):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((V, D)).astype(dtype)
    idx = rng.integers(0, V, (N, T)).astype(id_dtype)
    out = caller(candidate, kind)("embedding_forward", W, idx)
    ref = R.embedding_forward(W, idx)
    check_dtype("embedding_forward", out, dtype)
    assert out.shape == (N, T, D)
    np.testing.assert_array_equal(out, ref, err_msg=f"{candidate.name} embedding_forward")

    dout = rng.standard_normal((N, T, D)).astype(dtype)
    dW = candidate.asarray(np.full((V, D), np.nan, dtype))  # must be overwritten, not added to
    xp = candidate.xp
    ret = candidate.op("embedding_backward")(layout(xp, dout, kind), layout(xp, idx, kind), dW)
    assert ret is dW, f"{candidate.name} embedding_backward must write into dW and return it"
    rdW = R.embedding_backward(dout.astype(np.float64), idx, np.empty((V, D)))
    got = candidate.asnumpy(dW)
    check_dtype("embedding_backward dW", got, dtype)
    assert_close(f"{candidate.name} embedding_backward dW (V={V} N={N} T={T})", got, rdW, "grad",
                 dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V,D,N,T", [(4, 3, 0, 3), (4, 3, 2, 0), (0, 3, 0, 2), (4, 0, 2, 3)])
def test_embedding_empty(candidate, dtype, V, D, N, T):
    """No ids, no rows (V=0, no ids) or no columns (D=0): empty outputs, dW zeroed."""
    W = np.ones((V, D), dtype)
    idx = np.zeros((N, T), np.int64)
    out = candidate.call("embedding_forward", W, idx)
    assert out.shape == (N, T, D)
    check_dtype("embedding_forward", out, dtype)
    dW = candidate.asarray(np.ones((V, D), dtype))
    candidate.op("embedding_backward")(candidate.asarray(np.ones((N, T, D), dtype)),
                                       candidate.asarray(idx), dW)
    want = R.embedding_backward(np.ones((N, T, D), dtype), idx, np.ones((V, D), dtype))
    np.testing.assert_array_equal(candidate.asnumpy(dW), want)


# ---------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.lists(st.integers(0, 30), min_size=1, max_size=3).map(tuple),
       ratio=st.one_of(st.sampled_from([0.0, 0.1, 0.5, 0.9]), st.floats(0.0, 0.95)),
       seed=st.integers(0, 2 ** 64 - 1), kind=st.sampled_from(LAYOUTS))
@example(shape=(3, 4), ratio=0.5, seed=2 ** 64 - 1, kind="c")
@example(shape=(1,), ratio=0.0, seed=0, kind="c")
@example(shape=(0, 5), ratio=0.5, seed=3, kind="c")
@example(shape=(20, 35, 30), ratio=0.5, seed=2 ** 63, kind="fortran")
@example(shape=(3, 7, 11), ratio=0.1, seed=2 ** 63 + 12345, kind="reversed")
def test_dropout_mask_bit_identical_to_reference(candidate, dtype, shape, ratio, seed, kind):
    x = np.random.default_rng(seed % 2 ** 32).standard_normal(shape).astype(dtype)
    y, mask = caller(candidate, kind)("dropout_forward", x, ratio, seed)
    ry, rmask = R.dropout_forward(x, ratio, seed)
    check_dtype("dropout mask", mask, dtype)
    check_dtype("dropout y", y, dtype)
    assert mask.shape == y.shape == x.shape
    diff = np.flatnonzero(mask.reshape(-1) != rmask.reshape(-1))
    assert diff.size == 0, (f"{candidate.name} dropout mask differs from the reference at "
                            f"{diff.size} of {mask.size} flat indices (first {diff[:5]}) for "
                            f"seed={seed} ratio={ratio!r}")
    assert_close(f"{candidate.name} dropout y", y, ry, dtype=dtype)


# ------------------------------------------------------------------------ non-finite inputs
def float_slots(name, args):
    """(argument, list element or None) of every float input among ``args`` of op ``name``."""
    op = contract.OPS_BY_NAME[name]
    return [(i, None) for i, a in enumerate(op.args) if a.kind == FLOAT] + \
        [(i, k) for i, a in enumerate(op.args) if a.kind == FLOATS for k in range(len(args[i]))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", contract.NAMES)
@given(seed=st.integers(0, 2 ** 32 - 1), value=st.sampled_from([np.nan, np.inf, -np.inf]),
       data=st.data())
def test_non_finite_inputs_propagate_like_the_reference(candidate, name, dtype, seed, value,
                                                        data):
    args = op_inputs(name, dtype, seed, T=3, N=2, H=5)
    slots = [(i, k) for i, k in float_slots(name, args)
             if (args[i] if k is None else args[i][k]).size]
    which, k = data.draw(st.sampled_from(slots), label="argument")
    target = args[which] if k is None else args[which][k]
    flat = data.draw(st.integers(0, target.size - 1), label="flat index")
    target.reshape(-1)[flat] = value

    def upcast(a):
        if isinstance(a, list):
            return [upcast(x) for x in a]
        return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == dtype else a
    ref_args = [upcast(a) for a in args]
    with np.errstate(all="ignore"):
        want = getattr(R, name)(*ref_args)
        got = candidate.call(name, *args)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    op = contract.OPS_BY_NAME[name]
    for (out_name, _), g, w in zip(op.returns, got, want):
        where = op.args[which].name + ("" if k is None else f"[{k}]")
        assert_close(f"{candidate.name} {name} {out_name} with {value} in {where}.flat[{flat}]",
                     g, w, kind_of(name), dtype=dtype)


def test_nan_in_recurrent_weight_and_scores(candidate, rec):
    """The two cases a fast-math kernel hides: NaN in Wh gives NaN states, a NaN score gives
    a NaN loss."""
    p = rec.inputs("lstm", 4, 2, 3, np.float32, 0)
    p["Wh"][1, 2] = np.nan
    out = rec.forward(candidate.call, "lstm", p)
    assert np.isnan(out["hs"][1:]).all(), f"{candidate.name}: NaN in Wh did not reach hs"
    x = np.zeros((3, 5), np.float32)
    x[1, 3] = np.nan
    loss, dx = candidate.call("softmax_cross_entropy", x, np.array([0, 1, 2]))
    assert np.isnan(loss) and np.isnan(dx[1]).all() and not np.isnan(dx[[0, 2]]).any()


# ------------------------------------------------------------- one-row operands (H = 1)
@pytest.mark.parametrize("view", ["zero_stride", "broadcast", "reversed"])
def test_one_row_recurrent_weight_views(candidate, view):
    """Wh of one row whose stride NumPy ignores (it still calls the view C-contiguous) must
    not reach BLAS as a leading dimension of 0 or less."""
    xw = np.random.default_rng(0).standard_normal((3, 2, 1))
    base = candidate.asarray(np.array([0.5, 0.7]))
    Wh = {"zero_stride": base[None, :1], "broadcast": candidate.xp.broadcast_to(base[:1], (1, 1)),
          "reversed": base[:1][None, :][::-1]}[view]
    got = candidate.asnumpy(candidate.op("rnn_forward")(candidate.asarray(xw), Wh,
                                                        candidate.asarray(np.zeros((2, 1)))))
    assert_close(f"{candidate.name} rnn_forward, Wh {view}", got,
                 R.rnn_forward(xw, np.array([[0.5]]), np.zeros((2, 1))))


def test_layer_with_one_row_recurrent_weight(candidate):
    """The layer-level form: TimeRNN with Wh = w[None, :] matches the reference backend."""
    if candidate.xp is not np:
        pytest.skip("layer-level check with NumPy arrays")
    from fastrnn.layers import TimeRNN
    rng = np.random.default_rng(1)
    Wx, b, xs = rng.standard_normal((3, 1)), np.zeros(1), rng.standard_normal((2, 4, 3))
    with fastrnn.backend.use(candidate.name):
        got = TimeRNN(Wx, np.array([0.5])[None, :], b).forward(xs)
    with fastrnn.backend.use("numpy"):
        want = TimeRNN(Wx, np.array([[0.5]]), b).forward(xs)
    assert_close(f"{candidate.name} TimeRNN with a one-row Wh view", got, want)
