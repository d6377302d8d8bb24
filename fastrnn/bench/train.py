"""Training-step benchmark: one step (forward, backward, global-norm clip, SGD update) of whole
models, fastrnn vs the textbook's per-step NumPy layers vs PyTorch.

Usage::

    python -m fastrnn.bench.train                  # every model, every column
    python -m fastrnn.bench.train --quick          # the char LSTM and Rnnlm, shorter
    python -m fastrnn.bench.train --load           # also the char LSTM step under load

Models (float32, random ids, the same initial weights in every column):

- ``char``: the character LSTM of ``fastrnn train`` (Rnnlm, V=28, D=28, H=256, N=32, T=35);
- ``rnnlm``: the textbook Rnnlm (V=10000, D=H=100, N=20, T=35);
- ``better``: BetterRnnlm (V=10000, D=H=650, 2 LSTM layers, dropout 0.5, tied, N=20, T=35);
- ``peeky``: PeekySeq2seq on the addition task's shapes (N=128, D=16, H=128, V=13, 7 source
  ids, 5 target ids, reversed source).

Columns, each in its own process: ``numba`` / ``cpu`` (``fastrnn.models`` with that backend),
``reference`` (the same on the NumPy reference backend), ``textbook`` (the same architecture
from ``fastrnn.bench.textbook``), ``torch`` (``torch.nn`` modules with copied weights, autograd,
``clip_grad_norm_``, ``torch.optim.SGD``). Before timing, every column's evaluation loss on the
first batch is checked against the reference backend's.
"""
import argparse
import os
import sys
import time

import numpy as np

from . import harness as hn
from . import load as ld

SPECS = {
    "char": dict(kind="lm", V=28, D=28, H=256, N=32, T=35, layers=1, dropout=0.0, tied=False,
                 max_grad=5.0),
    "rnnlm": dict(kind="lm", V=10000, D=100, H=100, N=20, T=35, layers=1, dropout=0.0,
                  tied=False, max_grad=0.25),
    "better": dict(kind="lm", V=10000, D=650, H=650, N=20, T=35, layers=2, dropout=0.5,
                   tied=True, max_grad=0.25),
    "peeky": dict(kind="seq2seq", V=13, D=16, H=128, N=128, T=7, T_out=5, max_grad=5.0),
}
QUICK_MODELS = ("char", "rnnlm")
COLUMNS = ("numba", "cpu", "reference", "textbook", "torch")
DEFAULT_COLUMNS = ("numba", "cpu", "textbook", "torch")
LR = 0.1
LOSS_TOL = 1e-3  # relative; float32 losses of one batch


def batch(spec, seed=3):
    rng = np.random.default_rng(seed)
    N, T, V = spec["N"], spec["T"], spec["V"]
    xs = rng.integers(0, V, size=(N, T)).astype(np.int32)
    ts = rng.integers(0, V, size=(N, spec.get("T_out", T))).astype(np.int32)
    return xs, ts


def fastrnn_model(spec, seed=0):
    from fastrnn import models
    if spec["kind"] == "seq2seq":
        return models.PeekySeq2seq(spec["V"], spec["D"], spec["H"], reverse_input=True,
                                   seed=seed)
    if spec["layers"] == 2:
        return models.BetterRnnlm(spec["V"], spec["D"], spec["H"], dropout_ratio=spec["dropout"],
                                  seed=seed)
    return models.Rnnlm(spec["V"], spec["D"], spec["H"], seed=seed)


def _fastrnn_step(model, spec):
    from fastrnn.optim import SGD, clip_grads, merge_tied
    opt = SGD(LR)

    def step(xs, ts):
        loss = model.forward(xs, ts)
        model.backward()
        params, grads = merge_tied(model.params, model.grads)
        clip_grads(grads, spec["max_grad"])
        opt.update(params, grads)
        return loss

    def evaluate(xs, ts):
        loss = float(model.forward(xs, ts, train_flg=False))
        model.reset_state()
        return loss
    return step, evaluate


