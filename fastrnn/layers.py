"""Drop-in time layers: the classic NumPy API, with the time loops in fused kernels.

Every layer is a plain object with ``params`` (list of arrays), ``grads`` (same shapes, allocated
once and written in place by ``backward``), ``forward`` and ``backward``. Arrays are batch-major:
xs (N, T, D), hs (N, T, H), word ids (N, T). NumPy arrays run on the compiled CPU engine (the
Numba kernels where it was not built), CuPy arrays on the CUDA kernels (see
``fastrnn.backend``).

Recurrent layers (``TimeRNN``, ``TimeLSTM``, ``TimeGRU``) take ``Wx (D, G*H)``, ``Wh (H, G*H)``,
``b (G*H,)`` and compute ``x @ Wx + h @ Wh + b``; gate layouts: LSTM ``[f | g | i | o]``, GRU
``[z | r | h~]`` (``reset_after=True``: ``[z | r | n]`` plus a recurrent bias ``b_hn``).

Work split: a recurrent layer makes one call per direction to its cell's layer op
(``lstm_layer_forward`` / ``lstm_layer_backward`` ...), which does the big matrix products over
all ``N*T`` rows (``X @ Wx + b`` before the time loop; ``dWx``, ``dWh``, ``db``, ``dX`` after
it) and the sequential recurrence: the compiled engine in one parallel region, the other
backends as a recurrence kernel between array-library products (``fastrnn.reference.layer``).
``TimeAffine`` calls the linear ops the same way.

Input checks: shapes, ranks and dtypes are checked before any kernel runs (``ValueError`` /
``TypeError`` naming the expected shape or dtype). Inputs of recurrent layers and states given
to ``set_state`` must be finite (``ValueError`` otherwise), because a NaN or inf there would be
carried silently from batch to batch by a stateful layer; set ``fastrnn.layers.CHECK_FINITE =
False`` to skip that scan. Weights are not scanned. N=0 or T=0 give correctly shaped empty
outputs (and zero gradients); a stateful layer keeps its state across a T=0 call.

Variable lengths: the recurrent and bidirectional layers take ``forward(xs, lengths=None)``
with ``lengths`` (N,) integers in [0, T] (None: every row has all T steps). Step t of row n is
padding when t >= lengths[n]: its outputs and input gradients are zero, nothing flows to or from
it, and the state a row carries on (``stateful=True``, ``layer.h`` / ``layer.c``) is its state
after its own last step (its initial state when the length is 0). ``layer.dh`` / ``layer.dc``
stay the gradients of the initial state. Rows keep their place: nothing is sorted. The padded
values of ``xs`` are ignored but must be finite like the rest.
"""
import numpy as np

from . import backend
from .checks import (array_module, c_layout, has_c_strides, has_f_strides, require_array,
                     require_float, require_int, require_range, require_rank, require_shape)
from .contract import GATES, layer_backward_op, layer_forward_op
from .reference.layer import last_steps  # noqa: F401 (each row's final state, for the models)

CHECK_FINITE = True

__all__ = [
    "TimeRNN", "TimeLSTM", "TimeGRU", "TimeBiLSTM", "TimeBiGRU", "TimeBiRNN", "TimeBidirectional",
    "TimeEmbedding", "TimeAffine", "TimeSoftmaxWithLoss", "TimeSigmoidWithLoss", "TimeDropout",
]


# ------------------------------------------------------------------------------------ helpers
def _require_finite(layer, name, a):
    if not CHECK_FINITE or a.size == 0:
        return
    xp = array_module(a)
    # One reduction, finite unless a holds a NaN or inf or the sum overflows the dtype: only
    # then the exact scan decides. The compiled engine's sum of squares runs on its threads
    # (NumPy's a.sum() took about 0.7 ms of an 11 ms GRU 64x50x256x256 forward, the engine's
    # 0.2 ms); the other backends' is a float64 pass that costs more than a.sum().
    total = backend.ops_for(a).sum_squares([a]) if backend.name_for(a) == "cpu" else a.sum()
    if bool(xp.isfinite(total)) or bool(xp.isfinite(a).all()):
        return
    raise ValueError(f"{layer}: {name} contains NaN or inf; a recurrent layer would carry it "
                     f"into every later step (set fastrnn.layers.CHECK_FINITE = False to skip "
                     f"this check)")


