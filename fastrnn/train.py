"""Trainers: truncated-BPTT language-model training and mini-batch seq2seq training.

Both trainers take a model (``params`` / ``grads`` / ``forward`` / ``backward``) and an
optimizer from ``fastrnn.optim``; each step merges tied weights (one update per shared array),
clips the global gradient norm, and updates. Checkpoints (``save_checkpoint``) are written
atomically and hold everything the next step depends on: parameters, optimizer state, the data
position, every random generator's state, the carried recurrent state and the history, so a
resumed run continues bit for bit as if it had never stopped.
"""
import json
import math
import time

import numpy as np

from .layers import TimeSoftmaxWithLoss
from .metrics import exact_match_accuracy, perplexity
from .models.base import (CheckpointError, atomic_savez, build_model, param_arrays_from,
                          read_npz, to_numpy)
from .optim import OPTIMIZERS, clip_grads, merge_tied

CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------------ data iterators
class ConsecutiveBatches:
    """Truncated-BPTT batches over one token stream: the stream (inputs ``ids[:-1]``, targets
    ``ids[1:]``) is cut into ``batch_size`` equal rows and row i reads from its own offset
    ``i * jump``, ``time_size`` tokens a batch, so batch k+1 continues batch k in every row and
    the recurrent state is carried (``carries_state``). The position wraps around the stream, so
    epochs follow each other seamlessly (the textbook's RnnlmTrainer)."""

    carries_state = True

    def __init__(self, ids, batch_size, time_size):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids must be a 1-D token stream, got shape {ids.shape}")
        self.xs, self.ts = ids[:-1], ids[1:]
        n = len(self.xs)
        if n < batch_size * time_size:
            raise ValueError(f"corpus too small: {n + 1} tokens for batch_size {batch_size} x "
                             f"time_size {time_size}")
        self.batch_size, self.time_size = int(batch_size), int(time_size)
        self.offsets = np.arange(batch_size) * (n // batch_size)
        self.iters_per_epoch = n // (batch_size * time_size)
        self.time_idx = 0

    def restart(self):
        """Go back to the beginning of the stream (an epoch that starts from a zero state)."""
        self.time_idx = 0

    def start_epoch(self):
        pass

    def next(self):
        idx = (self.offsets[:, None] + self.time_idx + np.arange(self.time_size)) % len(self.xs)
        self.time_idx += self.time_size
        return self.xs[idx], self.ts[idx]

    def state_dict(self):
        return {"time_idx": int(self.time_idx)}

    def load_state_dict(self, s):
        self.time_idx = int(s["time_idx"])


class RandomBatches:
    """Random sampling: every epoch the stream is cut into ``time_size`` windows from a random
    start offset, the windows are shuffled and ``batch_size`` of them make a batch. Batches are
    unrelated, so the state is reset before each (``carries_state`` False)."""

    carries_state = False

    def __init__(self, ids, batch_size, time_size, seed=0):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids must be a 1-D token stream, got shape {ids.shape}")
        self.xs, self.ts = ids[:-1], ids[1:]
        self.batch_size, self.time_size = int(batch_size), int(time_size)
        n_windows = (len(self.xs) - (self.time_size - 1)) // self.time_size
        self.iters_per_epoch = n_windows // self.batch_size
        if self.iters_per_epoch < 1:
            raise ValueError(f"corpus too small: {len(ids)} tokens for batch_size {batch_size} x "
                             f"time_size {time_size}")
        self.rng = np.random.default_rng(seed)
        self.starts = None
        self.pos = 0

    def restart(self):
        """Nothing to rewind: every epoch draws new windows."""

    def start_epoch(self):
        offset = int(self.rng.integers(0, self.time_size))
        n = (len(self.xs) - offset) // self.time_size
        self.starts = offset + self.time_size * self.rng.permutation(n)
        self.pos = 0

    def next(self):
        s = self.starts[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        idx = s[:, None] + np.arange(self.time_size)
        return self.xs[idx], self.ts[idx]

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "pos": int(self.pos),
                "starts": None if self.starts is None else self.starts.tolist()}

    def load_state_dict(self, s):
        self.rng.bit_generator.state = s["rng"]
        self.pos = int(s["pos"])
        self.starts = None if s["starts"] is None else np.asarray(s["starts"], dtype=np.int64)


# ---------------------------------------------------------------------------------- evaluation
def eval_perplexity(model, ids, batch_size=10, time_size=35):
    """Perplexity of a language model on a token stream, read as ``batch_size`` consecutive rows
    with the state carried across chunks (every position scored once, up to the last
    ``len % batch_size`` tokens). The model's training state is saved and restored."""
    ids = np.asarray(ids)
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise ValueError(f"evaluation corpus too small: {len(ids)} tokens for batch_size "
                         f"{batch_size}")
    xs = ids[:n * batch_size].reshape(batch_size, n)
    ts = ids[1:n * batch_size + 1].reshape(batch_size, n)
    saved = model.get_state()
    model.reset_state()
    xp = model.xp
    total, count = 0.0, 0
    try:
        for t0 in range(0, n, time_size):
            x = xp.asarray(xs[:, t0:t0 + time_size])
            t = xp.asarray(ts[:, t0:t0 + time_size])
            loss = _eval_loss(model, x, t)
            total += loss * t.size
            count += t.size
    finally:
        model.set_state(saved)
    return perplexity(total / count)


def _eval_loss(model, xs, ts):
    """Mean per-token loss of a batch without computing the gradient (models with ``predict``
    and a ``loss_layer``; others through ``forward(train_flg=False)``)."""
    layer = getattr(model, "loss_layer", None)
    if hasattr(model, "predict") and isinstance(layer, TimeSoftmaxWithLoss):
        layer.forward(model.predict(xs, train_flg=False), ts, grad=False)
        return float(layer.token_loss)
    return float(model.forward(xs, ts, train_flg=False))


def eval_seq2seq(model, x, t, batch_size=500):
    """Exact-match accuracy of greedy decoding: ``t[:, 0]`` is the start symbol, ``t[:, 1:]``
    the answer. Returns (accuracy, predictions (N, Ta) as NumPy)."""
    xp = model.xp
    preds = []
    for i in range(0, len(x), batch_size):
        xb, tb = x[i:i + batch_size], t[i:i + batch_size]
        out = model.generate(xp.asarray(xb), tb[:, 0], tb.shape[1] - 1)
        preds.append(to_numpy(out))
    pred = np.concatenate(preds) if preds else np.zeros((0, t.shape[1] - 1), np.int32)
    return exact_match_accuracy(pred, np.asarray(t)[:, 1:]), pred


# -------------------------------------------------------------------------------- schedules
class StepDecay:
    """Learning-rate schedule: after epoch ``after`` and every epoch after it, multiply the
    rate by ``factor`` (Zaremba et al. 2014: ``StepDecay(after=4, factor=0.5)`` for the small
    model). Called by LMTrainer as ``schedule(epochs_done, lr) -> lr``."""

    def __init__(self, after, factor):
        if not 0 < factor:
            raise ValueError(f"StepDecay: factor must be > 0, got {factor}")
        self.after, self.factor = int(after), float(factor)

    def __call__(self, epochs_done, lr):
        return lr * self.factor if epochs_done >= self.after else lr

    def __repr__(self):
        return f"StepDecay(after={self.after}, factor={self.factor:g})"


def _fresh_acc():
    return {"loss": 0.0, "count": 0, "tokens": 0, "time": 0.0}


# -------------------------------------------------------------------------------- trainer base
class _Trainer:
    """The loop shared by every trainer: epochs of ``iters_per_epoch`` steps, a progress bar,
    checkpoints every ``checkpoint_every`` steps and at each epoch end, and ``callbacks``
    (callables ``cb(trainer)``) after each epoch, once its history entry and checkpoint are
    written. Setting ``trainer.stop = True`` (from a callback, or a signal handler) ends
    ``fit`` after the current step.

    Subclasses provide ``_start_epoch()``, ``_next_batch() -> (xs, ts)``, ``_postfix(acc)``
    and ``_epoch_metrics(acc) -> log line`` (which appends to ``history``)."""

    iters_per_epoch = 0

    def __init__(self, model, optimizer, max_grad=None, checkpoint_path=None,
                 checkpoint_every=None, progress=False, log=None, extra=None, callbacks=()):
        self.model = model
        self.optimizer = optimizer
        self.max_grad = max_grad
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.log = log if log is not None else (lambda msg: None)
        self.extra = dict(extra or {})  # stored in checkpoints (e.g. vocabulary, CLI options)
        self.callbacks = list(callbacks)
        self.epoch = 0
        self.iteration = 0  # within the current epoch
        self.total_iters = 0
        self.history = {}
        self.stop = False
        self._epoch_started = False
        self._acc = _fresh_acc()

    def step(self, xs, ts):
        """One optimization step on a batch; returns the loss per token (whatever the loss
        layer's reduction, so that perplexities stay comparable)."""
        loss = self.model.forward(xs, ts)
        self.model.backward()
        params, grads = merge_tied(self.model.params, self.model.grads)
        if self.max_grad is not None:
            clip_grads(grads, self.max_grad)
        self.optimizer.update(params, grads)
        token_loss = getattr(getattr(self.model, "loss_layer", None), "token_loss", None)
        return float(loss if token_loss is None else token_loss)

    def _bar(self, total, initial, desc):
        if not self.progress:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False,
                    dynamic_ncols=True)

    def fit(self, max_epoch, max_iters=None):
        """Train until ``max_epoch`` epochs are done (counting those of a loaded checkpoint), or
        stop after ``max_iters`` steps of this call, or when a callback sets ``stop``.
        Returns the history."""
        xp = self.model.xp
        done = 0
        self.stop = False
        while self.epoch < max_epoch and not self.stop:
            if not self._epoch_started:
                self._start_epoch()
                self._epoch_started = True
                self._acc = _fresh_acc()
            bar = self._bar(self.iters_per_epoch, self.iteration,
                            f"epoch {self.epoch + 1}/{max_epoch}")
            try:
                while self.iteration < self.iters_per_epoch:
                    if max_iters is not None and done >= max_iters:
                        return self.history
                    t0 = time.perf_counter()
                    xs, ts = self._next_batch()
                    loss = self.step(xp.asarray(xs), xp.asarray(ts))
                    acc = self._acc
                    acc["time"] += time.perf_counter() - t0
                    acc["loss"] += loss
                    acc["count"] += 1
                    acc["tokens"] += int(np.size(ts))
                    self.iteration += 1
                    self.total_iters += 1
                    done += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(**self._postfix(acc))
                    self._maybe_checkpoint()
                    if self.stop:  # asked between steps (e.g. Ctrl-C): resumable from here
                        return self.history
            finally:
                if bar is not None:
                    bar.close()
            self._end_epoch()
        return self.history

    def _end_epoch(self):
        self.log(self._epoch_metrics(self._acc))
        self.epoch += 1
        self.iteration = 0
        self._epoch_started = False
        if self.checkpoint_path:
            self.save_checkpoint()
        for cb in self.callbacks:
            cb(self)

    # ---- checkpoints
    def _state(self):
        return {}

    def _load_state(self, state):
        pass

    def save_checkpoint(self, path=None):
        """Write everything a resumed run needs to ``path`` (default ``checkpoint_path``),
        atomically: the old file survives any crash during the write."""
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path given")
        model, opt = self.model, self.optimizer
        arrays = {}
        for i, a in enumerate(model.param_arrays()):
            arrays[f"p{i}"] = a
        opt_state = opt.state_dict()
        slots = {}
        for name, lst in opt_state.pop("slots").items():
            slots[name] = len(lst)
            for i, a in enumerate(lst):
                arrays[f"opt_{name}_{i}"] = a
        rec = []
        for k, s in enumerate(model.get_state()):
            rec.append(None if s is None else len(s))
            for j, a in enumerate(s or ()):
                arrays[f"state_{k}_{j}"] = np.array(to_numpy(a))
        meta = {
            "version": CHECKPOINT_VERSION,
            "kind": type(self).__name__,
            "optimizer": opt_state, "optimizer_slots": slots,
            "recurrent_state": rec,
            "dropout_rng": model.get_rng_state(),
            "epoch": self.epoch, "iteration": self.iteration, "total_iters": self.total_iters,
            "history": self.history, "acc": self._acc,
            "max_grad": self.max_grad,
            "trainer": self._state(),
            "extra": self.extra,
        }
        arrays["config"] = np.array(json.dumps(model.config))
        arrays["meta"] = np.array(json.dumps(meta))
        atomic_savez(path, arrays)
        return path

    def load_checkpoint(self, path):
        """Restore a checkpoint into this trainer's model and optimizer. Everything is checked
        first (file readable and complete, same trainer kind, same model settings including
        dtype and dropout, parameter and state shapes, optimizer class and slots); on any
        mismatch a CheckpointError (a ValueError) names it and nothing is changed."""
        meta, arrays = read_checkpoint(path)
        if meta["kind"] != type(self).__name__:
            raise CheckpointError(f"{path} is a {meta['kind']} checkpoint, not "
                                  f"{type(self).__name__}")
        model = self.model
        params = param_arrays_from(arrays, path)
        model.check_param_arrays(params, path)
        model.check_config(meta["config"], path)
        opt_state = dict(meta["optimizer"])
        if opt_state.get("class") != type(self.optimizer).__name__:
            raise CheckpointError(f"{path} holds {opt_state.get('class')} optimizer state, the "
                                  f"trainer's optimizer is {type(self.optimizer).__name__}")
        unique = model.unique_params()
        slots = {}
        for name, k in meta["optimizer_slots"].items():
            slots[name] = [_entry(arrays, f"opt_{name}_{i}", path) for i in range(k)]
            shapes = [a.shape for a in slots[name]]
            if shapes != [p.shape for p in unique]:
                raise CheckpointError(f"{path}: optimizer slot {name!r} does not match the "
                                      f"model's parameters")
        opt_state["slots"] = slots
        layers = model.recurrent_layers
        if len(meta["recurrent_state"]) != len(layers):
            raise CheckpointError(f"{path} holds {len(meta['recurrent_state'])} recurrent "
                                  f"states, the model has {len(layers)} recurrent layers")
        states = []
        for k, (cnt, layer) in enumerate(zip(meta["recurrent_state"], layers)):
            if cnt is None:
                states.append(None)
                continue
            st = tuple(_entry(arrays, f"state_{k}_{j}", path) for j in range(cnt))
            if cnt != len(layer.state_names) or any(s.ndim != 2 or s.shape[1] != layer.H
                                                    for s in st):
                raise CheckpointError(f"{path}: recurrent state {k} does not fit the model")
            states.append(st)
        if len(meta["dropout_rng"]) != len(model.dropout_layers):
            raise CheckpointError(f"{path} holds {len(meta['dropout_rng'])} dropout generators, "
                                  f"the model has {len(model.dropout_layers)} dropout layers")
        self._check_state(meta["trainer"], path)
        # Everything fits: only now change the model, the optimizer and the trainer.
        model.load_param_arrays(params)
        self.optimizer.load_state_dict(opt_state, xp=model.xp)
        model.set_state(states)
        model.set_rng_state(meta["dropout_rng"])
        self.epoch, self.iteration = meta["epoch"], meta["iteration"]
        self.total_iters = meta["total_iters"]
        self.history = meta["history"]
        self._acc = meta["acc"]
        self.max_grad = meta["max_grad"]
        self.extra = meta.get("extra", {})
        self._load_state(meta["trainer"])
        return meta

    def _check_state(self, state, path):
        """Raise CheckpointError if the trainer-specific state cannot be restored."""

    def _maybe_checkpoint(self):
        if self.checkpoint_path and self.checkpoint_every and \
                self.total_iters % self.checkpoint_every == 0:
            self.save_checkpoint()