class TextbookLM:
    """The fastrnn model's layer stack rebuilt from the textbook layers, weights copied."""

    def __init__(self, model, spec):
        from . import textbook as tb
        self.layers = []
        for layer in model.layers:
            kind = type(layer).__name__
            p = [np.array(a) for a in layer.params]
            if kind == "TimeDropout":
                self.layers.append(tb.TimeDropout(spec["dropout"]))
            elif kind == "TimeLSTM":
                self.layers.append(tb.TimeLSTM(*p, stateful=True))
            elif kind == "TimeAffine" and spec.get("tied"):
                self.layers.append(tb.TimeAffine(self.layers[0].params[0].T, p[1]))
            else:
                self.layers.append(getattr(tb, kind)(*p))
        self.loss = tb.TimeSoftmaxWithLoss()
        self.params = [a for la in self.layers for a in la.params]
        self.grads = [a for la in self.layers for a in la.grads]

    def forward(self, xs, ts, train_flg=True):
        for la in self.layers:
            la.train_flg = train_flg
            xs = la.forward(xs)
        return self.loss.forward(xs, ts)

    def backward(self):
        d = self.loss.backward()
        for la in reversed(self.layers):
            d = la.backward(d)

    def reset_state(self):
        for la in self.layers:
            if hasattr(la, "h"):
                la.h = la.c = None


class TextbookPeeky:
    """PeekySeq2seq from the textbook layers (encoder's last h fed to every decoder step)."""

    def __init__(self, model, spec):
        from . import textbook as tb
        cp = lambda la: [np.array(a) for a in la.params]  # noqa: E731
        enc, dec = model.encoder, model.decoder
        self.e_embed, self.e_lstm = tb.TimeEmbedding(*cp(enc.embed)), tb.TimeLSTM(*cp(enc.rnn))
        self.d_embed = tb.TimeEmbedding(*cp(dec.embed))
        self.d_lstm = tb.TimeLSTM(*cp(dec.rnn), stateful=True)
        self.d_affine = tb.TimeAffine(*cp(dec.affine))
        self.loss = tb.TimeSoftmaxWithLoss()
        ls = (self.e_embed, self.e_lstm, self.d_embed, self.d_lstm, self.d_affine)
        self.params = [a for la in ls for a in la.params]
        self.grads = [a for la in ls for a in la.grads]

    def forward(self, xs, ts, train_flg=True):
        hs = self.e_lstm.forward(self.e_embed.forward(xs[:, ::-1]))
        h = hs[:, -1]
        self.T_src, (N, T) = xs.shape[1], ts[:, :-1].shape
        peek = np.broadcast_to(h[:, None, :], (N, T, h.shape[1]))
        self.d_lstm.h, self.d_lstm.c = h, None
        out = self.d_lstm.forward(np.concatenate((peek, self.d_embed.forward(ts[:, :-1])), 2))
        return self.loss.forward(self.d_affine.forward(np.concatenate((peek, out), 2)),
                                 ts[:, 1:])

    def backward(self):
        H = self.d_lstm.params[1].shape[0]
        d = self.d_affine.backward(self.loss.backward())
        dpeek, d = d[:, :, :H], d[:, :, H:]
        d = self.d_lstm.backward(d)
        dpeek = dpeek + d[:, :, :H]
        self.d_embed.backward(d[:, :, H:])
        dhs = np.zeros((d.shape[0], self.T_src, H), d.dtype)
        dhs[:, -1] = self.d_lstm.dh + dpeek.sum(axis=1)
        self.e_embed.backward(self.e_lstm.backward(dhs))

    def reset_state(self):
        pass