def _require_same_dtype(layer, **arrays):
    """One dtype for all of ``arrays`` (each already float32/float64). The message groups the
    arrays by dtype, the odd one out first, so it names the array that differs."""
    groups = {}
    for name, a in arrays.items():
        groups.setdefault(a.dtype, []).append(name)
    if len(groups) > 1:
        parts = sorted(groups.items(), key=lambda kv: len(kv[1]))
        said = [f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} {dt}"
                for dt, names in parts]
        raise TypeError(f"{layer}: {said[0]} while {', '.join(said[1:])}; "
                        f"{', '.join(arrays)} must share one dtype")


def _require_nonempty_dims(layer, what, **sizes):
    """Reject zero widths (H, D, V ...) at construction: nothing can be computed with them."""
    zero = [name for name, n in sizes.items() if n == 0]
    if zero:
        raise ValueError(f"{layer}: {' and '.join(zero)} must be >= 1 ({what}), got "
                         + ", ".join(f"{k}={v}" for k, v in sizes.items()))


def check_lengths(owner, name, lengths, N, T, xp):
    """``lengths`` (N,) as an int64 array of module ``xp`` with values in [0, T], or None.
    A list or tuple of ints is accepted; anything else gets a TypeError / ValueError that names
    ``owner`` and ``name``."""
    if lengths is None:
        return None
    if isinstance(lengths, (list, tuple)):
        lengths = np.asarray(lengths) if len(lengths) else np.zeros(0, dtype=np.int64)
    require_int(owner, name, lengths)
    require_shape(owner, name, lengths, (N,), "(N,) with N = xs.shape[0]")
    if N:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 0 or hi > T:
            raise ValueError(f"{owner}: {name} must lie in [0, T] = [0, {T}], found "
                             f"{lo if lo < 0 else hi}")
    return xp.asarray(lengths).astype(np.int64, copy=False)


def reverse_index(lengths, T):
    """(N, T) time index that reverses each row's first lengths[n] steps and leaves its padding
    in place; it is its own inverse. ``a[rows, index]`` with ``rows = arange(N)[:, None]``
    reverses batch-major ``a`` (N, T, ...) row by row."""
    xp = array_module(lengths)
    t = xp.arange(T, dtype=lengths.dtype)[None, :]
    n = lengths[:, None]
    return xp.where(t < n, n - 1 - t, t)


def reverse_rows(a, index):
    """Batch-major ``a`` (N, T, ...) gathered by a ``reverse_index`` (a new array)."""
    xp = array_module(a)
    return a[xp.arange(a.shape[0])[:, None], index]


def _set_grad(grad, value):
    """Write a gradient in place, so that grads arrays keep their identity."""
    grad[...] = value


def _writable(grad, fortran=False):
    """``grad`` itself where an op can write it in place (writeable, exactly C-strided, or
    Fortran-strided when ``fortran``), else a fresh C-ordered array to copy into it afterwards."""
    if getattr(grad.flags, "writeable", True) and (
            has_c_strides(grad) or (fortran and has_f_strides(grad))):
        return grad
    return array_module(grad).empty(grad.shape, grad.dtype)


def _copy_back(grads, written):
    """Copy each gradient an op wrote into a stand-in (``_writable``) into the grads array."""
    for g, w in zip(grads, written):
        if g is not w:
            _set_grad(g, w)


