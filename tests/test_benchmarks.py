"""The benchmark package on tiny sizes: harness arithmetic, the check before timing, the report's
FLOP limit and targets, the chart, child processes and competitor clean-up.

No timing is asserted: a 1-repeat run on a shared machine says nothing about speed.
"""
import json
import math

import numpy as np
import pytest

from fastrnn.bench import cells, columns as cl, harness as hn, load as ld, report as rp
from fastrnn.bench import train as tr

TINY = (2, 3, 4, 5)
ONE = hn.Timing(repeat=1, rounds=1)


def _is_time(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_quantiles_and_ratios():
    xs = [4.0, 1.0, 3.0, 2.0, 10.0]
    sp = hn.spread(xs)
    assert (sp["min"], sp["median"], sp["max"], sp["n"]) == (1.0, 3.0, 10.0, 5)
    assert sp["p25"] == 2.0 and sp["p75"] == 4.0 and sp["p90"] == pytest.approx(7.6)
    assert hn.geomean([1.0, 4.0, None, -1.0]) == pytest.approx(2.0)
    assert hn.ratio(3.0, 2.0) == 1.5 and hn.ratio(None, 2.0) is None and hn.ratio(1.0, 0) is None


def test_time_block_counts_calls():
    calls = []
    out = hn.time_block(lambda: calls.append(1), hn.Timing(repeat=4))
    assert len(out) == 4 and len(calls) >= 5  # at least one untimed call first


def test_matrix_flops():
    # G*H*(D+H) = 4*5*9 = 180 per row and step; N*T = 6
    assert cl.matrix_flops("lstm", TINY, "fwd") == 2 * 6 * 180
    assert cl.matrix_flops("lstm", TINY, "fwdbwd") == 6 * 6 * 180
    assert cl.matrix_flops("rnn", TINY, "fwd") == 2 * 6 * 1 * 5 * 9


@pytest.mark.parametrize("cell", cl.CELLS)
def test_columns_are_checked_then_timed(cell):
    for name in ("reference", "numba", "cpu", "gemm"):
        rows = cl.measure(name, [cell], [TINY], cl.MODES, "float32", ONE)
        # the GEMM floor has no lengths mode
        assert [r["mode"] for r in rows] == [m for m in cl.MODES
                                             if name != "gemm" or m != "lengths"]
        for r in rows:
            if name in ("cpu", "numba") and "error" in r:  # a backend this machine lacks
                assert not r["error"].startswith("WRONG"), r["error"]
                continue
            assert _is_time(r["time_s"]), r
            if name in ("numba", "cpu"):
                assert r["check_err"] <= cl.CHECK_TOL["float32"]


def test_torch_column_matches_reference(tmp_path):
    """In child processes: torch's thread pools must not stay in the test process."""
    pytest.importorskip("torch")
    out = tmp_path / "t.json"
    rc = cells.main(["--sizes", "2x3x4x5", "--columns", "torch", "--repeat", "1", "--rounds",
                     "1", "--no-train", "--no-load", "--no-cold-start", "--quiet", "--out",
                     str(out)])
    assert rc == 0
    (s,) = json.loads(out.read_text())["settings"]
    assert len(s["rows"]) == len(cl.CELLS) * len(cl.MODES)
    for r in s["rows"]:
        assert not r["errors"], r["errors"]
        assert r["check_err"]["torch"] <= cl.CHECK_TOL["float32"]


def test_lengths_mode_checks_the_lengths(monkeypatch):
    """A column that ignored the lengths would be caught before timing."""
    size = (3, 6, 4, 5)
    lengths = cl.make_lengths(size)
    assert lengths.min() >= 3 and lengths.max() <= 6 and lengths.min() < 6  # ragged
    assert cl.matrix_flops("rnn", size, "lengths") == \
        cl.matrix_flops("rnn", size, "fwdbwd") * lengths.sum() // 18
    (row,) = cl.measure("reference", ["gru"], [size], ["lengths"], "float32", ONE)
    assert _is_time(row["time_s"])
    real = cl.build

    def full_t(name, cell, size, dtype):
        fns, ctx, ref = real(name, cell, size, dtype)
        return dict(fns, lengths=fns["fwdbwd"]), ctx, ref
    # the reference layer, checked as if it were a fastrnn column
    monkeypatch.setattr(cl, "build", lambda *a: full_t("reference", *a[1:])[:2] + ("gru",))
    (fb,) = cl.measure("numba", ["gru"], [size], ["fwdbwd"], "float32", ONE)
    assert "time_s" in fb, fb
    rows = cl.measure("numba", ["gru"], [size], ["fwdbwd", "lengths"], "float32", ONE)
    assert len(rows) == 2 and all(r["error"].startswith("WRONG RESULT") for r in rows)


def test_a_wrong_column_is_not_timed(monkeypatch):
    real = cl.build

    def skewed(name, cell, size, dtype):
        fns, ctx, ref = real(name, cell, size, dtype)
        return ({m: (lambda f=f: [o * 1.01 + 0.01 for o in f()]) for m, f in fns.items()},
                ctx, ref)
    monkeypatch.setattr(cl, "build", skewed)
    rows = cl.measure("reference", ["lstm"], [TINY], cl.MODES, "float32", ONE)
    assert all("time_s" in r for r in rows)  # the reference itself has nothing to check
    monkeypatch.setattr(cl, "build", lambda *a: skewed("reference", *a[1:])[:2] + ("lstm",))
    rows = cl.measure("numba", ["lstm"], [TINY], cl.MODES, "float32", ONE)
    assert rows and all(r["error"].startswith("WRONG RESULT") and "time_s" not in r
                        for r in rows)
    with pytest.raises(cl.WrongResult):
        cl.check([np.full((2, 2), np.nan)], [np.zeros((2, 2))], "float32")


def _row(cell, size, mode, **times):
    return {"cell": cell, "size": dict(zip("NTDH", size)), "label": cl.size_label(size),
            "mode": mode, "time_s": None, **times}


def test_merge_limit_and_targets():
    size = (100, 10, 100, 100)   # N*H = 10000: the FLOP-limit target applies
    peak = 100.0                 # GFLOP/s
    lim = {c: cl.matrix_flops(c, size, "fwdbwd") / 1e11 for c in ("lstm", "gru")}
    per_col = {
        # gru: 1.3x torch and 1.25x the limit -> both targets pass
        # lstm: torch at 50% of the limit needs 1.2x; numba is 1.1x -> FAIL; 1.4x limit -> FAIL
        "numba": [dict(_row("gru", size, "fwdbwd"), time_s=1.25 * lim["gru"], spread={},
                       samples_s=[]),
                  dict(_row("lstm", size, "fwdbwd"), time_s=1.4 * lim["lstm"], spread={},
                       samples_s=[])],
        "torch": [dict(_row("gru", size, "fwdbwd"), time_s=1.3 * 1.25 * lim["gru"], spread={},
                       samples_s=[]),
                  dict(_row("lstm", size, "fwdbwd"), time_s=1.1 * 1.4 * lim["lstm"], spread={},
                       samples_s=[])],
        "cpu": [dict(_row(c, size, "fwdbwd"), error="unknown backend") for c in ("gru", "lstm")],
    }
    rows = rp.merge(per_col, "s", peak)
    gru = next(r for r in rows if r["cell"] == "gru")
    assert gru["limit_s"] == pytest.approx(lim["gru"])
    assert gru["ratios"]["numba_vs_limit"] == pytest.approx(1.25)
    assert gru["ratios"]["numba_vs_torch"] == pytest.approx(1.3)
    assert gru["ratios"]["cpu_vs_torch"] is None and gru["errors"]["cpu"] == "unknown backend"
    status = {t["target"].split(": ", 1)[1][:12]: t["status"] for t in rp.cell_targets(rows)}
    assert status == {"GRU (both fo": "pass", "LSTM fwd+bwd": "FAIL", "within 1.3x ": "FAIL"}
    lstm_t = next(t for t in rp.cell_targets(rows) if "LSTM" in t["target"])
    assert list(lstm_t["failing"]) == ["lstm 100x10x100x100"]


def test_train_load_and_cold_targets():
    train = {"models": [{"name": "char", "kind": "lm", "setting": "s",
                         "times_s": {"numba": 10.0, "torch": 13.0, "textbook": 20.0}},
                        {"name": "peeky", "kind": "seq2seq", "setting": "s",
                         "times_s": {"numba": 10.0, "torch": 5.0, "textbook": 21.0}}]}
    t = {x["target"]: x for x in rp.train_targets(train)}
    torch_t = t["numba: training step >= 1.2x torch"]
    assert torch_t["status"] == "pass" and list(torch_t["values"]) == ["char"]
    assert t["numba: training step >= 2.5x the textbook layers (seq2seq 2x)"]["failing"] == \
        {"char (>= 2.5x)": 2.0}
    load = [{"column": "numba", "model": "char", "setting": "s",
             "modes": {"idle": {"median_s": 1.0, "p90_s": 1.1},
                       "busy1": {"median_s": 2.0, "p90_s": 3.5},
                       "busy2": {"median_s": 3.6, "p90_s": 4.0}}}]
    slow, tail = rp.load_targets(load)
    assert slow["failing"] == {"busy2": 3.6} and tail["failing"] == {"busy1": 1.75}
    assert rp.cold_targets({"empty_cache": {"total_s": 0.5}})[0]["status"] == "pass"
    assert rp.cold_targets({})[0]["status"] == "not measured"


def test_merge_lengths_ratios():
    size = (3, 6, 4, 5)
    done = dict(spread={}, samples_s=[])
    per_col = {"cpu": [dict(_row("gru", size, "fwdbwd"), time_s=2.0, **done),
                       dict(_row("gru", size, "lengths"), time_s=1.5, **done)],
               "torch": [dict(_row("gru", size, "fwdbwd"), time_s=3.0, **done),
                         dict(_row("gru", size, "lengths"), time_s=6.0, **done)]}
    ln = next(r for r in rp.merge(per_col, "s", 10.0) if r["mode"] == "lengths")
    assert ln["fill"] == pytest.approx(cl.make_lengths(size).sum() / 18)
    assert ln["ratios"]["cpu_with_vs_without"] == pytest.approx(0.75)
    assert ln["ratios"]["torch_with_vs_without"] == pytest.approx(2.0)
    assert ln["ratios"]["cpu_vs_torch"] == pytest.approx(4.0)
    lines = []
    rp.print_cells(rp.merge(per_col, "s", 10.0), ["cpu", "torch"], "t", out=lines.append)
    row = next(x for x in lines if x.startswith("| gru | 3x6x4x5 | 0."))
    assert row.endswith("| 0.75x | 2.00x | 4.00x |")


def test_cells_lengths_mode(tmp_path, capsys):
    """--modes lengths brings its fwdbwd baseline; torch (packed) in a child process."""
    cols = "reference,numba,cpu" + (",torch" if _has_torch() else "")
    out = tmp_path / "r.json"
    rc = cells.main(["--cells", "rnn,gru", "--sizes", "3x6x4x5", "--columns", cols,
                     "--modes", "lengths", "--repeat", "1", "--rounds", "1", "--no-train",
                     "--no-load", "--no-cold-start", "--quiet", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "random lengths in [T/2, T]" in printed and "cpu with/without" in printed
    (s,) = json.loads(out.read_text())["settings"]
    assert {(r["cell"], r["mode"]) for r in s["rows"]} == {
        (c, m) for c in ("rnn", "gru") for m in ("fwdbwd", "lengths")}
    for r in (r for r in s["rows"] if r["mode"] == "lengths"):
        assert set(r["errors"]) <= {"cpu"}, r["errors"]  # a machine without the engine
        assert r["check_err"]["numba"] <= cl.CHECK_TOL["float32"]
        assert r["ratios"]["numba_with_vs_without"] > 0
        assert r["ratios"]["reference_with_vs_without"] > 0
        if _has_torch():  # the reset-before gru is checked against torch's reset-after form
            assert r["check_err"]["torch"] <= cl.CHECK_TOL["float32"]
            assert r["ratios"]["numba_vs_torch"] > 0


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_chart_is_a_png(tmp_path):
    rows = rp.merge({"numba": [dict(_row("lstm", s, "fwdbwd"), time_s=1e-3 * (i + 1),
                                    spread={}, samples_s=[])
                               for i, s in enumerate((TINY, (4, 3, 4, 5)))]}, "s", 10.0)
    path = rp.chart(rows, ["numba"], str(tmp_path / "c.png"), "test")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cells_main_in_process(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cells.main(["--cells", "lstm,gru_ra", "--sizes", "2x3x4x5", "--columns",
                     "reference,numba,cpu,gemm", "--repeat", "1", "--rounds", "1",
                     "--no-isolate", "--no-train", "--no-load", "--no-cold-start", "--quiet",
                     "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "FLOP limit ms" in printed and "Performance targets" in printed
    d = json.loads(out.read_text())
    assert d["schema"] == cells.SCHEMA and (tmp_path / "r.png").exists()
    (s,) = d["settings"]
    assert s["peak"]["gflops"] > 0 and s["setting"]["openblas"] == "user"
    assert {(r["cell"], r["mode"]) for r in s["rows"]} == {
        (c, m) for c in ("lstm", "gru_ra") for m in cl.MODES}
    for r in s["rows"]:
        assert _is_time(r["times_s"]["reference"]) and _is_time(r["limit_s"])
        assert "cpu" in r["times_s"] or r["errors"]["cpu"]


def test_cells_isolated_children(tmp_path):
    out = tmp_path / "r.json"
    rc = cells.main(["--cells", "rnn", "--sizes", "2x3x4x5", "--columns", "reference,gemm",
                     "--modes", "fwdbwd", "--repeat", "1", "--rounds", "1", "--threads", "1",
                     "--no-train", "--no-load", "--no-cold-start", "--quiet", "--out", str(out)])
    assert rc == 0
    (s,) = json.loads(out.read_text())["settings"]
    assert s["setting"]["env"]["OMP_NUM_THREADS"] == "1"
    assert all(s["setting"]["env"][k] is None for k in hn.OPENBLAS_PINS)
    (row,) = s["rows"]
    assert _is_time(row["times_s"]["reference"]) and _is_time(row["times_s"]["gemm"])


@pytest.mark.parametrize("column", ["numba", "textbook"])
@pytest.mark.parametrize("model", ["char", "peeky"])
def test_train_columns_agree_with_the_reference(column, model):
    res = tr.measure(column, [model], ONE)[model]
    assert "error" not in res, res["error"]
    assert _is_time(res["time_s"])
    assert abs(res["loss"] - res["ref_loss"]) <= tr.LOSS_TOL * max(1, abs(res["ref_loss"]))


def test_train_torch_column_in_its_process():
    pytest.importorskip("torch")
    res = tr.run(["char", "peeky"], ["torch"], ONE, [(None, "user")])
    for m in res["models"]:
        assert not m["errors"], m["errors"]
        assert _is_time(m["times_s"]["torch"])


def test_competitors_are_stopped():
    with ld.Competitors("busy2") as c:
        procs = list(c.procs)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs) and not ld._LIVE
    with pytest.raises(ValueError, match="unknown load mode"):
        with ld.Competitors("busy9"):
            pass
    res = ld.steps_under_load(lambda: sum(range(1000)), ("idle", "busy1"), 0.2)
    assert res["idle"]["n"] > 0 and res["idle"]["vs_idle"] == 1.0
    assert res["busy1"]["p90_s"] >= res["busy1"]["median_s"] > 0


def test_cold_start_probe():
    res = ld.cold_start(hn.child_env(None, "user"), empty_cache=False)["user_cache"]
    assert "error" not in res, res
    assert res["total_s"] >= res["import_s"] > 0 and res["backend"] in ("numba", "cpu")


def test_gpu_without_cupy(capsys, monkeypatch):
    """--device gpu where CuPy cannot be imported: one clear line, exit status 2."""
    import builtins
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    assert cells.main(["--device", "gpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CuPy" in err[0]


def test_bad_arguments():
    for argv in (["--cells", "lstm,nope"], ["--sizes", "2x3x4"], ["--sizes", "0x1x1x1"],
                 ["--threads", "two"], ["--openblas", "mine"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            cells.main(argv + ["--quiet"])
