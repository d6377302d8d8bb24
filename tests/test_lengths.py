"""Variable-length batches through the layers and models.

The oracle is the same layer run on each row alone, cut to its own length (whose correctness
the rest of the suite establishes), and, where torch is installed, ``torch.nn`` modules on
``pack_padded_sequence`` batches with the same weights. Everything is float64, so the
comparisons use the float64 rows of the tolerance table.
"""
import numpy as np
import pytest

import fastrnn.backend
import fastrnn.layers as L
from fastrnn.data import pad_sequences
from fastrnn.interop import layers_from_torch, to_torch, torch_to_fastrnn
from fastrnn.models import AttentionSeq2seq, PeekySeq2seq, Seq2seq
from test_layers import CELLS, make_layer
from tolerances import assert_close, to_numpy

# Rows of every kind: full, empty, short, one step, one short of full.
T = 6
LENGTHS = np.array([T, 0, 3, 1, T - 1])
N = len(LENGTHS)
D, H = 3, 4


@pytest.fixture
def xp(backend):
    with fastrnn.backend.use(backend.name):
        yield backend.xp


def _states(cell, rng, n=N):
    h0 = np.tanh(rng.standard_normal((n, H)))
    return (h0, rng.standard_normal((n, H))) if cell == "lstm" else (h0,)


def _set(layer, xp, states, rows=slice(None)):
    layer.set_state(*(xp.asarray(s[rows]) for s in states))


def _state_names(cell):
    return ("h", "c") if cell == "lstm" else ("h",)


def _check_padding_and_grads(label, out, dxs, grads, row_sums):
    """Padding has zero outputs and input gradients, and (since the padded dhs were random)
    the parameter gradients equal the sums of the rows run alone."""
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]
    assert not out[pad].any() and not dxs[pad].any()
    for i, (g, ge) in enumerate(zip(grads, row_sums)):
        assert_close(f"{label} param grad {i}", g, ge, kind="grad")


# ------------------------------------------------------------------------ one direction
@pytest.mark.parametrize("cell", CELLS)
def test_padded_batch_equals_each_row_alone(xp, cell, rng):
    layer = make_layer(xp, cell, D, H, np.float64, rng)
    alone = make_layer(xp, cell, D, H, np.float64, rng)
    for p, q in zip(alone.params, layer.params):
        p[...] = q
    xs = rng.standard_normal((N, T, D))
    dhs = rng.standard_normal((N, T, H))
    states = _states(cell, rng)

    _set(layer, xp, states)
    hs = to_numpy(layer.forward(xp.asarray(xs), LENGTHS))
    finals = {s: to_numpy(getattr(layer, s)) for s in _state_names(cell)}
    dxs = to_numpy(layer.backward(xp.asarray(dhs)))

    grads = [np.zeros(p.shape) for p in layer.params]
    for n, ln in enumerate(LENGTHS):
        _set(alone, xp, states, slice(n, n + 1))
        assert_close(f"{cell} hs row {n}", hs[n:n + 1, :ln],
                     alone.forward(xp.asarray(xs[n:n + 1, :ln])))
        for s in _state_names(cell):
            assert_close(f"{cell} final {s} row {n}", finals[s][n:n + 1], getattr(alone, s))
        assert_close(f"{cell} dxs row {n}", dxs[n:n + 1, :ln],
                     alone.backward(xp.asarray(dhs[n:n + 1, :ln])), kind="grad")
        for s in _state_names(cell):
            assert_close(f"{cell} d{s} row {n}", to_numpy(getattr(layer, "d" + s))[n:n + 1],
                         getattr(alone, "d" + s), kind="grad")
        for g, ga in zip(grads, alone.grads):
            g += to_numpy(ga)
    _check_padding_and_grads(cell, hs, dxs, layer.grads, grads)


