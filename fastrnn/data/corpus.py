"""Word- and character-level corpora: text -> token ids, plus the bundled default corpus."""
import os
import re
from dataclasses import dataclass

import numpy as np

from .vocab import EOS, Vocab

DEFAULT_CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timemachine.txt")

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def tokenize_line(line, level="word", tokenizer="whitespace", lower=False):
    if lower:
        line = line.lower()
    if level == "char":
        return list(line)
    if tokenizer == "whitespace":
        return line.split()
    if tokenizer == "regex":
        # splits punctuation from words, for raw (untokenized) prose such as the bundled novel
        return _WORD_RE.findall(line)
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected 'whitespace' or 'regex'")


def tokenize(text, level="word", tokenizer="whitespace", lower=False, eos=EOS):
    """Text -> list of tokens.

    Word level: one sentence (or line) a line, ``eos`` appended at each line end; blank lines
    are skipped (for PTB, which has none, this equals the textbook's
    ``text.replace('\\n', '<eos>').split()``). Char level: the characters of each non-blank line
    (stripped) followed by ``"\\n"``, so a model learns line breaks.
    """
    if level not in ("word", "char"):
        raise ValueError(f"unknown level {level!r}; expected 'word' or 'char'")
    tokens = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if level == "char":
            tokens.extend(tokenize_line(line.strip(), "char", lower=lower))
            tokens.append("\n")
        else:
            tokens.extend(tokenize_line(line, "word", tokenizer, lower))
            if eos:
                tokens.append(eos)
    return tokens


def read_text(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return f.read()


@dataclass
class Corpus:
    """Token ids of a train / validation (/ test) split sharing one vocabulary."""
    train: np.ndarray
    val: np.ndarray
    vocab: Vocab
    test: np.ndarray = None
    level: str = "word"
    name: str = ""

    @property
    def sep(self):
        """Joiner for decoded tokens: words by spaces, characters by nothing."""
        return "" if self.level == "char" else " "


def load_text_corpus(path=None, level="word", val_fraction=0.1, tokenizer=None, lower=None,
                     min_freq=1, vocab=None):
    """Read a text file (default: the bundled "The Time Machine") and split it by position: the
    last ``val_fraction`` of the tokens is the validation split (a contiguous tail, not random
    lines, so no sentence straddles both splits' evaluation windows at random).

    Defaults for prose: word level lowercases and splits punctuation off words; char level keeps
    case. A given ``vocab`` is used as is (tokens outside it map to <unk> or fail)."""
    path = DEFAULT_CORPUS if path is None else path
    if tokenizer is None:
        tokenizer = "regex"
    if lower is None:
        lower = level == "word"
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    tokens = tokenize(read_text(path), level, tokenizer, lower)
    if not tokens:
        raise ValueError(f"corpus {path} contains no tokens")
    if vocab is None:
        vocab = Vocab(tokens, min_freq=min_freq)
    ids = vocab.encode(tokens, unknown="unk" if vocab.unk_id is not None else "error")
    n_val = int(len(ids) * val_fraction)
    train, val = (ids[:len(ids) - n_val], ids[len(ids) - n_val:]) if n_val else (ids, ids[:0])
    name = os.path.splitext(os.path.basename(path))[0]
    return Corpus(train=train, val=val, vocab=vocab, level=level, name=name)