# ------------------------------------------------------------------------- recurrent layers
class _Recurrent:
    """Shared machinery of TimeRNN / TimeLSTM / TimeGRU: checks, state, and the calls of the
    cell's layer ops (``{cell}_layer_forward`` / ``_backward`` of ``fastrnn.contract``), whose
    arguments are gathered by name from the layer's parameters, states and cache."""

    cell = "rnn"
    state_names = ("h",)
    # parameter names in ``params`` order (TimeGRU(reset_after=True) adds b_hn)
    param_names = ("Wx", "Wh", "b")

    @property
    def gates(self):
        return GATES[self.cell]

    def __init__(self, Wx, Wh, b, stateful=False):
        name = type(self).__name__
        for pname, p in (("Wx", Wx), ("Wh", Wh), ("b", b)):
            require_float(name, pname, p)
        _require_same_dtype(name, Wx=Wx, Wh=Wh, b=b)
        require_rank(name, "Wh", Wh, 2, f"(H, {self.gates}*H)")
        require_rank(name, "Wx", Wx, 2, f"(D, {self.gates}*H)")
        H = Wh.shape[0]
        _require_nonempty_dims(name, "Wx (D, G*H), Wh (H, G*H)", D=Wx.shape[0], H=H)
        GH = self.gates * H
        require_shape(name, "Wh", Wh, (H, GH), f"(H, {self.gates}*H)")
        require_shape(name, "Wx", Wx, (Wx.shape[0], GH), f"(D, {self.gates}*H)")
        require_shape(name, "b", b, (GH,), f"({self.gates}*H,)")
        xp = array_module(Wx)
        self.params = [Wx, Wh, b]
        self.grads = [xp.zeros_like(Wx), xp.zeros_like(Wh), xp.zeros_like(b)]
        self.stateful = stateful
        self.H = H
        self.h = None
        self.dh = None
        self._state_set = False
        self.cache = None

    # ---- state
    def reset_state(self):
        for s in self.state_names:
            setattr(self, s, None)
        self._state_set = False

    def set_state(self, h, *rest):
        """Start the next forward from state h (N, H) (LSTM: and c, zeros when omitted)."""
        name = type(self).__name__
        values = (h,) + rest
        for sname, v in zip(self.state_names, values):
            if v is None:
                continue
            require_float(name, sname, v, self.params[0].dtype)
            require_rank(name, sname, v, 2, "(N, H)")
            require_shape(name, sname, v, (v.shape[0], self.H), "(N, H)")
            _require_finite(name, sname, v)
        for sname, v in zip(self.state_names, values + (None,) * len(self.state_names)):
            setattr(self, sname, None if v is None else array_module(v).array(v, copy=True))
        self._state_set = True

    def _initial_states(self, N, xp):
        """The states the next forward starts from: carried or set ones, zeros otherwise."""
        name = type(self).__name__
        use = self.stateful or self._state_set
        states = []
        for sname in self.state_names:
            s = getattr(self, sname) if use else None
            if s is None:
                s = xp.zeros((N, self.H), dtype=self.params[0].dtype)
            elif s.shape[0] != N:
                raise ValueError(f"{name}: the carried state {sname} has batch size "
                                 f"{s.shape[0]}, but xs has N={N}; call reset_state() or "
                                 f"set_state() with shape ({N}, {self.H})")
            states.append(s)
        self._state_set = False
        return states

    def _call(self, ops, op, values):
        return getattr(ops, op.name)(*(values[a.name] for a in op.args))

    # ---- forward / backward
    def forward(self, xs, lengths=None):
        """xs (N, T, D) -> hs (N, T, H); ``lengths`` (N,) ints in [0, T] or None (see the
        module doc)."""
        name = type(self).__name__
        Wx = self.params[0]
        require_float(name, "xs", xs, Wx.dtype)
        require_rank(name, "xs", xs, 3, "(N, T, D)")
        N, T, D = xs.shape
        require_shape(name, "xs", xs, (N, T, Wx.shape[0]), "(N, T, D) with D = Wx.shape[0]")
        xp = array_module(xs)
        lengths = check_lengths(name, "lengths", lengths, N, T, xp)
        xs = c_layout(xs)  # kept for backward: the op would copy any other layout each time
        _require_finite(name, "xs", xs)
        states0 = self._initial_states(N, xp)
        values = dict(zip(self.param_names, self.params), xs=xs, lengths=lengths,
                      **{s + "0": v for s, v in zip(self.state_names, states0)})
        ops = backend.ops_for(xs)
        out = self._call(ops, layer_forward_op(self.cell), values)
        ns = len(self.state_names)
        hs, saved, kept = out[0], out[1 + ns:-1], out[-1]
        for sname, last in zip(self.state_names, out[1:1 + ns]):
            setattr(self, sname, last)
        # Backward reads hs, and the caller may change what it gets back: backward gets the
        # op's own copy of it (hs_kept).
        self.cache = (ops, xs, states0, kept, saved, lengths)
        return hs

    def backward(self, dhs):
        name = type(self).__name__
        if self.cache is None:
            raise RuntimeError(f"{name}.backward called before forward")
        ops, xs, states0, hs, saved, lengths = self.cache
        N, T, H = hs.shape
        Wx = self.params[0]
        require_float(name, "dhs", dhs, Wx.dtype)
        require_rank(name, "dhs", dhs, 3, "(N, T, H)")
        require_shape(name, "dhs", dhs, (N, T, H), "(N, T, H) of the last forward")
        fwd = layer_forward_op(self.cell)
        grads = {"d" + n: _writable(g) for n, g in zip(self.param_names, self.grads)}
        values = dict(zip(self.param_names, self.params), dhs=dhs, xs=xs, hs=hs,
                      lengths=lengths, **grads,
                      **dict(zip((n for n, _ in fwd.returns[1 + len(self.state_names):-1]),
                                 saved)),
                      **{s + "0": v for s, v in zip(self.state_names, states0)})
        out = self._call(ops, layer_backward_op(self.cell), values)
        _copy_back(self.grads, grads.values())
        for sname, d in zip(self.state_names, out[1:1 + len(self.state_names)]):
            setattr(self, "d" + sname, d)
        return out[0]


