"""Corpora for the models: vocabularies, word/char text corpora (the bundled "The Time Machine"
is the default), Penn Treebank with md5 checks, the seq2seq question_answer format, and padding
of ragged id sequences."""
from .corpus import DEFAULT_CORPUS, Corpus, load_text_corpus, read_text, tokenize
from .padding import pad_sequences
from .ptb import DataError, load_ptb
from .seq2seq import START, arrays_from_lines, load_seq2seq, make_addition
from .vocab import EOS, UNK, Vocab

__all__ = ["Vocab", "EOS", "UNK", "Corpus", "DEFAULT_CORPUS", "load_text_corpus", "read_text",
           "tokenize", "load_ptb", "DataError", "load_seq2seq", "START", "make_addition",
           "arrays_from_lines", "pad_sequences", "shared_data_dir"]


def shared_data_dir():
    """The real-data folder: $FASTRNN_DATA, else ``../shared/data`` from the working folder (the
    layout of a source checkout run from its root); None when neither exists. Never a path
    relative to the installed package."""
    import os
    env = os.environ.get("FASTRNN_DATA")
    if env:
        return env if os.path.isdir(env) else None
    cand = os.path.abspath(os.path.join("..", "shared", "data"))
    return cand if os.path.isdir(cand) else None
