"""The ``fastrnn`` command: train / generate / seq2seq / bench.

    fastrnn train                  # LSTM LM on the bundled "The Time Machine"
    fastrnn generate --checkpoint fastrnn-run/checkpoint.npz --start "The Time"
    fastrnn seq2seq --task addition
    fastrnn bench -- --quick

Every error a user can cause (bad path, bad option, corrupt file) is one line on stderr and
exit status 2; no traceback.
"""
import argparse
import errno
import json
import math
import os
import signal
import sys
import time

import numpy as np

PROG = "fastrnn"

LM_MODELS = {"rnnlm": "Rnnlm", "simple": "SimpleRnnlm", "better": "BetterRnnlm", "gru": "GRUlm"}
S2S_MODELS = {"seq2seq": "Seq2seq", "peeky": "PeekySeq2seq", "attention": "AttentionSeq2seq"}
DEFAULT_START = {"char": "The Time Traveller ", "word": "the time traveller"}
RUNS_DIR = "fastrnn-run"  # each run gets its own folder below it unless --out is given
MAX_GENERATE = 100_000  # tokens per `generate` call: far above any sample a person reads


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line instead of argparse's usage block: the full help is one --help away.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(convert, ok, expected):
    """An argparse type: ``convert(s)`` that must satisfy ``ok``, else "expected ..."."""
    def parse(s):
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
        return v
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_positive_float = _number(float, lambda v: 0 < v < math.inf, "a positive finite number")
_temperature = _number(float, lambda v: 0 <= v < math.inf, "a finite number >= 0 (0: greedy)")
_length = _number(int, lambda v: 0 <= v <= MAX_GENERATE,
                  f"a length in [0, {MAX_GENERATE:,}]")
_ratio = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _common(p):
    p.add_argument("--backend", choices=("auto", "cpu", "numba", "numpy", "cuda"),
                   default="auto",
                   help="kernel backend: auto (the compiled engine on the CPU, Numba where it "
                        "was not built), cpu, numba, numpy (the plain NumPy reference) or cuda "
                        "(CuPy arrays on the GPU) (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights, data order, "
                   "dropout and sampling (default: 0)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads for BLAS and the kernels (default: the libraries' own "
                        "choice; on a machine shared with other jobs, 1 or 2 is often faster)")


