"""Shared model machinery: weight creation, params/grads lists, state, save/load, rebuild."""
import json
import math
import os
import re
import uuid
import zipfile
import zlib

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


INIT_SCHEMES = ("textbook", "uniform", "pytorch")


class Init:
    """Seeded weight factory: draws on the host (so a seed gives the same weights on CPU and
    GPU) in the model's dtype, then moves to the model's array module.

    ``scheme`` names the initialisation:

    - ``"textbook"``: embeddings N(0, 0.01^2); recurrent and output weights N(0, 1/fan_in);
      biases 0 (Deep Learning from Scratch 2).
    - ``"uniform"``: every weight and bias U(-scale, scale) (Zaremba et al. 2014: 0.1 for the
      small model, 0.05 medium, 0.04 large).
    - ``"pytorch"``: torch.nn defaults: embeddings N(0, 1); recurrent weights and biases
      U(-1/sqrt(H), 1/sqrt(H)); output weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, seed, dtype, xp, scheme="textbook", scale=0.1):
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init {scheme!r}; expected one of "
                             f"{', '.join(INIT_SCHEMES)}")
        if scheme == "uniform" and not 0 < scale < math.inf:
            raise ValueError(f"init_scale must be a positive number, got {scale}")
        self.scheme, self.scale = scheme, float(scale)
        self.xp = get_xp(xp)

    def _host(self, a):
        return self.xp.asarray(a.astype(self.dtype))

    def randn(self, *shape, scale=1.0):
        return self._host(self.rng.standard_normal(shape) * scale)

    def uniform(self, *shape, limit):
        return self._host(self.rng.uniform(-limit, limit, shape))

    def zeros(self, *shape):
        return self.xp.zeros(shape, dtype=self.dtype)

    def embedding(self, V, D):
        if self.scheme == "uniform":
            return self.uniform(V, D, limit=self.scale)
        return self.randn(V, D, scale=0.01 if self.scheme == "textbook" else 1.0)

    def affine(self, H, V):
        """(W (H, V), b (V,)) of an output layer with fan-in H."""
        if self.scheme == "textbook":
            return self.randn(H, V, scale=1 / np.sqrt(H)), self.zeros(V)
        limit = self.scale if self.scheme == "uniform" else 1 / np.sqrt(H)
        return self.uniform(H, V, limit=limit), self.uniform(V, limit=limit)

    def rnn(self, cell, D, H, stateful=False, reset_after=False):
        """A TimeRNN / TimeLSTM / TimeGRU initialised by the scheme."""
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
        G = _GATES[cell]
        if self.scheme == "textbook":
            Wx = self.randn(D, G * H, scale=1 / np.sqrt(D))
            Wh = self.randn(H, G * H, scale=1 / np.sqrt(H))
            b = self.zeros(G * H)
        else:
            limit = self.scale if self.scheme == "uniform" else 1 / np.sqrt(H)
            Wx = self.uniform(D, G * H, limit=limit)
            Wh = self.uniform(H, G * H, limit=limit)
            b = self.uniform(G * H, limit=limit)
        if cell == "rnn":
            return L.TimeRNN(Wx, Wh, b, stateful=stateful)
        if cell == "lstm":
            return L.TimeLSTM(Wx, Wh, b, stateful=stateful)
        b_hn = None if not reset_after or self.scheme == "textbook" else \
            self.uniform(H, limit=limit)
        return L.TimeGRU(Wx, Wh, b, stateful=stateful, reset_after=reset_after, b_hn=b_hn)

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

    def check_param_arrays(self, arrays, source="the given arrays"):
        """Raise CheckpointError unless ``arrays`` fit this model's distinct parameters one to
        one (count and shapes); changes nothing."""
        params = self.unique_params()
        if len(arrays) != len(params):
            raise CheckpointError(f"{source}: {len(arrays)} parameter arrays, the model has "
                                  f"{len(params)}")
        for i, (p, a) in enumerate(zip(params, arrays)):
            if tuple(a.shape) != tuple(p.shape):
                raise CheckpointError(f"{source}: parameter {i} has shape {tuple(a.shape)}, "
                                      f"the model's is {tuple(p.shape)}")
            if np.dtype(a.dtype).kind != "f":
                raise CheckpointError(f"{source}: parameter {i} has dtype {a.dtype}, expected "
                                      f"a float array")

    def load_param_arrays(self, arrays):
        """Copy ``arrays`` into the parameters in place (layers keep their arrays); all are
        checked before the first is written, so a mismatch leaves the model unchanged."""
        self.check_param_arrays(arrays)
        xp = self.xp
        for p, a in zip(self.unique_params(), arrays):
            p[...] = xp.asarray(a, dtype=p.dtype)

    def check_config(self, config, source):
        """Raise CheckpointError naming every setting where ``config`` differs from this model."""
        diff = config_differences(config, self.config)
        if diff:
            raise CheckpointError(f"{source} was saved from a different model: "
                                  + "; ".join(diff))

    def save_params(self, path=None):
        """Save the parameters and the model's config to ``path`` (.npz; default
        ``<ClassName>.npz`` as in the textbook), atomically."""
        path = f"{type(self).__name__}.npz" if path is None else path
        arrays = {f"p{i}": a for i, a in enumerate(self.param_arrays())}
        arrays["config"] = np.array(json.dumps(self.config))
        atomic_savez(path, arrays)

    def load_params(self, path=None):
        """Load parameters saved by ``save_params`` (or a trainer checkpoint). The file is
        checked first (readable, same model settings, same parameter shapes): on any mismatch
        a CheckpointError names it and the model is left unchanged."""
        path = f"{type(self).__name__}.npz" if path is None else os.fspath(path)
        arrays = read_npz(path, "fastrnn parameter file")
        values = param_arrays_from(arrays, path)
        self.check_param_arrays(values, path)
        if "config" in arrays:
            self.check_config(_json_entry(arrays, "config", path), path)
        self.load_param_arrays(values)

    def num_params(self):
        return int(sum(p.size for p in self.unique_params()))


TMP_SUFFIX = ".tmp"


def _temp_name(path):
    """A temp file next to ``path`` named after it and this process: unique per writer, and
    recognisable later as ours (``.NAME.PID-RANDOM.tmp``)."""
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def _remove_stale_temps(path):
    """Delete temps of ``path`` left by writers that died mid-write (their process is gone)."""
    folder, base = os.path.split(path)
    pattern = re.compile(rf"^\.{re.escape(base)}\.(\d+)-[0-9a-f]{{8}}{re.escape(TMP_SUFFIX)}$")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        full = os.path.join(folder, name)
        if m and full not in _WRITING and not _process_alive(int(m.group(1))):
            try:
                os.remove(full)
            except OSError:
                pass


_WRITING = set()  # temps this process is writing now (other threads' temps are not stale)


def _process_alive(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder):
    """Make a rename in ``folder`` durable (POSIX: the directory entry has its own metadata)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms where directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data):
    """Write ``data`` (bytes, or a callable that writes to a binary file object) to a temporary
    file in the same folder, fsync, rename over ``path``, fsync the folder: a crash leaves
    either the old file or the new one, never a torn one. The temp is removed on any failure,
    and temps that earlier writers left when they were killed are removed here."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temps(path)
    tmp = _temp_name(path)
    _WRITING.add(tmp)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except OSError as e:
        if e.filename is None:  # e.g. a full disk inside np.savez: say which file it was
            e.filename = path
        raise
    finally:
        _WRITING.discard(tmp)
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_savez(path, arrays):
    """np.savez of ``arrays`` to ``path`` through ``atomic_write``."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


