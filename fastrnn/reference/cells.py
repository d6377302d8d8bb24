"""Plain NumPy recurrences: the oracle every other backend is tested against.

Each op runs only the sequential part of a recurrent layer (work split: ``fastrnn.layers``). The
layer has already computed the input projection ``xw = x @ Wx + b`` for every step, and after
the backward pass it turns the per-step pre-activation gradients ``dA`` into ``dWx``, ``dWh``,
``db`` and ``dx`` with a few large matrix products.

Shapes (time-major, one step is one contiguous block):
    T time, N batch, H hidden, G gates (RNN 1, LSTM 4, GRU 3)
    xw   (T, N, G*H)   input projection plus bias
    Wh   (H, G*H)      recurrent weight, ``h @ Wh``
    h0   (N, H)        initial hidden state (c0 likewise for LSTM)
    hs   (T, N, H)     hidden state after each step
    dhs  (T, N, H)     gradient of the loss with respect to hs
    dA   (T, N, G*H)   gradient with respect to the gate pre-activations

Gate layouts: LSTM ``[f | g | i | o]``; GRU ``[z | r | h~]`` (reset-after: ``[z | r | n]``).

Every op takes ``lengths`` (N,) or None: step t of row n is padding when t >= lengths[n], and
gets zero outputs, activations and gradients (``keep`` below), so the zero state it leaves
behind makes the rest of the row's padding zero too.
"""
from ..checks import array_module


def keep(lengths, t):
    """Rows still running at step t, as an (N, 1) mask; None when every row runs all T steps."""
    return None if lengths is None else (t < lengths)[:, None]


def masked(m, x):
    """x on the running rows of mask m, zero on the padded ones (NaN included)."""
    return x if m is None else array_module(x).where(m, x, 0)


def sigmoid(x):
    xp = array_module(x)
    # tanh form: exact, and no overflow warning for large negative x (exp(-x) would overflow)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


# ----------------------------------------------------------------------------------------- RNN
def rnn_forward(xw, Wh, h0, lengths=None):
    """h' = tanh(xw[t] + h @ Wh). Returns hs (T, N, H)."""
    xp = array_module(xw)
    hs = xp.empty_like(xw)
    h = h0
    for t in range(xw.shape[0]):
        h = masked(keep(lengths, t), xp.tanh(xw[t] + h @ Wh))
        hs[t] = h
    return hs


def rnn_backward(dhs, Wh, hs, h0, lengths=None):
    """Returns (dA (T, N, H), dh0 (N, H))."""
    xp = array_module(dhs)
    dA = xp.empty_like(dhs)
    dh = xp.zeros_like(h0)
    for t in range(dhs.shape[0] - 1, -1, -1):
        dh = dhs[t] + dh
        da = masked(keep(lengths, t), dh * (1 - hs[t] ** 2))
        dA[t] = da
        dh = da @ Wh.T
    return dA, dh


# ---------------------------------------------------------------------------------------- LSTM
def lstm_forward(xw, Wh, h0, c0, lengths=None):
    """c' = f*c + g*i, h' = o*tanh(c'). Returns hs, cs (T, N, H) and the activated gates
    acts (T, N, 4H) = [f | g | i | o], which the backward pass needs."""
    xp = array_module(xw)
    H = h0.shape[1]
    hs = xp.empty(xw.shape[:2] + (H,), dtype=xw.dtype)
    cs = xp.empty_like(hs)
    acts = xp.empty_like(xw)
    h, c = h0, c0
    for t in range(xw.shape[0]):
        a = xw[t] + h @ Wh
        f = sigmoid(a[:, :H])
        g = xp.tanh(a[:, H:2 * H])
        i = sigmoid(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:])
        m = keep(lengths, t)
        c = masked(m, f * c + g * i)
        h = masked(m, o * xp.tanh(c))
        acts[t] = masked(m, xp.concatenate([f, g, i, o], axis=1))
        hs[t], cs[t] = h, c
    return hs, cs, acts


def lstm_backward(dhs, Wh, cs, acts, c0, lengths=None):
    """Returns (dA (T, N, 4H), dh0 (N, H), dc0 (N, H))."""
    xp = array_module(dhs)
    H = c0.shape[1]
    dA = xp.empty_like(acts)
    dh = xp.zeros_like(c0)
    dc = xp.zeros_like(c0)
    for t in range(dhs.shape[0] - 1, -1, -1):
        f, g, i, o = (acts[t, :, k * H:(k + 1) * H] for k in range(4))
        c_prev = cs[t - 1] if t > 0 else c0
        tc = xp.tanh(cs[t])
        dh = dhs[t] + dh
        dc = dc + dh * o * (1 - tc ** 2)
        m = keep(lengths, t)
        dA[t] = masked(m, xp.concatenate([dc * c_prev * f * (1 - f),
                                          dc * i * (1 - g ** 2),
                                          dc * g * i * (1 - i),
                                          dh * tc * o * (1 - o)], axis=1))
        dc = masked(m, dc * f)
        dh = dA[t] @ Wh.T
    return dA, dh, dc


