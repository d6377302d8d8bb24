"""Recurrent-cell benchmark: fastrnn's CPU backends vs the reference, PyTorch, the matrix
products alone and the FLOP limit; also the training step, the step under load and cold start.

Usage (``fastrnn bench -- ARGS`` is the same as ``python -m fastrnn.bench.cells ARGS``)::

    python -m fastrnn.bench.cells --quick                # about a minute
    python -m fastrnn.bench.cells --out r.json           # the full grid; JSON, PNG chart beside
    python -m fastrnn.bench.cells --threads 1,2 --openblas user,default   # the settings sweep

Every column runs in its own process, one after the other (``--no-isolate``: all here), so no
library's thread pool disturbs another's, and every column is checked against the reference
before it is timed (see ``fastrnn.bench.columns``). Settings: ``--threads`` limits BLAS, OpenMP,
the engine (``fastrnn.set_num_threads``) and torch in the children; ``--openblas user`` drops
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE from the children's environment (what a user's shell has),
``default`` keeps what this environment sets. The FLOP limit of each row is its matrix FLOPs at
the sgemm peak measured in the same setting (best of several 2048^3 products).
"""
import argparse
import os
import sys
import time

from . import columns as cl
from . import harness as hn
from . import load as ld
from . import report as rp
from . import train as tr

