"""Optimizers: update rules, in-place updates, tied weights by identity, clipping, state."""
import numpy as np
import pytest

from fastrnn.optim import (SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, clip_grads,
                           global_norm, make_optimizer, merge_tied, tie_groups)


def _arrays(seed=0, dtype=np.float64):
    r = np.random.default_rng(seed)
    return [r.standard_normal((3, 4)).astype(dtype), r.standard_normal(5).astype(dtype)]


def test_sgd_updates_in_place():
    params, grads = _arrays(0), _arrays(1)
    ids = [id(p) for p in params]
    expect = [p - 0.1 * g for p, g in zip(params, grads)]
    SGD(lr=0.1).update(params, grads)
    assert [id(p) for p in params] == ids
    for p, e in zip(params, expect):
        np.testing.assert_allclose(p, e, rtol=1e-15)


def test_momentum_adagrad_rmsprop_adam_match_their_formulas():
    g1, g2 = _arrays(1), _arrays(2)
    p0 = _arrays(0)
    for i in range(2):
        p, a, b = p0[i], g1[i], g2[i]
        # momentum: v1 = -lr a; p1 = p + v1; v2 = m v1 - lr b; p2 = p1 + v2
        v1 = -0.1 * a
        v2 = 0.9 * v1 - 0.1 * b
        want_m = p + v1 + v2
        h = a * a
        p1 = p - 0.1 * a / (np.sqrt(h) + 1e-7)
        h += b * b
        want_ada = p1 - 0.1 * b / (np.sqrt(h) + 1e-7)
        m, v = 0.1 * a, 0.001 * a * a
        q = p - 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-8)
        m, v = m + 0.1 * (b - m), v + 0.001 * (b * b - v)
        want_adam = q - 0.01 * np.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2) * m / (np.sqrt(v) + 1e-8)
        hr = 0.01 * a * a
        q = p - 0.1 * a / (np.sqrt(hr) + 1e-7)
        hr = 0.99 * hr + 0.01 * b * b
        want_rms = q - 0.1 * b / (np.sqrt(hr) + 1e-7)
        for opt, want in ((Momentum(0.1, 0.9), want_m), (AdaGrad(0.1), want_ada),
                          (Adam(0.01), want_adam), (RMSprop(0.1), want_rms)):
            x = [p.copy()]
            opt.update(x, [a])
            opt.update(x, [b])
            np.testing.assert_allclose(x[0], want, rtol=1e-12, err_msg=type(opt).__name__)


