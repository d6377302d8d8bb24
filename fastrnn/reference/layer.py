"""Whole recurrent layers composed from a backend's recurrence ops and matrix products.

``layer_ops(cells)`` returns the eight layer ops of ``fastrnn.contract``
(``{cell}_layer_forward`` / ``{cell}_layer_backward``) built on the recurrence implementations
of ``cells`` (a module with ``lstm_forward``, ``lstm_backward``, ...). The reference backend
exports them over its own NumPy recurrences, which makes them the oracle of the layer ops; the
Numba and CUDA backends export them over theirs. The compiled engine runs each layer op as one
fused computation instead and is tested against these.

Work split: everything that is one large matrix product over all N*T rows is done here
(``xw = X @ Wx + b`` before the recurrence; ``dWx = X^T dA``, ``dWh = Hprev^T dA``,
``db = sum(dA)``, ``dX = dA Wx^T`` after it), the recurrence op does only the sequential part on
time-major (T, N, .) buffers. Shapes: N batch, T time, D input, H hidden, G gates.
"""
from ..checks import array_module


def to_time_major(a):
    """(N, T, K) -> contiguous (T, N, K) (and back: the same transpose)."""
    return array_module(a).ascontiguousarray(a.transpose(1, 0, 2))


def last_steps(seq, lengths, first):
    """Each row's value after its own last step: seq (T, N, K) time-major, lengths (N,) or
    None (all T), ``first`` (N, K) for rows of length 0 (and T = 0) -> (N, K), a new array."""
    xp = array_module(seq)
    if seq.shape[0] == 0:
        return first.copy()
    if lengths is None:
        return seq[-1].copy()
    rows = xp.arange(seq.shape[1])
    last = seq[xp.maximum(lengths - 1, 0), rows]
    return xp.where((lengths > 0)[:, None], last, first)


def prev_state_product(h0, hs, dR):
    """Hprev^T @ dR where Hprev = [h0, hs[0], ..., hs[T-2]], without building Hprev.

    h0 (N, H), hs (T, N, H), dR (T, N, K) -> (H, K)."""
    if hs.shape[0] == 0:
        return array_module(h0).zeros((h0.shape[1], dR.shape[2]), dtype=h0.dtype)
    out = h0.T @ dR[0]
    T, N, H = hs.shape
    if T > 1:
        K = dR.shape[2]
        out += hs[:-1].reshape((T - 1) * N, H).T @ dR[1:].reshape((T - 1) * N, K)
    return out


def _project(xs, Wx, b):
    """xw (T, N, G*H) = X @ Wx + b over the time-major rows of xs (N, T, D)."""
    N, T, D = xs.shape
    xw = to_time_major(xs).reshape(T * N, D) @ Wx
    xw += b
    return xw.reshape(T, N, Wx.shape[1])


def _input_grads(dA, xs, Wx, dWx, db):
    """dWx = X^T dA and db = sum(dA) in place; returns dxs (N, T, D) = dA Wx^T."""
    N, T, D = xs.shape
    dA2 = dA.reshape(T * N, dA.shape[2])
    dWx[...] = to_time_major(xs).reshape(T * N, D).T @ dA2
    db[...] = dA2.sum(axis=0)
    return to_time_major((dA2 @ Wx.T).reshape(T, N, D))


def layer_ops(cells):
    """The layer ops over the recurrence implementations of module ``cells``, by op name."""

    def rnn_layer_forward(xs, Wx, b, Wh, h0, lengths=None):
        hs = cells.rnn_forward(_project(xs, Wx, b), Wh, h0, lengths)
        out = to_time_major(hs)
        return out, last_steps(hs, lengths, h0), out.copy()

    def rnn_layer_backward(dhs, xs, Wx, Wh, hs, h0, dWx, dWh, db, lengths=None):
        hs_tm = to_time_major(hs)
        dA, dh0 = cells.rnn_backward(to_time_major(dhs), Wh, hs_tm, h0, lengths)
        dWh[...] = prev_state_product(h0, hs_tm, dA)
        return _input_grads(dA, xs, Wx, dWx, db), dh0, dWx, dWh, db

    def lstm_layer_forward(xs, Wx, b, Wh, h0, c0, lengths=None):
        hs, cs, acts = cells.lstm_forward(_project(xs, Wx, b), Wh, h0, c0, lengths)
        out = to_time_major(hs)
        return (out, last_steps(hs, lengths, h0), last_steps(cs, lengths, c0),
                cs, acts, out.copy())

    def lstm_layer_backward(dhs, xs, Wx, Wh, hs, cs, acts, h0, c0, dWx, dWh, db, lengths=None):
        dA, dh0, dc0 = cells.lstm_backward(to_time_major(dhs), Wh, cs, acts, c0, lengths)
        dWh[...] = prev_state_product(h0, to_time_major(hs), dA)
        return _input_grads(dA, xs, Wx, dWx, db), dh0, dc0, dWx, dWh, db

    def gru_layer_forward(xs, Wx, b, Wh, h0, lengths=None):
        hs, acts, rh = cells.gru_forward(_project(xs, Wx, b), Wh, h0, lengths)
        out = to_time_major(hs)
        return out, last_steps(hs, lengths, h0), acts, rh, out.copy()

    def gru_layer_backward(dhs, xs, Wx, Wh, hs, acts, rh, h0, dWx, dWh, db, lengths=None):
        T, N, H = rh.shape
        hs_tm = to_time_major(hs)
        dA, dh0 = cells.gru_backward(to_time_major(dhs), Wh, hs_tm, acts, h0, lengths)
        # The candidate's recurrent product multiplies r*h of the same step.
        dWh[:, :2 * H] = prev_state_product(h0, hs_tm, dA[..., :2 * H])
        dWh[:, 2 * H:] = rh.reshape(T * N, H).T @ dA[..., 2 * H:].reshape(T * N, H)
        return _input_grads(dA, xs, Wx, dWx, db), dh0, dWx, dWh, db

    def gru_ra_layer_forward(xs, Wx, b, Wh, b_hn, h0, lengths=None):
        hs, acts, hn = cells.gru_ra_forward(_project(xs, Wx, b), Wh, b_hn, h0, lengths)
        out = to_time_major(hs)
        return out, last_steps(hs, lengths, h0), acts, hn, out.copy()

    def gru_ra_layer_backward(dhs, xs, Wx, Wh, hs, acts, hn, h0, dWx, dWh, db, db_hn,
                              lengths=None):
        T, N, H = hn.shape
        hs_tm = to_time_major(hs)
        dA, dhn, dh0 = cells.gru_ra_backward(to_time_major(dhs), Wh, hs_tm, acts, hn, h0,
                                             lengths)
        # The candidate's recurrent pre-activation sees dA_n * r (= dhn), not dA_n.
        dWh[:, :2 * H] = prev_state_product(h0, hs_tm, dA[..., :2 * H])
        dWh[:, 2 * H:] = prev_state_product(h0, hs_tm, dhn)
        db_hn[...] = dhn.reshape(T * N, H).sum(axis=0)
        return _input_grads(dA, xs, Wx, dWx, db), dh0, dWx, dWh, db, db_hn

    return {f.__name__: f for f in (
        rnn_layer_forward, rnn_layer_backward, lstm_layer_forward, lstm_layer_backward,
        gru_layer_forward, gru_layer_backward, gru_ra_layer_forward, gru_ra_layer_backward)}
