"""Timing harness shared by the benchmarks: blocks of timed calls, medians, the machine's load,
library versions, thread / OpenBLAS settings and child processes.

Method: a block is untimed calls (at least one and WARM_BLOCK_S seconds: the first call after
another library ran pays for waking this library's thread pool) and then ``k`` timed calls
(``time.perf_counter``, garbage collector paused); ``k`` is ``repeat`` or enough calls to fill
``budget`` seconds. Blocks per column rather than interleaved single calls keep one library's
spinning workers from slowing the next library's call; rounds spread slow drifts of the load.
"""
import contextlib
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

WARM_BLOCK_S = 0.02
NOISY_IQR = 0.25  # a median is flagged noisy when (p75 - p25) / median exceeds this
# What a user's shell usually lacks and some managed environments set (it pins OpenBLAS's
# kernels and cache model): "user" runs drop them, "default" runs keep what is set.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass
class Timing:
    repeat: int = None     # timed calls per block; None: fill ``budget`` seconds
    rounds: int = 1
    budget: float = 0.2
    min_repeat: int = 3
    max_repeat: int = 200

    def argv(self):
        out = ["--rounds", str(self.rounds), "--budget", str(self.budget),
               "--min-repeat", str(self.min_repeat), "--max-repeat", str(self.max_repeat)]
        return out + (["--repeat", str(self.repeat)] if self.repeat else [])


def add_timing_args(p, budget):
    p.add_argument("--repeat", type=int, default=None,
                   help="timed calls per block (default: fill --budget seconds)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 2; --quick 1)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds of timed calls per block (default {budget}; --quick less)")
    p.add_argument("--min-repeat", type=int, default=3)
    p.add_argument("--max-repeat", type=int, default=200)


def timing_from_args(a, budget):
    for name in ("repeat", "rounds", "min_repeat", "max_repeat"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise SystemExit(f"bench: --{name.replace('_', '-')} must be >= 1, got {v}")
    return Timing(a.repeat, a.rounds or (1 if a.quick else 2),
                  a.budget or (budget * 0.4 if a.quick else budget), a.min_repeat, a.max_repeat)


# ---------------------------------------------------------------------------------- numbers
def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def median(xs):
    return statistics.median(xs) if xs else None


def quantile(xs, q):
    """The q-quantile (0..1) of xs, linear between order statistics."""
    if not xs:
        return None
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def spread(xs):
    """n, min, quartiles, p90 and max of a list of durations (seconds)."""
    return {"n": len(xs), "min": min(xs), "p25": quantile(xs, 0.25), "median": median(xs),
            "p75": quantile(xs, 0.75), "p90": quantile(xs, 0.9), "max": max(xs)}


def noisy(sp):
    return bool(sp) and sp["n"] >= 4 and sp["median"] > 0 and \
        (sp["p75"] - sp["p25"]) / sp["median"] > NOISY_IQR


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def ratio(a, b):
    return a / b if a and b else None


def fmt_ms(t):
    if t is None:
        return "-"
    ms = t * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else \
        f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def short_error(e):
    return f"{type(e).__name__}: {e}".strip().replace("\n", " ")[:300]


# ------------------------------------------------------------------------------------ timing
@contextlib.contextmanager
def gc_paused():
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_block(fn, timing):
    """Untimed calls, then k timed calls of ``fn``; returns the k durations in seconds."""
    with gc_paused():
        t_start = time.perf_counter()
        for _ in range(50):
            t0 = time.perf_counter()
            fn()
            t_one = time.perf_counter() - t0
            if t0 + t_one - t_start >= WARM_BLOCK_S:
                break
        k = timing.repeat or max(timing.min_repeat,
                                 min(timing.max_repeat, math.ceil(timing.budget / max(t_one,
                                                                                       1e-7))))
        out = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def sgemm_peak(dtype="float32", n=2048, tries=5):
    """GFLOP/s of the best of ``tries`` (n x n) @ (n x n) products through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)  # thread pool start, page faults
    best = min(timed(lambda: np.matmul(a, b, out=out)) for _ in range(tries))
    return {"n": n, "dtype": np.dtype(dtype).name, "best_s": best, "gflops": 2 * n ** 3 / best / 1e9}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ the machine
def load_average():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def busy_warning(log):
    la = load_average()
    if la and la[0] > 0.5 * (usable_cpus() or 1):
        log(f"warning: load average {la[0]:.2f} on {usable_cpus()} CPUs before the run: other "
            f"processes are busy, timings will be noisy")
    return la


class OtherLoad:
    """CPU time other processes used while a run went on: /proc/stat minus this process and
    its children (Linux; None elsewhere)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        import resource
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            tick = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, AttributeError):
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / tick  # all but idle and iowait
        own = sum(getattr(resource.getrusage(who), k)
                  for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for k in ("ru_utime", "ru_stime"))
        return busy, own, time.perf_counter()

    def report(self):
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        other = max(0.0, busy - own)
        return {"wall_s": wall, "cpus": usable_cpus(), "other_processes_cpu_s": other,
                "other_processes_share": other / (wall * usable_cpus()) if wall > 0 else None}


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    return {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
            "usable_cpus": usable_cpus(), "platform": platform.platform(),
            "python": platform.python_version()}


