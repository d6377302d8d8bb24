"""Models: float64 gradient checks, tying, state, save/load, generation, seq2seq decoding.

Runs on the default backend (whatever ``fastrnn.backend`` picks for NumPy arrays);
sizes are tiny, so the whole file takes seconds."""
import numpy as np
import pytest

from fastrnn.models import (AttentionSeq2seq, BetterRnnlm, GRUlm, PeekySeq2seq, RnnLM, Rnnlm,
                            Seq2seq, SimpleRnnlm, TimeAttention, build_model, load_model,
                            sample_id)
from fastrnn.optim import Adam, merge_tied, tie_groups
from tolerances import central_difference

V = 11


def numerical_check(model, xs, ts, entries=5, eps=1e-6, seed=0):
    """Central differences of the loss on a few random entries of every distinct parameter,
    against the model's analytical gradient (tied copies summed). Dropout masks are replayed by
    restoring the dropout generators before every forward."""
    rng_state = model.get_rng_state()

    def loss():
        model.reset_state()
        model.set_rng_state(rng_state)
        return float(model.forward(xs, ts))

    loss()
    model.backward()
    params, grads = merge_tied(model.params, model.grads)
    grads = [g.copy() for g in grads]
    r = np.random.default_rng(seed)
    for k, (p, g) in enumerate(zip(params, grads)):
        assert g.shape == p.shape
        for _ in range(entries):
            idx = tuple(int(r.integers(0, s)) for s in p.shape)
            num = central_difference(loss, p, idx, eps)
            assert abs(num - g[idx]) <= 1e-7 + 1e-5 * abs(num), \
                f"param {k} {p.shape} at {idx}: numerical {num:.10g} vs analytical {g[idx]:.10g}"


LMS = {
    "SimpleRnnlm": lambda: SimpleRnnlm(V, 4, 5, dtype="float64", seed=1),
    "Rnnlm": lambda: Rnnlm(V, 4, 5, dtype="float64", seed=1),
    "BetterRnnlm": lambda: BetterRnnlm(V, 5, 5, dtype="float64", seed=1),
    "GRUlm": lambda: GRUlm(V, 4, 5, dtype="float64", seed=1),
    "GRUlm-reset-after-2-layers": lambda: GRUlm(V, 4, 5, num_layers=2, dropout=0.3,
                                               reset_after=True, dtype="float64", seed=1),
    "RnnLM-rnn-3-layers-tied": lambda: RnnLM(V, 5, 5, cell="rnn", num_layers=3,
                                            tie_weights=True, dtype="float64", seed=1),
}


@pytest.mark.parametrize("name", list(LMS))
def test_language_model_gradients(name):
    model = LMS[name]()
    r = np.random.default_rng(2)
    xs, ts = r.integers(0, V, (3, 6)), r.integers(0, V, (3, 6))
    ts[0, 2] = -1  # ignored label
    numerical_check(model, xs, ts)


S2S = [(cls, cell) for cls in (Seq2seq, PeekySeq2seq, AttentionSeq2seq)
       for cell in ("lstm", "gru", "rnn")]


@pytest.mark.parametrize("cls,cell", S2S, ids=[f"{c.__name__}-{cell}" for c, cell in S2S])
def test_seq2seq_gradients(cls, cell):
    model = cls(V, 4, 5, cell=cell, reverse_input=True, reset_after=cell == "gru",
                dtype="float64", seed=1)
    r = np.random.default_rng(3)
    numerical_check(model, r.integers(0, V, (3, 6)), r.integers(0, V, (3, 4)))


def test_params_and_grads_lists_line_up():
    for make in LMS.values():
        m = make()
        assert len(m.params) == len(m.grads)
        assert all(p.shape == g.shape and p.dtype == g.dtype for p, g in zip(m.params, m.grads))
    for cls, cell in S2S:
        m = cls(V, 4, 5, cell=cell)
        assert len(m.params) == len(m.grads)


def test_better_rnnlm_ties_output_weight_to_embedding():
    m = BetterRnnlm(V, 6, 6, seed=0)
    embed_W, affine_W = m.embed.params[0], m.affine.params[0]
    assert np.shares_memory(embed_W, affine_W) and affine_W.shape == (6, V)
    assert [len(g) for g in tie_groups(m.params)].count(2) == 1
    assert len(m.unique_params()) == len(m.params) - 1
    with pytest.raises(ValueError, match="wordvec_size == hidden_size"):
        BetterRnnlm(V, 4, 6)
    # one optimizer step moves the shared matrix once, the view follows
    r = np.random.default_rng(0)
    m.forward(r.integers(0, V, (2, 5)), r.integers(0, V, (2, 5)))
    m.backward()
    before = embed_W.copy()
    Adam(0.1).update(m.params, m.grads)
    assert not np.array_equal(before, embed_W)
    assert np.shares_memory(m.embed.params[0], m.affine.params[0])
    np.testing.assert_array_equal(m.affine.params[0], embed_W.T)


