"""The NumPy reference (the oracle of every backend) checked on its own.

- every recurrence: the documented one-step equations and gate layouts (fastrnn.reference.cells),
  T steps == T chained single steps, stateful carry (two calls on the halves == one call on the
  whole), and forward + backward against float64 central finite differences of
  ``L = sum(hs * Wout)`` with respect to xw, Wh, h0 (c0, b_hn). The Wh gradient is assembled with
  the layer formulas of fastrnn.layers from what the backward op returns;
- softmax cross-entropy against an independent log-sum-exp and finite differences, ignored
  labels, all labels ignored;
- embedding gather and scatter-add (repeated ids accumulate, dW overwritten in place);
- dropout masks: values, keep fraction, determinism per seed, seeds differ, flat-index purity.
"""
import numpy as np
import pytest
from scipy.special import expit, logsumexp

import fastrnn.reference as R
from fastrnn import contract
from tolerances import FD_EPS, assert_close

CELLS = contract.CELLS


def call(name, *args):
    return getattr(R, name)(*args)


def numeric_grad(f, p, key, eps=FD_EPS):
    """Central finite differences of the scalar f(p) with respect to every element of p[key]."""
    x = p[key]
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        fp = f(p)
        x[idx] = old - eps
        fm = f(p)
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def prev_states(h0, hs):
    """h_{t-1} for every step: (T, N, H)."""
    return np.concatenate([h0[None], hs[:-1]], axis=0)


def layer_dWh(cell, p, fwd, bwd):
    """dWh from the backward op's outputs, with the layer formulas of fastrnn.layers."""
    H = p["Wh"].shape[0]
    hprev = prev_states(p["h0"], fwd["hs"])
    dA = bwd["dA"]
    if cell == "gru":  # reset before: the candidate's recurrent product sees r*h
        return np.concatenate([np.einsum("tnh,tng->hg", hprev, dA[..., :2 * H]),
                               np.einsum("tnh,tng->hg", fwd["rh"], dA[..., 2 * H:])], axis=1)
    if cell == "gru_ra":  # reset after: the candidate's recurrent gradient is dhn
        drec = np.concatenate([dA[..., :2 * H], bwd["dhn"]], axis=-1)
        return np.einsum("tnh,tng->hg", hprev, drec)
    return np.einsum("tnh,tng->hg", hprev, dA)


# --------------------------------------------------------------------- one step, by the book
def sig(x):
    return expit(x)


@pytest.mark.parametrize("zero_state", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_one_step_matches_documented_equations(rec, cell, zero_state):
    N, H = 3, 5
    p = rec.inputs(cell, 1, N, H, seed=11, zero_state=zero_state)
    out = rec.forward(call, cell, p)
    x, Wh, h = p["xw"][0], p["Wh"], p["h0"]
    if cell == "rnn":
        assert_close("hs", out["hs"][0], np.tanh(x + h @ Wh))
        return
    if cell == "lstm":
        a = x + h @ Wh
        f, g = sig(a[:, :H]), np.tanh(a[:, H:2 * H])
        i, o = sig(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])
        c = f * p["c0"] + g * i
        assert_close("cs", out["cs"][0], c)
        assert_close("hs", out["hs"][0], o * np.tanh(c))
        assert_close("acts [f|g|i|o]", out["acts"][0], np.concatenate([f, g, i, o], axis=1))
        return
    z = sig(x[:, :H] + h @ Wh[:, :H])
    r = sig(x[:, H:2 * H] + h @ Wh[:, H:2 * H])
    if cell == "gru":
        ht = np.tanh(x[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:])
        assert_close("rh", out["rh"][0], r * h)
        assert_close("hs", out["hs"][0], (1 - z) * h + z * ht)
        assert_close("acts [z|r|h~]", out["acts"][0], np.concatenate([z, r, ht], axis=1))
    else:
        hn = h @ Wh[:, 2 * H:] + p["b_hn"]
        n = np.tanh(x[:, 2 * H:] + r * hn)
        assert_close("hn", out["hn"][0], hn)
        assert_close("hs", out["hs"][0], (1 - z) * n + z * h)
        assert_close("acts [z|r|n]", out["acts"][0], np.concatenate([z, r, n], axis=1))