def versions():
    from importlib import metadata
    v = {}
    for name in ("fastrnn", "numpy", "numba", "scipy", "torch", "threadpoolctl"):
        try:
            v[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            v[name] = None
    try:
        import threadpoolctl
        v["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                   "architecture")}
                            for p in threadpoolctl.threadpool_info()]
    except Exception as e:
        v["threadpools"] = short_error(e)
    return v


# -------------------------------------------------------------------- settings and children
def apply_threads(n):
    """Limit this process to ``n`` threads: BLAS and OpenMP pools (threadpoolctl), the compiled
    engine (``fastrnn.set_num_threads`` where the library has it) and torch if imported; for
    the rest of the process (n None: no change)."""
    if n is None:
        return
    import threadpoolctl

    import fastrnn
    threadpoolctl.threadpool_limits(limits=n)
    if hasattr(fastrnn, "set_num_threads"):
        fastrnn.set_num_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def apply_child_threads():
    """In a child process: the thread count its setting put in the environment (child_env)."""
    if os.environ.get("OMP_NUM_THREADS"):
        apply_threads(int(os.environ["OMP_NUM_THREADS"]))


def child_env(threads=None, openblas="user"):
    """The environment of a child process for one setting: thread counts (environment variables
    too, so pools started before threadpoolctl runs obey them) and the OpenBLAS pins."""
    env = dict(os.environ)
    if openblas == "user":
        for k in OPENBLAS_PINS:
            env.pop(k, None)
    if threads is not None:
        env.update({k: str(threads) for k in THREAD_VARS})
    # the child must import the same fastrnn as this process, wherever it was started from
    import fastrnn
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(
        [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return env


def settings_info(threads, openblas):
    env = child_env(threads, openblas)
    return {"threads": threads, "openblas": openblas,
            "env": {k: env.get(k) for k in OPENBLAS_PINS + THREAD_VARS}}


def run_child(module, argv, env, timeout=1800):
    """``python -m module argv --out tmp.json`` in a fresh process; returns the JSON it wrote.
    A failed child raises RuntimeError with the last line it printed."""
    with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as d:
        out = os.path.join(d, "child.json")
        cmd = [sys.executable, "-m", module] + list(argv) + ["--out", out]
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
        if p.returncode != 0 or not os.path.exists(out):
            tail = (p.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{module} {' '.join(argv[:4])} ... exited {p.returncode}: "
                               f"{tail[0][:300]}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def write_json(result, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def logger(quiet):
    def log(msg):
        if not quiet:
            print(msg, file=sys.stderr, flush=True)
    return log