def _torch_parts(spec, model):
    """torch modules with the fastrnn model's weights: (module, forward(xs, ts, state))."""
    import torch

    from fastrnn import interop
    nn, t = torch.nn, lambda a: torch.from_numpy(np.array(a))  # noqa: E731

    def lstm(layer):
        m = nn.LSTM(layer.params[0].shape[0], layer.params[1].shape[0], batch_first=True)
        with torch.no_grad():
            for k, v in interop.fastrnn_to_torch("lstm", *layer.params[:3]).items():
                getattr(m, k + "_l0").copy_(t(v))
        return m

    def embed(layer):
        return nn.Embedding.from_pretrained(t(layer.params[0]), freeze=False)

    def affine(layer):
        m = nn.Linear(*layer.params[0].shape)
        with torch.no_grad():
            m.weight.copy_(t(layer.params[0].T))
            m.bias.copy_(t(layer.params[1]))
        return m
    ce = nn.CrossEntropyLoss()
    if spec["kind"] == "seq2seq":
        enc, dec = model.encoder, model.decoder
        mods = nn.ModuleList([embed(enc.embed), lstm(enc.rnn), embed(dec.embed), lstm(dec.rnn),
                              affine(dec.affine)])

        def forward(xs, ts, state):
            e_emb, e_lstm, d_emb, d_lstm, d_aff = mods
            h = e_lstm(e_emb(xs.flip(1)))[0][:, -1]
            T = ts.shape[1] - 1
            peek = h[:, None, :].expand(-1, T, -1)
            out = d_lstm(torch.cat((peek, d_emb(ts[:, :-1])), 2),
                         (h[None].contiguous(), torch.zeros_like(h)[None]))[0]
            score = d_aff(torch.cat((peek, out), 2))
            return ce(score.reshape(-1, score.shape[-1]), ts[:, 1:].reshape(-1)), None
        return mods, forward
    layers = [type(la).__name__ for la in model.layers]
    mods = nn.ModuleList([embed(la) if k == "TimeEmbedding" else lstm(la) if k == "TimeLSTM"
                          else nn.Dropout(spec["dropout"]) if k == "TimeDropout" else affine(la)
                          for k, la in zip(layers, model.layers)])
    if spec.get("tied"):
        mods[-1].weight = mods[0].weight

    def forward(xs, ts, state):
        state = list(state or [None] * len(mods))
        for i, m in enumerate(mods):
            if isinstance(m, nn.LSTM):
                xs, st = m(xs, state[i])
                state[i] = tuple(s.detach() for s in st)
            else:
                xs = m(xs)
        return ce(xs.reshape(-1, xs.shape[-1]), ts.reshape(-1)), state
    return mods, forward


def _torch_step(model, spec):
    import torch
    mods, forward = _torch_parts(spec, model)
    opt = torch.optim.SGD(mods.parameters(), lr=LR)
    carry = [None]
    conv = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731

    def step(xs, ts):
        opt.zero_grad(set_to_none=True)
        loss, carry[0] = forward(conv(xs), conv(ts), carry[0])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mods.parameters(), spec["max_grad"])
        opt.step()
        return loss

    def evaluate(xs, ts):
        mods.eval()
        with torch.no_grad():
            loss = float(forward(conv(xs), conv(ts), None)[0])
        mods.train()
        return loss
    return step, evaluate


def make_step(column, spec):
    """(step(xs, ts), evaluate(xs, ts) -> loss, reference loss) for ``column``."""
    from fastrnn import backend
    model = fastrnn_model(spec)
    xs, ts = batch(spec)
    with backend.use("numpy"):
        ref = float(model.forward(xs, ts, train_flg=False))
    model.reset_state()
    if column == "torch":
        return _torch_step(model, spec) + (ref,)
    if column == "textbook":
        twin = (TextbookPeeky if spec["kind"] == "seq2seq" else TextbookLM)(model, spec)
        return _fastrnn_step(twin, spec) + (ref,)
    bname = "numpy" if column == "reference" else column
    backend.load(bname)
    backend.set_backend(bname)  # this process runs one column only
    return _fastrnn_step(model, spec) + (ref,)