class TimeRNN(_Recurrent):
    """h' = tanh(x @ Wx + h @ Wh + b)."""

    cell = "rnn"


class TimeLSTM(_Recurrent):
    """Gates [f | g | i | o]: c' = f*c + g*i, h' = o*tanh(c')."""

    cell = "lstm"
    state_names = ("h", "c")

    def __init__(self, Wx, Wh, b, stateful=False):
        super().__init__(Wx, Wh, b, stateful)
        self.c = None
        self.dc = None

    def set_state(self, h, c=None):
        super().set_state(h, c)


class TimeGRU(_Recurrent):
    """Gates [z | r | h~]; h' = (1-z)*h + z*h~.

    reset_after=False (default): h~ = tanh(x Wx_h + (r*h) Wh_h + b_h).
    reset_after=True (cuDNN / PyTorch form): n = tanh(x Wx_n + b_n + r*(h Wh_n + b_hn)),
    h' = (1-z)*n + z*h, with the recurrent bias b_hn (H,) appended to params (zeros if None)."""

    cell = "gru"

    def __init__(self, Wx, Wh, b, stateful=False, reset_after=False, b_hn=None):
        super().__init__(Wx, Wh, b, stateful)
        self.reset_after = bool(reset_after)
        if self.reset_after:
            self.cell = "gru_ra"
            self.param_names = ("Wx", "Wh", "b", "b_hn")
            xp = array_module(Wx)
            if b_hn is None:
                b_hn = xp.zeros(self.H, dtype=Wx.dtype)
            require_float("TimeGRU", "b_hn", b_hn, Wx.dtype)
            require_shape("TimeGRU", "b_hn", b_hn, (self.H,), "(H,)")
            self.params.append(b_hn)
            self.grads.append(xp.zeros_like(b_hn))
        elif b_hn is not None:
            raise ValueError("TimeGRU: b_hn is only used with reset_after=True")