def _entry(arrays, key, path):
    if key not in arrays:
        raise CheckpointError(f"{path}: entry {key!r} is missing (truncated or edited file)")
    return arrays[key]


_META_KEYS = ("version", "kind", "optimizer", "optimizer_slots", "recurrent_state",
              "dropout_rng", "epoch", "iteration", "total_iters", "history", "acc", "max_grad",
              "trainer")


def read_checkpoint(path):
    """(meta dict, {name: array}) of a checkpoint file; a CheckpointError (a ValueError) for
    anything else: an empty, truncated or corrupt file, a parameter file, missing entries."""
    arrays = read_npz(path, "fastrnn checkpoint")
    if "meta" not in arrays or "config" not in arrays:
        raise CheckpointError(f"{path} is not a fastrnn trainer checkpoint (no meta/config)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        meta["config"] = json.loads(str(arrays.pop("config")))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a fastrnn checkpoint (unreadable meta: {e})") \
            from None
    if not isinstance(meta, dict) or meta.get("version") != CHECKPOINT_VERSION:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: unsupported checkpoint version {version}")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    return meta, arrays


def model_from_checkpoint(path, xp=None):
    """(model with the checkpoint's parameters, meta) without any optimizer."""
    meta, arrays = read_checkpoint(path)
    try:
        model = build_model(meta["config"], xp)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model config cannot be built ({e})") from None
    params = param_arrays_from(arrays, path)
    model.check_param_arrays(params, path)
    model.load_param_arrays(params)
    return model, meta


