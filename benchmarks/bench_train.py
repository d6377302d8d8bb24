"""Training-step benchmark: Embedding -> LSTM -> Affine -> SoftmaxWithLoss at PTB shapes.

Usage::

    python -m benchmarks.bench_train                  # V=10000, N=20, T=35, D=H=100 and 650
    python -m benchmarks.bench_train --quick          # D=H=100 only, shorter
    python -m benchmarks.bench_train --out t.json

One step is what a PTB language-model training loop does per mini-batch, built only from
``fastrnn.layers``: ``TimeEmbedding`` (V, D) -> ``TimeLSTM`` (D -> H, stateful, truncated BPTT)
-> ``TimeAffine`` (H -> V) -> ``TimeSoftmaxWithLoss``, forward, backward, then plain SGD
(``p -= lr * g`` for every parameter). Word ids and targets are random in [0, V). The same
model (same initial weights, same ids) is timed with the Numba backend, with the NumPy
reference backend, and built from ``benchmarks.textbook`` (the classic per-step layer code
fastrnn replaces), in the same process, in alternating blocks (see ``benchmarks.bench_cells``
for the method: warm-up, rounds of blocks, medians). Ratios: reference / numba and
textbook / numba. Also called by ``bench_cells`` (``--no-train`` to skip).
"""
import argparse
import contextlib
import sys
import time

import numpy as np

from benchmarks import bench_cells as bc
from benchmarks import textbook

SCHEMA = "fastrnn-bench-train/1"
# column -> fastrnn backend forced for it (None: the textbook layers, no fastrnn backend)
BACKENDS = (("reference", "numpy"), ("numba", "numba"), ("textbook", None))


def _use(backend, name):
    """backend.use(name), or no change for the textbook column (name None)."""
    return backend.use(name) if name else contextlib.nullcontext()


def default_configs(quick=False):
    hs = (100,) if quick else (100, 650)
    return [{"V": 10000, "D": h, "H": h, "N": 20, "T": 35} for h in hs]


class LSTMLM:
    """Embedding -> LSTM -> Affine -> SoftmaxWithLoss, from fastrnn.layers, plus an SGD step."""

    def __init__(self, V, D, H, dtype, seed=0, layers=None):
        if layers is None:
            from fastrnn import layers
        rng = np.random.default_rng(seed)
        f = lambda scale, *s: (rng.standard_normal(s) * scale).astype(dtype)  # noqa: E731
        self.embed = layers.TimeEmbedding(f(0.01, V, D))
        self.lstm = layers.TimeLSTM(f(D ** -0.5, D, 4 * H), f(H ** -0.5, H, 4 * H),
                                    np.zeros(4 * H, dtype), stateful=True)
        self.affine = layers.TimeAffine(f(H ** -0.5, H, V), np.zeros(V, dtype))
        self.loss = layers.TimeSoftmaxWithLoss()
        self.layers = (self.embed, self.lstm, self.affine)
        self.params = [p for layer in self.layers for p in layer.params]
        self.grads = [g for layer in self.layers for g in layer.grads]

    def step(self, xs, ts, lr):
        h = self.embed.forward(xs)
        h = self.lstm.forward(h)
        h = self.affine.forward(h)
        loss = self.loss.forward(h, ts)
        d = self.loss.backward()
        d = self.affine.backward(d)
        d = self.lstm.backward(d)
        self.embed.backward(d)
        for p, g in zip(self.params, self.grads):
            p -= lr * g
        return float(loss)