SCHEMA = "fastrnn-bench-cells/2"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastrnn.bench.cells",
                                description="Time fastrnn's recurrent layers against the "
                                            "reference, PyTorch, the GEMMs alone and the FLOP "
                                            "limit; print tables and targets, write JSON + PNG.")
    p.add_argument("--cells", default=None,
                   help=f"comma list of {', '.join(cl.CELLS)} (default all; --quick lstm,gru,rnn)")
    p.add_argument("--sizes", default=None, help="comma list of NxTxDxH (default: the grid)")
    p.add_argument("--modes", default=",".join(cl.MODES),
                   help="comma list of fwdbwd, fwd, lengths (fwd+bwd with random per-row "
                        "lengths in [T/2, T], torch through packed sequences; brings fwdbwd "
                        "along, its baseline)")
    p.add_argument("--columns", default=",".join(cl.COLUMNS),
                   help=f"comma list of {', '.join(cl.COLUMNS)} (default all)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: the CUDA backend vs cuDNN (needs CuPy and an NVIDIA GPU)")
    hn.add_timing_args(p, budget=0.2)
    p.add_argument("--threads", default=None,
                   help="comma list of thread counts, one run per count (default: libraries' "
                        "defaults)")
    p.add_argument("--openblas", default="user",
                   help="comma list of user (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset) and "
                        "default (as this environment sets them); default: user")
    p.add_argument("--quick", action="store_true",
                   help="about a minute: fewer cells and sizes, shorter blocks, one round")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every column in this process (the --openblas setting then is "
                        "this process's environment)")
    p.add_argument("--no-train", dest="train", action="store_false",
                   help="skip the training-step benchmark")
    p.add_argument("--no-load", dest="load", action="store_false",
                   help="skip the step-under-load measurement")
    p.add_argument("--no-cold-start", dest="cold", action="store_false",
                   help="skip the cold-start measurement")
    p.add_argument("--out", default=None, help="write JSON here (and the chart as .png beside)")
    p.add_argument("--chart", default=None, help="write the PNG chart here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    return p


def parse_sizes(text, default):
    if not text:
        return tuple(default)
    sizes = []
    for item in (s.strip().lower() for s in text.split(",") if s.strip()):
        parts = item.split("x")
        if len(parts) != 4 or not all(q.isdigit() and int(q) > 0 for q in parts):
            raise SystemExit(f"bench: --sizes wants positive NxTxDxH items separated by commas, "
                             f"got {item!r}")
        sizes.append(tuple(int(q) for q in parts))
    return tuple(sizes)


def finish_args(a):
    a.cells = tr.parse_list(a.cells or ("lstm,gru,rnn" if a.quick else ",".join(cl.CELLS)),
                            cl.CELLS, "cell")
    a.sizes_given = bool(a.sizes)
    a.sizes = parse_sizes(a.sizes, cl.QUICK_GRID if a.quick else cl.CPU_GRID)
    a.modes = tr.parse_list(a.modes, cl.MODES, "mode")
    if "lengths" in a.modes and "fwdbwd" not in a.modes:
        a.modes = ("fwdbwd",) + tuple(a.modes)
    a.columns = tr.parse_list(a.columns, cl.COLUMNS, "column")
    a.openblas = tr.parse_list(a.openblas, ("user", "default"), "--openblas setting")
    try:
        a.threads = tuple(int(t) for t in a.threads.split(",")) if a.threads else (None,)
    except ValueError:
        raise SystemExit(f"bench: --threads wants counts like 1,2, got {a.threads!r}") from None
    if any(t is not None and t < 1 for t in a.threads):
        raise SystemExit("bench: every --threads count must be >= 1")
    a.timing = hn.timing_from_args(a, budget=0.2)
    return a


def child(a):
    """One column (or the sgemm peak) in this process, written as JSON to --out."""
    hn.apply_child_threads()
    if a.peak:
        res = {"peak": hn.sgemm_peak(a.dtype)}
    else:
        res = {"rows": cl.measure(a.child, a.cells, a.sizes, a.modes, a.dtype, a.timing)}
    hn.write_json(res, a.out)
    return 0


def _child_argv(a):
    return (["--cells", ",".join(a.cells), "--sizes", ",".join(map(cl.size_label, a.sizes)),
             "--modes", ",".join(a.modes), "--dtype", a.dtype] + a.timing.argv())


def run_setting(a, threads, openblas, log):
    """Peak and every column for one (threads, openblas) setting -> merged rows."""
    key = f"threads={threads or 'default'} openblas={openblas}"
    env = hn.child_env(threads, openblas)
    if not a.isolate:
        hn.apply_threads(threads)

    def measure_peak():
        if a.isolate:
            return hn.run_child("fastrnn.bench.cells", _child_argv(a) + ["--peak"], env)["peak"]
        return hn.sgemm_peak(a.dtype)
    peaks = [measure_peak()]
    per_col = {}
    for col in a.columns:
        log(f"[{key}] column {col} ...")
        if a.isolate:
            try:
                per_col[col] = hn.run_child("fastrnn.bench.cells",
                                            _child_argv(a) + ["--child", col], env)["rows"]
            except Exception as e:
                per_col[col] = [{"cell": c, "size": dict(zip("NTDH", s)),
                                 "label": cl.size_label(s), "mode": m,
                                 "error": hn.short_error(e)}
                                for c in a.cells for s in a.sizes for m in a.modes]
        else:
            per_col[col] = cl.measure(col, a.cells, a.sizes, a.modes, a.dtype, a.timing, log)
    # before and after the columns: a burst of other load during one measurement would
    # otherwise lower the limit for the whole setting
    peaks.append(measure_peak())
    peak = max(peaks, key=lambda p: p["gflops"])
    seen = " and ".join(f"{p['gflops']:.0f}" for p in peaks)
    log(f"[{key}] sgemm peak {peak['gflops']:.0f} GFLOP/s ({peak['n']}^3; before and after "
        f"the columns: {seen})")
    return {"setting": hn.settings_info(threads, openblas), "key": key, "peak": peak,
            "peaks": peaks,
            "rows": rp.merge(per_col, key, peak["gflops"])}


def main_gpu(a, log):
    from . import gpu
    res = gpu.run(a, log)
    if isinstance(res, int):
        return res
    result, names = res
    rp.print_cells(result["rows"], names, f"GPU {result['device']}, {a.dtype}, sgemm peak "
                   f"{result['peak']['gflops']:.0f} GFLOP/s", fast=[n for n in names
                                                               if n.startswith("cuda")],
                   rival="cudnn_fp32")
    result["targets"] = gpu.targets(result["rows"])
    rp.print_targets(result["targets"])
    if a.out:
        hn.write_json(dict(result, schema=SCHEMA, created=hn.now(), versions=hn.versions()),
                      a.out)
    return 1 if rp.wrong_results(result["rows"]) else 0


def main(argv=None):
    a = finish_args(build_parser().parse_args(argv))
    a.argv = list(sys.argv[1:] if argv is None else argv)
    if a.child or a.peak:
        return child(a)
    log = hn.logger(a.quiet)
    if a.device == "gpu":
        return main_gpu(a, log)
    t0 = time.perf_counter()
    result = collect(a, log)
    result["wall_s"] = time.perf_counter() - t0
    return report(a, result, log)


def collect(a, log):
    """Every measurement the options ask for, as the JSON's dict."""
    settings = [(t, ob) for ob in a.openblas for t in a.threads]
    result = {"schema": SCHEMA, "created": hn.now(), "argv": a.argv,
              "machine": hn.machine_info(), "versions": hn.versions(),
              "config": {"cells": a.cells, "sizes": a.sizes, "modes": a.modes,
                         "dtype": a.dtype, "quick": a.quick, "isolate": a.isolate,
                         "timing": vars(a.timing), "columns": a.columns},
              "load_average_start": hn.busy_warning(log)}
    other = hn.OtherLoad()
    result["settings"] = [run_setting(a, t, ob, log) for t, ob in settings]
    if a.train:
        log("training step ...")
        names = tr.QUICK_MODELS if a.quick else tuple(tr.SPECS)
        cols = [c for c in tr.DEFAULT_COLUMNS if c in a.columns or c == "textbook"]
        result["train"] = tr.run(names, cols, hn.Timing(None, a.timing.rounds,
                                                        a.timing.budget * 4), settings,
                                 a.isolate, log)
    if a.load:
        log("char LSTM step under load ...")
        fast = tr.fastest_column(a.columns)
        result["load"] = [tr.run_load(fast, "char", ld.MODES, 2.0 if a.quick else 5.0, t, ob)
                          for t, ob in settings]
    if a.cold:
        log("cold start ...")
        result["cold_start"] = ld.cold_start(hn.child_env(None, "user"),
                                             empty_cache=not a.quick)
    result.update(load_average_end=hn.load_average(), other_load=other.report())
    return result


def report(a, result, log):
    """Print every table and the targets; write the chart and the JSON. Returns the exit
    status: 1 when a column gave a wrong result."""
    rows = [r for s in result["settings"] for r in s["rows"]]
    targets = []
    for s in result["settings"]:
        rp.print_cells(s["rows"], a.columns, f"CPU {a.dtype}, {s['key']}, sgemm peak "
                       f"{s['peak']['gflops']:.0f} GFLOP/s")
        targets += [dict(t, target=f"[{s['key']}] {t['target']}")
                    for t in rp.cell_targets(s["rows"])]
    if a.train:
        tr.print_table(result["train"])
        targets += rp.train_targets(result["train"])
    if a.load:
        ld.print_load(result["load"])
        targets += rp.load_targets(result["load"])
    if a.cold:
        ld.print_cold(result["cold_start"])
        targets += rp.cold_targets(result["cold_start"])
    result["targets"] = targets
    rp.print_targets(targets)
    m, share = result["machine"], (result["other_load"] or {}).get("other_processes_share")
    print(f"\nMachine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs"
          + (f"; other processes used {share:.0%} of the CPU time during the run"
             + (" (noisy: re-run on an idle machine)" if share > 0.1 else "")
             if share is not None else ""))
    chart = a.chart or (os.path.splitext(a.out)[0] + ".png" if a.out else None)
    if chart and rows:
        first = result["settings"][0]
        result["chart"] = rp.chart(first["rows"], a.columns, chart,
                                   f"fastrnn cells, {a.dtype}, {first['key']}, "
                                   f"{m['cpu_model']}")
        log(f"wrote {chart}")
    print(f"(total {result['wall_s']:.0f} s)")
    if a.out:
        hn.write_json(result, a.out)
        log(f"wrote {a.out}")
    wrong = rp.wrong_results(rows) + [(m["name"], c, e) for m in result.get("train", {}).get(
        "models", []) for c, e in m["errors"].items() if e.startswith("WRONG RESULT")]
    for w in wrong:
        print(f"ERROR: wrong result, not timed: {w}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
