"""Data: vocabulary, tokenization, text corpora, PTB (md5, download), seq2seq format."""
import os

import numpy as np
import pytest

from fastrnn.data import (DEFAULT_CORPUS, DataError, Vocab, arrays_from_lines, load_ptb,
                          load_seq2seq, load_text_corpus, make_addition, pad_sequences,
                          tokenize)
from fastrnn.data import ptb as ptb_mod
from fastrnn.data.seq2seq import parse_lines

HERE = os.path.dirname(os.path.abspath(__file__))


def shared_data():
    d = os.environ.get("FASTRNN_DATA") or os.path.join(HERE, "..", "..", "shared", "data")
    return d if os.path.isdir(d) else None


def need(*parts):
    d = shared_data()
    path = os.path.join(d, *parts) if d else None
    if path is None or not os.path.exists(path):
        pytest.skip(f"shared data {'/'.join(parts)} not available")
    return path


# ------------------------------------------------------------------------------------- vocab
def test_vocab_ids_in_order_of_first_appearance():
    v = Vocab("b a b c a".split())
    assert v.id_to_token == ["b", "a", "c"]
    assert v.encode(["c", "b"]).tolist() == [2, 0]
    assert v.encode(["c", "b"]).dtype == np.int32
    assert v.decode([1, 2], sep=" ") == "a c"
    assert len(v) == 3 and "a" in v and "z" not in v


def test_vocab_unknown_tokens():
    v = Vocab(list("aab"))
    with pytest.raises(KeyError, match="'z'"):
        v.encode(["z"])
    assert v.encode(["a", "z", "b"], unknown="skip").tolist() == [0, 1]
    v2 = Vocab(list("aaab"), min_freq=2)
    assert v2.id_to_token == ["<unk>", "a"]
    assert v2.encode(list("abz"), unknown="unk").tolist() == [1, 0, 0]


def test_vocab_save_load_roundtrip(tmp_path):
    v = Vocab(["x", "<eos>", "é", "y"])
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]


# -------------------------------------------------------------------------------- tokenizing
def test_tokenize_word_level_adds_eos_and_skips_blank_lines():
    text = " the cat \n\n sat <unk> N \n"
    assert tokenize(text) == ["the", "cat", "<eos>", "sat", "<unk>", "N", "<eos>"]
    assert tokenize("Hi, you.", tokenizer="regex", lower=True) == ["hi", ",", "you", ".",
                                                                  "<eos>"]


def test_tokenize_char_level_keeps_line_breaks():
    assert tokenize("ab \n\n c\n", level="char") == ["a", "b", "\n", "c", "\n"]
    with pytest.raises(ValueError, match="level"):
        tokenize("x", level="byte")


def test_bundled_corpus_is_packaged_and_splits_by_position():
    assert os.path.isfile(DEFAULT_CORPUS)
    c = load_text_corpus(level="char")
    assert c.name == "timemachine" and c.level == "char" and c.sep == ""
    n = len(c.train) + len(c.val)
    assert len(c.val) == int(n * 0.1)
    assert c.vocab.decode(c.train[:15]) == "The Time Machin"
    w = load_text_corpus(level="word")
    assert w.vocab.decode(w.train[:3], " ") == "the time machine"
    assert w.train.dtype == np.int32 and w.train.max() < len(w.vocab)


def test_text_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_text_corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no tokens"):
        load_text_corpus(str(tmp_path / "empty.txt"))


# ----------------------------------------------------------------------------------------- PTB
def _fake_ptb(folder, text="a b\nc\n"):
    os.makedirs(folder, exist_ok=True)
    for name, _ in ptb_mod.FILES.values():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def test_ptb_md5_mismatch_is_a_clear_error(tmp_path):
    _fake_ptb(tmp_path / "ptb")
    with pytest.raises(DataError, match="md5 mismatch"):
        load_ptb(str(tmp_path))
    c = load_ptb(str(tmp_path), check=False)  # the folder or its ptb/ subfolder
    assert c.vocab.id_to_token == ["a", "b", "<eos>", "c"]
    assert c.test.tolist() == [0, 1, 2, 3, 2]


def test_ptb_folder_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTRNN_DATA", raising=False)
    with pytest.raises(DataError, match="--data-dir"):
        load_ptb(None)
    with pytest.raises(DataError, match="no ptb.train.txt"):
        load_ptb(str(tmp_path))
    _fake_ptb(tmp_path)
    monkeypatch.setenv("FASTRNN_DATA", str(tmp_path))
    assert len(load_ptb(None, check=False).vocab) == 4


