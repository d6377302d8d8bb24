"""Shared model machinery: weight creation, params/grads lists, state, save/load, rebuild."""
import json
import os

import numpy as np

from .. import layers as L
from ..checks import array_module
from ..optim import tie_groups

CELLS = ("rnn", "lstm", "gru")
from ..contract import GATES as _GATES


def get_xp(xp):
    """The array module from None / "numpy" / "cupy" / a module (cupy imported only on demand)."""
    if xp is None or xp == "numpy":
        return np
    if xp == "cupy":
        import cupy
        return cupy
    if isinstance(xp, str):
        raise ValueError(f"unknown array module {xp!r}; expected 'numpy' or 'cupy'")
    return xp


def to_numpy(a):
    """A NumPy copy (or the array itself) of a NumPy or CuPy array."""
    if isinstance(a, (np.ndarray, np.generic, int, float)):
        return a
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return np.asarray(a)


class Init:
    """Seeded weight factory: draws on the host (so a seed gives the same weights on CPU and
    GPU) in the model's dtype, then moves to the model's array module."""

    def __init__(self, seed, dtype, xp):
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.xp = get_xp(xp)

    def randn(self, *shape, scale=1.0):
        return self.xp.asarray((self.rng.standard_normal(shape) * scale).astype(self.dtype))

    def zeros(self, *shape):
        return self.xp.zeros(shape, dtype=self.dtype)

    def rnn(self, cell, D, H, stateful=False, reset_after=False):
        """A TimeRNN / TimeLSTM / TimeGRU with Xavier-like N(0, 1/fan_in) weights, zero biases."""
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
        G = _GATES[cell]
        Wx = self.randn(D, G * H, scale=1 / np.sqrt(D))
        Wh = self.randn(H, G * H, scale=1 / np.sqrt(H))
        b = self.zeros(G * H)
        if cell == "rnn":
            return L.TimeRNN(Wx, Wh, b, stateful=stateful)
        if cell == "lstm":
            return L.TimeLSTM(Wx, Wh, b, stateful=stateful)
        return L.TimeGRU(Wx, Wh, b, stateful=stateful, reset_after=reset_after)

    def dropout_seed(self):
        return int(self.rng.integers(0, 2 ** 63))


class Model:
    """Base of every model: ``params`` / ``grads`` gathered from ``self.layers`` (in order; a tied
    weight appears once per layer using it), ``reset_state``, ``save_params`` / ``load_params``
    and the recurrent and dropout state needed to resume training exactly.

    Subclasses call ``_finish(config)`` at the end of ``__init__``: ``config`` is the keyword
    arguments that rebuild the model with ``build_model``."""

    def _finish(self, config, layers):
        self.layers = list(layers)
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads
        self.config = {"class": type(self).__name__, **config}

    # ---- layers by kind
    def _walk(self):
        for layer in self.layers:
            if isinstance(layer, L.TimeBidirectional):
                yield layer.forward_layer
                yield layer.backward_layer
            else:
                yield layer

    @property
    def recurrent_layers(self):
        return [l for l in self._walk() if isinstance(l, (L.TimeRNN, L.TimeLSTM, L.TimeGRU))]

    @property
    def dropout_layers(self):
        return [l for l in self._walk() if isinstance(l, L.TimeDropout)]

    @property
    def xp(self):
        return array_module(self.params[0])

    @property
    def dtype(self):
        return self.params[0].dtype

    def set_train(self, flag):
        for l in self.dropout_layers:
            l.train_flg = bool(flag)

    def reset_state(self):
        for l in self.recurrent_layers:
            l.reset_state()

    # ---- recurrent state (carried by stateful layers between batches)
    def get_state(self):
        """The carried state of every recurrent layer: a list of tuples (h[, c]) or None."""
        out = []
        for l in self.recurrent_layers:
            states = tuple(getattr(l, s) for s in l.state_names)
            out.append(None if states[0] is None else tuple(s.copy() for s in states))
        return out

    def set_state(self, states):
        layers = self.recurrent_layers
        if len(states) != len(layers):
            raise ValueError(f"{len(states)} states for {len(layers)} recurrent layers")
        xp = self.xp
        for l, s in zip(layers, states):
            if s is None:
                l.reset_state()
            else:
                for name, v in zip(l.state_names, s):
                    setattr(l, name, xp.asarray(v).copy())

    # ---- dropout randomness (each dropout layer owns a seeded generator)
    def get_rng_state(self):
        return [getattr(l, "_rng").bit_generator.state if getattr(l, "_rng", None) else None
                for l in self.dropout_layers]

    def set_rng_state(self, states):
        for l, s in zip(self.dropout_layers, states):
            if s is not None:
                l._rng.bit_generator.state = s

    # ---- parameters
    def unique_params(self):
        """One entry per distinct parameter array (tied weights once)."""
        return [self.params[g[0][0]] for g in tie_groups(self.params)]

    def param_arrays(self):
        """Host copies of the distinct parameters, in order."""
        return [np.array(to_numpy(p)) for p in self.unique_params()]

    def load_param_arrays(self, arrays):
        params = self.unique_params()
        if len(arrays) != len(params):
            raise ValueError(f"expected {len(params)} parameter arrays, got {len(arrays)}")
        xp = self.xp
        for i, (p, a) in enumerate(zip(params, arrays)):
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"parameter {i}: shape {tuple(a.shape)} does not match the "
                                 f"model's {tuple(p.shape)}")
            p[...] = xp.asarray(a, dtype=p.dtype)  # in place: layers keep their arrays

    def save_params(self, path=None):
        """Save the parameters and the model's config to ``path`` (.npz; default
        ``<ClassName>.npz`` as in the textbook), atomically."""
        path = f"{type(self).__name__}.npz" if path is None else path
        arrays = {f"p{i}": a for i, a in enumerate(self.param_arrays())}
        arrays["config"] = np.array(json.dumps(self.config))
        atomic_savez(path, arrays)

    def load_params(self, path=None):
        path = f"{type(self).__name__}.npz" if path is None else path
        with np.load(path, allow_pickle=False) as z:
            n = sum(1 for k in z.files if k.startswith("p") and k[1:].isdigit())
            self.load_param_arrays([z[f"p{i}"] for i in range(n)])

    def num_params(self):
        return int(sum(p.size for p in self.unique_params()))


def atomic_savez(path, arrays):
    """np.savez to a temporary file in the same folder, fsync, then rename over ``path``: a
    crash leaves either the old file or the new one, never a torn one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_REGISTRY = {}


def register(cls):
    _REGISTRY[cls.__name__] = cls
    return cls


def build_model(config, xp=None):
    """Rebuild a model from its ``config`` (as stored by save_params / checkpoints)."""
    config = dict(config)
    name = config.pop("class")
    if name not in _REGISTRY:
        raise ValueError(f"unknown model class {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    if xp is not None:
        config["xp"] = xp
    return _REGISTRY[name](**config)


def load_model(path, xp=None):
    """A model rebuilt from a file written by save_params (or a trainer checkpoint)."""
    with np.load(path, allow_pickle=False) as z:
        if "config" not in z.files:
            raise ValueError(f"{path} holds no model config")
        config = json.loads(str(z["config"]))
    model = build_model(config, xp)
    model.load_params(path)
    return model