# ------------------------------------------------------------------------------ bidirectional
class TimeBidirectional:
    """Runs ``forward_layer`` left to right and ``backward_layer`` right to left over xs and
    concatenates their outputs on the last axis: (N, T, H1 + H2). Input gradients are summed.

    With ``lengths`` the backward direction starts at each row's own last real step: it reads
    each row's first lengths[n] steps reversed (padding stays at the end), and its outputs are
    put back in place, so padded positions are zero in both halves."""

    def __init__(self, forward_layer, backward_layer):
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer
        self.params = forward_layer.params + backward_layer.params
        self.grads = forward_layer.grads + backward_layer.grads
        self.H1 = self.H2 = None
        self.index = None

    def forward(self, xs, lengths=None):
        """xs (N, T, D) -> (N, T, H1 + H2); ``lengths`` (N,) ints in [0, T] or None."""
        if lengths is not None:
            name = type(self).__name__
            require_array(name, "xs", xs)
            require_rank(name, "xs", xs, 3, "(N, T, D)")
            lengths = check_lengths(name, "lengths", lengths, xs.shape[0], xs.shape[1],
                                    array_module(xs))
        o1 = self.forward_layer.forward(xs, lengths)
        if lengths is None:
            self.index = None
            o2 = self.backward_layer.forward(xs[:, ::-1])[:, ::-1]
        else:
            self.index = reverse_index(lengths, xs.shape[1])
            o2 = reverse_rows(self.backward_layer.forward(reverse_rows(xs, self.index),
                                                          lengths), self.index)
        self.H1, self.H2 = o1.shape[2], o2.shape[2]
        return array_module(o1).concatenate((o1, o2), axis=2)

    def backward(self, dhs):
        name = type(self).__name__
        if self.H1 is None:
            raise RuntimeError(f"{name}.backward called before forward")
        H = self.H1 + self.H2
        require_array(name, "dhs", dhs)
        require_rank(name, "dhs", dhs, 3, "(N, T, H1 + H2)")
        if dhs.shape[2] != H:
            raise ValueError(f"{name}: dhs must have shape (N, T, H1 + H2) with H1 + H2 = {H}, "
                             f"got {tuple(dhs.shape)}")
        dx1 = self.forward_layer.backward(dhs[:, :, :self.H1])  # checks (N, T) too
        if self.index is None:
            return dx1 + self.backward_layer.backward(dhs[:, ::-1, self.H1:])[:, ::-1]
        dx2 = self.backward_layer.backward(reverse_rows(dhs[:, :, self.H1:], self.index))
        return dx1 + reverse_rows(dx2, self.index)

    def reset_state(self):
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()


class TimeBiLSTM(TimeBidirectional):
    def __init__(self, Wx1, Wh1, b1, Wx2, Wh2, b2, stateful=False):
        super().__init__(TimeLSTM(Wx1, Wh1, b1, stateful), TimeLSTM(Wx2, Wh2, b2, stateful))


class TimeBiGRU(TimeBidirectional):
    def __init__(self, Wx1, Wh1, b1, Wx2, Wh2, b2, stateful=False, reset_after=False):
        super().__init__(TimeGRU(Wx1, Wh1, b1, stateful, reset_after),
                         TimeGRU(Wx2, Wh2, b2, stateful, reset_after))


class TimeBiRNN(TimeBidirectional):
    def __init__(self, Wx1, Wh1, b1, Wx2, Wh2, b2, stateful=False):
        super().__init__(TimeRNN(Wx1, Wh1, b1, stateful), TimeRNN(Wx2, Wh2, b2, stateful))


# ------------------------------------------------------------------------ other time layers
class TimeEmbedding:
    """Rows of W (V, D) for ids (N, T) -> (N, T, D)."""

    def __init__(self, W):
        require_float("TimeEmbedding", "W", W)
        require_rank("TimeEmbedding", "W", W, 2, "(V, D)")
        _require_nonempty_dims("TimeEmbedding", "W (V, D)", V=W.shape[0], D=W.shape[1])
        self.params = [W]
        self.grads = [array_module(W).zeros_like(W)]
        self.idx = None

    def forward(self, xs):
        W = self.params[0]
        # Checked here so that errors name this layer and its argument, not the op.
        require_int("TimeEmbedding", "xs", xs)
        require_range("TimeEmbedding", "xs", xs, 0, W.shape[0])
        self.idx = xs
        return backend.ops_for(W).embedding_forward(W, xs)

    def backward(self, dout):
        if self.idx is None:
            raise RuntimeError("TimeEmbedding.backward called before forward")
        W = self.params[0]
        require_float("TimeEmbedding", "dout", dout, W.dtype)
        require_shape("TimeEmbedding", "dout", dout, tuple(self.idx.shape) + (W.shape[1],),
                      "(N, T, D) of the last forward")
        ops = backend.ops_for(dout)
        dW = self.grads[0]
        if dW.flags.c_contiguous:
            ops.embedding_backward(dout, self.idx, dW)
        else:  # the kernel scatters into C order; keep the grads array's identity regardless
            dW[...] = ops.embedding_backward(dout, self.idx, array_module(dW).empty(dW.shape,
                                                                                  dW.dtype))
        return None


