"""Checkpoints and parameter files: atomic writes, and loads that check everything first."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastrnn.models import BetterRnnlm, CheckpointError, GRUlm, Rnnlm, load_model
from fastrnn.models.base import atomic_savez
from fastrnn.optim import SGD, Adam
from fastrnn.train import LMTrainer, model_from_checkpoint, read_checkpoint

V = 20
IDS = np.random.default_rng(0).integers(0, V, 600)


def _trainer(model=None, opt=None, **kw):
    model = model or Rnnlm(V, 4, 5, seed=1)
    return LMTrainer(model, opt or Adam(0.01), IDS, IDS[:100], batch_size=4, time_size=5, **kw)


def _snapshot(tr):
    return ([p.copy() for p in tr.model.params], tr.optimizer.state_dict(), tr.epoch,
            tr.iteration, [None if s is None else [a.copy() for a in s]
                           for s in tr.model.get_state()])


def _same(a, b):
    pa, oa, *ra = a
    pb, ob, *rb = b
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb))
    assert oa["t"] == ob["t"] and oa["hyper"] == ob["hyper"]
    assert ra[:2] == rb[:2]


@pytest.fixture
def ckpt(tmp_path):
    tr = _trainer()
    tr.fit(1, max_iters=7)
    return tr.save_checkpoint(str(tmp_path / "ck.npz"))


def _target(**kw):
    tr = _trainer(**kw)
    tr.fit(1, max_iters=3)  # a trainer with state of its own, which a failed load must keep
    return tr


@pytest.mark.parametrize("corrupt,msg", [
    (lambda b: b"", "empty file"),
    (lambda b: b[:len(b) // 2], "not a fastrnn checkpoint"),
    (lambda b: b[:100] + bytes(200) + b[300:], "not a fastrnn checkpoint"),
    (lambda b: b"\x93NUMPY" + b[6:], "not a fastrnn checkpoint"),
])
def test_corrupt_files_are_refused_and_change_nothing(tmp_path, ckpt, corrupt, msg):
    data = open(ckpt, "rb").read()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(corrupt(data))
    tr = _target()
    before = _snapshot(tr)
    with pytest.raises(CheckpointError, match=msg):
        tr.load_checkpoint(str(bad))
    _same(before, _snapshot(tr))
    with pytest.raises(CheckpointError):
        model_from_checkpoint(str(bad))


def test_missing_entries_are_refused(tmp_path, ckpt):
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    for drop, msg in (("p3", "parameter arrays .'p3'. are missing|3 parameter arrays"),
                      ("opt_m_0", "'opt_m_0' is missing"), ("meta", "no meta")):
        kept = {k: v for k, v in arrays.items() if k != drop}
        path = str(tmp_path / f"no_{drop}.npz")
        np.savez(path, **kept)
        tr = _target()
        before = _snapshot(tr)
        with pytest.raises(CheckpointError, match=msg):
            tr.load_checkpoint(path)
        _same(before, _snapshot(tr))


@pytest.mark.parametrize("model,opt,msg", [
    (Rnnlm(V, 4, 5, dtype="float64"), None, "dtype: file float32, model float64"),
    (Rnnlm(V, 4, 6), None, "shape"),
    (Rnnlm(V + 1, 4, 5), None, "shape"),
    (GRUlm(V, 4, 5), None, "shape|class: file Rnnlm, model GRUlm"),
    (BetterRnnlm(V, 5, 5), None, "parameter arrays|shape"),
    (None, SGD(0.1), "Adam optimizer state, the trainer's optimizer is SGD"),
])
def test_different_model_or_optimizer_is_refused_and_changes_nothing(ckpt, model, opt, msg):
    tr = _target(model=model, opt=opt)
    before = _snapshot(tr)
    with pytest.raises(CheckpointError, match=msg):
        tr.load_checkpoint(ckpt)
    _same(before, _snapshot(tr))


def test_dropout_setting_is_compared(tmp_path):
    a = GRUlm(V, 4, 5, dropout=0.0)
    a.save_params(str(tmp_path / "a.npz"))
    b = GRUlm(V, 4, 5, dropout=0.5)
    w = [p.copy() for p in b.params]
    with pytest.raises(CheckpointError, match="dropout: file 0.0, model 0.5"):
        b.load_params(str(tmp_path / "a.npz"))
    assert all(np.array_equal(p, q) for p, q in zip(w, b.params))


def test_failed_param_load_leaves_the_model_unchanged(tmp_path):
    m = BetterRnnlm(V, 6, 6, seed=0)
    arrays = m.param_arrays()
    arrays[-1] = np.zeros(3)  # last array wrong: the earlier ones must not be written
    m2 = BetterRnnlm(V, 6, 6, seed=1)
    w = [p.copy() for p in m2.params]
    with pytest.raises(ValueError, match="parameter 7 has shape"):
        m2.load_param_arrays(arrays)
    assert all(np.array_equal(p, q) for p, q in zip(w, m2.params))
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_model(str(tmp_path / "empty.npz"))
    with pytest.raises(CheckpointError, match="is a directory"):
        m2.load_params(str(tmp_path))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = str(tmp_path / "f.npz")
    atomic_savez(path, {"a": np.arange(3)})

    def broken(f, **arrays):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="No space"):
        atomic_savez(path, {"a": np.arange(5)})
    assert os.listdir(tmp_path) == ["f.npz"]
    with np.load(path) as z:
        assert z["a"].tolist() == [0, 1, 2]


WRITER = """
import sys, numpy as np
from fastrnn.models.base import atomic_savez
big = np.random.default_rng(0).standard_normal(4_000_000)
print("ready", flush=True)
while True:
    atomic_savez(sys.argv[1], {"a": big})
"""


def test_killed_writer_keeps_the_old_file_and_its_temp_is_cleaned(tmp_path):
    path = str(tmp_path / "ck.npz")
    atomic_savez(path, {"a": np.arange(4)})
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        while not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]:
            assert time.monotonic() < deadline, "the writer never started a temp file"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    with np.load(path) as z:  # either the old file or a complete new one
        assert z["a"].shape in ((4,), (4_000_000,))
    atomic_savez(path, {"a": np.arange(2)})  # the next save removes the dead writer's temp
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_other_live_writers_temps_are_left_alone(tmp_path):
    path = str(tmp_path / "x.npz")
    live = tmp_path / f".x.npz.{os.getppid()}-0123abcd.tmp"  # a process that exists
    dead = tmp_path / ".x.npz.999999999-0123abcd.tmp"
    other = tmp_path / "notes.tmp"  # not of our naming
    for f in (live, dead, other):
        f.write_bytes(b"x")
    atomic_savez(path, {"a": np.arange(2)})
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name, "x.npz"])


def test_read_checkpoint_of_a_parameter_file(tmp_path):
    Rnnlm(V, 4, 5).save_params(str(tmp_path / "p.npz"))
    with pytest.raises(CheckpointError, match="not a fastrnn trainer checkpoint"):
        read_checkpoint(str(tmp_path / "p.npz"))
