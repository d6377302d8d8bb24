"""The ``question_answer`` text format of the seq2seq toy tasks (addition, date).

One example a line: the question, ``_``, the answer, each padded with spaces to a fixed width
(``"16+75  _91  "``). The ``_`` also serves as the decoder's start symbol: answers are returned
as ``"_" + answer``, so ``t[:, 0]`` is the start id and ``t[:, 1:]`` the target.
"""
import os

import numpy as np

from .vocab import Vocab

START = "_"


def parse_lines(lines):
    """(questions, answers) strings; answers keep the leading start symbol."""
    questions, answers = [], []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if START not in line:
            raise ValueError(f"line {n}: no '{START}' separating question and answer")
        i = line.index(START)
        questions.append(line[:i])
        answers.append(line[i:])
    if not questions:
        raise ValueError("no examples")
    for what, seqs in (("question", questions), ("answer", answers)):
        widths = {len(s) for s in seqs}
        if len(widths) != 1:
            raise ValueError(f"{what}s must all have the same (padded) length, "
                             f"found lengths {sorted(widths)[:5]}")
    return questions, answers


def load_seq2seq(path, test_ratio=0.1, seed=1984, vocab=None, shuffle=True):
    """Read a question_answer file. Returns ``(x_train, t_train), (x_test, t_test), vocab``
    with int32 id arrays (N, Tq) and (N, 1 + Ta). The shuffle (seeded) happens before the split,
    so the held-out ``test_ratio`` is a random sample of the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"seq2seq data file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    try:
        return arrays_from_lines(lines, test_ratio, seed, vocab, shuffle)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def make_addition(n=50000, seed=1984, max_digits=3):
    """Synthetic addition problems in the question_answer format of addition.txt: questions
    ``"a+b"`` padded to 2*max_digits+1 characters, answers ``"_" + str(a+b)`` padded to
    max_digits+2, with a and b drawn with a uniform number of digits (1..max_digits). Returns the
    lines, so ``parse_lines`` / a file written from them load like the shared file."""
    rng = np.random.default_rng(seed)
    qw, aw = 2 * max_digits + 1, max_digits + 2
    lines = []
    for _ in range(n):
        a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, max_digits + 1)))) for _ in "ab")
        lines.append(f"{a}+{b}".ljust(qw) + (START + str(a + b)).ljust(aw))
    return lines


def arrays_from_lines(lines, test_ratio=0.1, seed=1984, vocab=None, shuffle=True):
    """Like load_seq2seq, from lines already in memory."""
    questions, answers = parse_lines(lines)
    if vocab is None:
        vocab = Vocab()
        for s in questions + answers:
            for ch in s:
                vocab.add(ch)
    x = np.array([vocab.encode(q) for q in questions], dtype=np.int32)
    t = np.array([vocab.encode(a) for a in answers], dtype=np.int32)
    if shuffle:
        perm = np.random.default_rng(seed).permutation(len(x))
        x, t = x[perm], t[perm]
    split = len(x) - int(round(len(x) * test_ratio))
    return (x[:split], t[:split]), (x[split:], t[split:]), vocab