def measure(column, names, timing, log=lambda m: None):
    """{model: {time_s, spread, samples_s, loss, ref_loss} or {error}} for one column."""
    out = {}
    for name in names:
        spec = SPECS[name]
        xs, ts = batch(spec)
        try:
            step, evaluate, ref = make_step(column, spec)
            loss = evaluate(xs, ts)
            if not abs(loss - ref) <= LOSS_TOL * max(1.0, abs(ref)):
                out[name] = {"error": f"WRONG RESULT: evaluation loss {loss:.6g}, reference "
                                      f"{ref:.6g}"}
                log(f"  train {column:9s} {name:7s} {out[name]['error']}")
                continue
            for _ in range(3):  # compiles (a fresh state and a carried one), thread pools
                step(xs, ts)
            samples = []
            for _ in range(timing.rounds):
                samples += hn.time_block(lambda: step(xs, ts), timing)
        except Exception as e:
            out[name] = {"error": hn.short_error(e)}
            continue
        out[name] = {"time_s": hn.median(samples), "spread": hn.spread(samples),
                     "samples_s": samples, "loss": loss, "ref_loss": ref}
        log(f"  train {column:9s} {name:7s} {hn.fmt_ms(out[name]['time_s'])} ms")
    return out


def spin(column, name):
    """The ``twin`` competitor: train in a loop until the parent is gone (or MAX_LIFE_S)."""
    spec = SPECS[name]
    xs, ts = batch(spec)
    step = make_step(column, spec)[0]
    step(xs, ts)
    print("ready", flush=True)
    ppid, end = os.getppid(), time.monotonic() + ld.MAX_LIFE_S
    while os.getppid() == ppid and time.monotonic() < end:
        step(xs, ts)


def under_load(column, name, modes, seconds):
    spec = SPECS[name]
    xs, ts = batch(spec)
    step = make_step(column, spec)[0]
    for _ in range(3):
        step(xs, ts)
    twin = [sys.executable, "-m", "fastrnn.bench.train", "--spin", column, "--models", name]
    return ld.steps_under_load(lambda: step(xs, ts), modes, seconds, twin_cmd=twin)


# ----------------------------------------------------------------------- the parent's side
def run(names, columns, timing, settings, isolate=True, log=lambda m: None):
    """{models: [{name, kind, setting, times_s, errors, ...}]}: every column of every setting
    ((threads, openblas) pairs) in its own process (or here, without ``isolate``)."""
    models = []
    for threads, openblas in settings:
        key = f"threads={threads or 'default'} openblas={openblas}"
        per_col = {}
        for col in columns:
            if isolate:
                argv = ["--child", col, "--models", ",".join(names)] + timing.argv()
                try:
                    per_col[col] = hn.run_child("fastrnn.bench.train", argv,
                                                hn.child_env(threads, openblas))["models"]
                except Exception as e:
                    per_col[col] = {n: {"error": hn.short_error(e)} for n in names}
            else:
                per_col[col] = measure(col, names, timing, log)
        for n in names:
            entry = {"name": n, "kind": SPECS[n]["kind"], "spec": SPECS[n], "setting": key,
                     "times_s": {}, "errors": {}, "spread": {}}
            for col, res in per_col.items():
                r = res.get(n, {"error": "not run"})
                if "error" in r:
                    entry["errors"][col] = r["error"]
                else:
                    entry["times_s"][col], entry["spread"][col] = r["time_s"], r["spread"]
            models.append(entry)
    return {"models": models, "columns": list(columns)}


def fastest_column(columns):
    """The fastrnn column the load modes time: the compiled engine where it loads, else Numba."""
    from fastrnn import backend
    for c in ("cpu", "numba"):
        if c in columns:
            try:
                backend.load(c)
                return c
            except ValueError:
                continue
    return "numba"