@pytest.mark.parametrize("cls", [SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_optimizers_minimize_a_quadratic(cls):
    target = np.arange(6, dtype=np.float64).reshape(2, 3)
    x = np.zeros((2, 3))
    lr = {SGD: 0.1, Momentum: 0.05, Nesterov: 0.05, AdaGrad: 1.0, RMSprop: 0.05, Adam: 0.1}[cls]
    opt = cls(lr=lr)
    for _ in range(400):
        opt.update([x], [x - target])
    np.testing.assert_allclose(x, target, atol=0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_keep_dtype(dtype):
    for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam):
        p, g = _arrays(0, dtype), _arrays(1, dtype)
        cls(lr=0.1).update(p, g)
        assert all(a.dtype == dtype for a in p)


# ------------------------------------------------------------------------------- tied weights
def test_tie_groups_by_identity_and_transpose():
    W = np.random.default_rng(0).standard_normal((5, 3))
    b = np.zeros(5)
    other = W.copy()  # equal values, different storage: not tied
    params = [W, b, W.T, other, W]
    assert tie_groups(params) == [[(0, False), (2, True), (4, False)], [(1, False)],
                                  [(3, False)]]
    # a square matrix and its transpose are still told apart from "the same view"
    S = np.ones((3, 3))
    assert tie_groups([S, S.T]) == [[(0, False), (1, True)]]
    assert tie_groups([S, S[:2]]) == [[(0, False)], [(1, False)]]


def test_merge_tied_sums_gradients():
    W = np.zeros((4, 3))
    gW, gWT, gb = np.ones((4, 3)), np.arange(12.0).reshape(3, 4), np.ones(2)
    up, ug = merge_tied([W, np.zeros(2), W.T], [gW, gb, gWT])
    assert up[0] is W and len(up) == 2
    np.testing.assert_array_equal(ug[0], gW + gWT.T)
    assert ug[1] is gb  # untied: passed through, no copy
    np.testing.assert_array_equal(gW, 1)  # the layers' gradient arrays are left alone


def test_tied_weight_is_updated_once_with_the_summed_gradient():
    W = np.ones((4, 3))
    params = [W, W.T]
    g1, g2 = np.full((4, 3), 0.5), np.full((3, 4), 0.25)
    SGD(lr=1.0).update(params, [g1, g2])
    np.testing.assert_allclose(W, 1 - 0.75)
    # Adam: one moment per storage, so a tied pair behaves like one parameter
    W1, W2 = np.ones((4, 3)), np.ones((4, 3))
    a, b = Adam(0.1), Adam(0.1)
    for _ in range(3):
        a.update([W1, W1.T], [g1, g2])
        b.update([W2], [g1 + g2.T])
    np.testing.assert_array_equal(W1, W2)
    assert len(a.slots["m"]) == 1


# ---------------------------------------------------------------------------------- clipping
def test_clip_grads_scales_to_global_norm():
    grads = [np.full((2, 2), 3.0), np.full(1, 4.0)]  # norm sqrt(36 + 16)
    norm = clip_grads(grads, 1.0)
    assert norm == pytest.approx(np.sqrt(52))
    assert global_norm(grads) == pytest.approx(1.0, rel=1e-5)
    small = [np.full(3, 0.1)]
    clip_grads(small, 1.0)
    np.testing.assert_array_equal(small[0], 0.1)


def test_clip_keeps_dtype_and_identity():
    g = np.full(4, 10.0, dtype=np.float32)
    gid = id(g)
    clip_grads([g], 1.0)
    assert g.dtype == np.float32 and id(g) == gid


def _in_layouts(arrays):
    """The same values as C-ordered, Fortran-ordered, strided and 0-d arrays (in that order)."""
    c, f, strided, scalar = (np.array(a) for a in arrays)
    out_f = np.asfortranarray(f)
    out_s = np.empty(strided.shape + (2,))[..., 0]
    out_s[...] = strided
    return [c, out_f, out_s, scalar]


@pytest.mark.parametrize("cls", [SGD, Momentum, Nesterov])
def test_updates_and_clip_take_params_and_grads_in_any_layout(cls):
    # one call of the backend's list ops for the arrays it can write in place (C- and
    # Fortran-ordered), the reference for a strided view: the same results as C copies
    r = np.random.default_rng(4)
    shapes = [(3, 4), (4, 5), (6,), ()]
    params = [np.array(r.standard_normal(s)) for s in shapes]
    grads = [np.array(r.standard_normal(s)) for s in shapes]
    want_p, want_g = [p.copy() for p in params], [g.copy() for g in grads]
    got_p, got_g = _in_layouts(params), _in_layouts(grads)
    assert not got_p[2].flags.c_contiguous and got_p[1].flags.f_contiguous
    a, b = cls(lr=0.1), cls(lr=0.1)
    for _ in range(2):
        assert clip_grads(got_g, 0.5) == pytest.approx(clip_grads(want_g, 0.5), rel=1e-12)
        a.update(got_p, got_g)
        b.update(want_p, want_g)
    for got, want in zip(got_p + got_g, want_p + want_g):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------- state
@pytest.mark.parametrize("cls", [Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_state_dict_roundtrip_continues_exactly(cls):
    r = np.random.default_rng(0)
    gs = [[r.standard_normal((3, 2))] for _ in range(6)]
    x1 = [np.ones((3, 2))]
    o1 = cls(lr=0.01)
    for g in gs:
        o1.update(x1, g)
    x2 = [np.ones((3, 2))]
    o2 = cls(lr=0.01)
    for g in gs[:3]:
        o2.update(x2, g)
    o3 = cls(lr=0.5)
    o3.load_state_dict(o2.state_dict())
    assert o3.lr == 0.01 and o3.t == 3
    for g in gs[3:]:
        o3.update(x2, g)
    np.testing.assert_array_equal(x1[0], x2[0])
    with pytest.raises(ValueError, match="is for"):
        SGD().load_state_dict(o2.state_dict())


def test_make_optimizer():
    assert isinstance(make_optimizer("Adam", 0.1), Adam)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="params but"):
        SGD().update([np.zeros(1)], [])
