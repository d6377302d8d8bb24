"""The fastrnn command: every user mistake in one line with exit status 2, and the life of a
run (its own folder, per-epoch history, resume with changed options, Ctrl-C, threads)."""
import errno
import json
import os
import signal

import numpy as np
import pytest

from fastrnn import cli
from fastrnn.data import DEFAULT_CORPUS, make_addition
from test_cli import _in_tmp_dir, small_corpus  # noqa: F401 (fixtures)

TINY = ["--hidden-size", "8", "--wordvec-size", "8", "--batch-size", "4", "--time-size", "10",
        "--quiet", "--backend", "numpy", "--sample-length", "0"]


@pytest.fixture
def run(tmp_path, small_corpus, capsys):
    """A finished 1-epoch run: its folder."""
    out = str(tmp_path / "A")
    rc, _, err = _run(["train", "--corpus", small_corpus, "--epochs", "1", "--out", out]
                      + TINY, capsys)
    assert rc == 0, err
    return out


def _run(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc, err, msg):
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert msg in lines[0], lines[0]


# --------------------------------------------------------------------------------- mistakes
def test_empty_and_blank_corpus(tmp_path, capsys):
    for name, text in (("empty.txt", ""), ("blank.txt", "  \n\n\t \n")):
        (tmp_path / name).write_text(text)
        rc, _, err = _run(["train", "--corpus", str(tmp_path / name)] + TINY, capsys)
        _one_line_error(rc, err, "contains no tokens")
    rc, _, err = _run(["train", "--corpus", str(tmp_path)] + TINY, capsys)
    _one_line_error(rc, err, "is a folder")


@pytest.mark.parametrize("flag,size", [("--hidden-size", "100000"),
                                       ("--hidden-size", "1000000000"),
                                       ("--wordvec-size", "1000000000")])
def test_huge_sizes_are_refused_before_allocating(small_corpus, capsys, flag, size,
                                                  monkeypatch):
    import fastrnn.models.rnnlm as rnnlm
    monkeypatch.setattr(rnnlm.RnnLM, "__init__", lambda *a, **k: pytest.fail("allocated"))
    monkeypatch.setattr(cli, "_machine_memory", lambda: 16 * 2 ** 30)
    argv = ["train", "--corpus", small_corpus] + TINY + [flag, size]
    rc, _, err = _run(argv, capsys)
    _one_line_error(rc, err, "would need about")
    assert "of memory" in err and "16.0 GiB" in err


def test_huge_seq2seq_sizes_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_machine_memory", lambda: 16 * 2 ** 30)
    path = tmp_path / "add.txt"
    path.write_text("\n".join(make_addition(100, seed=0)) + "\n")
    rc, _, err = _run(["seq2seq", "--data", str(path), "--hidden-size", "1000000", "--quiet"],
                      capsys)
    _one_line_error(rc, err, "would need about")


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf", "0"])
def test_non_finite_learning_rate(small_corpus, capsys, lr):
    rc, _, err = _run(["train", "--corpus", small_corpus, f"--lr={lr}"] + TINY, capsys)
    _one_line_error(rc, err, "positive finite number")


def test_out_pointing_at_a_file(tmp_path, small_corpus, capsys):
    f = tmp_path / "taken"
    f.write_text("x")
    rc, _, err = _run(["train", "--corpus", small_corpus, "--out", str(f)] + TINY, capsys)
    _one_line_error(rc, err, "is an existing file")
    assert f.read_text() == "x"