@pytest.mark.parametrize("cell", CELLS)
def test_stateful_carry_is_each_rows_state_at_its_own_end(xp, cell, rng):
    """Two batches through a stateful layer equal each row's two chunks run alone, one after
    the other; a row of length 0 in the first batch starts the second from zeros."""
    layer = make_layer(xp, cell, D, H, np.float64, rng, stateful=True)
    alone = make_layer(xp, cell, D, H, np.float64, rng, stateful=True)
    for p, q in zip(alone.params, layer.params):
        p[...] = q
    lengths = [LENGTHS, LENGTHS[::-1].copy()]
    xs = [rng.standard_normal((N, T, D)) for _ in lengths]
    out = [to_numpy(layer.forward(xp.asarray(x), ln)) for x, ln in zip(xs, lengths)]
    for n in range(N):
        alone.reset_state()
        for k, (x, ln) in enumerate(zip(xs, lengths)):
            assert_close(f"{cell} batch {k} row {n}", out[k][n:n + 1, :ln[n]],
                         alone.forward(xp.asarray(x[n:n + 1, :ln[n]])))
        for s in _state_names(cell):
            assert_close(f"{cell} carried {s} row {n}", getattr(layer, s)[n:n + 1],
                         getattr(alone, s))


def test_lengths_none_and_all_full_agree(xp, rng):
    layer = make_layer(xp, "lstm", D, H, np.float64, rng)
    xs = xp.asarray(rng.standard_normal((N, T, D)))
    dhs = xp.asarray(rng.standard_normal((N, T, H)))
    runs = []
    for lengths in (None, np.full(N, T)):
        hs = layer.forward(xs, lengths)
        runs.append([hs, layer.h, layer.c, layer.backward(dhs), layer.dh, layer.dc]
                    + [g.copy() for g in layer.grads])
    for i, (a, b) in enumerate(zip(*runs)):
        assert_close(f"value {i}", a, b)


# ------------------------------------------------------------------------ bidirectional
def _bidirectional(xp, cell, rng):
    f = make_layer(xp, cell, D, H, np.float64, rng)
    r = make_layer(xp, cell, D, H, np.float64, rng)
    return L.TimeBidirectional(f, r)


@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_padded_batch_equals_each_row_alone(xp, cell, rng):
    bi = _bidirectional(xp, cell, rng)
    alone = _bidirectional(xp, cell, rng)
    for p, q in zip(alone.params, bi.params):
        p[...] = q
    xs = rng.standard_normal((N, T, D))
    dout = rng.standard_normal((N, T, 2 * H))
    out = to_numpy(bi.forward(xp.asarray(xs), LENGTHS))
    dxs = to_numpy(bi.backward(xp.asarray(dout)))
    back_h = to_numpy(bi.backward_layer.h)
    grads = [np.zeros(p.shape) for p in bi.params]
    for n, ln in enumerate(LENGTHS):
        assert_close(f"{cell} out row {n}", out[n:n + 1, :ln],
                     alone.forward(xp.asarray(xs[n:n + 1, :ln])))
        # The backward direction ends at step 0: its carried state is the row's state there.
        assert_close(f"{cell} backward h row {n}", back_h[n:n + 1], alone.backward_layer.h)
        assert_close(f"{cell} dxs row {n}", dxs[n:n + 1, :ln],
                     alone.backward(xp.asarray(dout[n:n + 1, :ln])), kind="grad")
        for g, ga in zip(grads, alone.grads):
            g += to_numpy(ga)
    _check_padding_and_grads(cell, out, dxs, bi.grads, grads)


