"""Target run: PeekySeq2seq with reversed input on addition, held-out accuracy per epoch.

Usage::

    python -m benchmarks.train_seq2seq                       # addition, 25 epochs, stop at 90%
    python -m benchmarks.train_seq2seq --task date --model attention --epochs 10
    python -m benchmarks.train_seq2seq --no-stop --out s2s.json

Data: ../shared/data/seq2seq/TASK.txt (or --data-dir / $FASTRNN_DATA); the held-out split is a
seeded random 10%. Textbook recipe: wordvec 16, hidden 128, batch 128, Adam lr 0.001, clip 5.
"""
import argparse
import json
import os
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("addition", "date"), default="addition")
    p.add_argument("--model", choices=("seq2seq", "peeky", "attention"), default="peeky")
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--no-reverse", dest="reverse", action="store_false")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--no-stop", action="store_true", help="run all epochs past the target")
    p.add_argument("--wordvec-size", type=int, default=16)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--max-grad", type=float, default=5.0)
    p.add_argument("--backend", choices=("auto", "numba", "numpy", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    import fastrnn
    from fastrnn import models
    from fastrnn.data import load_seq2seq, shared_data_dir
    from fastrnn.optim import Adam
    from fastrnn.train import Seq2seqTrainer, eval_seq2seq

    from benchmarks.train_ptb import machine_info

    fastrnn.set_backend(None if a.backend == "auto" else a.backend)
    base = a.data_dir or shared_data_dir()
    path = os.path.join(base or "", "seq2seq", f"{a.task}.txt")
    if not base or not os.path.isfile(path):
        print(f"train_seq2seq: {path} not found (give --data-dir or set FASTRNN_DATA)",
              file=sys.stderr)
        return 2
    (x, t), (xv, tv), vocab = load_seq2seq(path)
    cls = {"seq2seq": models.Seq2seq, "peeky": models.PeekySeq2seq,
           "attention": models.AttentionSeq2seq}[a.model]
    model = cls(len(vocab), a.wordvec_size, a.hidden_size, cell=a.cell, reverse_input=a.reverse,
                reset_after=a.cell == "gru", seed=a.seed)
    tr = Seq2seqTrainer(model, Adam(a.lr), x, t, xv, tv, batch_size=a.batch_size,
                        max_grad=a.max_grad, seed=a.seed, log=lambda m: print(m, flush=True))
    print(f"{type(model).__name__} {a.cell} reverse={a.reverse} on {a.task}: {len(x)} train / "
          f"{len(xv)} held-out", flush=True)
    t0 = time.perf_counter()
    reached = None
    for epoch in range(a.epochs):
        tr.fit(epoch + 1)
        if reached is None and tr.history["val_acc"][-1] >= a.target:
            reached = epoch + 1
            print(f"reached {100 * a.target:g}% at epoch {reached}", flush=True)
            if not a.no_stop:
                break
    acc, pred = eval_seq2seq(model, xv, tv)
    for i in range(5):
        print(f"  {vocab.decode(xv[i])!r} -> {vocab.decode(pred[i])!r} "
              f"(expected {vocab.decode(tv[i, 1:])!r})")
    print(f"final held-out accuracy {100 * acc:.2f}% after {tr.epoch} epochs, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"task": a.task, "model": type(model).__name__, "cell": a.cell,
                       "reverse": a.reverse, "history": tr.history, "final_acc": acc,
                       "reached_target_epoch": reached, "machine": machine_info()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
