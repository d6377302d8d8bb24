"""Smoke test of the benchmarks: the tiniest run of bench_cells and bench_train, JSON schema only.

No timing is asserted (the numbers of a 1-repeat run on a shared machine mean nothing); the test
checks that the scripts run end to end on the reference and Numba backends and write the JSON
the results notes are built from.
"""
import json
import math
import os
import sys

import pytest

try:
    from benchmarks import bench_cells, bench_train
except ImportError:  # pytest run from elsewhere without the package installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import bench_cells, bench_train
from fastrnn import backend


def _numba_available():
    try:
        backend.load("numba")
        return True
    except ValueError:
        return False


def _is_time(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


def _check_column(entry, col, required):
    """A column either has a positive median time, or (when not required) an error message."""
    t = entry["times_s"].get(col)
    if t is None:
        assert not required, f"{col} was not measured: {entry['errors'].get(col)}"
        assert entry["errors"].get(col), f"{col} has neither a time nor an error"
    else:
        assert _is_time(t), (col, t)


def test_bench_cells_tiny(tmp_path, capsys):
    out = tmp_path / "cells.json"
    rc = bench_cells.main(["--cells", "lstm", "--sizes", "2x3x4x5", "--columns",
                           "reference,numba,gemm", "--repeat", "1", "--rounds", "1", "--jit",
                           "none", "--no-train", "--no-isolate", "--quiet", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| cell |" in printed and "numba_vs_gemm" in printed

    d = json.loads(out.read_text())
    assert d["schema"] == bench_cells.SCHEMA
    assert d["device"] == "cpu"
    for key in ("created", "config", "machine", "versions", "threads", "columns", "rows",
                "geomean", "targets", "ratio_definitions", "wall_s", "load_average_start",
                "other_load", "first_call_s"):
        assert key in d, key
    assert d["config"]["dtype"] == "float32"
    assert d["machine"]["cpu_model"] and d["machine"]["usable_cpus"] >= 1
    for lib in ("numpy", "numba", "scipy", "torch", "blas"):
        assert lib in d["versions"]
    assert d["columns"] == ["reference", "numba", "gemm"]

    rows = d["rows"]
    assert {(r["cell"], r["mode"]) for r in rows} == {
        ("lstm", m) for m in ("fwdbwd", "fwd")}
    numba_ok = _numba_available()
    for r in rows:
        assert r["size"] == {"N": 2, "T": 3, "D": 4, "H": 5} and r["label"] == "2x3x4x5"
        _check_column(r, "reference", required=True)
        _check_column(r, "gemm", required=True)
        _check_column(r, "numba", required=False)
        for col, t in r["times_s"].items():
            if t is not None:
                assert len(r["samples_s"][col]) == 1
                assert r["spread"][col]["n"] == 1
        assert set(r["ratios"]) == {"numba_vs_gemm", "torch_speedup", "ref_speedup"}
        if numba_ok and r["times_s"]["numba"] is not None:
            assert r["ratios"]["ref_speedup"] > 0
            if r["mode"] == "fwdbwd":
                assert r["check"]["numba"]["ok"], r["check"]
    for mode in ("fwdbwd", "fwd"):
        assert set(d["geomean"][mode]) == {"numba_vs_gemm", "torch_speedup", "ref_speedup"}
    for t in d["targets"]:
        assert t["status"] in ("pass", "FAIL", "not measured")


def test_bench_train_tiny(tmp_path):
    out = tmp_path / "train.json"
    rc = bench_train.main(["--sizes", "8", "--V", "50", "--N", "2", "--T", "3", "--repeat", "1",
                           "--rounds", "1", "--quiet", "--out", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["schema"] == bench_train.SCHEMA
    for key in ("created", "machine", "versions", "threads", "config", "configs", "dtype"):
        assert key in d, key
    (c,) = d["configs"]
    assert (c["V"], c["D"], c["H"], c["N"], c["T"]) == (50, 8, 8, 2, 3)
    _check_column(c, "reference", required=True)
    _check_column(c, "numba", required=False)
    if c["times_s"]["numba"] is not None:
        assert c["speedup"] > 0
        # same initial weights and ids: the first losses agree
        assert c["first_loss_abs_diff"] < 1e-3


def test_bench_cells_bad_arguments():
    with pytest.raises(SystemExit):
        bench_cells.main(["--cells", "lstm,nope", "--quiet"])
    with pytest.raises(SystemExit):
        bench_cells.main(["--sizes", "2x3x4", "--quiet"])


def test_bench_cells_gpu_without_cupy(capsys, monkeypatch):
    """--device gpu on a machine without CuPy: one clear line, non-zero exit, no traceback."""
    import builtins
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    rc = bench_cells.main(["--device", "gpu", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CuPy" in err[0]


def test_bench_cells_isolate_merges_columns(tmp_path):
    """--isolate runs each column in its own process and merges the rows."""
    out = tmp_path / "iso.json"
    rc = bench_cells.main(["--cells", "rnn", "--sizes", "2x3x4x5", "--columns", "reference,gemm",
                           "--modes", "fwdbwd", "--repeat", "1", "--rounds", "1", "--jit", "none",
                           "--no-train", "--isolate", "--quiet", "--out", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["config"]["isolate"] is True
    (row,) = d["rows"]
    assert (row["cell"], row["mode"]) == ("rnn", "fwdbwd")
    assert _is_time(row["times_s"]["reference"]) and _is_time(row["times_s"]["gemm"])
