"""Dot-product attention and the AttentionSeq2seq model.

``TimeAttention`` scores every decoder state against every encoder state at once (batched
matrix products over (N, Td, Te)), instead of the textbook's Python loop over decoder steps;
the result is the same: for decoder step t, ``a = softmax(hs_enc @ h_dec[t])`` and the context
``c[t] = a @ hs_enc``. With source lengths, padded source positions are masked before the
softmax: their weights are exactly 0, and a row with no source at all has all-zero weights and a
zero context.
"""

from .. import layers as L
from ..checks import array_module
from .base import register
from .seq2seq import Seq2seq, add_at_final_step, final_state


class TimeAttention:
    """forward(hs_enc (N, Te, H), hs_dec (N, Td, H), lengths=None) -> contexts (N, Td, H);
    backward(dc) -> (dhs_enc, dhs_dec). ``attention_weights`` (N, Td, Te) after forward.
    ``lengths`` (N,) ints in [0, Te] (an array of hs_enc's module): the real source positions
    of each row; the others get weight 0."""

    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None
        self.attention_weights = None

    def forward(self, hs_enc, hs_dec, lengths=None):
        xp = array_module(hs_enc)
        s = hs_dec @ hs_enc.transpose(0, 2, 1)               # (N, Td, Te)
        if lengths is None:
            s = s - s.max(axis=2, keepdims=True)
            a = xp.exp(s)
            a /= a.sum(axis=2, keepdims=True)
        else:
            # exp(-inf) = 0 on padding; a row without source (its max is -inf) is shifted by 0
            # and divided by 1 instead of giving 0/0. The backward needs nothing else: ds = 0
            # wherever a = 0.
            empty = (lengths == 0)[:, None, None]
            s = xp.where(xp.arange(s.shape[2]) < lengths[:, None, None], s, -xp.inf)
            s -= xp.where(empty, 0, s.max(axis=2, keepdims=True))
            a = xp.exp(s)
            a /= xp.where(empty, 1, a.sum(axis=2, keepdims=True))
        self.cache = (hs_enc, hs_dec, a)
        self.attention_weights = a
        return a @ hs_enc

    def backward(self, dc):
        hs_enc, hs_dec, a = self.cache
        da = dc @ hs_enc.transpose(0, 2, 1)                 # (N, Td, Te)
        dhs_enc = a.transpose(0, 2, 1) @ dc                 # through the weighted sum
        ds = a * (da - (a * da).sum(axis=2, keepdims=True))  # softmax backward
        dhs_dec = ds @ hs_enc
        dhs_enc += ds.transpose(0, 2, 1) @ hs_dec
        return dhs_enc, dhs_dec


class AttentionDecoder:
    """Embedding -> recurrent layer -> attention over encoder states -> Affine([context | h])."""

    def __init__(self, init, V, D, H, cell, reset_after=False):
        self.embed = L.TimeEmbedding(init.embedding(V, D))
        self.rnn = init.rnn(cell, D, H, stateful=True, reset_after=reset_after)
        self.attention = TimeAttention()
        self.affine = L.TimeAffine(*init.affine(2 * H, V))
        self.layers = [self.embed, self.rnn, self.attention, self.affine]
        self.params = self.embed.params + self.rnn.params + self.affine.params
        self.grads = self.embed.grads + self.rnn.grads + self.affine.grads
        self.H = H
        self.enc_hs = None
        self.src_lengths = None

    def _run(self, xs, lengths):
        dec_hs = self.rnn.forward(self.embed.forward(xs), lengths)
        c = self.attention.forward(self.enc_hs, dec_hs, self.src_lengths)
        return self.affine.forward(array_module(c).concatenate((c, dec_hs), axis=2))

    def begin(self, enc_hs, src_lengths=None):
        """Attend to enc_hs (N, Te, H) (its first src_lengths[n] positions in row n) and start
        from each row's final encoder state."""
        self.enc_hs = enc_hs
        self.src_lengths = src_lengths
        self.rnn.set_state(final_state(enc_hs, src_lengths))
        self.step_weights = []

    def forward(self, xs, enc_hs, lengths=None, src_lengths=None):
        self.begin(enc_hs, src_lengths)
        return self._run(xs, lengths)

    def step(self, xs, lengths=None):
        out = self._run(xs, lengths)
        self.step_weights.append(self.attention.attention_weights)
        return out

    def backward(self, dscore):
        H = self.H
        dout = self.affine.backward(dscore)
        dc, ddec_hs0 = dout[:, :, :H], dout[:, :, H:]
        denc_hs, ddec_hs1 = self.attention.backward(dc)
        self.embed.backward(self.rnn.backward(ddec_hs0 + ddec_hs1))
        add_at_final_step(denc_hs, self.rnn.dh, self.src_lengths)
        return denc_hs


@register
class AttentionSeq2seq(Seq2seq):
    """Encoder -> all its hidden states are attended to by the decoder at every step (the last
    one also starts the decoder). ``attention_weights`` after a forward or generate: (N, Td, Te)
    over the (possibly reversed) source positions, 0 on padded ones."""

    decoder_class = AttentionDecoder

    def _begin(self, xs, lengths):
        self.decoder.begin(self.encoder.forward(self._source(xs, lengths), lengths), lengths)

    def _encode_backward(self, denc_hs):
        self.encoder.backward(denc_hs)

    def generate(self, xs, start_id, length, *, xs_lengths=None):
        out = super().generate(xs, start_id, length, xs_lengths=xs_lengths)
        w = self.decoder.step_weights
        self.decoder.attention.attention_weights = array_module(w[0]).concatenate(w, axis=1) \
            if w else None
        return out

    @property
    def attention_weights(self):
        return self.decoder.attention.attention_weights
