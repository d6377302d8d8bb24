"""Trainers, data iterators, evaluation, checkpoints (exact resume) and metrics."""
import math
import os

import numpy as np
import pytest

from fastrnn import train as T
from fastrnn.metrics import corpus_bleu, exact_match_accuracy, perplexity, sentence_bleu
from fastrnn.models import BetterRnnlm, GRUlm, PeekySeq2seq, Rnnlm
from fastrnn.optim import SGD, Adam, Momentum
from fastrnn.train import (ConsecutiveBatches, LMTrainer, RandomBatches, Seq2seqTrainer,
                           eval_perplexity, eval_seq2seq, model_from_checkpoint,
                           read_checkpoint)

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------------------- iterators
def test_consecutive_batches_rows_continue_and_wrap():
    ids = np.arange(101)
    b = ConsecutiveBatches(ids, batch_size=4, time_size=5)
    assert b.iters_per_epoch == 100 // 20
    jump = 100 // 4
    x1, t1 = b.next()
    x2, t2 = b.next()
    for i in range(4):
        assert x1[i].tolist() == list(range(i * jump, i * jump + 5))
        assert x2[i].tolist() == list(range(i * jump + 5, i * jump + 10))  # continues row i
    np.testing.assert_array_equal(t1, x1 + 1)  # targets: the next token
    for _ in range(b.iters_per_epoch * 2 - 2):
        x, t = b.next()
    assert x.max() < 100 and t.max() <= 100  # positions wrap around the stream
    b.load_state_dict({"time_idx": 5})
    np.testing.assert_array_equal(b.next()[0], x2)


def test_random_batches_cover_disjoint_windows_each_epoch():
    ids = np.arange(1000)
    b = RandomBatches(ids, batch_size=8, time_size=10, seed=0)
    b.start_epoch()
    starts = []
    for _ in range(b.iters_per_epoch):
        x, t = b.next()
        np.testing.assert_array_equal(t, x + 1)
        assert (np.diff(x, axis=1) == 1).all()
        starts += x[:, 0].tolist()
    assert len(set(starts)) == len(starts)  # no window twice
    assert len({s % 10 for s in starts}) == 1  # one offset per epoch
    first = starts
    b.start_epoch()
    assert [b.next()[0][0, 0] for _ in range(3)] != first[:3]
    with pytest.raises(ValueError, match="too small"):
        RandomBatches(np.arange(5), 4, 10)


# ------------------------------------------------------------------------------ evaluation
def test_eval_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    m = Rnnlm(13, 4, 5, dtype="float64")
    for p in m.affine.params:
        p[...] = 0  # constant scores: uniform predictions
    assert eval_perplexity(m, np.arange(200) % 13, batch_size=3, time_size=7) == \
        pytest.approx(13, rel=1e-9)


def test_eval_perplexity_matches_a_manual_computation_and_keeps_state():
    m = Rnnlm(9, 4, 5, dtype="float64", seed=1)
    ids = np.random.default_rng(0).integers(0, 9, 61)
    m.predict(ids[None, :5])
    saved = m.get_state()
    ppl = eval_perplexity(m, ids, batch_size=2, time_size=7)
    for a, b in zip(saved[0], m.get_state()[0]):
        np.testing.assert_array_equal(a, b)
    m.reset_state()
    rows = ids[:60].reshape(2, 30), ids[1:61].reshape(2, 30)
    loss = float(m.forward(rows[0], rows[1], train_flg=False))  # one chunk == many chunks
    assert ppl == pytest.approx(math.exp(loss), rel=1e-10)


def test_eval_seq2seq_accuracy():
    m = PeekySeq2seq(6, 4, 8)
    x = np.random.default_rng(0).integers(0, 6, (10, 3))
    pred = m.generate(x, 0, 2)
    t = np.concatenate([np.zeros((10, 1), int), pred], axis=1)
    t[:3, 1] = (t[:3, 1] + 1) % 6
    acc, p = eval_seq2seq(m, x, t, batch_size=4)
    assert acc == pytest.approx(0.7) and p.shape == (10, 2)


# -------------------------------------------------------------------------------- training
def _lm_trainer(sampling, model="better", seed=0, **kw):
    ids = np.random.default_rng(0).integers(0, 30, 1500)
    m = BetterRnnlm(30, 8, 8, seed=3) if model == "better" else GRUlm(30, 6, 8, seed=3,
                                                                      dropout=0.2)
    return LMTrainer(m, Adam(0.01), ids, ids[:200], batch_size=4, time_size=5, max_grad=0.5,
                     sampling=sampling, seed=seed, lr_decay=4.0, **kw)


