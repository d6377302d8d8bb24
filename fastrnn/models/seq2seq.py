"""Encoder-decoder models: Seq2seq, PeekySeq2seq (and AttentionSeq2seq in attention.py).

Training uses teacher forcing: ``forward(xs, ts)`` feeds ``ts[:, :-1]`` to the decoder and
scores ``ts[:, 1:]``, so ``ts[:, 0]`` is the start symbol. ``generate(xs, start_id, length)``
decodes greedily, a whole batch at once. ``reverse_input=True`` reverses the source sequence
inside the model (Sutskever et al.), so callers never reverse by hand and generate agrees with
training. The encoder hands its last hidden state ``h`` to the decoder; an LSTM decoder starts
from c = 0, because the time-layer API has no gradient path into the encoder's last cell.
"""
import numpy as np

from .. import layers as L
from ..checks import array_module
from .base import Init, Model, register, to_numpy


def _concat(xp, *arrays):
    return xp.concatenate(arrays, axis=2)


class Encoder:
    """Embedding -> recurrent layer (not stateful); ``forward`` returns all hidden states."""

    def __init__(self, init, V, D, H, cell, reset_after=False):
        self.embed = L.TimeEmbedding(init.embedding(V, D))
        self.rnn = init.rnn(cell, D, H, stateful=False, reset_after=reset_after)
        self.layers = [self.embed, self.rnn]
        self.params = self.embed.params + self.rnn.params
        self.grads = self.embed.grads + self.rnn.grads

    def forward(self, xs):
        return self.rnn.forward(self.embed.forward(xs))

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

    def forward(self, xs, h):
        self.begin(h)
        return self.step(xs)

    def step(self, x):
        """One decoding step from the carried state: ids (N, 1) -> scores (N, 1, V)."""
        return self.affine.forward(self.rnn.forward(self.embed.forward(x)))

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

    def _run(self, xs, h):
        xp = array_module(h)
        N, T = xs.shape
        hs = xp.broadcast_to(h[:, None, :], (N, T, self.H))
        out = self.rnn.forward(_concat(xp, hs, self.embed.forward(xs)))
        return self.affine.forward(_concat(xp, hs, out))

    def begin(self, h):
        self.rnn.set_state(h)
        self.peek = h

    def forward(self, xs, h):
        self.begin(h)
        return self._run(xs, h)

    def step(self, x):
        return self._run(x, self.peek)

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

    def _source(self, xs):
        return xs[:, ::-1] if self.reverse_input else xs

    def _encode(self, xs):
        """Run the encoder; returns what the decoder starts from (here: the last h)."""
        return self.encoder.forward(self._source(xs))[:, -1, :]

    def _encode_backward(self, dh):
        N, H = dh.shape
        xp = self.xp
        dhs = xp.zeros((N, self._src_T, H), dtype=dh.dtype)
        dhs[:, -1, :] = dh
        self.encoder.backward(dhs)

    def forward(self, xs, ts, train_flg=True):
        self._check(xs, ts)
        self._src_T = xs.shape[1]
        start = self._encode(xs)
        score = self.decoder.forward(ts[:, :-1], start)
        return self.loss_layer.forward(score, ts[:, 1:])

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

    def generate(self, xs, start_id, length):
        """Greedy decoding: ids xs (N, T) -> (N, length) ids, started from ``start_id`` (an int
        or (N,) ids)."""
        self._check(xs)
        xp = self.xp
        N = xs.shape[0]
        self.decoder.begin(self._encode(xs))
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
