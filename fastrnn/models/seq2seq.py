"""Encoder-decoder models: Seq2seq, PeekySeq2seq (and AttentionSeq2seq in attention.py).

Training uses teacher forcing: ``forward(xs, ts)`` feeds ``ts[:, :-1]`` to the decoder and
scores ``ts[:, 1:]``, so ``ts[:, 0]`` is the start symbol. ``generate(xs, start_id, length)``
decodes greedily, a whole batch at once. ``reverse_input=True`` reverses the source sequence
inside the model (Sutskever et al.), so callers never reverse by hand and generate agrees with
training. The encoder hands its last hidden state ``h`` to the decoder; an LSTM decoder starts
from c = 0, because the time-layer API has no gradient path into the encoder's last cell.

Padded batches: ``forward(xs, ts, xs_lengths=..., ts_lengths=...)`` and ``generate(xs, ...,
xs_lengths=...)`` take per-row lengths (N,) of the source ``xs`` and of ``ts`` (its start
symbol included, so the targets of row n are ``ts[n, 1:ts_lengths[n]]``); None means the whole
row. The encoder runs each row for its own length and hands over the state after the row's own
last token (``reverse_input`` reverses each row's real tokens, the padding stays at the end);
attention gives padded source positions weight 0; padded targets do not enter the loss, which
is the mean over the real target tokens. The padding ids themselves are never read as data
(any valid id will do, e.g. ``fastrnn.data.pad_sequences``'s default 0).
"""
import numpy as np

from .. import layers as L
from ..checks import array_module
from .base import Init, Model, register, to_numpy


def _concat(xp, *arrays):
    return xp.concatenate(arrays, axis=2)


def final_state(hs, lengths):
    """Each row's hidden state after its own last step, from an encoder's batch-major outputs
    hs (N, T, H) and lengths (N,) or None; rows of length 0 keep the encoder's initial state,
    zeros."""
    xp = array_module(hs)
    N, T, H = hs.shape
    zeros = xp.zeros((N, H), dtype=hs.dtype)
    if lengths is None:
        return hs[:, -1] if T else zeros
    return L.last_steps(hs.transpose(1, 0, 2), lengths, zeros)


def add_at_final_step(dhs, dh, lengths):
    """The backward of ``final_state``: dhs (N, T, H) += dh (N, H) at each row's last step, in
    place (rows of length 0 started from constant zeros: nothing to add)."""
    if lengths is None:
        dhs[:, -1:] += dh[:, None]  # nothing when T = 0
        return
    rows = array_module(dh).flatnonzero(lengths)
    dhs[rows, lengths[rows] - 1] += dh[rows]


class Encoder:
    """Embedding -> recurrent layer (not stateful); ``forward`` returns all hidden states."""

    def __init__(self, init, V, D, H, cell, reset_after=False):
        self.embed = L.TimeEmbedding(init.embedding(V, D))
        self.rnn = init.rnn(cell, D, H, stateful=False, reset_after=reset_after)
        self.layers = [self.embed, self.rnn]
        self.params = self.embed.params + self.rnn.params
        self.grads = self.embed.grads + self.rnn.grads

    def forward(self, xs, lengths=None):
        return self.rnn.forward(self.embed.forward(xs), lengths)

    def backward(self, dhs):
        self.embed.backward(self.rnn.backward(dhs))


class Decoder:
    """Embedding -> stateful recurrent layer started from the encoder state -> Affine."""

    def __init__(self, init, V, D, H, cell, reset_after=False):
        self.embed = L.TimeEmbedding(init.embedding(V, D))
        self.rnn = init.rnn(cell, D, H, stateful=True, reset_after=reset_after)
        self.affine = L.TimeAffine(*init.affine(H, V))
        self.layers = [self.embed, self.rnn, self.affine]
        self.params = self.embed.params + self.rnn.params + self.affine.params
        self.grads = self.embed.grads + self.rnn.grads + self.affine.grads

    def begin(self, h):
        """Start decoding from the encoder's output."""
        self.rnn.set_state(h)

    def forward(self, xs, h, lengths=None):
        self.begin(h)
        return self.step(xs, lengths)

    def step(self, xs, lengths=None):
        """Decode from the carried state: ids (N, T) -> scores (N, T, V) (generation feeds one
        step at a time, T = 1)."""
        return self.affine.forward(self.rnn.forward(self.embed.forward(xs), lengths))

    def backward(self, dscore):
        self.embed.backward(self.rnn.backward(self.affine.backward(dscore)))
        return self.rnn.dh


class PeekyDecoder(Decoder):
    """The encoder state h is concatenated to every decoder input and to the affine's input."""

    def __init__(self, init, V, D, H, cell, reset_after=False):
        self.embed = L.TimeEmbedding(init.embedding(V, D))
        self.rnn = init.rnn(cell, H + D, H, stateful=True, reset_after=reset_after)
        self.affine = L.TimeAffine(*init.affine(H + H, V))
        self.layers = [self.embed, self.rnn, self.affine]
        self.params = self.embed.params + self.rnn.params + self.affine.params
        self.grads = self.embed.grads + self.rnn.grads + self.affine.grads
        self.H = H
        self.peek = None

    def begin(self, h):
        self.rnn.set_state(h)
        self.peek = h

    def step(self, xs, lengths=None):
        xp = array_module(self.peek)
        N, T = xs.shape
        hs = xp.broadcast_to(self.peek[:, None, :], (N, T, self.H))
        out = self.rnn.forward(_concat(xp, hs, self.embed.forward(xs)), lengths)
        return self.affine.forward(_concat(xp, hs, out))

    def backward(self, dscore):
        H = self.H
        dout = self.affine.backward(dscore)
        dhs0, dout = dout[:, :, :H], dout[:, :, H:]
        dout = self.rnn.backward(dout)
        dhs1, dembed = dout[:, :, :H], dout[:, :, H:]
        self.embed.backward(dembed)
        return self.rnn.dh + (dhs0 + dhs1).sum(axis=1)