def test_ptb_real_files():
    need("ptb", "ptb.train.txt")
    c = load_ptb(os.path.join(shared_data(), "ptb"))
    assert (len(c.train), len(c.val), len(c.test), len(c.vocab)) == (929589, 73760, 82430,
                                                                       10000)
    # the textbook's ids: first-appearance order, <eos> for line ends
    assert c.vocab.id_to_token[:3] == ["aer", "banknote", "berlitz"]
    assert c.vocab.token_to_id["<eos>"] == 24


def test_ptb_download_checks_md5(tmp_path):
    src = os.path.dirname(need("ptb", "ptb.train.txt"))
    url = "file://" + os.path.abspath(src) + "/"
    dest = tmp_path / "dl"
    ptb_mod.download(str(dest), url=url, splits=("valid", "test"))
    assert ptb_mod.md5sum(dest / "ptb.valid.txt") == ptb_mod.FILES["valid"][1]
    # a source with wrong content is rejected and leaves nothing behind
    bad = tmp_path / "bad"
    _fake_ptb(bad)
    with pytest.raises(DataError, match="md5 mismatch"):
        ptb_mod.download(str(tmp_path / "dl2"), url="file://" + str(bad) + "/",
                         splits=("test",))
    assert os.listdir(tmp_path / "dl2") == []
    with pytest.raises(DataError, match="could not download"):
        ptb_mod.download(str(tmp_path / "dl3"), url="file://" + str(tmp_path / "nowhere/"),
                         splits=("test",))


# ------------------------------------------------------------------------------------- seq2seq
def test_parse_question_answer_lines():
    q, a = parse_lines(["16+75  _91  ", "", "52+607 _659 "])
    assert q == ["16+75  ", "52+607 "] and a == ["_91  ", "_659 "]
    with pytest.raises(ValueError, match="line 1"):
        parse_lines(["no separator"])
    with pytest.raises(ValueError, match="same"):
        parse_lines(["1+1_2", "10+1_11"])


def test_make_addition_is_correct_and_padded():
    lines = make_addition(300, seed=3)
    assert lines == make_addition(300, seed=3)
    for line in lines:
        assert len(line) == 12
        q, a = line.split("_")
        x, y = q.split("+")
        assert int(a) == int(x) + int(y)
    (x, t), (xt, tt), v = arrays_from_lines(lines, test_ratio=0.1)
    assert x.shape == (270, 7) and t.shape == (270, 5) and xt.shape == (30, 7)
    assert (t[:, 0] == v.token_to_id["_"]).all()


def test_load_seq2seq_shared_files():
    (x, t), (xt, tt), v = load_seq2seq(need("seq2seq", "addition.txt"))
    assert x.shape == (45000, 7) and t.shape == (45000, 5) and xt.shape == (5000, 7)
    assert len(v) == 13 and (t[:, 0] == v.token_to_id["_"]).all()
    (x2, _), _, _ = load_seq2seq(need("seq2seq", "addition.txt"))
    assert np.array_equal(x, x2)  # the split is seeded
    (x, t), _, v = load_seq2seq(need("seq2seq", "date.txt"))
    assert x.shape == (45000, 29) and t.shape == (45000, 11)
    assert v.decode(t[0, 1:])[4] == "-"


def test_load_seq2seq_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_seq2seq(str(tmp_path / "nope.txt"))
    (tmp_path / "bad.txt").write_text("abc\n")
    with pytest.raises(ValueError, match="bad.txt"):
        load_seq2seq(str(tmp_path / "bad.txt"))


def test_pad_sequences_keeps_order_and_returns_lengths():
    ids, lengths = pad_sequences([[5, 6, 7], [], np.array([9], dtype=np.int32), [1, 2]],
                                 pad_value=-3, dtype=np.int32)
    assert ids.dtype == np.int32 and lengths.dtype == np.int64
    assert ids.tolist() == [[5, 6, 7], [-3, -3, -3], [9, -3, -3], [1, 2, -3]]
    assert lengths.tolist() == [3, 0, 1, 2]
    ids, lengths = pad_sequences([])
    assert ids.shape == (0, 0) and lengths.shape == (0,)
    ids, lengths = pad_sequences([[], []])
    assert ids.shape == (2, 0) and lengths.tolist() == [0, 0]


def test_pad_sequences_rejects_bad_rows():
    with pytest.raises(ValueError, match="sequence 1 must be 1-D"):
        pad_sequences([[1], [[1, 2]]])
    with pytest.raises(TypeError, match="sequence 0 must hold integers, got dtype float64"):
        pad_sequences([[1.5]])