def test_default_dtype_is_float32_and_float64_works():
    r = np.random.default_rng(0)
    xs = r.integers(0, V, (2, 3))
    assert Rnnlm(V, 4, 5).predict(xs).dtype == np.float32
    assert Rnnlm(V, 4, 5, dtype="float64").predict(xs).dtype == np.float64
    with pytest.raises(TypeError):
        Rnnlm(V, 4, 5, dtype="int32")
    with pytest.raises(ValueError, match="unknown cell"):
        RnnLM(V, 4, 5, cell="qrnn")


def test_same_seed_same_weights():
    a, b, c = Rnnlm(V, 4, 5, seed=7), Rnnlm(V, 4, 5, seed=7), Rnnlm(V, 4, 5, seed=8)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert not np.array_equal(a.params[0], c.params[0])


@pytest.mark.parametrize("make", [lambda: Rnnlm(V, 4, 5, dtype="float64"),
                                  lambda: GRUlm(V, 4, 5, num_layers=2, dtype="float64")])
def test_state_carries_between_calls(make):
    m = make()
    xs = np.random.default_rng(0).integers(0, V, (2, 7))
    m.reset_state()
    full = m.predict(xs)
    m.reset_state()
    parts = np.concatenate([m.predict(xs[:, :3]), m.predict(xs[:, 3:])], axis=1)
    np.testing.assert_allclose(parts, full, rtol=1e-12, atol=1e-12)
    m.reset_state()  # a reset state starts from zeros again, not from the carried one
    assert not np.allclose(m.predict(xs[:, 3:]), full[:, 3:])


def test_get_set_state_roundtrip():
    m = Rnnlm(V, 4, 5, dtype="float64")
    xs = np.random.default_rng(0).integers(0, V, (2, 4))
    m.predict(xs)
    saved = m.get_state()
    a = m.predict(xs)
    m.set_state(saved)
    np.testing.assert_array_equal(m.predict(xs), a)
    with pytest.raises(ValueError, match="states for"):
        m.set_state([])


def test_save_load_params(tmp_path):
    m = BetterRnnlm(V, 6, 6, seed=3)
    path = tmp_path / "m.npz"
    m.save_params(path)
    m2 = BetterRnnlm(V, 6, 6, seed=4)
    ids = [id(p) for p in m2.params]
    m2.load_params(path)
    assert [id(p) for p in m2.params] == ids  # loaded in place
    assert all(np.array_equal(p, q) for p, q in zip(m.params, m2.params))
    assert np.shares_memory(m2.embed.params[0], m2.affine.params[0])
    m3 = load_model(path)
    assert type(m3) is BetterRnnlm and m3.config == m.config
    assert all(np.array_equal(p, q) for p, q in zip(m.params, m3.params))
    with pytest.raises(ValueError, match="shape"):
        BetterRnnlm(V + 1, 6, 6).load_params(path)


@pytest.mark.parametrize("model", [Rnnlm(V, 4, 5), SimpleRnnlm(V, 3, 4), GRUlm(V, 4, 5),
                                   BetterRnnlm(V, 6, 6), Seq2seq(V, 4, 5, cell="gru"),
                                   PeekySeq2seq(V, 4, 5), AttentionSeq2seq(V, 4, 5)],
                         ids=lambda m: type(m).__name__)
def test_build_model_from_config(model):
    again = build_model(model.config)
    assert type(again) is type(model)
    assert all(np.array_equal(p, q) for p, q in zip(model.params, again.params))
    with pytest.raises(ValueError, match="unknown model class"):
        build_model({"class": "Transformer"})


# ---------------------------------------------------------------------------------- generation
def test_generate_is_seeded_and_respects_options():
    m = Rnnlm(V, 4, 5, seed=0)
    a = m.generate([1, 2], 30, seed=5)
    assert a[:2] == [1, 2] and len(a) == 32
    assert a == m.generate([1, 2], 30, seed=5)
    assert a != m.generate([1, 2], 30, seed=6)
    skipped = m.generate(3, 200, seed=1, skip_ids=[0, 4, 7])
    assert not {0, 4, 7} & set(skipped[1:])
    assert m.generate(3, 20, top_k=1) == m.generate(3, 20, temperature=0)
    top2 = m.generate(3, 50, top_k=2, seed=2)
    assert len(set(top2[1:])) <= V
    with pytest.raises(ValueError, match="start_ids"):
        m.generate([V], 3)