def run(configs, dtype="float32", args=None, log=print, lr=1e-3):
    """Times one training step per config and backend. ``args`` carries the timing options of
    bench_cells (rounds, repeat, budget, min_repeat, max_repeat)."""
    from fastrnn import backend
    out = {"schema": SCHEMA, "dtype": dtype, "lr": lr, "configs": []}
    for cfg in configs:
        V, D, H, N, T = (cfg[k] for k in "VDHNT")
        rng = np.random.default_rng(3)
        xs = rng.integers(0, V, size=(N, T))
        ts = rng.integers(0, V, size=(N, T))
        entry = dict(cfg)
        entry.update(times_s={}, samples_s={}, errors={}, first_loss={})
        live = {}
        for col, bname in BACKENDS:
            err = bc._backend_available(bname) if bname else None
            if err:
                entry["errors"][col] = err
                continue
            model = LSTMLM(V, D, H, dtype, layers=None if bname else textbook)

            def fn(model=model):
                return model.step(xs, ts, lr)
            try:
                with _use(backend, bname):
                    entry["first_loss"][col] = fn()   # warm-up (compiles the Numba kernels)
                    fn()
                live[col] = (fn, bname)
            except Exception as e:
                entry["errors"][col] = bc.short_error(e)
        samples = {col: [] for col in live}
        for _ in range(args.rounds):
            for col, (fn, bname) in live.items():
                if col in entry["errors"]:
                    continue
                try:
                    with _use(backend, bname):
                        samples[col] += bc.time_block_cpu(fn, args)
                except Exception as e:
                    entry["errors"][col] = bc.short_error(e)
        for col, _ in BACKENDS:
            ok = col in samples and col not in entry["errors"]
            entry["times_s"][col] = bc.median(samples[col]) if ok else None
            if ok:
                entry["samples_s"][col] = samples[col]
        t = entry["times_s"]
        entry["speedup"] = (t["reference"] / t["numba"]
                            if t.get("reference") and t.get("numba") else None)
        entry["textbook_speedup"] = (t["textbook"] / t["numba"]
                                     if t.get("textbook") and t.get("numba") else None)
        fl = entry["first_loss"]
        if "reference" in fl and "numba" in fl:
            entry["first_loss_abs_diff"] = abs(fl["reference"] - fl["numba"])
        if "textbook" in fl and "numba" in fl:
            entry["textbook_first_loss_abs_diff"] = abs(fl["textbook"] - fl["numba"])
        log(f"  train V={V} D=H={H}: " + "  ".join(
            f"{c}={bc.fmt_ms(t.get(c))}ms" for c, _ in BACKENDS)
            + f"  speedup {bc.fmt_ratio(entry['speedup'])}")
        out["configs"].append(entry)
    return out


def print_table(train, out=print):
    out("")
    out(f"### Training step (Embedding -> LSTM -> Affine -> SoftmaxWithLoss + SGD), "
        f"{train['dtype']}, median ms")
    out("")
    out("| V | N x T | D = H | reference ms | numba ms | textbook ms | reference/numba | "
        "textbook/numba |")
    out("|---:|---|---:|---:|---:|---:|---:|---:|")
    for c in train["configs"]:
        t = c["times_s"]
        out(f"| {c['V']} | {c['N']}x{c['T']} | {c['H']} | {bc.fmt_ms(t.get('reference'))} | "
            f"{bc.fmt_ms(t.get('numba'))} | {bc.fmt_ms(t.get('textbook'))} | "
            f"{bc.fmt_ratio(c['speedup'])} | {bc.fmt_ratio(c.get('textbook_speedup'))} |")
    for c in train["configs"]:
        for col, e in c["errors"].items():
            out(f"- {col} not measured at D=H={c['H']}: {e}")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_train",
                                description="Time one LSTM language-model training step, "
                                            "Numba backend vs the NumPy reference.")
    p.add_argument("--sizes", default=None,
                   help="comma list of D=H widths (default 100,650; --quick 100)")
    p.add_argument("--V", type=int, default=10000)
    p.add_argument("--N", type=int, default=20)
    p.add_argument("--T", type=int, default=35)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--budget", type=float, default=None)
    p.add_argument("--min-repeat", type=int, default=None)
    p.add_argument("--max-repeat", type=int, default=200)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.budget is None:
        args.budget = 0.3 if args.quick else 1.0
    if args.min_repeat is None:
        args.min_repeat = 3
    for name in ("repeat", "rounds", "min_repeat", "max_repeat", "V", "N", "T"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise SystemExit(f"bench_train: --{name.replace('_', '-')} must be >= 1, got {v}")
    if args.sizes:
        try:
            hs = [int(s) for s in args.sizes.split(",") if s.strip()]
        except ValueError:
            raise SystemExit(f"bench_train: --sizes wants D=H widths like 100,650, got "
                             f"{args.sizes!r}") from None
        configs = [{"V": args.V, "D": h, "H": h, "N": args.N, "T": args.T} for h in hs]
    else:
        configs = [dict(c, V=args.V, N=args.N, T=args.T) for c in default_configs(args.quick)]

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    load_start = bc.busy_warning(log)
    other_load = bc.OtherLoad()
    result = run(configs, dtype=args.dtype, args=args, log=log)
    result.update(created=bc._now(), argv=sys.argv[1:] if argv is None else list(argv),
                  machine=bc.machine_info(), versions=bc.versions(),
                  threads=bc.thread_info(),
                  config={"rounds": args.rounds, "repeat": args.repeat, "budget_s": args.budget,
                          "min_repeat": args.min_repeat, "max_repeat": args.max_repeat,
                          "quick": args.quick})
    result.update(load_average_start=load_start, load_average_end=bc.load_average(),
                  other_load=other_load.report())
    print_table(result)
    bc.print_other_load(result["other_load"])
    result["wall_s"] = time.perf_counter() - t0
    print(f"\n(total {result['wall_s']:.0f} s)")
    if args.out:
        bc.write_json(result, args.out)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