class CheckpointError(ValueError):
    """A file that cannot be loaded into the given model or trainer; nothing was changed."""


def read_npz(path, what="fastrnn file"):
    """{name: array} of an .npz written by fastrnn, with one clear error for anything else
    (missing, empty, truncated, corrupt, pickled objects)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a {what}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise CheckpointError(f"{path} is not a {what} (empty file)")
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise CheckpointError(f"{path} is not a {what} (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        detail = "holds Python objects" if "pickle" in str(e) else str(e).split("\n")[0]
        raise CheckpointError(f"{path} is not a {what} (corrupt or truncated: {detail})") \
            from None


def param_arrays_from(arrays, path):
    """The ``p0, p1, ...`` parameter arrays of a loaded .npz, in order."""
    idx = sorted(int(k[1:]) for k in arrays if k.startswith("p") and k[1:].isdigit())
    if idx != list(range(len(idx))):
        missing = sorted(set(range(max(idx, default=-1) + 1)) - set(idx))
        raise CheckpointError(f"{path}: parameter arrays {['p%d' % i for i in missing]} are "
                              f"missing")
    return [arrays[f"p{i}"] for i in idx]


# Config keys that only decide the initial weights, not what the model computes.
_INIT_ONLY = ("seed", "init", "init_scale")


def config_differences(saved, current):
    """'key: file X, model Y' for every setting that differs (init-only keys ignored)."""
    out = []
    for k in sorted(set(saved) | set(current)):
        if k in _INIT_ONLY:
            continue
        a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
        if a != b:
            out.append(f"{k}: file {a}, model {b}")
    return out


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


def _json_entry(arrays, key, path):
    try:
        return json.loads(str(arrays[key]))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable {key!r} entry ({e})") from None


def load_model(path, xp=None):
    """A model rebuilt from a file written by save_params (or a trainer checkpoint)."""
    arrays = read_npz(path, "fastrnn parameter file")
    if "config" not in arrays:
        raise CheckpointError(f"{path} holds no model config")
    try:
        model = build_model(_json_entry(arrays, "config", path), xp)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model config cannot be built ({e})") from None
    values = param_arrays_from(arrays, path)
    model.check_param_arrays(values, path)
    model.load_param_arrays(values)
    return model