class TimeAffine:
    """x (N, T, D) @ W (D, M) + b -> (N, T, M). W may be a transposed view of another layer's
    parameter (weight tying: ``TimeAffine(embed_W.T, b)``); gradients are written in place."""

    def __init__(self, W, b):
        require_float("TimeAffine", "W", W)
        require_rank("TimeAffine", "W", W, 2, "(D, M)")
        _require_nonempty_dims("TimeAffine", "W (D, M)", D=W.shape[0], M=W.shape[1])
        require_float("TimeAffine", "b", b)
        _require_same_dtype("TimeAffine", W=W, b=b)
        require_shape("TimeAffine", "b", b, (W.shape[1],), "(M,)")
        xp = array_module(W)
        self.params = [W, b]
        self.grads = [xp.zeros_like(W), xp.zeros_like(b)]
        self.x = None

    def forward(self, x):
        W, b = self.params
        require_float("TimeAffine", "x", x, W.dtype)
        if x.ndim < 1 or x.shape[-1] != W.shape[0]:
            raise ValueError(f"TimeAffine: x must have shape (..., D) with D = {W.shape[0]}, "
                             f"got {tuple(x.shape)}")
        self.x = x
        out = backend.ops_for(x).linear_forward(x.reshape(-1, W.shape[0]), W, b)
        return out.reshape(x.shape[:-1] + (W.shape[1],))

    def backward(self, dout):
        if self.x is None:
            raise RuntimeError("TimeAffine.backward called before forward")
        W = self.params[0]
        x = self.x
        expected = x.shape[:-1] + (W.shape[1],)
        require_float("TimeAffine", "dout", dout, W.dtype)
        require_shape("TimeAffine", "dout", dout, expected, "x.shape[:-1] + (M,)")
        dW, db = _writable(self.grads[0], fortran=True), _writable(self.grads[1])
        dx, _, _ = backend.ops_for(dout).linear_backward(dout.reshape(-1, W.shape[1]),
                                                         x.reshape(-1, W.shape[0]), W, dW, db)
        _copy_back(self.grads, (dW, db))
        return dx.reshape(x.shape)


class TimeSoftmaxWithLoss:
    """Softmax cross-entropy of scores xs (N, T, V) against ids ts (N, T) (or one-hot
    (N, T, V)); also takes 2-D scores (N, V) with labels (N,). Label -1 (``ignore_label``) is
    skipped; if every label is -1 the loss is 0.

    ``reduction`` says what the returned loss (and so the gradient, and so the meaning of a
    learning rate) is:

    - ``"mean"`` (default, the textbook's): the mean over the counted tokens.
    - ``"sum_over_time"``: summed over time, averaged over the batch rows, i.e. ``mean * T``
      without ignored labels (TensorFlow's PTB model and Zaremba et al. 2014, whose learning
      rate 1.0 assumes this loss). The gradient grows with T in the same way.

    ``token_loss`` holds the mean per-token loss of the last forward whatever the reduction
    (perplexity is ``exp(token_loss)``). ``forward(xs, ts, grad=False)`` computes the loss only
    (evaluation); ``backward`` then raises."""

    ignore_label = -1
    REDUCTIONS = ("mean", "sum_over_time")

    def __init__(self, reduction="mean"):
        if reduction not in self.REDUCTIONS:
            raise ValueError(f"TimeSoftmaxWithLoss: reduction must be one of "
                             f"{', '.join(map(repr, self.REDUCTIONS))}, got {reduction!r}")
        self.reduction = reduction
        self.params, self.grads = [], []
        self.dx = None
        self.shape = None
        self.token_loss = None
        self.scale = 1.0

    def forward(self, xs, ts, grad=True):
        require_float("TimeSoftmaxWithLoss", "xs", xs)
        if xs.ndim not in (2, 3):
            raise ValueError(f"TimeSoftmaxWithLoss: xs must be (N, T, V) or (N, V), got shape "
                             f"{tuple(xs.shape)}")
        require_array("TimeSoftmaxWithLoss", "ts", ts)
        if ts.ndim == xs.ndim and ts.shape == xs.shape:  # one-hot labels
            ts = ts.argmax(axis=-1)
        require_int("TimeSoftmaxWithLoss", "ts", ts)
        require_shape("TimeSoftmaxWithLoss", "ts", ts, xs.shape[:-1], "xs.shape[:-1]")
        V = xs.shape[-1]
        loss, dx = backend.ops_for(xs).softmax_cross_entropy(xs.reshape(-1, V), ts.reshape(-1),
                                                             grad=bool(grad))
        loss = loss[()] if isinstance(loss, np.ndarray) else loss
        self.token_loss = loss
        scale = 1.0
        if self.reduction == "sum_over_time" and xs.shape[0]:
            # The op averages over the counted labels; rescale to a sum over them per row.
            scale = int((ts != self.ignore_label).sum()) / xs.shape[0]
        self.scale = scale
        self.dx = dx
        self.shape = xs.shape
        return loss if scale == 1.0 else loss * xs.dtype.type(scale)

    def backward(self, dout=1):
        if self.dx is None:
            raise RuntimeError("TimeSoftmaxWithLoss.backward called before forward (or after a "
                               "forward with grad=False)")
        dout = dout * self.scale
        dx = self.dx if (np.isscalar(dout) and dout == 1) else self.dx * dout
        return dx.reshape(self.shape)


