"""Layer-level tests: the textbook API contract on every backend.

The layer assembles dWx, dWh, db and dx from the op's dA with large matrix products, so the
float64 finite-difference checks here test that assembly (and the GRU special cases), on top of
the op-level equivalence tests of test_backends.py.
"""
import numpy as np
import pytest

import fastrnn.backend
import fastrnn.layers as L
from tolerances import FD_EPS, assert_close, central_difference, to_numpy

CELLS = {  # name -> (class, G, extra kwargs)
    "rnn": (L.TimeRNN, 1, {}),
    "lstm": (L.TimeLSTM, 4, {}),
    "gru": (L.TimeGRU, 3, {}),
    "gru_ra": (L.TimeGRU, 3, {"reset_after": True}),
}


def make_layer(xp, cell, D, H, dtype, rng, stateful=False):
    cls, G, kw = CELLS[cell]
    Wx = rng.standard_normal((D, G * H)) / np.sqrt(D)
    Wh = rng.standard_normal((H, G * H)) / np.sqrt(H)
    b = 0.1 * rng.standard_normal(G * H)
    args = [xp.asarray(a.astype(dtype)) for a in (Wx, Wh, b)]
    if cell == "gru_ra":
        kw = dict(kw, b_hn=xp.asarray((0.1 * rng.standard_normal(H)).astype(dtype)))
    return cls(*args, stateful=stateful, **kw)


def set_state(layer, cell, xp, N, H, rng, dtype):
    h0 = xp.asarray(np.tanh(rng.standard_normal((N, H))).astype(dtype))
    if cell == "lstm":
        layer.set_state(h0, xp.asarray(rng.standard_normal((N, H)).astype(dtype)))
    else:
        layer.set_state(h0)


def numerical_grad(f, a, eps=FD_EPS):
    """Central differences of the scalar f() with respect to every element of NumPy array a."""
    g = np.zeros(a.shape)
    for i in np.ndindex(a.shape):
        g[i] = central_difference(f, a, i, eps)
    return g


@pytest.fixture
def use(backend):
    with fastrnn.backend.use(backend.name):
        yield backend


# ------------------------------------------------------------------ gradients of whole layers
@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_layer_gradients_match_finite_differences(use, cell, rng):
    if use.xp is not np:
        pytest.skip("finite differences perturb NumPy arrays in place")
    N, T, D, H = 2, 4, 3, 5
    layer = make_layer(np, cell, D, H, np.float64, rng)
    xs = rng.standard_normal((N, T, D))
    w = rng.standard_normal((N, T, H))
    st = np.random.default_rng(1)
    h0 = np.tanh(st.standard_normal((N, H)))
    c0 = st.standard_normal((N, H))

    def loss():
        layer.set_state(h0, c0) if cell == "lstm" else layer.set_state(h0)
        return float((layer.forward(xs) * w).sum())

    loss()
    dxs = layer.backward(w)
    for name, p, g in zip(["Wx", "Wh", "b", "b_hn"], layer.params, layer.grads):
        assert_close(f"{cell} d{name}", g, numerical_grad(loss, p), kind="fd")
    assert_close(f"{cell} dxs", dxs, numerical_grad(loss, xs), kind="fd")
    assert_close(f"{cell} dh", layer.dh, numerical_grad(loss, h0), kind="fd")
    if cell == "lstm":
        assert_close("lstm dc", layer.dc, numerical_grad(loss, c0), kind="fd")


@pytest.mark.parametrize("cell", CELLS)
def test_layers_match_reference_backend_float32(use, cell, rng):
    N, T, D, H = 3, 7, 6, 13
    xs = rng.standard_normal((N, T, D)).astype(np.float32)
    dhs = rng.standard_normal((N, T, H)).astype(np.float32)
    results = []
    for name in ("numpy", use.name):
        xp = use.xp if name == use.name else np
        layer = make_layer(xp, cell, D, H, np.float32, np.random.default_rng(5))
        set_state(layer, cell, xp, N, H, np.random.default_rng(6), np.float32)
        with fastrnn.backend.use(name):
            hs = layer.forward(xp.asarray(xs))
            dxs = layer.backward(xp.asarray(dhs))
        results.append([hs, dxs] + list(layer.grads) + [layer.dh])
    ref, got = results
    names = ["hs", "dxs", "dWx", "dWh", "db", "db_hn", "dh"][:len(ref) - 1] + ["dh"]
    for n, a, r in zip(names, got, ref):
        assert_close(f"{cell} {n}", a, r, kind="output" if n == "hs" else "grad")