class _EncoderDecoder(Model):
    """Shared forward/backward/generate for the encoder-decoder models."""

    def _source(self, xs, lengths):
        if not self.reverse_input:
            return xs
        if lengths is None:
            return xs[:, ::-1]
        return L.reverse_rows(xs, L.reverse_index(lengths, xs.shape[1]))

    def _begin(self, xs, lengths):
        """Run the encoder over xs and start the decoder from it (here: from the final h)."""
        self.decoder.begin(final_state(self.encoder.forward(self._source(xs, lengths), lengths),
                                       lengths))

    def _encode_backward(self, dh):
        """The encoder's backward from the gradient of what the decoder started from."""
        N, H = dh.shape
        dhs = self.xp.zeros((N, self._src_T, H), dtype=dh.dtype)
        add_at_final_step(dhs, dh, self._src_lengths)
        self.encoder.backward(dhs)

    def forward(self, xs, ts, train_flg=True, *, xs_lengths=None, ts_lengths=None):
        """Mean loss over the real target tokens; ``xs_lengths`` / ``ts_lengths`` (N,) ints
        (or None) give the real lengths of padded xs and ts (see the module doc)."""
        self._check(xs, ts)
        xp = self.xp
        name = type(self).__name__
        xs_lengths = L.check_lengths(name, "xs_lengths", xs_lengths, *xs.shape, xp)
        ts_lengths = L.check_lengths(name, "ts_lengths", ts_lengths, *ts.shape, xp)
        self._src_T, self._src_lengths = xs.shape[1], xs_lengths
        self._begin(xs, xs_lengths)
        targets = ts[:, 1:]
        dec_lengths = None
        if ts_lengths is not None:
            # Input step t predicts ts[:, t + 1]: row n has ts_lengths[n] - 1 of both.
            dec_lengths = xp.maximum(ts_lengths - 1, 0)
            real = xp.arange(targets.shape[1])[None, :] < dec_lengths[:, None]
            targets = xp.where(real, targets.astype(np.int64, copy=False),
                               self.loss_layer.ignore_label)
        score = self.decoder.step(ts[:, :-1], dec_lengths)
        return self.loss_layer.forward(score, targets)

    def backward(self, dout=1):
        dscore = self.loss_layer.backward(dout)
        self._encode_backward(self.decoder.backward(dscore))

    def _check(self, xs, ts=None):
        for name, a in (("xs", xs), ("ts", ts)):
            if a is None:
                continue
            if getattr(a, "ndim", 0) != 2:
                raise ValueError(f"{type(self).__name__}: {name} must be (N, T) ids, got shape "
                                 f"{getattr(a, 'shape', None)}")
        if ts is not None and ts.shape[1] < 2:
            raise ValueError(f"{type(self).__name__}: ts needs a start symbol and at least one "
                             f"target, got shape {ts.shape}")
        if ts is not None and ts.shape[0] != xs.shape[0]:
            raise ValueError(f"{type(self).__name__}: xs and ts must have the same batch size "
                             f"N, got shapes {xs.shape} and {ts.shape}")

    def generate(self, xs, start_id, length, *, xs_lengths=None):
        """Greedy decoding: ids xs (N, T) -> (N, length) ids, started from ``start_id`` (an int
        or (N,) ids); ``xs_lengths`` (N,) ints or None: the real lengths of a padded xs."""
        self._check(xs)
        xp = self.xp
        N = xs.shape[0]
        xs_lengths = L.check_lengths(type(self).__name__, "xs_lengths", xs_lengths, *xs.shape,
                                     xp)
        self._begin(xs, xs_lengths)
        x = np.broadcast_to(np.asarray(to_numpy(start_id), dtype=np.int32), (N,)).reshape(N, 1)
        x = xp.asarray(np.ascontiguousarray(x))
        out = xp.empty((N, int(length)), dtype=np.int32)
        for t in range(int(length)):
            score = self.decoder.step(x)
            x = score.argmax(axis=2).astype(np.int32)
            out[:, t] = x[:, 0]
        return out


@register
class Seq2seq(_EncoderDecoder):
    """Encoder -> its last hidden state starts the Decoder."""

    decoder_class = Decoder

    def __init__(self, vocab_size, wordvec_size=16, hidden_size=128, cell="lstm",
                 reverse_input=False, reset_after=False, dtype="float32", seed=0, xp=None,
                 init="textbook", init_scale=0.1):
        V, D, H = int(vocab_size), int(wordvec_size), int(hidden_size)
        init_ = Init(seed, dtype, xp, init, init_scale)
        self.encoder = Encoder(init_, V, D, H, cell, reset_after)
        self.decoder = self.decoder_class(init_, V, D, H, cell, reset_after)
        self.loss_layer = L.TimeSoftmaxWithLoss()
        self.reverse_input = bool(reverse_input)
        self._finish(dict(vocab_size=V, wordvec_size=D, hidden_size=H, cell=cell,
                          reverse_input=self.reverse_input, reset_after=bool(reset_after),
                          dtype=np.dtype(dtype).name, seed=seed, init=init,
                          init_scale=float(init_scale)),
                     self.encoder.layers + self.decoder.layers)


@register
class PeekySeq2seq(Seq2seq):
    """Seq2seq whose decoder "peeks" at the encoder state at every step."""

    decoder_class = PeekyDecoder