# ------------------------------------------------------------------------ GRU, reset before
def gru_forward(xw, Wh, h0, lengths=None):
    """z, r = sigmoid(xw_zr + h @ Wh_zr); h~ = tanh(xw_h + (r*h) @ Wh_h); h' = (1-z)*h + z*h~.
    Returns hs (T, N, H), acts (T, N, 3H) = [z | r | h~] and rh (T, N, H) = r*h_prev, the
    input of the candidate's recurrent product, which the layer needs for dWh."""
    xp = array_module(xw)
    H = h0.shape[1]
    hs = xp.empty(xw.shape[:2] + (H,), dtype=xw.dtype)
    rh = xp.empty_like(hs)
    acts = xp.empty_like(xw)
    h = h0
    for t in range(xw.shape[0]):
        a = xw[t, :, :2 * H] + h @ Wh[:, :2 * H]
        z = sigmoid(a[:, :H])
        r = sigmoid(a[:, H:])
        m = keep(lengths, t)
        rh[t] = masked(m, r * h)
        ht = xp.tanh(xw[t, :, 2 * H:] + rh[t] @ Wh[:, 2 * H:])
        h = masked(m, (1 - z) * h + z * ht)
        acts[t] = masked(m, xp.concatenate([z, r, ht], axis=1))
        hs[t] = h
    return hs, acts, rh


def gru_backward(dhs, Wh, hs, acts, h0, lengths=None):
    """Returns (dA (T, N, 3H), dh0 (N, H)). The candidate block of dWh is rh^T dA[..., 2H:]."""
    xp = array_module(dhs)
    H = h0.shape[1]
    dA = xp.empty_like(acts)
    dh = xp.zeros_like(h0)
    for t in range(dhs.shape[0] - 1, -1, -1):
        z, r, ht = (acts[t, :, k * H:(k + 1) * H] for k in range(3))
        h_prev = hs[t - 1] if t > 0 else h0
        m = keep(lengths, t)
        dh = dhs[t] + dh
        da_h = masked(m, dh * z * (1 - ht ** 2))
        drh = da_h @ Wh[:, 2 * H:].T
        da_z = dh * (ht - h_prev) * z * (1 - z)
        da_r = drh * h_prev * r * (1 - r)
        dA[t] = masked(m, xp.concatenate([da_z, da_r, da_h], axis=1))
        dh = masked(m, dh * (1 - z) + drh * r) + dA[t, :, :2 * H] @ Wh[:, :2 * H].T
    return dA, dh


# ------------------------------------------------------------------------- GRU, reset after
def gru_ra_forward(xw, Wh, b_hn, h0, lengths=None):
    """cuDNN / PyTorch form: z, r = sigmoid(xw_zr + h @ Wh_zr);
    n = tanh(xw_n + r * (h @ Wh_n + b_hn)); h' = (1-z)*n + z*h.
    Returns hs (T, N, H), acts (T, N, 3H) = [z | r | n] and hn (T, N, H) = h @ Wh_n + b_hn."""
    xp = array_module(xw)
    H = h0.shape[1]
    hs = xp.empty(xw.shape[:2] + (H,), dtype=xw.dtype)
    hn = xp.empty_like(hs)
    acts = xp.empty_like(xw)
    h = h0
    for t in range(xw.shape[0]):
        a = h @ Wh
        z = sigmoid(xw[t, :, :H] + a[:, :H])
        r = sigmoid(xw[t, :, H:2 * H] + a[:, H:2 * H])
        m = keep(lengths, t)
        q = a[:, 2 * H:] + b_hn
        n = xp.tanh(xw[t, :, 2 * H:] + r * q)
        hn[t] = masked(m, q)
        h = masked(m, (1 - z) * n + z * h)
        acts[t] = masked(m, xp.concatenate([z, r, n], axis=1))
        hs[t] = h
    return hs, acts, hn


def gru_ra_backward(dhs, Wh, hs, acts, hn, h0, lengths=None):
    """Returns (dA (T, N, 3H), dhn (T, N, H), dh0 (N, H)).

    dA is the gradient of the input-side pre-activations (for dWx, db, dx). The recurrent side
    differs in the candidate block: its pre-activation gradient is dhn = dA_n * r, so
    dWh = h_prev^T [dA_z | dA_r | dhn] and db_hn = sum(dhn)."""
    xp = array_module(dhs)
    H = h0.shape[1]
    dA = xp.empty_like(acts)
    dhn = xp.empty_like(hn)
    dh = xp.zeros_like(h0)
    for t in range(dhs.shape[0] - 1, -1, -1):
        z, r, n = (acts[t, :, k * H:(k + 1) * H] for k in range(3))
        h_prev = hs[t - 1] if t > 0 else h0
        m = keep(lengths, t)
        dh = dhs[t] + dh
        da_n = dh * (1 - z) * (1 - n ** 2)
        da_z = dh * (h_prev - n) * z * (1 - z)
        da_r = da_n * hn[t] * r * (1 - r)
        dhn[t] = masked(m, da_n * r)
        dA[t] = masked(m, xp.concatenate([da_z, da_r, da_n], axis=1))
        drec = masked(m, xp.concatenate([da_z, da_r, dhn[t]], axis=1))
        dh = masked(m, dh * z) + drec @ Wh.T
    return dA, dhn, dh