def optimizer_from_checkpoint(meta):
    """A fresh optimizer of the checkpoint's class and hyper-parameters (state loaded later)."""
    cls = {c.__name__: c for c in OPTIMIZERS.values()}[meta["optimizer"]["class"]]
    return cls(**meta["optimizer"]["hyper"])


# ---------------------------------------------------------------------------- language models
class LMTrainer(_Trainer):
    """Truncated-BPTT training of a language model.

    ``sampling="consecutive"`` (default, ConsecutiveBatches: state carried between batches) or
    ``"random"`` (RandomBatches: state reset before each batch). With ``reset_each_epoch``
    (default) every epoch starts from the beginning of the stream with a zero state, as in the
    TensorFlow PTB recipe; ``False`` continues the stream and the state across epochs, as the
    textbook's RnnlmTrainer does.

    Learning rate, after every epoch: ``lr_schedule(epochs_done, lr) -> lr`` if given (e.g.
    ``StepDecay(after=4, factor=0.5)``), and division by ``lr_decay`` when validation perplexity
    did not improve on the best so far. The best parameters go to ``best_path``.
    ``history``: per epoch ``train_ppl``, ``val_ppl``, ``lr`` (the rate used in that epoch),
    ``time`` (s), ``wps`` (words/s)."""

    def __init__(self, model, optimizer, train_ids, val_ids=None, batch_size=20, time_size=35,
                 max_grad=None, sampling="consecutive", seed=0, lr_decay=None,
                 lr_schedule=None, reset_each_epoch=True, eval_batch_size=10,
                 eval_time_size=35, best_path=None, **kw):
        super().__init__(model, optimizer, max_grad, **kw)
        if sampling == "consecutive":
            self.batches = ConsecutiveBatches(train_ids, batch_size, time_size)
        elif sampling == "random":
            self.batches = RandomBatches(train_ids, batch_size, time_size, seed)
        else:
            raise ValueError(f"unknown sampling {sampling!r}; expected 'consecutive' or 'random'")
        self.iters_per_epoch = self.batches.iters_per_epoch
        self.val_ids = None if val_ids is None or len(val_ids) < 2 else np.asarray(val_ids)
        self.lr_decay = lr_decay
        self.lr_schedule = lr_schedule
        self.reset_each_epoch = bool(reset_each_epoch)
        self.eval_batch_size, self.eval_time_size = eval_batch_size, eval_time_size
        self.best_path = best_path
        self.best_val = math.inf
        self.history = {"train_ppl": [], "val_ppl": [], "lr": [], "time": [], "wps": []}

    def _state(self):
        return {"batches": self.batches.state_dict(), "best_val": self.best_val,
                "epoch_started": self._epoch_started}

    def _check_state(self, s, path):
        want = set(self.batches.state_dict())
        if not isinstance(s.get("batches"), dict) or set(s["batches"]) != want:
            raise CheckpointError(f"{path}: its batch position is not of "
                                  f"{type(self.batches).__name__} (different --sampling?)")

    def _load_state(self, s):
        self.batches.load_state_dict(s["batches"])
        self.best_val = s["best_val"]
        self._epoch_started = s["epoch_started"]

    def _start_epoch(self):
        if self.reset_each_epoch:
            self.model.reset_state()
            self.batches.restart()
        self.batches.start_epoch()

    def _next_batch(self):
        xs, ts = self.batches.next()
        if not self.batches.carries_state:
            self.model.reset_state()
        return xs, ts

    def _postfix(self, acc):
        return {"ppl": f"{perplexity(acc['loss'] / max(acc['count'], 1)):.1f}",
                "wps": f"{acc['tokens'] / max(acc['time'], 1e-9):,.0f}"}

    def _epoch_metrics(self, acc):
        h = self.history
        train_ppl = perplexity(acc["loss"] / max(acc["count"], 1))
        val_ppl = None
        if self.val_ids is not None:
            val_ppl = eval_perplexity(self.model, self.val_ids, self.eval_batch_size,
                                      self.eval_time_size)
        lr = self.optimizer.lr
        h["train_ppl"].append(train_ppl)
        h["val_ppl"].append(val_ppl)
        h["lr"].append(lr)
        h["time"].append(acc["time"])
        h["wps"].append(acc["tokens"] / max(acc["time"], 1e-9))
        msg = (f"epoch {self.epoch + 1}: train ppl {train_ppl:.2f}"
               + (f" | val ppl {val_ppl:.2f}" if val_ppl is not None else "")
               + f" | lr {lr:g} | {acc['time']:.1f} s | {h['wps'][-1]:,.0f} words/s")
        new_lr = lr if self.lr_schedule is None else self.lr_schedule(self.epoch + 1, lr)
        if val_ppl is not None:
            if val_ppl < self.best_val:
                self.best_val = val_ppl
                if self.best_path:
                    self.model.save_params(self.best_path)
            elif self.lr_decay:
                new_lr /= self.lr_decay
                msg += " | val did not improve"
        if new_lr != lr:
            self.optimizer.lr = new_lr
            msg += f" | lr -> {new_lr:g}"
        return msg