def run_load(column, name, modes, seconds, threads, openblas):
    argv = ["--child", column, "--models", name, "--load-modes", ",".join(modes),
            "--load-seconds", str(seconds)]
    entry = {"column": column, "model": name,
             "setting": f"threads={threads or 'default'} openblas={openblas}"}
    try:
        entry["modes"] = hn.run_child("fastrnn.bench.train", argv,
                                      hn.child_env(threads, openblas))["load"]
    except Exception as e:
        entry["error"] = hn.short_error(e)
    return entry


def print_table(train, out=print):
    cols = train["columns"]
    out("")
    out("### Training step (forward, backward, clip, SGD), float32, median ms")
    out("")
    out("| model | setting | " + " | ".join(f"{c} ms" for c in cols) +
        " | torch / fastrnn | textbook / fastrnn |")
    out("|---|---|" + "---:|" * (len(cols) + 2))
    for m in train["models"]:
        t = m["times_s"]
        fast = next((c for c in ("cpu", "numba") if t.get(c)), None)
        cells = [hn.fmt_ms(t.get(c)) if c in t else "err" if c in m["errors"] else "-"
                 for c in cols]
        out(f"| {m['name']} | {m['setting']} | " + " | ".join(cells) + f" | "
            f"{hn.fmt_ratio(hn.ratio(t.get('torch'), t.get(fast)))} | "
            f"{hn.fmt_ratio(hn.ratio(t.get('textbook'), t.get(fast)))} |")
    errs = {}
    for m in train["models"]:
        for c, e in m["errors"].items():
            errs.setdefault((c, e), []).append(m["name"])
    for (c, e), names in errs.items():
        out(f"- {c} not timed ({', '.join(names)}): {e}")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastrnn.bench.train",
                                description="Time one training step of whole models: fastrnn, "
                                            "the textbook layers and PyTorch.")
    p.add_argument("--models", default=None,
                   help=f"comma list of {', '.join(SPECS)} (default all; --quick "
                        f"{','.join(QUICK_MODELS)})")
    p.add_argument("--columns", default=",".join(DEFAULT_COLUMNS),
                   help=f"comma list of {', '.join(COLUMNS)}")
    hn.add_timing_args(p, budget=1.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every column in this process")
    p.add_argument("--load", action="store_true",
                   help="also time the char model's step under load (numba or cpu column)")
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--spin", default=None, help=argparse.SUPPRESS)
    p.add_argument("--load-modes", default=None, help=argparse.SUPPRESS)
    p.add_argument("--load-seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    return p


def parse_list(text, allowed, what):
    items = [s.strip().lower() for s in (text or "").split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise SystemExit(f"bench: unknown {what} {', '.join(bad) or '(none)'}; choose from "
                         f"{', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


def main(argv=None):
    a = build_parser().parse_args(argv)
    names = parse_list(a.models or ",".join(QUICK_MODELS if a.quick else SPECS), SPECS, "model")
    timing = hn.timing_from_args(a, budget=1.0)
    log = hn.logger(a.quiet)
    if a.spin or a.child:
        hn.apply_child_threads()
    if a.spin:
        spin(a.spin, names[0])
        return 0
    if a.child:
        res = ({"load": under_load(a.child, names[0], parse_list(a.load_modes, ld.MODES,
                                                                   "load mode"),
                                   a.load_seconds)} if a.load_modes
               else {"models": measure(a.child, names, timing, log)})
        hn.write_json(res, a.out)
        return 0
    columns = parse_list(a.columns, COLUMNS, "column")
    result = {"created": hn.now(), "machine": hn.machine_info(), "versions": hn.versions()}
    result.update(run(names, columns, timing, [(None, "user")], a.isolate, log))
    print_table(result)
    if a.load:
        col = fastest_column(columns)
        result["load"] = [run_load(col, "char", ld.MODES, 2.0 if a.quick else 5.0, None,
                                   "user")]
        ld.print_load(result["load"])
    if a.out:
        hn.write_json(result, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