def test_reverse_index_reverses_each_row_within_its_length():
    index = L.reverse_index(np.array([3, 0, 1, 2]), 3)
    assert index.tolist() == [[2, 1, 0], [0, 1, 2], [0, 1, 2], [1, 0, 2]]
    a = np.arange(12).reshape(4, 3)
    assert L.reverse_rows(L.reverse_rows(a, index), index).tolist() == a.tolist()


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("make", [
    lambda rng: make_layer(np, "gru", D, H, np.float64, rng),
    lambda rng: _bidirectional(np, "rnn", rng),
], ids=["TimeGRU", "TimeBidirectional"])
@pytest.mark.parametrize("lengths, error, match", [
    (np.full(N + 1, 2), ValueError, r"lengths must have shape \(N,\).*\(5,\).*\(6,\)"),
    (np.full((N, 1), 2), ValueError, r"lengths must have shape"),
    (np.full(N, 2.0), TypeError, r"lengths must be an integer array, got dtype float64"),
    (np.full(N, True), TypeError, r"lengths must be an integer array, got dtype bool"),
    (np.array([1, 2, -1, 0, 3]), ValueError, r"lengths must lie in \[0, T\] = \[0, 6\], found -1"),
    (np.array([1, 7, 1, 0, 3]), ValueError, r"lengths must lie in \[0, T\] = \[0, 6\], found 7"),
    ("abc", TypeError, r"lengths must be a NumPy or CuPy array, got str"),
])
def test_bad_lengths_are_rejected_naming_the_layer(make, lengths, error, match, rng):
    layer = make(rng)
    name = type(layer).__name__
    with pytest.raises(error, match=f"^{name}: {match}"):
        layer.forward(rng.standard_normal((N, T, D)), lengths)


def test_lengths_as_a_list_are_accepted(rng):
    layer = make_layer(np, "rnn", D, H, np.float64, rng)
    xs = rng.standard_normal((N, T, D))
    assert_close("list", layer.forward(xs, list(LENGTHS)), layer.forward(xs, LENGTHS))


# ------------------------------------------------------------------------ torch oracle
def _torch():
    return pytest.importorskip("torch")


TORCH_LENGTHS = np.array([T, 2, 4, 1, T - 1])  # pack_padded_sequence needs lengths >= 1