@pytest.mark.parametrize("sampling,model", [("consecutive", "better"), ("random", "better"),
                                            ("consecutive", "gru")])
def test_lm_checkpoint_resume_is_exact(tmp_path, sampling, model):
    full = _lm_trainer(sampling, model)
    full.fit(2)
    part = _lm_trainer(sampling, model)
    part.fit(2, max_iters=97)  # stop in the middle of epoch 2 (74 batches an epoch)
    assert (part.epoch, part.iteration) == (1, 23)
    path = part.save_checkpoint(str(tmp_path / "ck.npz"))
    resumed = _lm_trainer(sampling, model, seed=99)  # seed is restored from the checkpoint
    for p in resumed.model.params:
        p[...] = 0  # every parameter must come from the checkpoint
    resumed.load_checkpoint(path)
    resumed.fit(2)
    for p, q in zip(full.model.params, resumed.model.params):
        np.testing.assert_array_equal(p, q)
    for k in ("train_ppl", "val_ppl", "lr"):
        assert full.history[k] == resumed.history[k]
    assert full.optimizer.t == resumed.optimizer.t
    assert not [f for f in os.listdir(tmp_path) if f != "ck.npz"]  # no temporary left


def test_seq2seq_checkpoint_resume_is_exact(tmp_path):
    r = np.random.default_rng(0)
    x = r.integers(1, 6, (200, 3))
    t = np.concatenate([np.zeros((200, 1), int), x], axis=1)

    def make():
        return Seq2seqTrainer(PeekySeq2seq(6, 4, 8, seed=1), Momentum(0.05), x[:180], t[:180],
                              x[180:], t[180:], batch_size=32, max_grad=1.0, seed=5)

    full = make()
    full.fit(3)
    part = make()
    part.fit(3, max_iters=8)
    part.save_checkpoint(str(tmp_path / "s.npz"))
    resumed = make()
    resumed.load_checkpoint(str(tmp_path / "s.npz"))
    resumed.fit(3)
    for p, q in zip(full.model.params, resumed.model.params):
        np.testing.assert_array_equal(p, q)
    assert full.history["val_acc"] == resumed.history["val_acc"]
    assert full.history["loss"] == resumed.history["loss"]


def test_checkpoints_written_at_epoch_ends_and_every_n(tmp_path):
    ck = str(tmp_path / "c.npz")
    tr = _lm_trainer("consecutive", checkpoint_path=ck, checkpoint_every=10,
                     best_path=str(tmp_path / "best.npz"))
    tr.fit(1, max_iters=25)
    meta, _ = read_checkpoint(ck)
    assert meta["total_iters"] == 20
    tr.fit(1)
    meta, _ = read_checkpoint(ck)
    assert (meta["epoch"], meta["iteration"]) == (1, 0)
    assert len(meta["history"]["val_ppl"]) == 1
    m, meta = model_from_checkpoint(ck)
    assert type(m) is BetterRnnlm
    assert all(np.array_equal(p, q) for p, q in zip(m.params, tr.model.params))
    assert os.path.isfile(tmp_path / "best.npz")


