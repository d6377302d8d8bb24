"""Target runs on Penn Treebank: the textbook Rnnlm and BetterRnnlm, per-epoch wall time.

Usage::

    python -m benchmarks.train_ptb --model rnnlm --epochs 4                 # D=H=100, SGD lr 20
    python -m benchmarks.train_ptb --model rnnlm --epochs 4 --backend numpy # the reference
    python -m benchmarks.train_ptb --model better --epochs 1                # D=H=650, dropout .5
    python -m benchmarks.train_ptb --model better --max-iters 50            # time 50 batches only

PTB is read from --data-dir, $FASTRNN_DATA or ../shared/data (md5-checked). Prints one line per
epoch (train / validation perplexity, wall time, words/s) and at the end the test perplexity
of the parameters with the best validation perplexity; --out writes it all as JSON with the
machine, the library versions and the thread settings.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

RECIPES = {
    # textbook ch. 6 train_rnnlm.py: Rnnlm, SGD lr 20, clip 0.25, N 20, T 35
    "rnnlm": dict(wordvec_size=100, hidden_size=100, lr=20.0, max_grad=0.25, batch_size=20,
                  time_size=35, dropout=0.0),
    # textbook ch. 6 train_better_rnnlm.py: BetterRnnlm 650, dropout .5, tied, lr 20 / 4 on
    # plateau, clip 0.25 (published: 40 epochs, about 76 test perplexity... on a GPU)
    "better": dict(wordvec_size=650, hidden_size=650, lr=20.0, max_grad=0.25, batch_size=20,
                   time_size=35, dropout=0.5),
}


def machine_info():
    import numba

    import fastrnn
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "numpy": np.__version__, "numba": numba.__version__,
            "fastrnn": fastrnn.__version__,
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",
                                                       "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")}}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(RECIPES), default="rnnlm")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop after this many batches (timing estimates)")
    p.add_argument("--backend", choices=("auto", "numba", "numpy", "cuda"), default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    for k in ("wordvec_size", "hidden_size", "batch_size", "time_size"):
        p.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    for k in ("lr", "max_grad", "dropout"):
        p.add_argument("--" + k.replace("_", "-"), type=float, default=None)
    p.add_argument("--checkpoint", default=None, help="checkpoint path (resumed if it exists)")
    p.add_argument("--out", default=None, help="write results JSON here")
    a = p.parse_args(argv)

    import fastrnn
    from fastrnn.data import DataError, load_ptb, shared_data_dir
    from fastrnn.models import BetterRnnlm, Rnnlm
    from fastrnn.optim import SGD
    from fastrnn.train import LMTrainer, eval_perplexity

    fastrnn.set_backend(None if a.backend == "auto" else a.backend)
    xp = np
    if a.backend == "cuda":
        import cupy as xp
    cfg = dict(RECIPES[a.model])
    for k in cfg:
        v = getattr(a, k)
        if v is not None:
            cfg[k] = v
    try:
        corpus = load_ptb(a.data_dir or shared_data_dir())
    except DataError as e:
        print(f"train_ptb: {e}", file=sys.stderr)
        return 2
    V = len(corpus.vocab)
    if a.model == "rnnlm":
        model = Rnnlm(V, cfg["wordvec_size"], cfg["hidden_size"], seed=a.seed, xp=xp)
    else:
        model = BetterRnnlm(V, cfg["wordvec_size"], cfg["hidden_size"], cfg["dropout"],
                            seed=a.seed, xp=xp)
    best = (a.out or "ptb") + ".best.npz"
    tr = LMTrainer(model, SGD(cfg["lr"]), corpus.train, corpus.val,
                   batch_size=cfg["batch_size"], time_size=cfg["time_size"],
                   max_grad=cfg["max_grad"], lr_decay=4.0, best_path=best,
                   checkpoint_path=a.checkpoint, log=lambda m: print(m, flush=True))
    if a.checkpoint and os.path.isfile(a.checkpoint):
        tr.load_checkpoint(a.checkpoint)
        print(f"resumed {a.checkpoint} at epoch {tr.epoch + 1}, batch {tr.iteration}")
    print(f"{type(model).__name__} D={cfg['wordvec_size']} H={cfg['hidden_size']} "
          f"backend={a.backend} {tr.batches.iters_per_epoch} batches/epoch", flush=True)
    result = {"model": type(model).__name__, "config": cfg, "backend": a.backend,
              "machine": machine_info()}
    if a.max_iters:
        t0 = time.perf_counter()
        tr.fit(a.epochs, max_iters=a.max_iters)
        dt = time.perf_counter() - t0
        per = dt / a.max_iters
        result.update(iters=a.max_iters, seconds=dt, s_per_batch=per,
                      epoch_estimate_s=per * tr.batches.iters_per_epoch,
                      train_ppl_so_far=float(np.exp(tr._acc["loss"] / max(tr._acc["count"], 1))))
        print(f"{a.max_iters} batches in {dt:.1f} s: {per:.3f} s/batch -> one epoch about "
              f"{per * tr.batches.iters_per_epoch / 60:.1f} min", flush=True)
    else:
        tr.fit(a.epochs)
        if os.path.isfile(best):
            model.load_params(best)
        test = eval_perplexity(model, corpus.test)
        result.update(history=tr.history, test_ppl=test)
        print(f"test perplexity (best validation parameters): {test:.2f}", flush=True)
        print("epoch wall times (s): " + ", ".join(f"{t:.1f}" for t in tr.history["time"]))
    result["machine"]["load_average_end"] = machine_info().get("load_average")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