def _torch_grads(kind, module, suffix="_l0"):
    """A module's parameter gradients in fastrnn's layout and params order. fastrnn's b is
    bias_ih + bias_hh (the GRU's candidate keeps b_hn apart), so db is bias_ih's gradient."""
    g = {n: getattr(module, n + suffix).grad.numpy()
         for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    zero = np.zeros_like(g["bias_ih"])
    w = torch_to_fastrnn(kind, g["weight_ih"], g["weight_hh"], g["bias_ih"], zero)
    out = [w["Wx"], w["Wh"], w["b"]]
    if kind == "gru":
        out.append(torch_to_fastrnn(kind, g["weight_ih"], g["weight_hh"], zero,
                                    g["bias_hh"])["b_hn"])
    return out


def _run_torch(module, xs, states, dout):
    """Outputs, final states, and gradients of sum(out * dout) for a packed batch."""
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    x = torch.tensor(xs, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    packed = pack_padded_sequence(x, torch.tensor(TORCH_LENGTHS), batch_first=True,
                                  enforce_sorted=False)
    out, fin = module(packed, tuple(st) if len(st) == 2 else st[0])
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    (out * torch.tensor(dout)).sum().backward()
    fin = fin if isinstance(fin, tuple) else (fin,)
    host = lambda t: t.detach().numpy()  # noqa: E731
    return host(out), [host(f) for f in fin], host(x.grad), [host(s.grad) for s in st]


@pytest.mark.parametrize("cell", ["lstm", "gru_ra", "rnn"])
def test_matches_torch_packed_sequences(cell, rng):
    _torch()
    kind = cell.split("_")[0]
    layer = make_layer(np, cell, D, H, np.float64, rng)
    module = to_torch(layer)
    xs = rng.standard_normal((N, T, D))
    dout = rng.standard_normal((N, T, H))
    states = _states(cell, rng)
    out, fin, dx, dstates = _run_torch(module, xs, [s[None] for s in states], dout)

    layer.set_state(*states)
    assert_close(f"{cell} out", layer.forward(xs, TORCH_LENGTHS), out)
    for s, f in zip(_state_names(cell), fin):
        assert_close(f"{cell} final {s}", getattr(layer, s), f[0])
    assert_close(f"{cell} dx", layer.backward(dout), dx, kind="grad")
    for s, d in zip(_state_names(cell), dstates):
        assert_close(f"{cell} d{s}", getattr(layer, "d" + s), d[0], kind="grad")
    for i, (g, gt) in enumerate(zip(layer.grads, _torch_grads(kind, module))):
        assert_close(f"{cell} param grad {i}", g, gt, kind="grad")


def test_bidirectional_lstm_matches_torch_packed_sequences(rng):
    torch = _torch()
    torch.manual_seed(0)
    module = torch.nn.LSTM(D, H, batch_first=True, bidirectional=True, dtype=torch.float64)
    (bi,) = layers_from_torch(module)
    xs = rng.standard_normal((N, T, D))
    dout = rng.standard_normal((N, T, 2 * H))
    # (2, N, H) initial states: index 0 forward direction, 1 backward.
    states = [rng.standard_normal((2, N, H)) for _ in "hc"]
    out, fin, dx, dstates = _run_torch(module, xs, states, dout)

    for k, direction in enumerate((bi.forward_layer, bi.backward_layer)):
        direction.set_state(states[0][k], states[1][k])
    assert_close("bi out", bi.forward(xs, TORCH_LENGTHS), out)
    assert_close("bi dx", bi.backward(dout), dx, kind="grad")
    for k, direction in enumerate((bi.forward_layer, bi.backward_layer)):
        for j, s in enumerate("hc"):
            assert_close(f"bi final {s} direction {k}", getattr(direction, s), fin[j][k])
            assert_close(f"bi d{s} direction {k}", getattr(direction, "d" + s),
                         dstates[j][k], kind="grad")
        grads = _torch_grads("lstm", module, "_l0" + ("_reverse" if k else ""))
        for i, (g, gt) in enumerate(zip(direction.grads, grads)):
            assert_close(f"bi direction {k} param grad {i}", g, gt, kind="grad")


# -------------------------------------------------------------------------------- seq2seq
MODELS = [Seq2seq, PeekySeq2seq, AttentionSeq2seq]
V = 7


def _model(cls, cell="lstm", reverse=False):
    return cls(V, 4, 5, cell=cell, reverse_input=reverse, reset_after=cell == "gru",
               dtype="float64", seed=3)


def _padded_pairs(rng, src_lengths, tgt_lengths):
    """Padded (xs, xs_lengths, ts, ts_lengths); ts rows are a start id plus targets."""
    xs, xl = pad_sequences([rng.integers(0, V, n) for n in src_lengths])
    ts, tl = pad_sequences([rng.integers(0, V, n) for n in tgt_lengths])
    return xs, xl, ts, tl


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("cell, reverse", [("lstm", True), ("gru", False)])
def test_padded_seq2seq_loss_is_the_mean_over_real_target_tokens(cls, cell, reverse, rng):
    """Loss and gradients of a padded batch equal the token-weighted mean of each pair run
    alone, unpadded."""
    m = _model(cls, cell, reverse)
    xs, xl, ts, tl = _padded_pairs(rng, (4, 1, 3, 2), (3, 6, 2, 4))
    assert xs.shape == (4, 4) and ts.shape == (4, 6)
    loss = m.forward(xs, ts, xs_lengths=xl, ts_lengths=tl)
    m.backward()
    grads = [g.copy() for g in m.grads]

    weights = (tl - 1) / (tl - 1).sum()
    expected_loss, expected = 0.0, [np.zeros_like(g) for g in grads]
    for n, w in enumerate(weights):
        expected_loss += w * m.forward(xs[n:n + 1, :xl[n]], ts[n:n + 1, :tl[n]])
        m.backward()
        for e, g in zip(expected, m.grads):
            e += w * g
    assert_close("loss", loss, expected_loss)
    for i, (g, e) in enumerate(zip(grads, expected)):
        assert_close(f"grad {i}", g, e, kind="grad")


@pytest.mark.parametrize("cls", MODELS)
def test_padding_content_and_empty_rows_change_nothing(cls, rng):
    """Rows with no source (the decoder starts from zeros) or no targets give finite results,
    and the padded ids are never read."""
    m = _model(cls, reverse=True)
    xs, xl, ts, tl = _padded_pairs(rng, (0, 3, 2, 0), (3, 1, 4, 2))
    runs = []
    for pad in (0, V - 1):
        xs2, ts2 = xs.copy(), ts.copy()
        xs2[np.arange(xs.shape[1]) >= xl[:, None]] = pad
        ts2[np.arange(ts.shape[1]) >= tl[:, None]] = pad
        loss = m.forward(xs2, ts2, xs_lengths=xl, ts_lengths=tl)
        m.backward()
        runs.append([loss] + [g.copy() for g in m.grads])
    assert all(np.isfinite(a).all() for a in runs[0])
    for i, (a, b) in enumerate(zip(*runs)):
        assert_close(f"value {i}", a, b)


def test_attention_never_weights_padded_source_positions(rng):
    m = _model(AttentionSeq2seq, reverse=True)
    xs, xl, ts, tl = _padded_pairs(rng, (5, 0, 2, 1), (3, 4, 2, 4))
    pad = np.arange(xs.shape[1]) >= xl[:, None]
    m.forward(xs, ts, xs_lengths=xl, ts_lengths=tl)
    trained = m.attention_weights
    m.generate(xs, 1, 3, xs_lengths=xl)
    for w in (trained, m.attention_weights):
        assert (w.transpose(1, 0, 2)[:, pad] == 0).all()
        # Rows with a source sum to 1; the row without one has no weight anywhere.
        np.testing.assert_allclose(w.sum(axis=2), np.broadcast_to((xl > 0)[:, None], w.shape[:2]),
                                   rtol=1e-12)


@pytest.mark.parametrize("cls", MODELS)
def test_generate_on_a_padded_batch_equals_each_row_alone(cls, rng):
    m = _model(cls, reverse=True)
    xs, xl = pad_sequences([rng.integers(0, V, n) for n in (2, 5, 1, 3)])
    out = m.generate(xs, 1, 4, xs_lengths=xl)
    for n in range(len(xl)):
        np.testing.assert_array_equal(out[n:n + 1], m.generate(xs[n:n + 1, :xl[n]], 1, 4))


@pytest.mark.parametrize("kw, error, match", [
    (dict(xs_lengths=np.array([1, 2])), ValueError, r"xs_lengths must have shape \(N,\)"),
    (dict(xs_lengths=np.array([1, 2, 9])), ValueError, r"xs_lengths must lie in \[0, T\] = "
                                                       r"\[0, 4\], found 9"),
    (dict(ts_lengths=np.array([1.0, 2.0, 3.0])), TypeError, r"ts_lengths must be an integer"),
    (dict(ts_lengths=np.array([1, -2, 3])), ValueError, r"ts_lengths must lie in .* found -2"),
])
def test_bad_model_lengths_are_rejected_naming_the_model(kw, error, match, rng):
    m = _model(AttentionSeq2seq)
    xs, ts = rng.integers(0, V, (3, 4)), rng.integers(0, V, (3, 5))
    with pytest.raises(error, match=f"^AttentionSeq2seq: {match}"):
        m.forward(xs, ts, **kw)


def test_readme_snippet_runs_as_documented():
    from test_readme import _section_code
    ns = {}
    exec(_section_code("### Variable-length batches"), ns)
    assert ns["lengths"].tolist() == [3, 1, 2] and ns["ids"][1].tolist() == [2, 0, 0]
    hs = ns["hs"]
    assert hs.shape == (3, 3, 5) and not hs[1, 1:].any() and not hs[2, 2].any()
    np.testing.assert_array_equal(ns["last_h"], hs[[0, 1, 2], [2, 0, 1]])