def test_checkpoint_errors(tmp_path):
    tr = _lm_trainer("consecutive")
    with pytest.raises(FileNotFoundError):
        tr.load_checkpoint(str(tmp_path / "none.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a fastrnn checkpoint"):
        tr.load_checkpoint(str(tmp_path / "junk.npz"))
    tr.model.save_params(str(tmp_path / "params.npz"))
    with pytest.raises(ValueError, match="trainer checkpoint"):
        tr.load_checkpoint(str(tmp_path / "params.npz"))
    with pytest.raises(ValueError, match="no checkpoint path"):
        tr.save_checkpoint()


def test_lr_decays_when_validation_stops_improving(monkeypatch):
    vals = iter([50.0, 40.0, 45.0, 39.0, 39.5])
    monkeypatch.setattr(T, "eval_perplexity", lambda *a, **k: next(vals))
    ids = np.random.default_rng(0).integers(0, 20, 400)
    tr = LMTrainer(Rnnlm(20, 4, 4), SGD(lr=8.0), ids, ids[:100], batch_size=2, time_size=5,
                   lr_decay=4.0)
    logs = []
    tr.log = logs.append
    tr.fit(5)
    assert tr.history["lr"] == [8.0, 8.0, 8.0, 2.0, 2.0]
    assert tr.optimizer.lr == 0.5 and tr.best_val == 39.0
    assert "did not improve" in logs[2]


def test_lm_trainer_learns_and_reports(capsys):
    text = np.tile(np.array([0, 1, 2, 3, 1, 2, 0, 4]), 60)
    logs = []
    tr = LMTrainer(Rnnlm(5, 8, 16, seed=0), SGD(lr=2.0), text, text[:80], batch_size=4,
                   time_size=8, max_grad=1.0, log=logs.append, progress=False)
    h = tr.fit(4)
    assert h["train_ppl"][-1] < h["train_ppl"][0] and h["val_ppl"][-1] < 1.5
    assert len(logs) == 4 and "words/s" in logs[0]
    assert all(w > 0 for w in h["wps"])
    with pytest.raises(ValueError, match="unknown sampling"):
        LMTrainer(Rnnlm(5, 4, 4), SGD(), text, sampling="shuffled")


def test_progress_bar_runs(capsys):
    text = np.tile(np.arange(5), 40)
    LMTrainer(Rnnlm(5, 4, 4), SGD(), text, batch_size=2, time_size=5, progress=True).fit(1)
    assert "wps" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- metrics
def test_perplexity_and_accuracy():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(136.0)) == pytest.approx(136.0)
    assert exact_match_accuracy([[1, 2], [3, 4]], [[1, 2], [3, 5]]) == 0.5
    assert exact_match_accuracy([[1, 9]], [[1, -1]], ignore_id=-1) == 1.0
    with pytest.raises(ValueError, match="shape"):
        exact_match_accuracy([[1]], [[1, 2]])


def test_bleu_hand_computed():
    assert corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)
    assert corpus_bleu(["x y z w"], ["a b c d"]) == 0.0
    # 4 tokens vs reference of 6: brevity penalty exp(1 - 6/4); all precisions 1
    assert corpus_bleu(["a b c d"], ["a b c d e f"]) == pytest.approx(
        100 * math.exp(1 - 1.5))
    assert sentence_bleu("a b", ["a b"]) == pytest.approx(100.0)  # effective order


SACRE_CASES = [
    (["the cat sat on the mat", "a quick brown fox jumps"],
     [["the cat is on the mat", "a fast brown fox jumped"],
      ["there is a cat on the mat", "the quick brown fox jumps"]]),
    (["it is a guide to action", "he read the book"],
     [["it is a guide to action that ensures", "he reads the book"]]),
    (["short", "one two three four five six seven"],
     [["much longer reference here", "one two three four five six seven eight"]]),
    (["a a a a", "b"], [["a a", "c d e"]]),
]


@pytest.mark.parametrize("hyps,refs", SACRE_CASES)
@pytest.mark.parametrize("smooth", ["exp", "none", "floor", "add-k"])
def test_bleu_equals_sacrebleu(hyps, refs, smooth):
    sacrebleu = pytest.importorskip("sacrebleu")
    want = sacrebleu.corpus_bleu(hyps, refs, smooth_method=smooth, tokenize="none").score
    ours = corpus_bleu(hyps, [list(r) for r in zip(*refs)], smooth=smooth)
    assert ours == pytest.approx(want, abs=1e-9)
    for i, h in enumerate(hyps):
        want = sacrebleu.sentence_bleu(h, [r[i] for r in refs], smooth_method=smooth,
                                       tokenize="none").score
        assert sentence_bleu(h, [r[i] for r in refs], smooth=smooth) == \
            pytest.approx(want, abs=1e-9)


# ------------------------------------------------------------------------------- real data
def _shared(*parts):
    d = os.environ.get("FASTRNN_DATA") or os.path.join(HERE, "..", "..", "shared", "data")
    path = os.path.join(d, *parts)
    if not os.path.exists(path):
        pytest.skip(f"shared data {'/'.join(parts)} not available")
    return d


@pytest.mark.slow
def test_ptb_rnnlm_learns_in_a_few_hundred_batches():
    from fastrnn.data import load_ptb
    c = load_ptb(_shared("ptb"))
    tr = LMTrainer(Rnnlm(len(c.vocab), 100, 100), SGD(lr=20.0), c.train, batch_size=20,
                   time_size=35, max_grad=0.25)
    tr.fit(1, max_iters=300)
    ppl = eval_perplexity(tr.model, c.val[:20000])
    assert ppl < 480, ppl


