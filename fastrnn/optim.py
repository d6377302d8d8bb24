"""Optimizers over the positional ``params`` / ``grads`` lists of the time-layer API.

Weight tying shares one array between layers (the embedding matrix ``W`` and the output affine's
``W.T``), so a model's ``params`` may list the same storage twice. Every optimizer here finds
such ties by memory identity (the same array, or a transposed view of it), sums the gradients of
the copies and updates the storage once; updating both copies would apply the step twice. All
updates are in place, so the arrays the layers hold stay the ones being trained.
"""
import math

import numpy as np

from . import backend
from .checks import array_module, has_c_strides, has_f_strides
from .reference import ops as reference_ops
from .reference.ops import chunks


def _address(a):
    """Start address of an array's data (NumPy or CuPy)."""
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.data.ptr


def _same(a, b):
    return a is b or (a.shape == b.shape and a.strides == b.strides
                      and a.dtype == b.dtype and _address(a) == _address(b))


def _transposed(a, b):
    """b is a.T (a 2-D view of the same memory with swapped axes)."""
    return (a.ndim == 2 and b.ndim == 2 and a.shape == b.shape[::-1]
            and a.strides == b.strides[::-1] and a.dtype == b.dtype
            and _address(a) == _address(b))


def tie_groups(params):
    """Group positions of ``params`` that share storage.

    Returns a list of groups, one per distinct array, each a list of ``(index, transposed)``;
    the first entry of a group is the array that gets updated (``transposed`` False)."""
    groups = []
    for i, p in enumerate(params):
        for g in groups:
            root = params[g[0][0]]
            if _same(root, p):
                g.append((i, False))
                break
            if _transposed(root, p):
                g.append((i, True))
                break
        else:
            groups.append([(i, False)])
    return groups


def merge_tied(params, grads):
    """``(unique_params, summed_grads)``: one entry per distinct array, the gradients of its
    copies summed (transposed back where the copy is a transposed view). Untied gradients are
    passed through as the same objects (no copy)."""
    if len(params) != len(grads):
        raise ValueError(f"{len(params)} params but {len(grads)} grads")
    uparams, ugrads = [], []
    for g in tie_groups(params):
        i0 = g[0][0]
        uparams.append(params[i0])
        if len(g) == 1:
            ugrads.append(grads[i0])
            continue
        total = array_module(grads[i0]).empty_like(grads[i0])
        _axpby(1.0, [grads[i0]], 0.0, [total])
        for i, tr in g[1:]:
            _axpby(1.0, [grads[i].T if tr else grads[i]], 1.0, [total])
        ugrads.append(total)
    return uparams, ugrads


# The norms and the plain updates run the backend's ``sum_squares`` / ``axpby``, one call for
# every array of a model (the compiled engine's run on its own threads, the reference's NumPy
# ones chunk by chunk). No BLAS here: BLAS dot / axpy wake OpenBLAS's worker threads, which then
# busy-wait (for about 2**28 cycles unless OPENBLAS_THREAD_TIMEOUT is set before NumPy loads)
# on the cores the engine's threads need next; the char LSTM step took 21.1 ms instead of
# 12.8 ms that way.


def _c_view(a):
    """``a`` or a view of the same elements with exact C strides (``a.T`` for Fortran order),
    or None when a has neither layout. Elementwise work may use either order."""
    if has_c_strides(a):
        return a
    if has_f_strides(a):
        return a.T
    return None


def global_norm(grads):
    """sqrt of the sum of squares of every gradient (summed in float64)."""
    if not grads:
        return 0.0
    views = []
    for g in grads:
        v = _c_view(g)
        views.append(g if v is None else v)  # another layout: the op reads a copy
    return math.sqrt(float(backend.ops_for(grads[0]).sum_squares(views)))


def _axpby(a, xs, b, ys):
    """ys[k] = a*xs[k] + b*ys[k] in place for every k (x may be y), in one call of the
    backend's ``axpby`` for every y it can write in place."""
    xv, yv = [], []
    for x, y in zip(xs, ys):
        v = _c_view(y)
        if v is None:  # a strided view of a parameter, which the contract's in-place output
            reference_ops.axpby_one(a, x, b, y)  # cannot be
        else:
            xv.append(x if v is y else x.T)  # the same elements, in y's order
            yv.append(v)
    if yv:
        backend.ops_for(yv[0]).axpby(a, xv, b, yv)


def _chunkable(*arrays):
    """Contiguous writeable NumPy arrays of one float dtype: what the chunked updates take."""
    return all(isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable
               and a.dtype == arrays[0].dtype for a in arrays)


def clip_grads(grads, max_norm):
    """Scale every gradient in place so that their global L2 norm is at most ``max_norm``.
    Pass deduplicated gradients (``merge_tied``) so a tied array counts once. Returns the norm
    before clipping."""
    norm = global_norm(grads)
    rate = max_norm / (norm + 1e-6)
    if rate < 1:
        _axpby(rate, grads, 0.0, grads)
    return norm


