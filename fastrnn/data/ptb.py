"""Penn Treebank (Mikolov's word-level LM split): local reading with md5 checks, optional download.

The data directory is ``data_dir`` or ``$FASTRNN_DATA``; it may hold the three files directly or
in a ``ptb/`` subfolder (the layout of the project's shared data folder).
"""
import hashlib
import os
import shutil
import urllib.request

from .corpus import Corpus, read_text, tokenize
from .vocab import Vocab

FILES = {
    "train": ("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
    "valid": ("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf"),
    "test": ("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721"),
}
# The public copy the textbook's loader uses (Zaremba et al.'s repository of Mikolov's split).
DEFAULT_URL = "https://raw.githubusercontent.com/tomsercu/lstm/master/data/"


class DataError(Exception):
    """A data file is missing or corrupt; the message says which and what to do."""


def md5sum(path, chunk=1 << 20):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def resolve_dir(data_dir=None):
    """The folder holding ptb.train.txt, from data_dir or $FASTRNN_DATA (either may point at
    the folder itself or at its parent with a ptb/ subfolder)."""
    base = data_dir or os.environ.get("FASTRNN_DATA")
    if not base:
        raise DataError("no PTB data folder given: pass --data-dir DIR or set FASTRNN_DATA "
                        "(or --download to fetch it)")
    for cand in (base, os.path.join(base, "ptb")):
        if os.path.isfile(os.path.join(cand, FILES["train"][0])):
            return cand
    raise DataError(f"no {FILES['train'][0]} in {base} or {os.path.join(base, 'ptb')}")


def check_file(path, md5):
    if not os.path.isfile(path):
        raise DataError(f"missing PTB file: {path}")
    got = md5sum(path)
    if got != md5:
        raise DataError(f"md5 mismatch for {path}: expected {md5}, got {got} "
                        "(corrupt or a different preprocessing)")


def download(dest, url=DEFAULT_URL, splits=("train", "valid", "test")):
    """Fetch the PTB files into ``dest`` and verify their md5; a bad download is deleted.
    ``url`` is a base URL (``file://`` works, which the tests use)."""
    os.makedirs(dest, exist_ok=True)
    for split in splits:
        name, md5 = FILES[split]
        path = os.path.join(dest, name)
        if os.path.isfile(path) and md5sum(path) == md5:
            continue
        tmp = f"{path}.part{os.getpid()}"
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/" + name, timeout=60) as r, \
                    open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            check_file(tmp, md5)
            os.replace(tmp, path)
        except (OSError, ValueError) as e:  # URLError is an OSError
            raise DataError(f"could not download {name} from {url}: {e}") from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return dest


def load_ptb(data_dir=None, check=True, download_to=None, url=DEFAULT_URL):
    """The PTB corpus: train / val / test ids with one shared vocabulary built from train
    (ids in order of first appearance, ``<eos>`` at sentence ends; 10000 words)."""
    if download_to is not None:
        try:
            folder = resolve_dir(data_dir)
        except DataError:
            folder = download(download_to, url)
    else:
        folder = resolve_dir(data_dir)
    tokens = {}
    for split, (name, md5) in FILES.items():
        path = os.path.join(folder, name)
        if check:
            check_file(path, md5)
        elif not os.path.isfile(path):
            raise DataError(f"missing PTB file: {path}")
        tokens[split] = tokenize(read_text(path), "word", "whitespace")
    vocab = Vocab(tokens["train"])
    # valid/test contain only train words in Mikolov's split; "unk" keeps other copies usable.
    unknown = "unk" if vocab.unk_id is not None else "error"
    return Corpus(train=vocab.encode(tokens["train"]),
                  val=vocab.encode(tokens["valid"], unknown),
                  test=vocab.encode(tokens["test"], unknown),
                  vocab=vocab, level="word", name="ptb")