# ------------------------------------------------------------------- schedules and callbacks
def test_step_decay_schedule_and_callbacks(monkeypatch):
    monkeypatch.setattr(T, "eval_perplexity", lambda *a, **k: 10.0)  # never improves after 1
    ids = np.random.default_rng(0).integers(0, 20, 400)
    seen = []

    def cb(tr):
        seen.append((tr.epoch, tr.history["lr"][-1]))
        if tr.epoch == 5:
            tr.stop = True
    tr = LMTrainer(Rnnlm(20, 4, 4), SGD(lr=1.0), ids, ids[:100], batch_size=2, time_size=5,
                   lr_schedule=T.StepDecay(after=2, factor=0.5), callbacks=[cb])
    tr.fit(9)
    assert tr.history["lr"] == [1.0, 1.0, 0.5, 0.25, 0.125]
    assert seen == [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.25), (5, 0.125)]
    assert tr.epoch == 5  # the callback stopped it


def test_state_is_reset_and_stream_restarted_at_each_epoch():
    ids = np.random.default_rng(1).integers(0, 20, 403)
    tr = LMTrainer(Rnnlm(20, 4, 4), SGD(lr=0.0), ids, batch_size=2, time_size=7)
    first = []
    orig = tr.step

    def step(xs, ts):
        if tr.iteration == 0:
            first.append((np.array(xs), tr.model.get_state()[0]))
        return orig(xs, ts)
    tr.step = step
    tr.fit(2)
    assert np.array_equal(first[0][0], first[1][0])  # each epoch reads the same first batch
    assert first[1][1] is None  # from a zero state
    keep = LMTrainer(Rnnlm(20, 4, 4), SGD(lr=0.0), ids, batch_size=2, time_size=7,
                     reset_each_epoch=False)
    keep.fit(1)
    assert keep.model.get_state()[0] is not None and keep.batches.time_idx > 0


def test_eval_perplexity_computes_no_gradient(monkeypatch):
    import fastrnn.layers as L
    calls = []
    orig = L.TimeSoftmaxWithLoss.forward

    def spy(self, xs, ts, grad=True):
        calls.append(grad)
        return orig(self, xs, ts, grad)
    monkeypatch.setattr(L.TimeSoftmaxWithLoss, "forward", spy)
    ids = np.random.default_rng(0).integers(0, 20, 200)
    m = Rnnlm(20, 4, 4)
    ppl = eval_perplexity(m, ids, batch_size=2, time_size=10)
    assert calls and not any(calls)
    monkeypatch.setattr(L.TimeSoftmaxWithLoss, "forward", orig)
    m.reset_state()
    xs, ts = ids[:198].reshape(2, 99), ids[1:199].reshape(2, 99)
    assert ppl == pytest.approx(math.exp(float(m.forward(xs, ts, train_flg=False))), rel=1e-5)


def test_sum_over_time_loss_trains_like_mean_with_lr_times_t():
    from fastrnn.models import RnnLM
    ids = np.random.default_rng(2).integers(0, 20, 400)
    runs = []
    for reduction, lr in (("mean", 5.0), ("sum_over_time", 1.0)):
        m = RnnLM(20, 4, 4, loss_reduction=reduction, dtype="float64")
        tr = LMTrainer(m, SGD(lr=lr), ids, batch_size=2, time_size=5)
        runs.append(tr.fit(1)["train_ppl"][0])
    assert runs[0] == pytest.approx(runs[1], rel=1e-9)  # same steps, same per-token ppl


def test_zaremba_example_parses_and_builds_its_recipe(monkeypatch, capsys):
    import runpy
    path = os.path.join(HERE, "..", "examples", "zaremba_small.py")
    ns = runpy.run_path(path, run_name="example")
    with pytest.raises(SystemExit) as e:
        ns["main"](["--help"])
    assert e.value.code == 0 and "Zaremba" in capsys.readouterr().out
    seen = {}

    class FakeCorpus:
        vocab = list(range(12))
        train = val = test = np.random.default_rng(0).integers(0, 12, 900)

    def fit(self, epochs):
        seen.update(lr=self.optimizer.lr, epochs=epochs, T=self.batches.time_size,
                    clip=self.max_grad, sched=repr(self.lr_schedule),
                    reduction=self.model.loss_layer.reduction,
                    layers=len(self.model.rnns), init=self.model.config["init"])
        return self.history
    ns["main"].__globals__["load_ptb"] = lambda d: FakeCorpus
    monkeypatch.setattr(LMTrainer, "fit", fit)
    ns["main"](["--epochs", "13"])
    assert seen == dict(lr=1.0, epochs=13, T=20, clip=5.0, sched="StepDecay(after=4, factor=0.5)",
                        reduction="sum_over_time", layers=2, init="uniform")
