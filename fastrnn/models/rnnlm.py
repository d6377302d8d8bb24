"""Recurrent language models: Embedding -> (Dropout) -> RNN layers -> (Dropout) -> Affine.

``RnnLM`` is the general model; ``SimpleRnnlm`` (tanh RNN), ``Rnnlm`` (LSTM), ``BetterRnnlm``
(2 LSTM layers, dropout, tied output weight) and ``GRUlm`` are its textbook configurations.
Word- or character-level is only a matter of the vocabulary given.
"""
import numpy as np

from .. import layers as L
from .base import Init, Model, register, to_numpy
from .generation import make_rng, sample_id


@register
class RnnLM(Model):
    """``forward(xs, ts, train_flg=True)`` -> mean loss over (N, T) ids; ``backward()``.

    Recurrent layers are stateful (truncated BPTT: the state carries from one batch to the next
    until ``reset_state()``). ``dropout`` > 0 inserts TimeDropout before every recurrent layer
    and before the output affine (Zaremba et al.); ``tie_weights`` makes the output affine's
    weight the transpose of the embedding matrix (needs wordvec_size == hidden_size).

    ``init`` names the weight initialisation (``"textbook"``, ``"uniform"`` with
    ``init_scale``, ``"pytorch"``; see ``fastrnn.models.base.Init``). ``loss_reduction`` is
    TimeSoftmaxWithLoss's ``reduction``: ``"mean"`` over tokens (the textbook's) or
    ``"sum_over_time"`` (mean over the batch, summed over time: the loss the learning rates of
    TensorFlow's PTB model and of Zaremba et al. 2014 are stated for)."""

    def __init__(self, vocab_size=10000, wordvec_size=100, hidden_size=100, cell="lstm",
                 num_layers=1, dropout=0.0, tie_weights=False, reset_after=False,
                 dtype="float32", seed=0, xp=None, init="textbook", init_scale=0.1,
                 loss_reduction="mean"):
        V, D, H = int(vocab_size), int(wordvec_size), int(hidden_size)
        if min(V, D, H, num_layers) < 1:
            raise ValueError("vocab_size, wordvec_size, hidden_size and num_layers must be >= 1")
        if tie_weights and D != H:
            raise ValueError(f"tie_weights needs wordvec_size == hidden_size, got {D} and {H}")
        init_ = Init(seed, dtype, xp, init, init_scale)
        embed_W = init_.embedding(V, D)
        self.embed = L.TimeEmbedding(embed_W)
        layers = [self.embed]
        self.rnns = []
        for k in range(num_layers):
            if dropout > 0:
                layers.append(L.TimeDropout(dropout, seed=init_.dropout_seed()))
            rnn = init_.rnn(cell, D if k == 0 else H, H, stateful=True, reset_after=reset_after)
            self.rnns.append(rnn)
            layers.append(rnn)
        if dropout > 0:
            layers.append(L.TimeDropout(dropout, seed=init_.dropout_seed()))
        affine_W, affine_b = init_.affine(H, V)
        if tie_weights:
            affine_W = embed_W.T
        self.affine = L.TimeAffine(affine_W, affine_b)
        layers.append(self.affine)
        self.loss_layer = L.TimeSoftmaxWithLoss(loss_reduction)
        self.vocab_size = V
        self._finish(dict(vocab_size=V, wordvec_size=D, hidden_size=H, cell=cell,
                          num_layers=int(num_layers), dropout=float(dropout),
                          tie_weights=bool(tie_weights), reset_after=bool(reset_after),
                          dtype=np.dtype(dtype).name, seed=seed, init=init,
                          init_scale=float(init_scale), loss_reduction=loss_reduction), layers)

    def predict(self, xs, train_flg=False):
        """Scores (N, T, V) for ids xs (N, T)."""
        self.set_train(train_flg)
        out = xs
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def forward(self, xs, ts, train_flg=True):
        score = self.predict(xs, train_flg)
        return self.loss_layer.forward(score, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def generate(self, start_ids, length=100, temperature=1.0, top_k=None, skip_ids=None,
                 seed=None, rng=None):
        """Sample ``length`` ids after priming with ``start_ids`` (an id or a sequence of ids).

        Returns the list of ids: ``start_ids`` followed by the sampled ones. Sampling is from
        softmax(scores / temperature) (``temperature=0``: greedy), over the ``top_k`` best ids,
        never one of ``skip_ids``; ``seed`` (or a NumPy ``rng``) makes it repeatable. The
        model's carried state is saved and restored, so generating mid-training is harmless."""
        start = [int(start_ids)] if np.ndim(start_ids) == 0 else [int(i) for i in start_ids]
        if not start:
            raise ValueError("start_ids must not be empty")
        if min(start) < 0 or max(start) >= self.vocab_size:
            raise ValueError(f"start_ids must lie in [0, {self.vocab_size})")
        rng = make_rng(seed, rng)
        saved = self.get_state()
        self.reset_state()
        xp = self.xp
        try:
            ids = list(start)
            score = self.predict(xp.asarray(np.array([start], dtype=np.int32)))[0, -1]
            for _ in range(int(length)):
                nxt = sample_id(to_numpy(score), rng, temperature, top_k, skip_ids)
                ids.append(nxt)
                score = self.predict(xp.asarray(np.array([[nxt]], dtype=np.int32)))[0, -1]
        finally:
            self.set_state(saved)
        return ids


@register
class SimpleRnnlm(RnnLM):
    """Embedding -> TimeRNN (tanh) -> Affine."""

    def __init__(self, vocab_size=10000, wordvec_size=100, hidden_size=100, dtype="float32",
                 seed=0, xp=None, init="textbook", init_scale=0.1):
        super().__init__(vocab_size, wordvec_size, hidden_size, cell="rnn", dtype=dtype,
                         seed=seed, xp=xp, init=init, init_scale=init_scale)
        self.rnn_layer = self.rnns[0]
        self.config = {"class": "SimpleRnnlm", **_pick(self.config, ("vocab_size", "wordvec_size",
                                                                     "hidden_size", "dtype",
                                                                     *_INIT_KEYS))}


@register
class Rnnlm(RnnLM):
    """Embedding -> TimeLSTM -> Affine (the textbook's PTB model)."""

    def __init__(self, vocab_size=10000, wordvec_size=100, hidden_size=100, dtype="float32",
                 seed=0, xp=None, init="textbook", init_scale=0.1):
        super().__init__(vocab_size, wordvec_size, hidden_size, cell="lstm", dtype=dtype,
                         seed=seed, xp=xp, init=init, init_scale=init_scale)
        self.lstm_layer = self.rnns[0]
        self.config = {"class": "Rnnlm", **_pick(self.config, ("vocab_size", "wordvec_size",
                                                               "hidden_size", "dtype",
                                                               *_INIT_KEYS))}


@register
class BetterRnnlm(RnnLM):
    """Embedding -> Dropout -> LSTM -> Dropout -> LSTM -> Dropout -> Affine(embedding.T)."""

    def __init__(self, vocab_size=10000, wordvec_size=650, hidden_size=650, dropout_ratio=0.5,
                 num_layers=2, tie_weights=True, dtype="float32", seed=0, xp=None,
                 init="textbook", init_scale=0.1):
        super().__init__(vocab_size, wordvec_size, hidden_size, cell="lstm",
                         num_layers=num_layers, dropout=dropout_ratio, tie_weights=tie_weights,
                         dtype=dtype, seed=seed, xp=xp, init=init, init_scale=init_scale)
        self.lstm_layers = self.rnns
        self.drop_layers = self.dropout_layers  # the textbook's attribute name
        c = self.config
        self.config = {"class": "BetterRnnlm", "vocab_size": c["vocab_size"],
                       "wordvec_size": c["wordvec_size"], "hidden_size": c["hidden_size"],
                       "dropout_ratio": c["dropout"], "num_layers": c["num_layers"],
                       "tie_weights": c["tie_weights"], "dtype": c["dtype"],
                       **_pick(c, _INIT_KEYS)}


@register
class GRUlm(RnnLM):
    """Embedding -> TimeGRU -> Affine (``reset_after=True``: the cuDNN / PyTorch GRU form)."""

    def __init__(self, vocab_size=10000, wordvec_size=100, hidden_size=100, num_layers=1,
                 dropout=0.0, reset_after=False, dtype="float32", seed=0, xp=None,
                 init="textbook", init_scale=0.1):
        super().__init__(vocab_size, wordvec_size, hidden_size, cell="gru", num_layers=num_layers,
                         dropout=dropout, reset_after=reset_after, dtype=dtype, seed=seed, xp=xp,
                         init=init, init_scale=init_scale)
        c = self.config
        self.config = {"class": "GRUlm", **_pick(c, ("vocab_size", "wordvec_size", "hidden_size",
                                                     "num_layers", "dropout", "reset_after",
                                                     "dtype", *_INIT_KEYS))}


_INIT_KEYS = ("seed", "init", "init_scale")


def _pick(d, keys):
    return {k: d[k] for k in keys}