def test_bidirectional_lstm_is_forward_plus_reversed_backward(use, rng):
    xp = use.xp
    N, T, D, H = 2, 5, 3, 4
    f = make_layer(xp, "lstm", D, H, np.float64, np.random.default_rng(1))
    r = make_layer(xp, "lstm", D, H, np.float64, np.random.default_rng(2))
    bi = L.TimeBiLSTM(*f.params, *r.params)
    xs = xp.asarray(rng.standard_normal((N, T, D)))
    out = bi.forward(xs)
    assert out.shape == (N, T, 2 * H)
    assert_close("bi fwd half", out[:, :, :H], f.forward(xs))
    assert_close("bi bwd half", out[:, :, H:], r.forward(xs[:, ::-1])[:, ::-1])
    dout = xp.asarray(rng.standard_normal((N, T, 2 * H)))
    dxs = bi.backward(dout)
    dx_expected = f.backward(dout[:, :, :H]) + r.backward(dout[:, ::-1, H:])[:, ::-1]
    assert_close("bi dxs", dxs, dx_expected, kind="grad")
    for i, (g, ge) in enumerate(zip(bi.grads, f.grads + r.grads)):
        assert_close(f"bi grad {i}", g, ge, kind="grad")
    assert len(bi.params) == 6 and bi.params[0] is f.params[0]


@pytest.mark.parametrize("cls", [L.TimeBiGRU, L.TimeBiRNN])
def test_other_bidirectional_layers_shapes(use, cls, rng):
    xp = use.xp
    G = 3 if cls is L.TimeBiGRU else 1
    D, H = 3, 4
    ws = [xp.asarray(rng.standard_normal(s)) for s in [(D, G * H), (H, G * H), (G * H,)] * 2]
    layer = cls(*ws)
    out = layer.forward(xp.asarray(rng.standard_normal((2, 5, D))))
    assert out.shape == (2, 5, 2 * H)
    assert layer.backward(xp.ones_like(out)).shape == (2, 5, D)


# ---------------------------------------------------------------------------- API contract
@pytest.mark.parametrize("cell", CELLS)
def test_grads_keep_their_identity(use, cell, rng):
    xp = use.xp
    layer = make_layer(xp, cell, 3, 4, np.float32, rng)
    ids = [id(g) for g in layer.grads]
    for _ in range(2):
        hs = layer.forward(xp.asarray(rng.standard_normal((2, 3, 3)).astype(np.float32)))
        layer.backward(xp.ones_like(hs))
    assert [id(g) for g in layer.grads] == ids
    assert all(float(abs(g).sum()) > 0 for g in layer.grads[:3])