def test_generate_keeps_the_training_state():
    m = Rnnlm(V, 4, 5, dtype="float64")
    xs = np.random.default_rng(0).integers(0, V, (2, 4))
    m.predict(xs)
    before = m.get_state()
    m.generate([1], 5, seed=0)
    after = m.get_state()
    for (h1, c1), (h2, c2) in zip(before, after):
        np.testing.assert_array_equal(h1, h2)
        np.testing.assert_array_equal(c1, c2)


def test_sample_id():
    rng = np.random.default_rng(0)
    s = np.array([0.0, 5.0, 1.0, 4.0])
    assert sample_id(s, rng, temperature=0) == 1
    assert sample_id(s, rng, temperature=0, skip_ids=[1]) == 3
    draws = {sample_id(s, rng, top_k=2) for _ in range(200)}
    assert draws == {1, 3}
    low = [sample_id(s, rng, temperature=0.05) for _ in range(50)]
    assert set(low) == {1}
    with pytest.raises(ValueError, match="excluded"):
        sample_id(s, rng, skip_ids=[0, 1, 2, 3])


@pytest.mark.parametrize("cls", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_generate_and_reversal(cls):
    xs = np.random.default_rng(0).integers(0, V, (4, 6))
    fwd = cls(V, 4, 5, reverse_input=False, dtype="float64", seed=2)
    rev = cls(V, 4, 5, reverse_input=True, dtype="float64", seed=2)
    out = fwd.generate(xs[:, ::-1], 1, 5)
    assert out.shape == (4, 5) and out.dtype == np.int32
    # reversing inside the model == reversing the data by hand
    np.testing.assert_array_equal(rev.generate(xs, 1, 5), out)
    ts = np.random.default_rng(1).integers(0, V, (4, 4))
    assert float(rev.forward(xs, ts)) == pytest.approx(float(fwd.forward(xs[:, ::-1], ts)),
                                                       rel=1e-12)
    with pytest.raises(ValueError, match="ts needs"):
        fwd.forward(xs, ts[:, :1])


def test_greedy_decoding_matches_teacher_forcing_on_its_own_output():
    m = PeekySeq2seq(V, 4, 5, dtype="float64", seed=4)
    xs = np.random.default_rng(0).integers(0, V, (3, 5))
    out = m.generate(xs, 2, 4)
    ts = np.concatenate([np.full((3, 1), 2), out], axis=1)
    m.forward(xs, ts)
    scores = m.decoder.affine.forward(m.decoder.affine.x)  # scores of the last forward
    np.testing.assert_array_equal(scores.argmax(axis=2), out)


def test_attention_weights():
    att = TimeAttention()
    r = np.random.default_rng(0)
    enc, dec = r.standard_normal((2, 5, 3)), r.standard_normal((2, 4, 3))
    c = att.forward(enc, dec)
    assert c.shape == (2, 4, 3)
    np.testing.assert_allclose(att.attention_weights.sum(axis=2), 1.0)
    m = AttentionSeq2seq(V, 4, 5)
    m.generate(r.integers(0, V, (2, 6)), 1, 3)
    assert m.attention_weights.shape == (2, 3, 6)


def test_models_learn_tiny_tasks():
    # a periodic sequence: an LSTM LM drives its loss near zero
    m = Rnnlm(5, 8, 16, seed=0)
    opt = Adam(0.05)
    seq = np.tile(np.arange(5), 8)[None, :]
    for _ in range(60):
        loss = m.forward(seq[:, :-1], seq[:, 1:])
        m.backward()
        opt.update(m.params, m.grads)
        m.reset_state()
    assert float(loss) < 0.1
    # copy task: Peeky seq2seq learns to echo 3 symbols
    r = np.random.default_rng(0)
    x = r.integers(1, 6, (256, 3))
    t = np.concatenate([np.zeros((256, 1), int), x], axis=1)
    s = PeekySeq2seq(6, 8, 32, seed=0)
    opt = Adam(0.05)
    for step in range(60):
        idx = r.integers(0, 256, 64)
        s.forward(x[idx], t[idx])
        s.backward()
        opt.update(s.params, s.grads)
    acc = (s.generate(x, 0, 3) == x).all(axis=1).mean()
    assert acc > 0.8


def _cupy_or_skip():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception as e:  # not installed, no driver, no device
        pytest.skip(f"CuPy with a CUDA device is needed ({type(e).__name__}: {e})")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("cls", [Rnnlm, BetterRnnlm, GRUlm])
def test_language_models_on_cupy_match_numpy(cls):
    cupy = _cupy_or_skip()
    kw = dict(dtype="float64", seed=1)
    args = (V, 6, 6)
    cpu, gpu = cls(*args, **kw), cls(*args, xp=cupy, **kw)
    r = np.random.default_rng(0)
    xs, ts = r.integers(0, V, (3, 5)), r.integers(0, V, (3, 5))
    for m in (cpu, gpu):
        m.set_train(False)
    lc = float(cpu.forward(xs, ts, train_flg=False))
    lg = float(gpu.forward(cupy.asarray(xs), cupy.asarray(ts), train_flg=False))
    assert lg == pytest.approx(lc, rel=1e-10)
    cpu.backward()
    gpu.backward()
    for a, b in zip(cpu.grads, gpu.grads):
        np.testing.assert_allclose(cupy.asnumpy(b), a, rtol=1e-8, atol=1e-12)
    assert len(gpu.generate([1, 2], 5, seed=0)) == 7


@pytest.mark.gpu
@pytest.mark.parametrize("cls", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_on_cupy_match_numpy(cls):
    cupy = _cupy_or_skip()
    cpu = cls(V, 4, 5, dtype="float64", seed=1)
    gpu = cls(V, 4, 5, dtype="float64", seed=1, xp=cupy)
    r = np.random.default_rng(0)
    xs, ts = r.integers(0, V, (3, 6)), r.integers(0, V, (3, 4))
    lc = float(cpu.forward(xs, ts))
    lg = float(gpu.forward(cupy.asarray(xs), cupy.asarray(ts)))
    assert lg == pytest.approx(lc, rel=1e-10)
    np.testing.assert_array_equal(cupy.asnumpy(gpu.generate(cupy.asarray(xs), 1, 3)),
                                  cpu.generate(xs, 1, 3))


def test_textbook_default_param_file_and_attributes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = BetterRnnlm(V, 6, 6, seed=0)
    m.save_params()
    assert (tmp_path / "BetterRnnlm.npz").is_file()
    m2 = BetterRnnlm(V, 6, 6, seed=1)
    m2.load_params()
    assert np.array_equal(m.params[0], m2.params[0])
    assert len(m.drop_layers) == 3 and len(m.lstm_layers) == 2
    assert Rnnlm(V, 4, 5).lstm_layer is not None and SimpleRnnlm(V, 4, 5).rnn_layer is not None


def test_init_schemes_by_name():
    from fastrnn.models import RnnLM
    tb = Rnnlm(V, 4, 5, seed=3)
    assert Rnnlm(V, 4, 5, seed=3, init="textbook").params[0].tolist() == tb.params[0].tolist()
    u = RnnLM(V, 4, 5, num_layers=2, init="uniform", init_scale=0.05, seed=3)
    for p in u.params:
        assert 0 < float(abs(p).max()) <= 0.05  # biases drawn too
    assert float(abs(u.params[0]).max()) > 0.045
    pt = GRUlm(V, 4, 16, init="pytorch", reset_after=True, seed=3)
    assert 0.7 < float(pt.params[0].std()) < 1.4  # embedding N(0, 1), not N(0, 0.01^2)
    rnn_params = pt.rnns[0].params
    assert all(float(abs(p).max()) <= 0.25 for p in rnn_params)  # U(+-1/sqrt(16))
    assert float(abs(rnn_params[3]).max()) > 0  # b_hn drawn, not zeros
    assert u.config["init"] == "uniform" and build_model(u.config).params[1].tolist() == \
        u.params[1].tolist()
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        Rnnlm(V, 4, 5, init="xavier")
    with pytest.raises(ValueError, match="init_scale must be a positive number"):
        RnnLM(V, 4, 5, init="uniform", init_scale=0)


@pytest.mark.parametrize("cls", [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_seq2seq_init_schemes(cls):
    tb = cls(V, 4, 5, seed=2)
    assert cls(V, 4, 5, seed=2, init="textbook").params[0].tolist() == tb.params[0].tolist()
    u = cls(V, 4, 5, seed=2, init="uniform", init_scale=0.02)
    assert all(0 < float(abs(p).max()) <= 0.02 for p in u.params)
    assert build_model(u.config).params[-1].tolist() == u.params[-1].tolist()