class TimeSigmoidWithLoss:
    """Mean binary cross-entropy of sigmoid(xs) against 0/1 labels ts of the same shape; an
    empty batch gives a loss of 0 and an empty gradient, as TimeSoftmaxWithLoss does."""

    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None

    def forward(self, xs, ts):
        require_float("TimeSigmoidWithLoss", "xs", xs)
        require_array("TimeSigmoidWithLoss", "ts", ts)
        require_shape("TimeSigmoidWithLoss", "ts", ts, xs.shape, "xs.shape")
        xp = array_module(xs)
        t = ts.astype(xs.dtype, copy=False)
        self.cache = (xs, t)
        if xs.size == 0:
            return xp.zeros((), dtype=xs.dtype)[()]
        # log(1 + exp(-|x|)) form: no overflow for large |x|
        return (xp.maximum(xs, 0) - xs * t + xp.log1p(xp.exp(-xp.abs(xs)))).mean()

    def backward(self, dout=1):
        if self.cache is None:
            raise RuntimeError("TimeSigmoidWithLoss.backward called before forward")
        xs, t = self.cache
        xp = array_module(xs)
        y = 0.5 * (1 + xp.tanh(0.5 * xs))
        return ((y - t) * (dout / max(xs.size, 1))).astype(xs.dtype, copy=False)


class TimeDropout:
    """Inverted dropout: in training (``train_flg`` True) multiplies by keep/(1-ratio); in
    evaluation passes xs through. The mask comes from a counter-based hash of a per-call seed,
    drawn from ``np.random`` (so ``np.random.seed`` makes runs repeatable) unless the layer was
    given its own ``seed``."""

    def __init__(self, dropout_ratio=0.5, seed=None):
        ratio_ok = isinstance(dropout_ratio, (int, float, np.number)) and \
            not isinstance(dropout_ratio, bool) and 0.0 <= dropout_ratio < 1.0
        if not ratio_ok:
            raise ValueError(f"TimeDropout: dropout_ratio must lie in [0, 1), got "
                             f"{dropout_ratio!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"TimeDropout: seed must be None or an integer >= 0, got {seed!r}")
        self.params, self.grads = [], []
        self.dropout_ratio = dropout_ratio
        self.train_flg = True
        self.mask = None
        self._forwarded = False
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _next_seed(self):
        if self._rng is not None:
            return int(self._rng.integers(0, 2 ** 63))
        return int(np.random.randint(0, 2 ** 31 - 1)) * (2 ** 32) + int(
            np.random.randint(0, 2 ** 31 - 1))

    def forward(self, xs):
        require_float("TimeDropout", "xs", xs)
        self._forwarded = True
        if not self.train_flg:
            self.mask = None
            return xs
        y, self.mask = backend.ops_for(xs).dropout_forward(xs, self.dropout_ratio,
                                                           self._next_seed())
        return y

    def backward(self, dout):
        if not self._forwarded:
            raise RuntimeError("TimeDropout.backward called before forward")
        return dout if self.mask is None else dout * self.mask