def build_parser():
    parser = _Parser(prog=PROG, description="Fused recurrent-network kernels behind the "
                     "classic NumPy time-layer API: train and use RNN models.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"fastrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # ------------------------------------------------------------------------------- train
    p = sub.add_parser("train", help="train a language model (default: an LSTM on the bundled "
                       "novel)",
                       description="Train a recurrent language model with truncated BPTT and "
                       "write a checkpoint, a perplexity plot and a sample.")
    g = p.add_argument_group("data")
    g.add_argument("--corpus", default=None, help="text file to train on (default: the bundled "
                   "'The Time Machine'); the last --val-fraction of it is the validation split")
    g.add_argument("--ptb", action="store_true", help="train on Penn Treebank (word level) from "
                   "--data-dir or $FASTRNN_DATA")
    g.add_argument("--data-dir", default=None, help="folder with ptb.train/valid/test.txt (or a "
                   "ptb/ subfolder); default $FASTRNN_DATA")
    g.add_argument("--download", action="store_true", help="with --ptb: download PTB into "
                   "--data-dir (default ./data/ptb) if it is not there, checking md5 sums")
    g.add_argument("--ptb-url", default=None, metavar="URL",
                   help="base URL of the PTB files for --download (default: the public copy "
                        "the textbook uses)")
    g.add_argument("--level", choices=("char", "word"), default="char",
                   help="token level for --corpus (default: char); PTB is word level")
    g.add_argument("--val-fraction", type=_ratio, default=0.1,
                   help="tail fraction of --corpus held out for validation (default: 0.1)")
    g.add_argument("--max-tokens", type=_positive_int, default=None,
                   help="train on only the first N tokens of the training split (quick trials)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=sorted(LM_MODELS), default="rnnlm",
                   help="rnnlm: 1-layer LSTM; simple: tanh RNN; better: 2-layer LSTM with dropout "
                        "and tied weights; gru: GRU (default: rnnlm)")
    g.add_argument("--wordvec-size", type=_positive_int, default=None,
                   help="embedding width (default: 64 char level, 100 word level, 650 better)")
    g.add_argument("--hidden-size", type=_positive_int, default=None,
                   help="hidden width (default: 256 char level, 100 word level, 650 better)")
    g.add_argument("--dropout", type=_ratio, default=None,
                   help="dropout ratio for --model better/gru (default: 0.5 better, 0 gru)")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="parameter dtype (default: float32)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default: 6 char level, 4 word level)")
    g.add_argument("--batch-size", type=_positive_int, default=None,
                   help="batch rows (default: 32 char level, 20 word level)")
    g.add_argument("--time-size", type=_positive_int, default=35,
                   help="truncated-BPTT length (default: 35)")
    g.add_argument("--optimizer", choices=("sgd", "momentum", "adagrad", "rmsprop", "adam"),
                   default=None, help="(default: adam char level, sgd word level)")
    g.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.005 adam, 20 sgd)")
    g.add_argument("--max-grad", type=_positive_float, default=None,
                   help="clip the global gradient norm (default: 0.25 sgd, 5 otherwise)")
    g.add_argument("--lr-decay", type=_positive_float, default=4.0,
                   help="divide the learning rate by this when validation perplexity does not "
                        "improve (default: 4; 1 disables)")
    g.add_argument("--sampling", choices=("consecutive", "random"), default="consecutive",
                   help="consecutive batches carry the state; random ones reset it "
                        "(default: consecutive)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder for checkpoint.npz, best.npz, "
                   "history.json and perplexity.png (default: a new folder "
                   f"./{RUNS_DIR}/train-MODEL-CORPUS-TIME; with --resume, the checkpoint's "
                   "folder)")
    g.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run of this checkpoint exactly where it stopped; "
                        "--epochs then gives the new total; --out, --lr, --max-grad, "
                        "--lr-decay, --sample-length, --temperature, --checkpoint-every may "
                        "change, options of the model, data and batches may not")
    g.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="N",
                   help="also checkpoint every N batches (default: at epoch ends only)")
    g.add_argument("--sample-length", type=_length, default=None,
                   help="tokens to generate at the end (default: 300 chars / 50 words; 0: none)")
    g.add_argument("--temperature", type=_temperature, default=0.8,
                   help="sampling temperature of the final sample (default: 0.8)")
    g.add_argument("--no-plot", action="store_true", help="do not write perplexity.png")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_train)

    # ----------------------------------------------------------------------------- generate
    p = sub.add_parser("generate", help="sample text from a trained language model",
                       description="Sample text from a checkpoint written by `fastrnn train`.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.npz or best.npz of a run "
                   "(best.npz needs the run's checkpoint.npz beside it for the vocabulary)")
    p.add_argument("--start", default=None, help="text to start from (default: 'The Time "
                   "Traveller' for the bundled corpus, else the first token)")
    p.add_argument("--length", type=_length, default=300,
                   help=f"tokens to generate, at most {MAX_GENERATE:,} (default: 300)")
    p.add_argument("--temperature", type=_temperature, default=1.0,
                   help="softmax temperature; 0 = greedy (default: 1.0)")
    p.add_argument("--top-k", type=_positive_int, default=None,
                   help="sample only among the k most likely tokens")
    p.add_argument("--skip", default=None, help="comma-separated tokens never to generate "
                   "(e.g. '<unk>')")
    _common(p)
    p.set_defaults(func=cmd_generate)

    # ------------------------------------------------------------------------------ seq2seq
    p = sub.add_parser("seq2seq", help="train and evaluate an encoder-decoder on addition or "
                       "date", description="Train a sequence-to-sequence model on a "
                       "question_answer file; report held-out exact-match accuracy per epoch "
                       "and some decoded examples.")
    p.add_argument("--task", choices=("addition", "date"), default="addition",
                   help="dataset from DATA_DIR/seq2seq/TASK.txt; addition falls back to "
                        "generated problems when the file is absent (default: addition)")
    p.add_argument("--data", default=None, help="a question_answer file (overrides --task)")
    p.add_argument("--data-dir", default=None, help="folder with seq2seq/ (default "
                   "$FASTRNN_DATA, then ../shared/data from the working folder)")
    p.add_argument("--model", choices=sorted(S2S_MODELS), default="peeky",
                   help="(default: peeky)")
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="(default: lstm)")
    p.add_argument("--no-reverse", dest="reverse", action="store_false",
                   help="do not reverse the input sequence (reversing is the default)")
    p.add_argument("--wordvec-size", type=_positive_int, default=16, help="(default: 16)")
    p.add_argument("--hidden-size", type=_positive_int, default=128, help="(default: 128)")
    p.add_argument("--epochs", type=_positive_int, default=25, help="(default: 25)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="(default: 128)")
    p.add_argument("--optimizer", choices=("sgd", "momentum", "adagrad", "rmsprop", "adam"),
                   default="adam", help="(default: adam)")
    p.add_argument("--lr", type=_positive_float, default=0.001, help="(default: 0.001)")
    p.add_argument("--max-grad", type=_positive_float, default=5.0, help="(default: 5)")
    p.add_argument("--test-ratio", type=_ratio, default=0.1,
                   help="held-out fraction (default: 0.1)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="use only the first N examples of the file (quick runs)")
    p.add_argument("--target-acc", type=float, default=None,
                   help="stop once held-out accuracy reaches this fraction (e.g. 0.9)")
    p.add_argument("--examples", type=int, default=5, help="decoded examples to show "
                   "(default: 5)")
    p.add_argument("--out", default=None, help="folder for checkpoint.npz, history.json and "
                   f"accuracy.png (default: a new folder ./{RUNS_DIR}/seq2seq-TASK-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_seq2seq)

    # -------------------------------------------------------------------------------- bench
    # parsed by main() itself: every argument after `bench` goes to the benchmark script
    sub.add_parser("bench", help="run the benchmarks (fastrnn.bench.cells; `fastrnn bench "
                   "--help` shows its options)")
    return parser


# ------------------------------------------------------------------------------------ helpers
def _setup_backend(name):
    import fastrnn
    try:
        fastrnn.set_backend(None if name == "auto" else name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if name == "cuda":
        try:
            import cupy
        except ImportError:
            raise UsageError("--backend cuda needs CuPy (pip install 'fastrnn[gpu]')") from None
        return cupy
    return np


_THREAD_LIMITS = []  # keeps threadpoolctl's limiter alive for the rest of the command


def _setup_threads(n):
    """Limit BLAS (through threadpoolctl) and the kernels to ``n`` threads."""
    if n is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise UsageError("--threads needs threadpoolctl (pip install threadpoolctl)") from None
    _THREAD_LIMITS.append(threadpool_limits(limits=n))
    import fastrnn
    if hasattr(fastrnn, "set_num_threads"):
        fastrnn.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass


def _out(msg=""):
    print(msg, flush=True)


def _note(msg):
    print(msg, file=sys.stderr, flush=True)


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
        n /= 1024


def _machine_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(what, V, D, H, gates, layers, dtype, N, T, optimizer, in_extra=0,
                  out_width=None):
    """Refuse, before anything is allocated, a model whose parameters, gradients, optimizer
    slots and activations for one (N, T) batch would not fit in this machine's memory."""
    item = np.dtype(dtype).itemsize
    out_width = H if out_width is None else out_width
    rec = sum(((D if k == 0 else H) + in_extra + H + 1) * gates * H for k in range(layers))
    n_params = V * D + rec + out_width * V + V
    slots = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1}.get(optimizer, 2)
    acts = N * T * (3 * V + layers * (gates + 3) * H + D)
    need = (n_params * (2 + slots) + acts) * item
    have = _machine_memory()
    if have is not None and need > have:
        raise UsageError(f"{what} would need about {_fmt_bytes(need)} of memory "
                         f"({n_params:,} parameters), more than this machine's "
                         f"{_fmt_bytes(have)}; choose smaller sizes")


def _plot(history, path, title, series, ylabel, log_scale):
    """One PNG of per-epoch curves: ``series`` is [(history key, label), ...]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    n = 0
    for key, label in series:
        vals = [np.nan if v is None else v for v in history.get(key, [])]
        if vals and not all(np.isnan(vals)):
            n = max(n, len(vals))
            ax.plot(np.arange(1, len(vals) + 1), vals, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if log_scale:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 4, 6, 10 rather than 4x10^0
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if n:
        ax.legend()
    fig.tight_layout()
    from .models.base import atomic_write
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def _write_json(path, obj):
    from .models.base import atomic_write
    atomic_write(path, json.dumps(obj, indent=1).encode())


def _run_dir(out, kind):
    """``out`` if given (refused if it is a file), else a new folder for this run."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = os.path.join(RUNS_DIR, f"{kind}-{stamp}")
        out, k = base, 1
        while os.path.exists(out):
            k += 1
            out = f"{base}-{k}"
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is an existing file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output folder {out}: {e.strerror}") from None
    return out


def _warm_up(model, xs, ts):
    """Compile the kernels on a tiny copy of ``model`` (same class, cells and dtype) so that
    compilation is shown as its own step and not counted in the first epoch's speed. Only the
    Numba backend compiles at run time; the compiled engine and the reference need nothing."""
    from . import backend
    from .models import build_model
    if backend.name_for(model.xp.zeros(1)) != "numba":
        return
    config = dict(model.config)
    small = {"vocab_size": int(max(xs.max(), ts.max())) + 1, "wordvec_size": 2,
             "hidden_size": 2}
    config.update({k: v for k, v in small.items() if k in config})
    t0 = time.perf_counter()
    _out("compiling kernels...")
    tiny = build_model(config, model.xp)
    xp = model.xp
    tiny.forward(xp.asarray(xs), xp.asarray(ts))
    tiny.backward()
    if hasattr(tiny, "predict"):
        tiny.predict(xp.asarray(xs), train_flg=False)
    elif hasattr(tiny, "generate"):
        tiny.generate(xp.asarray(xs), int(ts[0, 0]), 1)
    _out(f"compiling kernels: done in {time.perf_counter() - t0:.1f} s")


class _InterruptToStop:
    """While active, the first Ctrl-C asks ``trainer`` to stop after its current step (so that
    the checkpoint written next is consistent); a second one interrupts at once."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.interrupted = False

    def _handler(self, signum, frame):
        self.interrupted = True
        self.trainer.stop = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        self._previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def _fit(trainer, epochs, ckpt, resume_hint=None):
    """trainer.fit with Ctrl-C saving a resumable checkpoint: returns True when interrupted."""
    with _InterruptToStop(trainer) as guard:
        trainer.fit(epochs)
    if guard.interrupted:
        trainer.save_checkpoint(ckpt)
        hint = f"; continue with `{resume_hint}`" if resume_hint else ""
        _note(f"interrupted: saved {ckpt} at epoch {trainer.epoch + 1}, batch "
              f"{trainer.iteration}{hint}")
    return guard.interrupted


def _encode_start(text, vocab, level):
    from .data import tokenize
    toks = list(text) if level == "char" else tokenize(text, "word", "regex", lower=True,
                                                       eos=None)
    missing = [t for t in toks if t not in vocab]
    if missing and vocab.unk_id is None:
        raise UsageError(f"start text has tokens outside the vocabulary: {missing[:5]}")
    ids = vocab.encode(toks, unknown="unk" if vocab.unk_id is not None else "skip")
    if len(ids) == 0:
        raise UsageError("start text is empty (after tokenization)")
    return ids


def _sample_text(model, vocab, level, start, length, temperature, top_k=None, skip=(), seed=0):
    start_ids = _encode_start(start, vocab, level)
    skip_ids = [vocab.token_to_id[t] for t in skip if t in vocab]
    ids = model.generate(start_ids, length, temperature=temperature, top_k=top_k,
                         skip_ids=skip_ids or None, seed=seed)
    toks = [vocab.id_to_token[i] for i in ids]
    if level == "char":
        return "".join(toks)
    return " ".join(toks).replace(" <eos> ", "\n").replace("<eos>", "\n")


# -------------------------------------------------------------------------------------- train
def _train_options(a):
    """Fill the level/model-dependent defaults."""
    o = dict(vars(a))
    o.pop("func", None)
    o.pop("given", None)
    if a.ptb:
        if a.corpus:
            raise UsageError("give either --corpus or --ptb, not both")
        o["level"] = "word"
    word = o["level"] == "word"
    better = a.model == "better"
    d = {"wordvec_size": 650 if better else (100 if word else 64),
         "hidden_size": 650 if better else (100 if word else 256),
         "epochs": 4 if word else 6, "batch_size": 20 if word else 32,
         "optimizer": "sgd" if word else "adam",
         "sample_length": 50 if word else 300}
    for k, v in d.items():
        if o.get(k) is None:
            o[k] = v
    if o["lr"] is None:
        o["lr"] = {"sgd": 20.0, "momentum": 1.0, "adagrad": 0.1}.get(o["optimizer"], 0.005)
    if o["max_grad"] is None:
        o["max_grad"] = 0.25 if o["optimizer"] == "sgd" else 5.0
    if o["dropout"] is None:
        o["dropout"] = 0.5 if better else 0.0
    if o["dropout"] and a.model in ("rnnlm", "simple"):
        raise UsageError(f"--dropout applies to --model better or gru, not {a.model}")
    if better and o["wordvec_size"] != o["hidden_size"]:
        raise UsageError("--model better ties the output weight to the embedding: "
                         "--wordvec-size must equal --hidden-size")
    return o


def _load_lm_data(o, vocab=None):
    from .data import DataError, load_ptb, load_text_corpus
    if o["ptb"]:
        dl = (o["data_dir"] or os.path.join("data", "ptb")) if o["download"] else None
        try:
            kw = {"url": o["ptb_url"]} if o.get("ptb_url") else {}
            return load_ptb(o["data_dir"], download_to=dl, **kw)
        except DataError as e:
            raise UsageError(str(e)) from None
    if o["corpus"] is not None and os.path.isdir(o["corpus"]):
        raise UsageError(f"--corpus {o['corpus']} is a folder; give a text file")
    if o["corpus"] is not None and not os.path.isfile(o["corpus"]):
        raise UsageError(f"corpus file not found: {o['corpus']}")
    try:
        return load_text_corpus(o["corpus"], level=o["level"], val_fraction=o["val_fraction"],
                                vocab=vocab)
    except UnicodeDecodeError:
        raise UsageError(f"corpus {o['corpus']} is not UTF-8 text") from None
    except ValueError as e:  # no tokens (empty or blank file), tokens outside a vocabulary
        raise UsageError(str(e)) from None


def _make_lm(o, V, xp):
    from . import models
    cls = getattr(models, LM_MODELS[o["model"]])
    kw = dict(vocab_size=V, wordvec_size=o["wordvec_size"], hidden_size=o["hidden_size"],
              dtype=o["dtype"], seed=o["seed"], xp=xp)
    if o["model"] == "better":
        kw["dropout_ratio"] = o["dropout"]
    elif o["model"] == "gru":
        kw["dropout"] = o["dropout"]
    return cls(**kw)


# Options `--resume` may change; every other option belongs to the model, the data or the
# batches the checkpoint was made with.
RESUME_CHANGEABLE = ("resume", "epochs", "out", "lr", "max_grad", "lr_decay", "sample_length",
                     "temperature", "checkpoint_every", "no_plot", "quiet", "backend", "threads",
                     "data_dir", "download", "ptb_url")
LM_GATES = {"rnnlm": 4, "simple": 1, "better": 4, "gru": 3}


def _resume_options(a, meta):
    """The run's options from its checkpoint, updated by the changeable options given now;
    a UsageError naming every fixed option given with a different value."""
    if "options" not in meta.get("extra", {}):
        raise UsageError(f"{a.resume} was not written by `fastrnn train`")
    o = dict(meta["extra"]["options"])
    given = getattr(a, "given", set())
    fixed = [d for d in sorted(given - set(RESUME_CHANGEABLE))
             if getattr(a, d) != o.get(d) and not (d == "level" and o.get("ptb"))]
    if fixed:
        said = ", ".join(f"--{d.replace('_', '-')} (the run has {o.get(d)!r})" for d in fixed)
        raise UsageError(f"cannot change {said} when resuming; start a new run instead")
    for d in RESUME_CHANGEABLE:
        if d in given or d in ("resume", "quiet", "backend", "threads"):
            o[d] = getattr(a, d)
    if "out" not in given:
        o["out"] = os.path.dirname(os.path.abspath(a.resume))
    return o


def _train_callback(o, corpus, model_name):
    """After every epoch: history.json and the perplexity plot, so a stopped run keeps them."""
    def write(trainer):
        _write_json(os.path.join(o["out"], "history.json"), trainer.history)
        if not o["no_plot"] and trainer.history["train_ppl"]:
            _plot(trainer.history, os.path.join(o["out"], "perplexity.png"),
                  f"{model_name} on {corpus.name}",
                  [("train_ppl", "train"), ("val_ppl", "validation")], "perplexity", True)
    return write


def cmd_train(a):
    from .data import Vocab
    from .optim import make_optimizer
    from .train import LMTrainer, eval_perplexity, read_checkpoint

    xp = _setup_backend(a.backend)
    _setup_threads(a.threads)
    resume_meta = None
    if a.resume:
        try:
            resume_meta, _ = read_checkpoint(a.resume)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
        o = _resume_options(a, resume_meta)
        vocab = Vocab.from_dict(resume_meta["extra"]["vocab"])
    else:
        o = _train_options(a)
        vocab = None
    corpus = _load_lm_data(o, vocab)
    vocab = corpus.vocab
    if o.get("max_tokens"):
        corpus.train = corpus.train[:o["max_tokens"]]
    if len(corpus.train) <= o["batch_size"] * o["time_size"]:
        raise UsageError(f"the training split has {len(corpus.train)} tokens, too few for "
                         f"--batch-size {o['batch_size']} x --time-size {o['time_size']}")
    _check_memory(f"--model {o['model']} with --wordvec-size {o['wordvec_size']}, "
                  f"--hidden-size {o['hidden_size']} and a vocabulary of {len(vocab):,}",
                  len(vocab), o["wordvec_size"], o["hidden_size"], LM_GATES[o["model"]],
                  2 if o["model"] == "better" else 1, o["dtype"], o["batch_size"],
                  o["time_size"], o["optimizer"])
    o["out"] = _run_dir(o["out"], f"train-{o['model']}-{corpus.name or 'corpus'}")
    ckpt = os.path.join(o["out"], "checkpoint.npz")
    best = os.path.join(o["out"], "best.npz")
    model = _make_lm(o, len(vocab), xp)
    opt = make_optimizer(o["optimizer"], o["lr"])
    name = type(model).__name__
    trainer = LMTrainer(model, opt, corpus.train, corpus.val, batch_size=o["batch_size"],
                        time_size=o["time_size"], max_grad=o["max_grad"],
                        sampling=o["sampling"], seed=o["seed"],
                        lr_decay=o["lr_decay"] if o["lr_decay"] != 1 else None,
                        best_path=best, checkpoint_path=ckpt,
                        checkpoint_every=o["checkpoint_every"], progress=not o["quiet"],
                        log=_out, callbacks=[_train_callback(o, corpus, name)],
                        extra={"options": o, "vocab": vocab.to_dict(),
                               "level": corpus.level, "corpus": corpus.name})
    if a.resume:
        try:
            trainer.load_checkpoint(a.resume)
        except ValueError as e:
            raise UsageError(f"cannot resume {a.resume}: {e}") from None
        trainer.extra["options"] = o
        given = getattr(a, "given", set())
        if "lr" in given:
            opt.lr = o["lr"]
        if "max_grad" in given:
            trainer.max_grad = o["max_grad"]
        old_best = os.path.join(os.path.dirname(os.path.abspath(a.resume)), "best.npz")
        if os.path.isfile(old_best) and os.path.abspath(old_best) != os.path.abspath(best):
            import shutil
            shutil.copyfile(old_best, best)
        _out(f"resumed {a.resume} at epoch {trainer.epoch + 1}, batch {trainer.iteration}; "
             f"writing to {o['out']}")
    ntok = len(corpus.train)
    _out(f"{name} ({model.num_params():,} parameters, {o['dtype']}) on "
         f"{corpus.name}: {corpus.level} level, {ntok:,} training tokens, vocabulary "
         f"{len(vocab):,}; {o['epochs']} epoch(s) of {trainer.batches.iters_per_epoch} batches "
         f"({o['batch_size']} x {o['time_size']}), {o['optimizer']} lr {opt.lr:g}; backend "
         f"{o['backend']}; output {o['out']}")
    if o["backend"] != "numpy":
        ids = np.array([[0, 1, 2]], dtype=corpus.train.dtype)  # the dtype the kernels will see
        _warm_up(model, ids, ids[:, ::-1])
    t0 = time.perf_counter()
    if _fit(trainer, o["epochs"], ckpt, f"{PROG} train --resume {ckpt}"):
        return 130
    history = trainer.history
    if corpus.test is not None and len(corpus.test) > 1:
        if os.path.isfile(best):
            model.load_params(best)
        _out(f"test perplexity (best validation parameters): "
             f"{eval_perplexity(model, corpus.test):.2f}")
    _out(f"trained in {time.perf_counter() - t0:.1f} s; checkpoint: {ckpt}")
    _train_callback(o, corpus, name)(trainer)
    if not o["no_plot"] and history["train_ppl"]:
        _out(f"perplexity curve: {os.path.join(o['out'], 'perplexity.png')}")
    if o["sample_length"] > 0:
        start = DEFAULT_START[corpus.level] if corpus.name == "timemachine" else \
            vocab.id_to_token[int(corpus.train[0])]
        text = _sample_text(model, vocab, corpus.level, start, o["sample_length"],
                            o["temperature"], skip=("<unk>",), seed=o["seed"])
        _out("sample:\n" + text)
    return 0


# ----------------------------------------------------------------------------------- generate
def cmd_generate(a):
    from .data import Vocab
    from .train import model_from_checkpoint, read_checkpoint

    xp = _setup_backend(a.backend)
    _setup_threads(a.threads)
    path = a.checkpoint
    try:
        if _is_params_file(path):
            from .models import load_model
            model = load_model(path, xp=xp)
            meta, _ = read_checkpoint(os.path.join(os.path.dirname(path) or ".",
                                                   "checkpoint.npz"))
        else:
            model, meta = model_from_checkpoint(path, xp=xp)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    extra = meta.get("extra", {})
    if "vocab" not in extra or not hasattr(model, "generate") or "Seq2seq" in \
            type(model).__name__:
        raise UsageError(f"{path} is not a language-model checkpoint of `fastrnn train`")
    vocab = Vocab.from_dict(extra["vocab"])
    level = extra.get("level", "word")
    start = a.start
    if start is None:
        start = DEFAULT_START[level] if extra.get("corpus") == "timemachine" else \
            vocab.id_to_token[0]
    skip = [s for s in (a.skip or "").split(",") if s]
    try:
        text = _sample_text(model, vocab, level, start, a.length, a.temperature, a.top_k, skip,
                            a.seed)
    except ValueError as e:  # e.g. --skip and --top-k leave nothing to sample
        raise UsageError(str(e)) from None
    _out(text)
    return 0


def _is_params_file(path):
    """True for a parameter file (save_params: config, no trainer meta)."""
    from .models.base import read_npz
    try:
        arrays = read_npz(path)
    except (FileNotFoundError, ValueError):
        return False
    return "config" in arrays and "meta" not in arrays


# ------------------------------------------------------------------------------------ seq2seq
def _read_seq2seq_lines(a):
    """(lines, source) of the question_answer data the options name."""
    from .data import make_addition, shared_data_dir
    if a.data:
        path = a.data
        if os.path.isdir(path):
            raise UsageError(f"--data {path} is a folder; give a question_answer text file")
        if not os.path.isfile(path):
            raise UsageError(f"data file not found: {path}")
    else:
        base = a.data_dir or shared_data_dir()
        path = os.path.join(base, "seq2seq", f"{a.task}.txt") if base else None
        if a.data_dir and not os.path.isfile(path):
            raise UsageError(f"no {a.task}.txt in {os.path.join(a.data_dir, 'seq2seq')}")
    if path and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text (binary data?)") from None
        if any("\0" in line for line in lines):
            raise UsageError(f"{path} holds NUL bytes: binary data, not question_answer text")
        return lines, path
    if a.task == "addition":
        return make_addition(50000, seed=1984), \
            "generated addition problems (no addition.txt found)"
    raise UsageError("date.txt not found: give --data FILE or --data-dir DIR "
                     "(or set FASTRNN_DATA)")


def cmd_seq2seq(a):
    from . import models
    from .data import arrays_from_lines
    from .optim import make_optimizer
    from .train import Seq2seqTrainer, eval_seq2seq

    xp = _setup_backend(a.backend)
    _setup_threads(a.threads)
    lines, source = _read_seq2seq_lines(a)
    if a.limit:
        lines = lines[:a.limit]
    try:
        (x_train, t_train), (x_test, t_test), vocab = arrays_from_lines(lines, a.test_ratio)
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None
    if len(x_train) == 0 or len(x_test) == 0:
        raise UsageError("too few examples for a train / held-out split")
    _check_memory(f"--wordvec-size {a.wordvec_size} and --hidden-size {a.hidden_size}",
                  len(vocab), a.wordvec_size, a.hidden_size, 4 if a.cell == "lstm" else 3, 2,
                  "float32", a.batch_size, t_train.shape[1], a.optimizer, in_extra=a.hidden_size,
                  out_width=2 * a.hidden_size)
    out = _run_dir(a.out, f"seq2seq-{a.task if not a.data else 'data'}")
    ckpt = os.path.join(out, "checkpoint.npz")
    cls = getattr(models, S2S_MODELS[a.model])
    model = cls(len(vocab), a.wordvec_size, a.hidden_size, cell=a.cell, reverse_input=a.reverse,
                reset_after=a.cell == "gru", seed=a.seed, xp=xp)
    opt = make_optimizer(a.optimizer, a.lr)
    title = f"{type(model).__name__} ({a.cell}) on {a.task if not a.data else source}"

    def after_epoch(trainer):
        h = trainer.history
        _write_json(os.path.join(out, "history.json"), h)
        _plot(h, os.path.join(out, "accuracy.png"), title, [("val_acc", "held-out accuracy")],
              "exact-match accuracy", False)
        if a.target_acc is not None and h["val_acc"][-1] is not None and \
                h["val_acc"][-1] >= a.target_acc:
            _out(f"reached {100 * a.target_acc:g}% held-out accuracy after {trainer.epoch} "
                 f"epochs")
            trainer.stop = True

    trainer = Seq2seqTrainer(model, opt, x_train, t_train, x_test, t_test,
                             batch_size=a.batch_size, max_grad=a.max_grad, seed=a.seed,
                             checkpoint_path=ckpt, progress=not a.quiet, log=_out,
                             callbacks=[after_epoch], extra={"vocab": vocab.to_dict()})
    _out(f"{type(model).__name__} ({a.cell}, reverse={a.reverse}, {model.num_params():,} "
         f"parameters) on {source}: {len(x_train):,} train / {len(x_test):,} held-out; "
         f"output {out}")
    if a.backend != "numpy":
        _warm_up(model, x_train[:1], t_train[:1])
    t0 = time.perf_counter()
    if _fit(trainer, a.epochs, ckpt):
        return 130
    acc, pred = eval_seq2seq(model, x_test, t_test)
    _out(f"held-out exact-match accuracy {100 * acc:.2f}% after {trainer.epoch} epochs "
         f"({time.perf_counter() - t0:.1f} s); history, checkpoint and plot in {out}")
    for i in range(min(a.examples, len(x_test))):
        q = vocab.decode(x_test[i])
        want, got = vocab.decode(t_test[i, 1:]), vocab.decode(pred[i])
        _out(f"  {q!r} -> {got!r} {'ok' if got == want else 'WRONG, expected ' + repr(want)}")
    return 0


# -------------------------------------------------------------------------------------- bench
def _bench_main():
    """``main(argv)`` of the cell benchmark, or None when it cannot be imported."""
    try:
        from .bench import cells
    except ImportError:
        return None
    return cells.main


def cmd_bench(argv):
    """Run the cell benchmark with ``argv`` (everything after ``fastrnn bench``)."""
    main = _bench_main()
    if main is None:
        raise UsageError("the benchmarks (fastrnn.bench) are not available in this install")
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    saved = sys.argv
    sys.argv = ["fastrnn bench"] + argv
    try:
        rc = main(argv)
    except SystemExit as e:  # the benchmark's own argparse (--help, bad option)
        rc = e.code
    finally:
        sys.argv = saved
    if isinstance(rc, str):
        _note(rc)
        return 2
    return int(rc or 0)


# --------------------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # everything after `bench` belongs to the benchmark
        try:
            return cmd_bench(argv[1:])
        except UsageError as e:
            _note(f"{PROG} bench: error: {e}")
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given = _given_options(parser, argv)
    try:
        return args.func(args)
    except UsageError as e:
        _note(f"{PROG} {args.command}: error: {e}")
        return 2
    except OSError as e:  # a missing or unwritable path, a full disk
        where = f" {e.filename}" if e.filename else ""
        hint = " (disk full)" if e.errno == errno.ENOSPC else ""
        _note(f"{PROG} {args.command}: error:{where}: {e.strerror or e}{hint}")
        return 2
    except KeyboardInterrupt:
        _note(f"{PROG} {args.command}: interrupted")
        return 130


def _given_options(parser, argv):
    """The dests of the options written on the command line (not left at their defaults)."""
    sub = next(a for a in parser._actions if a.dest == "command").choices.get(argv[0]) \
        if argv else None
    if sub is None:
        return set()
    table = sub._option_string_actions
    given = set()
    for tok in argv[1:]:
        if tok == "--":
            break
        if not tok.startswith("--"):
            continue
        name = tok.split("=", 1)[0]
        matches = [name] if name in table else [o for o in table if o.startswith(name)]
        if len(matches) == 1:
            given.add(table[matches[0]].dest)
    return given


if __name__ == "__main__":
    sys.exit(main())