# ------------------------------------------------------------------------------------ seq2seq
class Seq2seqTrainer(_Trainer):
    """Mini-batch training of an encoder-decoder on (x, t) id arrays, shuffled every epoch by a
    seeded generator; after each epoch, exact-match accuracy on (x_val, t_val) by greedy
    decoding. ``history``: per epoch ``loss``, ``val_acc``, ``time``."""

    def __init__(self, model, optimizer, x, t, x_val=None, t_val=None, batch_size=128,
                 max_grad=None, seed=0, eval_batch_size=500, **kw):
        super().__init__(model, optimizer, max_grad, **kw)
        self.x, self.t = np.asarray(x), np.asarray(t)
        if len(self.x) != len(self.t):
            raise ValueError(f"x has {len(self.x)} rows but t has {len(self.t)}")
        self.x_val, self.t_val = x_val, t_val
        self.batch_size = int(batch_size)
        self.iters_per_epoch = max(len(self.x) // self.batch_size, 1)
        self.rng = np.random.default_rng(seed)
        self.perm = None
        self.eval_batch_size = eval_batch_size
        self.history = {"loss": [], "val_acc": [], "time": []}

    def _state(self):
        return {"rng": self.rng.bit_generator.state,
                "perm": None if self.perm is None else self.perm.tolist()}

    def _check_state(self, s, path):
        if s.get("perm") is not None and len(s["perm"]) != len(self.x):
            raise CheckpointError(f"{path} was written for {len(s['perm'])} training examples, "
                                  f"this trainer has {len(self.x)}")

    def _load_state(self, s):
        self.rng.bit_generator.state = s["rng"]
        self.perm = None if s["perm"] is None else np.asarray(s["perm"], dtype=np.int64)
        self._epoch_started = self.perm is not None

    def _start_epoch(self):
        self.perm = self.rng.permutation(len(self.x))

    def _next_batch(self):
        i = self.iteration * self.batch_size
        idx = self.perm[i:i + self.batch_size]
        return self.x[idx], self.t[idx]

    def _postfix(self, acc):
        return {"loss": f"{acc['loss'] / max(acc['count'], 1):.3f}"}

    def _epoch_metrics(self, acc):
        h = self.history
        loss = acc["loss"] / max(acc["count"], 1)
        val_acc = None
        if self.x_val is not None and len(self.x_val):
            val_acc, _ = eval_seq2seq(self.model, self.x_val, self.t_val, self.eval_batch_size)
        h["loss"].append(loss)
        h["val_acc"].append(val_acc)
        h["time"].append(acc["time"])
        self.perm = None
        return (f"epoch {self.epoch + 1}: loss {loss:.4f}"
                + (f" | val acc {100 * val_acc:.2f}%" if val_acc is not None else "")
                + f" | {acc['time']:.1f} s")
