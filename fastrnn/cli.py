"""The ``fastrnn`` command: train / generate / seq2seq / bench.

    fastrnn train                  # LSTM LM on the bundled "The Time Machine", a few minutes
    fastrnn generate --checkpoint fastrnn-run/checkpoint.npz --start "The Time"
    fastrnn seq2seq --task addition
    fastrnn bench -- --quick

Every error a user can cause (bad path, bad option, corrupt file) is one line on stderr and
exit status 2; no traceback.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

PROG = "fastrnn"

LM_MODELS = {"rnnlm": "Rnnlm", "simple": "SimpleRnnlm", "better": "BetterRnnlm", "gru": "GRUlm"}
S2S_MODELS = {"seq2seq": "Seq2seq", "peeky": "PeekySeq2seq", "attention": "AttentionSeq2seq"}
DEFAULT_START = {"char": "The Time Traveller ", "word": "the time traveller"}


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line instead of argparse's usage block: the full help is one --help away.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return v


def _ratio(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {s!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {v}")
    return v


def _common(p):
    p.add_argument("--backend", choices=("auto", "numba", "numpy", "cuda"), default="auto",
                   help="kernel backend: auto (Numba on the CPU), numba, numpy (the plain NumPy "
                        "reference) or cuda (CuPy arrays on the GPU) (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights, data order, "
                   "dropout and sampling (default: 0)")


def build_parser():
    parser = _Parser(prog=PROG, description="Fused recurrent-network kernels behind the "
                     "classic NumPy time-layer API: train and use RNN models.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"fastrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # ------------------------------------------------------------------------------- train
    p = sub.add_parser("train", help="train a language model (default: an LSTM on the bundled "
                       "novel, a few minutes on 2 cores)",
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
    g.add_argument("--out", default="fastrnn-run", help="output folder for checkpoint.npz, "
                   "best.npz, history.json and perplexity.png (default: ./fastrnn-run)")
    g.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run of this checkpoint exactly where it stopped; "
                        "--epochs then gives the new total")
    g.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="N",
                   help="also checkpoint every N batches (default: at epoch ends only)")
    g.add_argument("--sample-length", type=int, default=None,
                   help="tokens to generate at the end (default: 300 chars / 50 words; 0: none)")
    g.add_argument("--temperature", type=float, default=0.8,
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
    p.add_argument("--length", type=int, default=300, help="tokens to generate (default: 300)")
    p.add_argument("--temperature", type=float, default=1.0,
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
                   "$FASTRNN_DATA, then ../shared/data of a source checkout)")
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
    p.add_argument("--out", default=None, help="folder for checkpoint.npz and history.json")
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
            raise UsageError("--backend cuda needs CuPy (pip install cupy-cuda12x)") from None
        return cupy
    return np


def _out(msg=""):
    print(msg, flush=True)


def _note(msg):
    print(msg, file=sys.stderr, flush=True)


def _plot(history, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["train_ppl"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["train_ppl"], marker="o", label="train")
    val = [np.nan if v is None else v for v in history["val_ppl"]]
    if not all(np.isnan(val)):
        ax.plot(epochs, val, marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 4, 6, 10 rather than 4x10^0
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xticks(epochs)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_json(path, obj):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


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
    if o["corpus"] is not None and not os.path.isfile(o["corpus"]):
        raise UsageError(f"corpus file not found: {o['corpus']}")
    try:
        return load_text_corpus(o["corpus"], level=o["level"], val_fraction=o["val_fraction"],
                                vocab=vocab)
    except UnicodeDecodeError:
        raise UsageError(f"corpus {o['corpus']} is not UTF-8 text") from None


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


def cmd_train(a):
    from .data import Vocab
    from .optim import make_optimizer
    from .train import LMTrainer, read_checkpoint

    xp = _setup_backend(a.backend)
    resume_meta = None
    if a.resume:
        try:
            resume_meta, _ = read_checkpoint(a.resume)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
        if "options" not in resume_meta.get("extra", {}):
            raise UsageError(f"{a.resume} was not written by `fastrnn train`")
        o = dict(resume_meta["extra"]["options"])
        if a.epochs is not None:
            o["epochs"] = a.epochs
        o["resume"], o["quiet"], o["backend"] = a.resume, a.quiet, a.backend
        vocab = Vocab.from_dict(resume_meta["extra"]["vocab"])
    else:
        o = _train_options(a)
        vocab = None
    corpus = _load_lm_data(o, vocab)
    vocab = corpus.vocab
    if o.get("max_tokens"):
        corpus.train = corpus.train[:o["max_tokens"]]
    os.makedirs(o["out"], exist_ok=True)
    ckpt = os.path.join(o["out"], "checkpoint.npz")
    model = _make_lm(o, len(vocab), xp)
    opt = make_optimizer(o["optimizer"], o["lr"])
    if len(corpus.train) <= o["batch_size"] * o["time_size"]:
        raise UsageError(f"the training split has {len(corpus.train)} tokens, too few for "
                         f"--batch-size {o['batch_size']} x --time-size {o['time_size']}")
    trainer = LMTrainer(model, opt, corpus.train, corpus.val, batch_size=o["batch_size"],
                        time_size=o["time_size"], max_grad=o["max_grad"],
                        sampling=o["sampling"], seed=o["seed"],
                        lr_decay=o["lr_decay"] if o["lr_decay"] != 1 else None,
                        best_path=os.path.join(o["out"], "best.npz"), checkpoint_path=ckpt,
                        checkpoint_every=o["checkpoint_every"], progress=not o["quiet"],
                        log=_out, extra={"options": o, "vocab": vocab.to_dict(),
                                         "level": corpus.level, "corpus": corpus.name})
    if a.resume:
        try:
            trainer.load_checkpoint(a.resume)
        except ValueError as e:
            raise UsageError(f"cannot resume {a.resume}: {e}") from None
        trainer.extra["options"] = o
        _out(f"resumed {a.resume} at epoch {trainer.epoch + 1}, batch {trainer.iteration}")
    ntok = len(corpus.train)
    _out(f"{type(model).__name__} ({model.num_params():,} parameters, {o['dtype']}) on "
         f"{corpus.name}: {corpus.level} level, {ntok:,} training tokens, vocabulary "
         f"{len(vocab):,}; {o['epochs']} epochs of {trainer.batches.iters_per_epoch} batches "
         f"({o['batch_size']} x {o['time_size']}), {o['optimizer']} lr {o['lr']:g}; backend "
         f"{o['backend']}")
    t0 = time.perf_counter()
    history = trainer.fit(o["epochs"])
    if corpus.test is not None and len(corpus.test) > 1:
        from .train import eval_perplexity
        best = os.path.join(o["out"], "best.npz")
        if os.path.isfile(best):
            model.load_params(best)
        _out(f"test perplexity (best validation parameters): "
             f"{eval_perplexity(model, corpus.test):.2f}")
    _out(f"trained in {time.perf_counter() - t0:.1f} s; checkpoint: {ckpt}")
    _write_json(os.path.join(o["out"], "history.json"), history)
    if not a.no_plot and history["train_ppl"]:
        png = os.path.join(o["out"], "perplexity.png")
        _plot(history, png, f"{type(model).__name__} on {corpus.name}")
        _out(f"perplexity curve: {png}")
    if o["sample_length"] > 0:
        start = DEFAULT_START[corpus.level] if corpus.name == "timemachine" else \
            vocab.id_to_token[int(corpus.train[0])]
        text = _sample_text(model, vocab, corpus.level, start, o["sample_length"],
                            a.temperature, skip=("<unk>",), seed=o["seed"])
        _out("sample:\n" + text)
    return 0


# ----------------------------------------------------------------------------------- generate
def cmd_generate(a):
    from .data import Vocab
    from .train import model_from_checkpoint, read_checkpoint

    xp = _setup_backend(a.backend)
    path = a.checkpoint
    try:
        if os.path.isfile(path) and _is_params_file(path):
            from .models import load_model
            model = load_model(path, xp=xp)
            meta, _ = read_checkpoint(os.path.join(os.path.dirname(path) or ".",
                                                   "checkpoint.npz"))
        else:
            model, meta = model_from_checkpoint(path, xp=xp)
    except (FileNotFoundError, ValueError, KeyError) as e:
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
    _out(_sample_text(model, vocab, level, start, a.length, a.temperature, a.top_k, skip,
                      a.seed))
    return 0


def _is_params_file(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return "config" in z.files and "meta" not in z.files
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------------------------ seq2seq
def cmd_seq2seq(a):
    from . import models
    from .data import arrays_from_lines, make_addition, shared_data_dir
    from .optim import make_optimizer
    from .train import Seq2seqTrainer, eval_seq2seq

    xp = _setup_backend(a.backend)
    if a.data:
        path = a.data
        if not os.path.isfile(path):
            raise UsageError(f"data file not found: {path}")
    else:
        base = a.data_dir or shared_data_dir()
        path = os.path.join(base, "seq2seq", f"{a.task}.txt") if base else None
        if a.data_dir and not os.path.isfile(path):
            raise UsageError(f"no {a.task}.txt in {os.path.join(a.data_dir, 'seq2seq')}")
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        source = path
    elif a.task == "addition":
        lines = make_addition(50000, seed=1984)
        source = "generated addition problems (no addition.txt found)"
    else:
        raise UsageError("date.txt not found: give --data FILE or --data-dir DIR "
                         "(or set FASTRNN_DATA)")
    if a.limit:
        lines = lines[:a.limit]
    try:
        (x_train, t_train), (x_test, t_test), vocab = arrays_from_lines(lines, a.test_ratio)
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None
    if len(x_train) == 0 or len(x_test) == 0:
        raise UsageError("too few examples for a train / held-out split")
    cls = getattr(models, S2S_MODELS[a.model])
    model = cls(len(vocab), a.wordvec_size, a.hidden_size, cell=a.cell, reverse_input=a.reverse,
                reset_after=a.cell == "gru", seed=a.seed, xp=xp)
    opt = make_optimizer(a.optimizer, a.lr)
    ckpt = None
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        ckpt = os.path.join(a.out, "checkpoint.npz")
    trainer = Seq2seqTrainer(model, opt, x_train, t_train, x_test, t_test,
                             batch_size=a.batch_size, max_grad=a.max_grad, seed=a.seed,
                             checkpoint_path=ckpt, progress=not a.quiet, log=_out,
                             extra={"vocab": vocab.to_dict()})
    _out(f"{type(model).__name__} ({a.cell}, reverse={a.reverse}, {model.num_params():,} "
         f"parameters) on {source}: {len(x_train):,} train / {len(x_test):,} held-out")
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        trainer.fit(epoch + 1)
        if a.target_acc is not None and trainer.history["val_acc"][-1] >= a.target_acc:
            _out(f"reached {100 * a.target_acc:g}% held-out accuracy after {epoch + 1} epochs")
            break
    acc, pred = eval_seq2seq(model, x_test, t_test)
    _out(f"held-out exact-match accuracy {100 * acc:.2f}% after {trainer.epoch} epochs "
         f"({time.perf_counter() - t0:.1f} s)")
    for i in range(min(a.examples, len(x_test))):
        q = vocab.decode(x_test[i])
        want, got = vocab.decode(t_test[i, 1:]), vocab.decode(pred[i])
        _out(f"  {q!r} -> {got!r} {'ok' if got == want else 'WRONG, expected ' + repr(want)}")
    if a.out:
        _write_json(os.path.join(a.out, "history.json"), trainer.history)
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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        _note(f"{PROG} {args.command}: error: {e}")
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        _note(f"{PROG} {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _note(f"{PROG} {args.command}: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