class Optimizer:
    """Base class: ``update(params, grads)`` merges tied weights then applies ``_step``.

    State (moments etc.) is kept per distinct array, by position among the distinct arrays, so a
    model must pass its params in the same order every step (as every model here does).
    ``state_dict()`` / ``load_state_dict()`` round-trip everything for exact resumption."""

    hyper = ("lr",)

    def __init__(self, lr=0.01):
        self.lr = lr
        self.t = 0
        self.slots = {}  # name -> list of arrays, one per distinct param

    def update(self, params, grads):
        params, grads = merge_tied(params, grads)
        self.t += 1
        self._step(params, grads)

    def _slot(self, name, params):
        s = self.slots.get(name)
        if s is None or len(s) != len(params) or any(
                a.shape != p.shape for a, p in zip(s, params)):
            xp = array_module(params[0])
            s = self.slots[name] = [xp.zeros_like(p) for p in params]
        return s

    def _step(self, params, grads):
        raise NotImplementedError

    def state_dict(self):
        """Hyper-parameters, step count and slot arrays (as NumPy)."""
        def host(a):
            return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a
        return {"class": type(self).__name__, "t": self.t,
                "hyper": {k: getattr(self, k) for k in self.hyper},
                "slots": {k: [np.array(host(a)) for a in v] for k, v in self.slots.items()}}

    def load_state_dict(self, state, xp=np):
        if state["class"] != type(self).__name__:
            raise ValueError(f"optimizer state is for {state['class']}, not {type(self).__name__}")
        self.t = int(state["t"])
        for k, v in state["hyper"].items():
            setattr(self, k, v)
        self.slots = {k: [xp.asarray(a) for a in v] for k, v in state["slots"].items()}


class SGD(Optimizer):
    def _step(self, params, grads):
        _axpby(-self.lr, grads, 1.0, params)


class Momentum(Optimizer):
    """Heavy-ball momentum: v = momentum*v - lr*g; p += v."""
    hyper = ("lr", "momentum")

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = momentum

    def _step(self, params, grads):
        vs = self._slot("v", params)
        _axpby(-self.lr, grads, self.momentum, vs)
        _axpby(1.0, vs, 1.0, params)


class Nesterov(Momentum):
    """Nesterov momentum in the textbook's reformulation (update at the look-ahead point)."""

    def _step(self, params, grads):
        vs = self._slot("v", params)
        m, lr = self.momentum, self.lr
        _axpby(-lr, grads, m, vs)
        _axpby(m * m, vs, 1.0, params)
        _axpby(-(1 + m) * lr, grads, 1.0, params)


class AdaGrad(Optimizer):
    hyper = ("lr", "eps")

    def __init__(self, lr=0.01, eps=1e-7):
        super().__init__(lr)
        self.eps = eps

    def _step(self, params, grads):
        hs = self._slot("h", params)
        xp = array_module(params[0]) if params else np
        for p, g, h in zip(params, grads, hs):
            h += g * g
            p -= p.dtype.type(self.lr) * g / (xp.sqrt(h) + p.dtype.type(self.eps))


class RMSprop(Optimizer):
    hyper = ("lr", "decay", "eps")

    def __init__(self, lr=0.01, decay=0.99, eps=1e-7):
        super().__init__(lr)
        self.decay, self.eps = decay, eps

    def _step(self, params, grads):
        hs = self._slot("h", params)
        xp = array_module(params[0]) if params else np
        for p, g, h in zip(params, grads, hs):
            t = p.dtype.type
            h *= t(self.decay)
            h += t(1 - self.decay) * g * g
            p -= t(self.lr) * g / (xp.sqrt(h) + t(self.eps))


class Adam(Optimizer):
    """Adam (Kingma & Ba) with the bias correction folded into the step size."""
    hyper = ("lr", "beta1", "beta2", "eps")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _step(self, params, grads):
        ms, vs = self._slot("m", params), self._slot("v", params)
        xp = array_module(params[0]) if params else np
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        for p, g, m, v in zip(params, grads, ms, vs):
            t = p.dtype.type
            if not _chunkable(p, g, m, v):
                m += t(1 - b1) * (g - m)
                v += t(1 - b2) * (g * g - v)
                p -= t(lr_t) * m / (xp.sqrt(v) + t(self.eps))
                continue
            # the same operations in the same order, chunk by chunk (no parameter-sized
            # temporaries)
            for s1, s2, pc, gc, mc, vc in chunks(p.dtype, p, g, m, v):
                np.subtract(gc, mc, out=s1)
                s1 *= t(1 - b1)
                mc += s1
                np.multiply(gc, gc, out=s1)
                s1 -= vc
                s1 *= t(1 - b2)
                vc += s1
                np.multiply(mc, t(lr_t), out=s1)
                np.sqrt(vc, out=s2)
                s2 += t(self.eps)
                s1 /= s2
                pc -= s1


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


def make_optimizer(name, lr, **kwargs):
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; expected one of "
                         f"{', '.join(OPTIMIZERS)}") from None
    return cls(lr=lr, **kwargs)