@pytest.mark.parametrize("cell", CELLS)
def test_T_steps_equal_chained_single_steps(rec, cell):
    T, N, H = 5, 2, 4
    p = rec.inputs(cell, T, N, H, seed=3)
    whole = rec.forward(call, cell, p)
    state = {k: p[k] for k in rec.STATE[cell]}
    for t in range(T):
        step = rec.forward(call, cell, dict(p, xw=p["xw"][t:t + 1], **state))
        for k, v in step.items():
            assert_close(f"{k}[{t}]", v[0], whole[k][t])
        state = rec.final_state(cell, step)


# ------------------------------------------------------------------------- stateful carry
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,k", [(2, 1), (5, 2), (6, 5)])
def test_stateful_carry_forward(rec, cell, T, k):
    p = rec.inputs(cell, T, 3, 4, seed=T * 10 + k)
    whole = rec.forward(call, cell, p)
    first = rec.forward(call, cell, dict(p, xw=p["xw"][:k]))
    second = rec.forward(call, cell, dict(p, xw=p["xw"][k:], **rec.final_state(cell, first)))
    for name in whole:
        assert_close(name, np.concatenate([first[name], second[name]]), whole[name])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,k", [(2, 1), (5, 2)])
def test_stateful_carry_backward(rec, cell, T, k, rng):
    """Backward over the whole == backward of the second half, its dh0 fed into the first half
    (LSTM: the cell gradient cannot be fed back through the op, so only the second half)."""
    p = rec.inputs(cell, T, 3, 4, seed=T * 10 + k)
    whole = rec.forward(call, cell, p)
    dhs = rng.standard_normal(whole["hs"].shape)
    gw = rec.backward(call, cell, p, whole, dhs)
    first = rec.forward(call, cell, dict(p, xw=p["xw"][:k]))
    p2 = dict(p, xw=p["xw"][k:], **rec.final_state(cell, first))
    second = rec.forward(call, cell, p2)
    g2 = rec.backward(call, cell, p2, second, dhs[k:])
    assert_close("dA[k:]", g2["dA"], gw["dA"][k:], "grad")
    if cell == "lstm":
        return
    dhs1 = dhs[:k].copy()
    dhs1[-1] += g2["dh0"]
    g1 = rec.backward(call, cell, dict(p, xw=p["xw"][:k]), first, dhs1)
    assert_close("dA[:k]", g1["dA"], gw["dA"][:k], "grad")
    assert_close("dh0", g1["dh0"], gw["dh0"], "grad")
    if cell == "gru_ra":
        assert_close("dhn", np.concatenate([g1["dhn"], g2["dhn"]]), gw["dhn"], "grad")


# ------------------------------------------------------------- recurrences vs finite diffs
FD_CASES = [  # T, N, H, zero_state, scale, wscale
    (1, 1, 1, False, 1.0, 1.0),
    (2, 1, 3, True, 1.0, 1.0),
    (3, 2, 4, False, 1.0, 2.0),
    (4, 3, 2, False, 3.0, 1.0),
    (5, 2, 3, True, 0.5, 1.5),
]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: "T{}N{}H{}{}-s{}w{}".format(
    c[0], c[1], c[2], "-zero" if c[3] else "", c[4], c[5]))
@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_gradients_vs_finite_differences(rec, cell, case):
    T, N, H, zero_state, scale, wscale = case
    p = rec.inputs(cell, T, N, H, seed=sum(case[:3]) * 7 + len(cell), scale=scale,
                   wscale=wscale, zero_state=zero_state)
    Wout = np.random.default_rng(T * N * H).standard_normal((T, N, H))

    def loss(q):
        return float(np.sum(rec.forward(call, cell, q)["hs"] * Wout))

    fwd = rec.forward(call, cell, p)
    bwd = rec.backward(call, cell, p, fwd, Wout)
    for k, v in fwd.items():
        assert v.dtype == np.float64, f"{k} dtype {v.dtype}"
    for k, v in bwd.items():
        assert v.dtype == np.float64, f"{k} dtype {v.dtype}"

    assert_close("dxw (= dA)", bwd["dA"], numeric_grad(loss, p, "xw"), "fd")
    assert_close("dh0", bwd["dh0"], numeric_grad(loss, p, "h0"), "fd")
    assert_close("dWh (layer formula)", layer_dWh(cell, p, fwd, bwd),
                 numeric_grad(loss, p, "Wh"), "fd")
    if cell == "lstm":
        assert_close("dc0", bwd["dc0"], numeric_grad(loss, p, "c0"), "fd")
    if cell == "gru_ra":
        assert_close("db_hn (= sum dhn)", bwd["dhn"].sum(axis=(0, 1)),
                     numeric_grad(loss, p, "b_hn"), "fd")


