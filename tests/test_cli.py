"""The fastrnn command: train / generate / seq2seq / bench, and its error handling."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastrnn import cli
from fastrnn.data import DEFAULT_CORPUS, make_addition

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Runs without --out write below the working directory: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def small_corpus(tmp_path):
    with open(DEFAULT_CORPUS, encoding="utf-8") as f:
        lines = f.read().splitlines()[:250]
    path = tmp_path / "small.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


TINY = ["--hidden-size", "16", "--wordvec-size", "8", "--batch-size", "8", "--time-size", "10",
        "--quiet"]


def _run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_writes_checkpoint_plot_history_and_sample(tmp_path, small_corpus, capsys):
    out_dir = str(tmp_path / "run")
    rc, out, err = _run(["train", "--corpus", small_corpus, "--epochs", "2", "--out", out_dir,
                         "--sample-length", "40", "--backend", "numpy"] + TINY, capsys)
    assert rc == 0, err
    assert "epoch 1: train ppl" in out and "val ppl" in out and "words/s" in out
    assert "sample:" in out
    for name in ("checkpoint.npz", "best.npz", "history.json", "perplexity.png"):
        assert os.path.isfile(os.path.join(out_dir, name)), name
    with open(os.path.join(out_dir, "perplexity.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    h = json.load(open(os.path.join(out_dir, "history.json")))
    assert len(h["train_ppl"]) == 2 and len(h["val_ppl"]) == 2

    # generate from the checkpoint: seeded, so repeatable
    ck = os.path.join(out_dir, "checkpoint.npz")
    rc, a, err = _run(["generate", "--checkpoint", ck, "--start", "The ", "--length", "30",
                       "--seed", "3"], capsys)
    assert rc == 0, err
    assert a.startswith("The ") and len(a.rstrip("\n")) == 34
    rc, b, _ = _run(["generate", "--checkpoint", ck, "--start", "The ", "--length", "30",
                     "--seed", "3"], capsys)
    assert a == b
    rc, c, _ = _run(["generate", "--checkpoint", os.path.join(out_dir, "best.npz"),
                     "--length", "5", "--temperature", "0"], capsys)
    assert rc == 0

    # resume to a third epoch
    rc, out, err = _run(["train", "--resume", ck, "--epochs", "3", "--sample-length", "0",
                         "--quiet"], capsys)
    assert rc == 0, err
    assert "resumed" in out and "epoch 3:" in out and "epoch 2:" not in out
    h = json.load(open(os.path.join(out_dir, "history.json")))
    assert len(h["train_ppl"]) == 3


def test_train_word_level_model_choices(tmp_path, small_corpus, capsys):
    for model in ("simple", "gru", "better"):
        rc, out, err = _run(["train", "--corpus", small_corpus, "--level", "word", "--epochs",
                             "1", "--model", model, "--out", str(tmp_path / model),
                             "--no-plot", "--sample-length", "5", "--hidden-size", "8",
                             "--wordvec-size", "8", "--batch-size", "4", "--quiet"], capsys)
        assert rc == 0, err
        assert "sample:" in out


@pytest.mark.parametrize("argv,msg", [
    (["train", "--corpus", "/no/such/file.txt"], "corpus file not found"),
    (["train", "--ptb", "--data-dir", "/no/such/dir"], "no ptb.train.txt"),
    (["train", "--model", "better", "--wordvec-size", "10", "--hidden-size", "20"],
     "must equal"),
    (["train", "--model", "rnnlm", "--dropout", "0.5"], "--dropout applies"),
    (["train", "--resume", "/no/ck.npz"], "checkpoint not found"),
    (["generate", "--checkpoint", "/no/ck.npz"], "not found"),
    (["seq2seq", "--data", "/no/data.txt"], "data file not found"),
    (["seq2seq", "--task", "date", "--data-dir", "/no/dir"], "no date.txt"),
])
def test_bad_paths_and_options_are_one_line_exit_2(argv, msg, capsys, tmp_path):
    rc, out, err = _run(argv + ["--quiet"] * (argv[0] == "train") + ["--out", str(tmp_path)] *
                        (argv[0] == "train"), capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--level", "byte"],
                                  ["generate"], ["frobnicate"], ["train", "--lr", "-1"],
                                  ["seq2seq", "--test-ratio", "1.5"]])
def test_argparse_errors_are_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def test_every_option_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings:
                assert action.help, f"{name} {action.option_strings} has no help"


def test_seq2seq_on_a_small_addition_file(tmp_path, capsys):
    path = tmp_path / "add.txt"
    path.write_text("\n".join(make_addition(600, seed=0)) + "\n")
    rc, out, err = _run(["seq2seq", "--data", str(path), "--epochs", "2", "--hidden-size", "16",
                         "--batch-size", "64", "--examples", "3", "--quiet", "--out",
                         str(tmp_path / "s2s")], capsys)
    assert rc == 0, err
    assert "epoch 2: loss" in out and "held-out exact-match accuracy" in out
    assert out.count("->") == 3
    assert os.path.isfile(tmp_path / "s2s" / "checkpoint.npz")
    rc, out, err = _run(["seq2seq", "--data", str(path), "--epochs", "1", "--model",
                         "attention", "--cell", "gru", "--no-reverse", "--hidden-size", "8",
                         "--quiet", "--examples", "0"], capsys)
    assert rc == 0, err


def test_seq2seq_falls_back_to_generated_addition(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fastrnn.data.shared_data_dir", lambda: None)
    rc, out, err = _run(["seq2seq", "--limit", "300", "--epochs", "1", "--hidden-size", "8",
                         "--quiet", "--examples", "1"], capsys)
    assert rc == 0, err
    assert "generated addition problems" in out


def test_bench_runs_or_says_why_not(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_bench_main", lambda: None)
    rc, out, err = _run(["bench", "--quick"], capsys)
    assert rc == 2 and "not available" in err and len(err.strip().splitlines()) == 1
    monkeypatch.undo()
    seen = {}

    def fake_main(argv=None):
        seen["argv"] = argv
        return 0

    monkeypatch.setattr(cli, "_bench_main", lambda: fake_main)
    rc, _, _ = _run(["bench", "--", "--quick", "--cells", "lstm"], capsys)
    assert rc == 0 and seen["argv"] == ["--quick", "--cells", "lstm"]


def test_bench_script_is_found_from_the_checkout():
    if not os.path.isfile(os.path.join(ROOT, "benchmarks", "bench_cells.py")):
        pytest.skip("benchmarks/bench_cells.py not in this checkout")
    assert callable(cli._bench_main())


def test_python_dash_m_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "fastrnn", "--help"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout and "seq2seq" in r.stdout
    r = subprocess.run([sys.executable, "-m", "fastrnn", "train", "--corpus", "/nope"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "fastrnn train: error: corpus file not found: /nope"


@pytest.mark.slow
def test_default_train_finishes_in_time_and_prints_a_sample(tmp_path):
    import time
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fastrnn", "train", "--quiet", "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=600)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sample:" in r.stdout
    assert elapsed < 300, f"default `fastrnn train` took {elapsed:.0f} s"
    val = json.load(open(tmp_path / "run" / "history.json"))["val_ppl"]
    assert val[-1] < 8, val
    assert np.isfinite(val).all()


@pytest.mark.slow
def test_train_on_ptb_from_data_dir(tmp_path, capsys):
    d = os.environ.get("FASTRNN_DATA") or os.path.join(ROOT, "..", "shared", "data")
    if not os.path.isfile(os.path.join(d, "ptb", "ptb.train.txt")):
        pytest.skip("shared PTB data not available")
    rc, out, err = _run(["train", "--ptb", "--data-dir", d, "--max-tokens", "20000",
                         "--epochs", "1", "--out", str(tmp_path), "--quiet", "--no-plot",
                         "--sample-length", "10"], capsys)
    assert rc == 0, err
    assert "test perplexity" in out and "vocabulary 10,000" in out


def test_too_small_corpus_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "tiny.txt"
    path.write_text("just a few words here\n")
    rc, out, err = _run(["train", "--corpus", str(path), "--out", str(tmp_path / "o"),
                         "--quiet"], capsys)
    assert rc == 2 and "too few" in err


@pytest.mark.slow
def test_train_downloads_ptb_with_md5_checks(tmp_path, capsys, monkeypatch):
    d = os.environ.get("FASTRNN_DATA") or os.path.join(ROOT, "..", "shared", "data")
    src = os.path.join(d, "ptb")
    if not os.path.isfile(os.path.join(src, "ptb.train.txt")):
        pytest.skip("shared PTB data not available")
    monkeypatch.delenv("FASTRNN_DATA", raising=False)
    dest = tmp_path / "dl"
    rc, out, err = _run(["train", "--ptb", "--download", "--data-dir", str(dest), "--ptb-url",
                         "file://" + os.path.abspath(src) + "/", "--max-tokens", "3000",
                         "--epochs", "1", "--hidden-size", "8", "--wordvec-size", "8",
                         "--out", str(tmp_path / "o"), "--quiet", "--no-plot",
                         "--sample-length", "0"], capsys)
    assert rc == 0, err
    assert sorted(os.listdir(dest)) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]
    rc, out, err = _run(["train", "--ptb", "--download", "--data-dir", str(tmp_path / "x"),
                         "--ptb-url", "file://" + str(tmp_path / "nothing") + "/",
                         "--out", str(tmp_path / "o2"), "--quiet"], capsys)
    assert rc == 2 and "could not download" in err
