"""Zaremba, Sutskever and Vinyals 2014, "Recurrent Neural Network Regularization": the small
non-regularized PTB model, with fastrnn's LMTrainer.

2 LSTM layers of 200 units, weights and biases uniform in [-0.1, 0.1], no dropout, SGD with
learning rate 1 on the loss summed over the 20 time steps and averaged over the 20 batch rows,
gradient norm clipped at 5, 13 epochs with the rate halved after each epoch from the 4th on,
every epoch starting from a zero state. The paper reports valid 120.7 / test 114.5.

    python examples/zaremba_small.py --data-dir ../shared/data/ptb
    python examples/zaremba_small.py --data-dir ../shared/data/ptb --epochs 1 --max-tokens 20000
"""
import argparse

from fastrnn.data import load_ptb
from fastrnn.models import RnnLM
from fastrnn.optim import SGD
from fastrnn.train import LMTrainer, StepDecay, eval_perplexity


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with ptb.train/valid/test.txt "
                   "(default: $FASTRNN_DATA)")
    p.add_argument("--epochs", type=int, default=13, help="(default: 13, the paper's)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="train on the first N tokens only (a quick check)")
    a = p.parse_args(argv)

    ptb = load_ptb(a.data_dir)
    train = ptb.train[:a.max_tokens] if a.max_tokens else ptb.train
    model = RnnLM(len(ptb.vocab), 200, 200, cell="lstm", num_layers=2, init="uniform",
                  init_scale=0.1, loss_reduction="sum_over_time", seed=0)
    trainer = LMTrainer(model, SGD(lr=1.0), train, ptb.val, batch_size=20, time_size=20,
                        max_grad=5.0, lr_schedule=StepDecay(after=4, factor=0.5),
                        eval_batch_size=20, eval_time_size=20, progress=True, log=print)
    trainer.fit(a.epochs)
    print(f"test perplexity {eval_perplexity(model, ptb.test, 20, 20):.1f}")
    return trainer.history


if __name__ == "__main__":
    main()