@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_backward_is_linear_in_dhs(rec, cell, rng):
    """dA, dh0 are linear in dhs: zero dhs gives zero gradients, and scaling scales them."""
    p = rec.inputs(cell, 3, 2, 3, seed=5)
    fwd = rec.forward(call, cell, p)
    zero = rec.backward(call, cell, p, fwd, np.zeros_like(fwd["hs"]))
    for k, v in zero.items():
        assert not v.any(), f"{k} is not zero for zero dhs"
    dhs = rng.standard_normal(fwd["hs"].shape)
    g1 = rec.backward(call, cell, p, fwd, dhs)
    g3 = rec.backward(call, cell, p, fwd, 3 * dhs)
    for k in g1:
        assert_close(k, g3[k], 3 * g1[k], "grad")


# ------------------------------------------------------------------ softmax cross-entropy
def independent_loss(x, t):
    valid = t != -1
    if not valid.any():
        return 0.0
    logp = x[valid, t[valid]] - logsumexp(x[valid], axis=1)
    return -logp.mean()


SOFTMAX_CASES = [  # M, V, labels (None: random valid)
    (1, 1, None),
    (4, 5, None),
    (6, 7, [0, -1, 6, 3, -1, 2]),
    (3, 4, [-1, -1, -1]),
    (5, 3, [2, 2, -1, 0, 1]),
]


@pytest.mark.parametrize("M,V,labels", SOFTMAX_CASES)
def test_softmax_cross_entropy_vs_finite_differences(M, V, labels, rng):
    x = 2 * rng.standard_normal((M, V))
    t = rng.integers(0, V, M) if labels is None else np.array(labels)
    loss, dx = R.softmax_cross_entropy(x, t)
    assert loss.shape == () and loss.dtype == np.float64
    assert dx.shape == (M, V) and dx.dtype == np.float64
    assert_close("loss", loss, independent_loss(x, t))
    num = numeric_grad(lambda q: float(R.softmax_cross_entropy(q["x"], t, False)[0]),
                       {"x": x}, "x")
    assert_close("dx", dx, num, "fd")
    assert not dx[t == -1].any(), "rows with label -1 must have zero gradient"
    if (t == -1).all():
        assert loss == 0 and not dx.any()
    loss2, dx2 = R.softmax_cross_entropy(x, t, grad=False)
    assert dx2 is None
    assert_close("loss (grad=False)", loss2, loss)