@pytest.mark.parametrize("content", [b"", b"# README\nnot a checkpoint\n", b"PK\x03\x04junk"])
def test_corrupt_checkpoints(tmp_path, capsys, content, run):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    rc, _, err = _run(["train", "--resume", str(bad)] + TINY[-5:], capsys)
    _one_line_error(rc, err, "not a fastrnn checkpoint")
    assert "allow_pickle" not in err
    rc, _, err = _run(["generate", "--checkpoint", str(bad)], capsys)
    _one_line_error(rc, err, "not a fastrnn checkpoint")
    assert "allow_pickle" not in err
    with open(os.path.join(run, "checkpoint.npz"), "rb") as f:
        data = f.read()
    bad.write_bytes(data[:len(data) // 2])  # truncated
    rc, _, err = _run(["generate", "--checkpoint", str(bad)], capsys)
    _one_line_error(rc, err, "not a fastrnn checkpoint")


def test_seq2seq_on_binary_data(tmp_path, capsys):
    for name, data in (("bin", bytes(range(256)) * 10), ("nul", b"1+1\0_2\n" * 20)):
        (tmp_path / name).write_bytes(data)
        rc, _, err = _run(["seq2seq", "--data", str(tmp_path / name), "--quiet"], capsys)
        _one_line_error(rc, err, "binary data")


@pytest.mark.parametrize("t", ["nan", "-1", "inf"])
def test_bad_temperature(run, capsys, t):
    ck = os.path.join(run, "checkpoint.npz")
    rc, _, err = _run(["generate", "--checkpoint", ck, "--temperature", t], capsys)
    _one_line_error(rc, err, "finite number >= 0")


@pytest.mark.parametrize("n", ["1000000000", "-5"])
def test_absurd_generate_length(run, capsys, n):
    ck = os.path.join(run, "checkpoint.npz")
    rc, _, err = _run(["generate", "--checkpoint", ck, "--length", n], capsys)
    _one_line_error(rc, err, "expected a length in [0, 100,000]")


def test_full_disk_during_train(small_corpus, tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    rc, _, err = _run(["train", "--corpus", small_corpus, "--epochs", "1", "--out",
                       str(tmp_path / "o")] + TINY, capsys)
    _one_line_error(rc, err, "No space left on device (disk full)")
    assert "checkpoint.npz" in err or "best.npz" in err
    assert not [f for f in os.listdir(tmp_path / "o") if f.endswith(".tmp")]


# ------------------------------------------------------------------------------------- runs
def test_each_run_gets_its_own_folder_and_history_every_epoch(tmp_path, small_corpus,
                                                             capsys, monkeypatch):
    import fastrnn.train as T
    seen = []
    orig = T._Trainer._end_epoch

    def spy(self):
        orig(self)
        runs = sorted(os.listdir(tmp_path / "fastrnn-run"), key=lambda r: (len(r), r))
        h = json.load(open(tmp_path / "fastrnn-run" / runs[-1] / "history.json"))
        seen.append((len(h["train_ppl"]), os.path.isfile(
            tmp_path / "fastrnn-run" / runs[-1] / "perplexity.png")))
    monkeypatch.setattr(T._Trainer, "_end_epoch", spy)
    for _ in range(2):
        rc, out, err = _run(["train", "--corpus", small_corpus, "--epochs", "2"] + TINY,
                            capsys)
        assert rc == 0, err
    runs = sorted(os.listdir(tmp_path / "fastrnn-run"))
    assert len(runs) == 2 and all(r.startswith("train-rnnlm-small-") for r in runs)
    assert seen == [(1, True), (2, True), (1, True), (2, True)]


def test_resume_honours_changeable_options_and_refuses_fixed_ones(run, tmp_path, capsys):
    ck = os.path.join(run, "checkpoint.npz")
    before = os.path.getmtime(ck)
    out_b = str(tmp_path / "B")
    rc, out, err = _run(["train", "--resume", ck, "--out", out_b, "--lr", "0.001",
                         "--epochs", "2", "--sample-length", "7", "--quiet"], capsys)
    assert rc == 0, err
    assert "adam lr 0.001" in out and "epoch 2:" in out and "| lr 0.001 |" in out
    assert "sample:" in out
    assert os.path.getmtime(ck) == before  # A is left alone
    for name in ("checkpoint.npz", "history.json", "best.npz"):
        assert os.path.isfile(os.path.join(out_b, name)), name
    assert len(json.load(open(os.path.join(out_b, "history.json")))["train_ppl"]) == 2
    rc, _, err = _run(["train", "--resume", ck, "--hidden-size", "32", "--model", "gru",
                       "--quiet"], capsys)
    _one_line_error(rc, err, "cannot change --hidden-size (the run has 8), --model (the run "
                             "has 'rnnlm') when resuming")
    rc, _, err = _run(["train", "--resume", ck, "--corpus", DEFAULT_CORPUS, "--quiet"], capsys)
    _one_line_error(rc, err, "cannot change --corpus")
    rc, _, err = _run(["train", "--resume", ck, "--hidden-size", "8", "--epochs", "1",
                       "--quiet", "--sample-length", "0"], capsys)  # the same value is fine
    assert rc == 0, err


def test_ctrl_c_saves_a_resumable_checkpoint(small_corpus, tmp_path, capsys, monkeypatch):
    import fastrnn.train as T
    orig = T._Trainer.step

    def step(self, xs, ts):
        if self.total_iters == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return orig(self, xs, ts)
    monkeypatch.setattr(T._Trainer, "step", step)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
    out = str(tmp_path / "C")
    rc, _, err = _run(["train", "--corpus", small_corpus, "--epochs", "2", "--out", out]
                      + TINY, capsys)
    assert rc == 130
    assert "interrupted: saved" in err and "--resume" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) == before
    meta = T.read_checkpoint(os.path.join(out, "checkpoint.npz"))[0]
    assert (meta["epoch"], meta["iteration"]) == (0, 6)
    monkeypatch.setattr(T._Trainer, "step", orig)
    rc, out_, err = _run(["train", "--resume", os.path.join(out, "checkpoint.npz"), "--quiet"],
                         capsys)
    assert rc == 0, err
    assert "resumed" in out_ and "epoch 2:" in out_


def test_seq2seq_writes_outputs_to_a_default_folder(tmp_path, capsys):
    path = tmp_path / "add.txt"
    path.write_text("\n".join(make_addition(300, seed=0)) + "\n")
    rc, out, err = _run(["seq2seq", "--data", str(path), "--epochs", "2", "--hidden-size", "8",
                         "--quiet", "--examples", "0", "--backend", "numpy"], capsys)
    assert rc == 0, err
    (folder,) = os.listdir(tmp_path / "fastrnn-run")
    files = set(os.listdir(tmp_path / "fastrnn-run" / folder))
    assert {"checkpoint.npz", "history.json", "accuracy.png"} <= files
    h = json.load(open(tmp_path / "fastrnn-run" / folder / "history.json"))
    assert len(h["val_acc"]) == 2


def test_compilation_is_shown_before_training(small_corpus, tmp_path, capsys):
    # Only the Numba backend compiles at run time.
    rc, out, err = _run(["train", "--corpus", small_corpus, "--epochs", "1", "--out",
                         str(tmp_path / "o"), "--backend", "numba"] + TINY[:-4]
                        + ["--sample-length", "0"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    i = next(k for k, l in enumerate(lines) if l == "compiling kernels...")
    assert lines[i + 1].startswith("compiling kernels: done in")
    assert lines.index(next(l for l in lines if l.startswith("epoch 1:"))) > i


def test_no_compile_step_on_the_compiled_engine(small_corpus, tmp_path, capsys):
    pytest.importorskip("fastrnn.engine", reason="compiled engine not built")
    rc, out, err = _run(["train", "--corpus", small_corpus, "--epochs", "1", "--out",
                         str(tmp_path / "o"), "--backend", "cpu"] + TINY[:-4]
                        + ["--sample-length", "0"], capsys)
    assert rc == 0, err
    assert "compiling kernels..." not in out


def test_threads_option_limits_blas(small_corpus, tmp_path, capsys, monkeypatch):
    pytest.importorskip("threadpoolctl")
    import fastrnn
    calls = []
    monkeypatch.setattr(fastrnn, "set_num_threads", calls.append, raising=False)
    monkeypatch.setattr(cli, "_THREAD_LIMITS", [])
    rc, _, err = _run(["train", "--corpus", small_corpus, "--epochs", "1", "--threads", "1",
                       "--out", str(tmp_path / "o")] + TINY, capsys)
    assert rc == 0, err
    assert calls == [1]
    from threadpoolctl import threadpool_info
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    cli._THREAD_LIMITS[0].restore_original_limits()
    rc, _, err = _run(["train", "--threads", "0"], capsys)
    _one_line_error(rc, err, "positive integer")