@pytest.mark.parametrize("cell", CELLS)
def test_changing_the_returned_hs_does_not_change_backward(use, cell, rng):
    # As with the textbook layers: the caller owns what forward returns (the layer keeps its
    # own copy for backward).
    xp = use.xp
    layer = make_layer(xp, cell, 3, 4, np.float32, rng)
    xs = xp.asarray(rng.standard_normal((2, 5, 3)).astype(np.float32))
    dhs = xp.asarray(rng.standard_normal((2, 5, 4)).astype(np.float32))
    results = []
    for spoil in (False, True):
        hs = layer.forward(xs)
        if spoil:
            hs[...] = 7.0
        dx = layer.backward(dhs)
        results.append([to_numpy(a).copy() for a in [dx] + list(layer.grads)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cell", CELLS)
def test_stateful_two_halves_equal_one_call(use, cell, rng):
    xp = use.xp
    N, T, D, H, k = 2, 6, 3, 5, 2
    xs = xp.asarray(rng.standard_normal((N, T, D)))
    whole = make_layer(xp, cell, D, H, np.float64, np.random.default_rng(3), stateful=True)
    parts = make_layer(xp, cell, D, H, np.float64, np.random.default_rng(3), stateful=True)
    hs = whole.forward(xs)
    hs1 = parts.forward(xs[:, :k])
    hs2 = parts.forward(xs[:, k:])
    assert_close("first half", hs1, hs[:, :k])
    assert_close("second half", hs2, hs[:, k:])
    assert_close("carried h", parts.h, whole.h)

    # Backward, gradient on the second half only: its dxs equal the whole run's.
    dhs = xp.asarray(rng.standard_normal((N, T, H)))
    dhs[:, :k] = 0
    dx_whole = whole.backward(dhs)
    dx2 = parts.backward(dhs[:, k:])
    assert_close("dxs second half", dx2, dx_whole[:, k:], kind="grad")

    # Gradient on the first half only: whole run's grads equal the first half's.
    first = make_layer(xp, cell, D, H, np.float64, np.random.default_rng(3), stateful=True)
    first.forward(xs[:, :k])
    dhs = xp.asarray(rng.standard_normal((N, T, H)))
    dhs[:, k:] = 0
    whole.reset_state()
    whole.forward(xs)
    dx_whole = whole.backward(dhs)
    dx1 = first.backward(dhs[:, :k])
    assert_close("dxs first half", dx1, dx_whole[:, :k], kind="grad")
    for i, (g1, gw) in enumerate(zip(first.grads, whole.grads)):
        assert_close(f"grad {i}", g1, gw, kind="grad")
    assert_close("dh", first.dh, whole.dh, kind="grad")


def test_reset_and_non_stateful_start_from_zero(use, rng):
    xp = use.xp
    layer = make_layer(xp, "lstm", 3, 4, np.float64, rng, stateful=True)
    xs = xp.asarray(rng.standard_normal((2, 3, 3)))
    a = layer.forward(xs)
    b = layer.forward(xs)
    assert float(abs(a - b).max()) > 1e-6  # carried state changes the output
    layer.reset_state()
    assert_close("after reset", layer.forward(xs), a)
    layer.stateful = False
    assert_close("non-stateful", layer.forward(xs), a)
    assert_close("non-stateful again", layer.forward(xs), a)


def test_set_state_applies_to_next_forward_only(use, rng):
    xp = use.xp
    layer = make_layer(xp, "gru", 3, 4, np.float64, rng)
    xs = xp.asarray(rng.standard_normal((2, 3, 3)))
    base = layer.forward(xs)
    layer.set_state(xp.ones((2, 4)))
    assert float(abs(layer.forward(xs) - base).max()) > 1e-6
    assert_close("state used once", layer.forward(xs), base)


def test_weight_tying_through_transposed_view(use, rng):
    xp = use.xp
    V, D, N, T = 7, 4, 2, 3
    W = xp.asarray(rng.standard_normal((V, D)))
    embed = L.TimeEmbedding(W)
    affine = L.TimeAffine(W.T, xp.zeros(V))
    loss_layer = L.TimeSoftmaxWithLoss()
    ids = xp.asarray(rng.integers(0, V, (N, T)))
    loss = loss_layer.forward(affine.forward(embed.forward(ids)), ids)
    embed.backward(affine.backward(loss_layer.backward()))
    assert affine.params[0].base is W or affine.params[0] is not None
    assert affine.grads[0].shape == (D, V)
    # The tied gradient is the sum of both uses; update in place through the view
    total = to_numpy(embed.grads[0]) + to_numpy(affine.grads[0]).T
    before = to_numpy(W).copy()
    affine.params[0] -= 0.1 * affine.grads[0]
    embed.params[0] -= 0.1 * embed.grads[0]
    assert_close("tied update", W, before - 0.1 * total)
    assert float(loss) > 0


def test_tied_affine_gradient_matches_finite_differences(use, rng):
    if use.xp is not np:
        pytest.skip("finite differences perturb NumPy arrays in place")
    V, D, N, T = 5, 3, 2, 3
    W = rng.standard_normal((V, D))
    b = rng.standard_normal(V)
    embed, affine, sm = L.TimeEmbedding(W), L.TimeAffine(W.T, b), L.TimeSoftmaxWithLoss()
    ids = rng.integers(0, V, (N, T))
    ts = rng.integers(-1, V, (N, T))
    ts[0, 0] = 1

    def loss():
        return float(sm.forward(affine.forward(embed.forward(ids)), ts))

    loss()
    embed.backward(affine.backward(sm.backward()))
    tied = embed.grads[0] + affine.grads[0].T
    assert_close("tied dW", tied, numerical_grad(loss, W), kind="fd")
    assert_close("db", affine.grads[1], numerical_grad(loss, b), kind="fd")


def test_sigmoid_with_loss_gradient(use, rng):
    if use.xp is not np:
        pytest.skip("finite differences perturb NumPy arrays in place")
    xs = rng.standard_normal((3, 4)) * 3
    ts = rng.integers(0, 2, (3, 4))
    layer = L.TimeSigmoidWithLoss()
    loss = layer.forward(xs, ts)
    expected = -np.mean(ts * np.log(1 / (1 + np.exp(-xs))) + (1 - ts) * np.log(1 - 1 / (1 + np.exp(-xs))))
    assert_close("bce", loss, expected)
    assert_close("bce dx", layer.backward(), numerical_grad(lambda: float(layer.forward(xs, ts)), xs),
                 kind="fd")


def test_dropout_train_and_eval(use, rng):
    xp = use.xp
    xs = xp.asarray(rng.standard_normal((4, 50, 20)).astype(np.float32))
    d = L.TimeDropout(0.3, seed=1)
    y = d.forward(xs)
    mask = to_numpy(d.mask)
    assert set(np.unique(mask)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((mask == 0).mean() - 0.3) < 0.03
    assert_close("train out", y, to_numpy(xs) * mask)
    assert_close("train back", d.backward(xp.ones_like(xs)), mask)
    y2 = d.forward(xs)
    assert float(abs(to_numpy(y2) - to_numpy(y)).max()) > 0  # a new mask per call
    d.train_flg = False
    assert d.forward(xs) is xs
    assert d.backward(xs) is xs


def test_embedding_repeated_ids_accumulate(use, rng):
    xp = use.xp
    W = xp.asarray(rng.standard_normal((6, 3)).astype(np.float32))
    layer = L.TimeEmbedding(W)
    ids = xp.asarray(np.array([[1, 1, 2], [1, 5, 2]]))
    out = layer.forward(ids)
    assert_close("gather", out, to_numpy(W)[to_numpy(ids)])
    layer.backward(xp.ones((2, 3, 3), dtype=np.float32))
    g = to_numpy(layer.grads[0])
    assert_close("dW", g[:, 0], np.array([0, 3, 2, 0, 0, 1], dtype=np.float32), kind="grad")


def test_float32_stays_float32(use, rng):
    xp = use.xp
    layer = make_layer(xp, "lstm", 3, 4, np.float32, rng)
    hs = layer.forward(xp.asarray(rng.standard_normal((2, 3, 3)).astype(np.float32)))
    assert hs.dtype == np.float32
    assert layer.backward(hs).dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads)


@pytest.mark.parametrize("N,T", [(0, 4), (3, 0)])
@pytest.mark.parametrize("cell", CELLS)
def test_empty_batch_or_sequence(use, cell, N, T, rng):
    xp = use.xp
    layer = make_layer(xp, cell, 3, 4, np.float32, rng, stateful=True)
    hs = layer.forward(xp.zeros((N, T, 3), dtype=np.float32))
    assert hs.shape == (N, T, 4)
    dxs = layer.backward(xp.zeros((N, T, 4), dtype=np.float32))
    assert dxs.shape == (N, T, 3)
    assert all(float(abs(g).sum()) == 0 for g in layer.grads)
    assert layer.dh.shape == (N, 4)


def test_noncontiguous_inputs(use, rng):
    xp = use.xp
    layer = make_layer(xp, "lstm", 3, 4, np.float64, rng)
    big = xp.asarray(rng.standard_normal((3, 8, 6)))
    xs = big[:, ::2, ::2]  # strided view (N, T, D) = (3, 4, 3)
    a = layer.forward(xs)
    assert_close("strided input", a, layer.forward(xp.ascontiguousarray(xs)))
    xt = xp.asarray(rng.standard_normal((4, 3, 3))).transpose(1, 0, 2)
    assert_close("transposed input", layer.forward(xt), layer.forward(xp.ascontiguousarray(xt)))


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_raise_clear_errors(use, rng):
    xp = use.xp
    layer = make_layer(xp, "lstm", 3, 4, np.float32, rng, stateful=True)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(xp.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, T, D\).*got shape \(2, 3\)"):
        layer.forward(xp.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(2, 5, 3\).*got \(2, 5, 4\)"):
        layer.forward(xp.zeros((2, 5, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="float32.*got float64"):
        layer.forward(xp.zeros((2, 5, 3)))
    bad = np.zeros((2, 5, 3), dtype=np.float32)
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        layer.forward(xp.asarray(bad))
    layer.forward(xp.zeros((2, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="batch size 2.*N=3"):
        layer.forward(xp.zeros((3, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, T, H\).*\(2, 5, 4\)"):
        layer.backward(xp.zeros((2, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, H\)"):
        layer.set_state(xp.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Wh must have shape"):
        L.TimeLSTM(xp.zeros((3, 16)), xp.zeros((4, 12)), xp.zeros(16))
    with pytest.raises(ValueError, match=r"b must have shape"):
        L.TimeRNN(xp.zeros((3, 4)), xp.zeros((4, 4)), xp.zeros(5))

    embed = L.TimeEmbedding(xp.zeros((5, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 5\).*found 5"):
        embed.forward(xp.asarray(np.array([[0, 5]])))
    with pytest.raises(TypeError, match="integer"):
        embed.forward(xp.zeros((1, 2), dtype=np.float32))
    sm = L.TimeSoftmaxWithLoss()
    with pytest.raises(ValueError, match=r"\[-1, 3\).*found -2"):
        sm.forward(xp.zeros((1, 2, 3), dtype=np.float32), xp.asarray(np.array([[0, -2]])))
    with pytest.raises(ValueError, match=r"xs.shape\[:-1\]"):
        sm.forward(xp.zeros((1, 2, 3), dtype=np.float32), xp.asarray(np.array([[0, 1, 1]])))
    with pytest.raises(ValueError, match="dropout_ratio"):
        L.TimeDropout(1.0)
    aff = L.TimeAffine(xp.zeros((3, 2)), xp.zeros(2))
    with pytest.raises(ValueError, match=r"\(\.\.\., D\) with D = 3"):
        aff.forward(xp.zeros((1, 2, 4)))


def test_softmax_all_ignored_and_one_hot(use, rng):
    xp = use.xp
    sm = L.TimeSoftmaxWithLoss()
    xs = xp.asarray(rng.standard_normal((2, 3, 4)))
    assert float(sm.forward(xs, xp.full((2, 3), -1))) == 0.0
    assert float(abs(sm.backward()).max()) == 0.0
    ids = rng.integers(0, 4, (2, 3))
    onehot = np.eye(4)[ids]
    a = float(sm.forward(xs, xp.asarray(ids)))
    assert a == pytest.approx(float(sm.forward(xs, xp.asarray(onehot))))


# ------------------------------------------------------------------- errors of the right kind
def test_bidirectional_backward_needs_3d_dhs(use, rng):
    xp = use.xp
    f, b = (make_layer(xp, "lstm", 3, 4, np.float64, rng) for _ in range(2))
    bi = L.TimeBiLSTM(*f.params, *b.params)
    bi.forward(xp.asarray(rng.standard_normal((2, 5, 3))))
    with pytest.raises(ValueError, match=r"TimeBiLSTM: dhs must be 3-D \(N, T, H1 \+ H2\)"):
        bi.backward(xp.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"H1 \+ H2 = 8, got \(2, 5, 7\)"):
        bi.backward(xp.zeros((2, 5, 7)))
    assert bi.backward(xp.zeros((2, 5, 8))).shape == (2, 5, 3)


@pytest.mark.parametrize("make,msg", [
    (lambda xp: L.TimeLSTM(xp.zeros((3, 0)), xp.zeros((0, 0)), xp.zeros(0)), "H must be >= 1"),
    (lambda xp: L.TimeRNN(xp.zeros((0, 4)), xp.zeros((4, 4)), xp.zeros(4)), "D must be >= 1"),
    (lambda xp: L.TimeGRU(xp.zeros((0, 0)), xp.zeros((0, 0)), xp.zeros(0)),
     "D and H must be >= 1"),
    (lambda xp: L.TimeEmbedding(xp.zeros((0, 3))), "V must be >= 1"),
    (lambda xp: L.TimeEmbedding(xp.zeros((3, 0))), "D must be >= 1"),
    (lambda xp: L.TimeAffine(xp.zeros((3, 0)), xp.zeros(0)), "M must be >= 1"),
])
def test_zero_sizes_rejected_by_constructors(use, make, msg):
    with pytest.raises(ValueError, match=msg):
        make(use.xp)


def test_sigmoid_loss_on_empty_batch_is_zero_without_warnings(use):
    import warnings
    xp = use.xp
    for layer in (L.TimeSigmoidWithLoss(), L.TimeSoftmaxWithLoss()):
        xs = xp.zeros((0, 3, 4))
        ts = xp.zeros((0, 3, 4)) if isinstance(layer, L.TimeSigmoidWithLoss) else \
            xp.zeros((0, 3), dtype=np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = layer.forward(xs, ts)
            dx = layer.backward()
        assert float(loss) == 0.0, type(layer).__name__
        assert dx.shape == (0, 3, 4)


def test_dropout_backward_before_forward_and_bad_seed():
    d = L.TimeDropout(0.5, seed=1)
    with pytest.raises(RuntimeError, match="TimeDropout.backward called before forward"):
        d.backward(np.ones((2, 3, 4)))
    for seed in (-1, 1.5, "x"):
        with pytest.raises(ValueError, match="TimeDropout: seed must be None or an integer"):
            L.TimeDropout(0.5, seed=seed)
    d.train_flg = False
    x = np.ones((2, 3, 4))
    assert d.backward(d.forward(x)) is x  # evaluation: identity both ways


def test_mixed_weight_dtypes_name_every_dtype():
    f32, f64 = np.zeros((3, 16), np.float32), np.zeros((3, 16), np.float64)
    with pytest.raises(TypeError, match="^TimeLSTM: Wx is float64 while Wh and b are float32"):
        L.TimeLSTM(f64, np.zeros((4, 16), np.float32), np.zeros(16, np.float32))
    with pytest.raises(TypeError, match="^TimeLSTM: Wh is float64 while Wx and b are float32"):
        L.TimeLSTM(f32, np.zeros((4, 16), np.float64), np.zeros(16, np.float32))
    with pytest.raises(TypeError, match="TimeAffine: W is float32 while b is float64"):
        L.TimeAffine(np.zeros((3, 2), np.float32), np.zeros(2))


def test_embedding_errors_name_the_layer(use):
    xp = use.xp
    e = L.TimeEmbedding(xp.zeros((5, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"^TimeEmbedding: xs must lie in \[0, 5\)"):
        e.forward(xp.asarray(np.array([[0, -1]])))
    with pytest.raises(TypeError, match="^TimeEmbedding: xs must be an integer array"):
        e.forward(xp.zeros((1, 2), dtype=np.float32))
    e.forward(xp.asarray(np.array([[0, 4]])))
    with pytest.raises(ValueError, match=r"^TimeEmbedding: dout must have shape"):
        e.backward(xp.zeros((1, 2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="^TimeEmbedding: dout must have dtype float32"):
        e.backward(xp.zeros((1, 2, 2)))


@pytest.mark.parametrize("reduction", ["mean", "sum_over_time"])
def test_softmax_loss_reduction(use, rng, reduction):
    xp = use.xp
    xs = xp.asarray(rng.standard_normal((3, 5, 7)))
    ts = rng.integers(0, 7, (3, 5))
    ts[0, 1] = -1  # 14 counted labels over 3 rows
    ts = xp.asarray(ts)
    mean = L.TimeSoftmaxWithLoss()
    layer = L.TimeSoftmaxWithLoss(reduction)
    lm, l = float(mean.forward(xs, ts)), float(layer.forward(xs, ts))
    scale = 14 / 3 if reduction == "sum_over_time" else 1.0
    assert l == pytest.approx(lm * scale, rel=1e-12)
    assert float(layer.token_loss) == pytest.approx(lm, rel=1e-12)
    assert_close("dx", layer.backward(), mean.backward() * scale)
    assert_close("dx * 2", layer.backward(2.0), mean.backward() * 2 * scale)
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.TimeSoftmaxWithLoss("sum")


def test_softmax_loss_without_gradient(use, rng):
    xp = use.xp
    xs = xp.asarray(rng.standard_normal((2, 3, 4)))
    ts = xp.asarray(rng.integers(0, 4, (2, 3)))
    layer = L.TimeSoftmaxWithLoss()
    a = float(layer.forward(xs, ts))
    assert float(layer.forward(xs, ts, grad=False)) == pytest.approx(a, rel=1e-12)
    with pytest.raises(RuntimeError, match="grad=False"):
        layer.backward()