def test_softmax_cross_entropy_ignored_rows_do_not_count(rng):
    x = rng.standard_normal((6, 4))
    t = np.array([1, -1, 3, -1, 0, 2])
    loss = R.softmax_cross_entropy(x, t)[0]
    x2 = x.copy()
    x2[t == -1] = 1e3 * rng.standard_normal((2, 4))
    assert_close("loss", R.softmax_cross_entropy(x2, t)[0], loss)
    # the mean is over the 4 labelled rows, not over all 6
    assert_close("loss", loss, R.softmax_cross_entropy(x[t != -1], t[t != -1])[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_large_logits_and_dtype(dtype, rng):
    x = (500 * rng.standard_normal((8, 6))).astype(dtype)
    t = rng.integers(-1, 6, 8)
    t[0] = 2
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dx = R.softmax_cross_entropy(x, t)
    assert loss.dtype == dtype and dx.dtype == dtype
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert_close("loss", loss, independent_loss(x.astype(np.float64), t), dtype=dtype)
    ref = R.softmax_cross_entropy(x.astype(np.float64), t)[1]
    assert_close("dx", dx, ref, "grad", dtype=dtype)


# -------------------------------------------------------------------------------- embedding
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_forward_gathers_rows(dtype, rng):
    W = rng.standard_normal((7, 5)).astype(dtype)
    idx = rng.integers(0, 7, (3, 4))
    out = R.embedding_forward(W, idx)
    assert out.shape == (3, 4, 5) and out.dtype == dtype
    for n, t in np.ndindex(idx.shape):
        np.testing.assert_array_equal(out[n, t], W[idx[n, t]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward_accumulates_repeated_ids(dtype, rng):
    V, D = 6, 3
    idx = np.array([[0, 2, 2, 5], [2, 0, 4, 2]])  # 2 four times, 0 twice, 1 and 3 never
    dout = rng.standard_normal((2, 4, D)).astype(dtype)
    dW = np.full((V, D), 123.0, dtype=dtype)  # overwritten, not accumulated into
    ret = R.embedding_backward(dout, idx, dW)
    assert ret is dW, "embedding_backward must write into dW and return it"
    expected = np.zeros((V, D))
    for n, t in np.ndindex(idx.shape):
        expected[idx[n, t]] += dout[n, t]
    assert_close("dW", dW, expected, "grad")
    assert not dW[[1, 3]].any()


def test_embedding_backward_vs_finite_differences(rng):
    V, D = 5, 4
    W = rng.standard_normal((V, D))
    idx = rng.integers(0, V, (3, 6))
    G = rng.standard_normal((3, 6, D))
    dW = R.embedding_backward(G, idx, np.empty_like(W))
    num = numeric_grad(lambda q: float(np.sum(R.embedding_forward(q["W"], idx) * G)), {"W": W}, "W")
    assert_close("dW", dW, num, "fd")


# ---------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_dropout_mask_values_and_keep_fraction(dtype, ratio, rng):
    x = rng.standard_normal((200, 500)).astype(dtype)
    y, mask = R.dropout_forward(x, ratio, 1234)
    assert y.shape == mask.shape == x.shape and y.dtype == mask.dtype == dtype
    scale = dtype(1.0 / (1.0 - ratio))
    assert np.isin(mask, np.array([0, scale], dtype=dtype)).all(), \
        f"mask values {np.unique(mask)[:5]} not in {{0, {scale}}}"
    np.testing.assert_array_equal(y, x * mask)
    keep = (mask != 0).mean()
    n = x.size
    slack = 5 * np.sqrt(ratio * (1 - ratio) / n) + 2.0 ** -24
    assert abs(keep - (1 - ratio)) < slack, f"keep fraction {keep} for ratio {ratio}"


def test_dropout_ratio_zero_keeps_everything(rng):
    x = rng.standard_normal((4, 5))
    y, mask = R.dropout_forward(x, 0.0, 7)
    assert (mask == 1).all()
    np.testing.assert_array_equal(y, x)


def test_dropout_deterministic_per_seed_and_seeds_differ():
    x = np.ones((50, 40))
    m1 = R.dropout_forward(x, 0.5, 42)[1]
    np.testing.assert_array_equal(R.dropout_forward(x, 0.5, 42)[1], m1)
    for other in (43, 0, 2 ** 63, 2 ** 64 - 1):
        m2 = R.dropout_forward(x, 0.5, other)[1]
        assert (m1 != m2).any(), f"seeds 42 and {other} give the same mask"
        # neighbouring seeds are uncorrelated: agreement ~ p^2 + (1-p)^2 = 0.5
        agree = (m1 == m2).mean()
        assert abs(agree - 0.5) < 5 * np.sqrt(0.25 / x.size), f"seed {other}: agreement {agree}"


def test_dropout_mask_is_a_function_of_seed_and_flat_index():
    """The documented contract that makes every backend draw the same mask: the keep decision
    of element k depends only on (seed, k), not on the shape or the dtype."""
    big = R.dropout_forward(np.ones(600), 0.3, 99)[1]
    shaped = R.dropout_forward(np.ones((4, 5, 6), np.float32), 0.3, 99)[1]
    np.testing.assert_array_equal(shaped.reshape(-1) != 0, big[:120] != 0)
    short = R.dropout_forward(np.ones(17), 0.3, 99)[1]
    np.testing.assert_array_equal(short, big[:17])
