"""Recurrent-cell benchmark: fastrnn layers vs the reference backend, PyTorch and the GEMM floor.

Usage::

    python -m benchmarks.bench_cells                 # full CPU grid (a few minutes on 2 cores)
    python -m benchmarks.bench_cells --quick         # about a minute: the README's main job
    python -m benchmarks.bench_cells --out r.json    # also write the results as JSON
    python -m benchmarks.bench_cells --device gpu    # CUDA backend vs cuDNN (needs CuPy + a GPU)

What is timed (CPU, ``--device cpu``), for every cell (``lstm``, ``gru`` = reset-before,
``gru_ra`` = reset-after, ``rnn``), every size (N, T, D, H) and two modes, ``fwdbwd`` (forward
then backward of ``sum(out * w)``) and ``fwd`` (forward only):

- ``reference``: the fastrnn layer (``fastrnn.layers.TimeLSTM`` ...) with the NumPy reference
  backend forced (``backend.use("numpy")``): the layer's GEMMs plus a Python loop over steps.
- ``numba``:     the same layer with the Numba backend forced (``backend.use("numba")``). The time
  includes everything the layer does (input checks, layout copies, the big GEMMs), i.e. exactly
  what a user gets.
- ``torch``:     ``torch.nn.LSTM / GRU / RNN`` (batch_first, same N, T, D, H and dtype) on the CPU;
  fwdbwd is forward plus autograd backward of ``(out * w).sum()`` with ``xs.requires_grad`` so
  that dX is computed as in the layer; fwd is run under ``torch.no_grad()`` (the inference path a
  torch user gets for forward-only work). torch's GRU is the reset-after form, so it is the exact
  counterpart of the ``gru_ra`` rows and an approximate one (same FLOPs) of the ``gru`` rows.
  Imported lazily; the column is left out when torch is not installed.
- ``gemm``:      "GEMMs alone": the matrix products this design performs, with no gate math, plain
  NumPy in a Python loop over steps into preallocated buffers: forward ``X @ Wx + b`` and per step
  ``h @ Wh`` (GRU reset-before: the 2H block and the H block as two products); backward per step
  ``dA @ Wh^T`` (GRU reset-before: two products), then ``dWx``, ``dWh``, ``db``, ``dX``. It is the
  floor of this design (the kernels add only the gate math to it).

Method: every column is measured in the same process and run. Each (cell, size) is first warmed up
(two fwd+bwd calls per column: Numba compilation and BLAS thread start-up fall there). Then, in
``--rounds`` rounds, each column runs a block of one untimed call followed by ``k`` timed calls
(``time.perf_counter``, garbage collector paused); ``k`` is ``--repeat`` or, by default, enough
calls to fill ``--budget`` seconds (at least ``--min-repeat``). Blocks per column (rather than
interleaving single calls) keep one library's spinning worker threads from slowing the next
library's call; several rounds spread slow drifts of machine load over all columns. The reported
time is the median of all timed calls of a column; ratios are ratios of medians; geometric means
run over the rows that have both columns.

JIT: the Numba compile time is measured apart, in fresh processes (``--jit``): ``default`` times
the first fwd+bwd of each cell in a fresh interpreter with the normal on-disk cache and reports
whether it was served from the cache (Numba's dispatcher cache statistics); ``cold`` does the same
with an empty ``NUMBA_CACHE_DIR`` (a true compile), then once more in a second fresh process on
that directory (cache load time). ``both`` (the full-run default) runs all three.

The JSON written by ``--out`` holds the configuration, machine (CPU model, cores), library
versions and BLAS configuration, thread counts, every sample, medians, ratios, geometric means,
the issue's performance targets with pass/fail, the JIT section, and (unless ``--no-train``) the
training-step benchmark of ``benchmarks.bench_train``.
"""
import argparse
import contextlib
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

SCHEMA = "fastrnn-bench-cells/1"

CELLS = ("lstm", "gru", "gru_ra", "rnn")
GATES = {"lstm": 4, "gru": 3, "gru_ra": 3, "rnn": 1}
CELL_DOC = {"lstm": "LSTM [f|g|i|o]", "gru": "GRU reset-before [z|r|h~]",
            "gru_ra": "GRU reset-after [z|r|n] (torch/cuDNN form)", "rnn": "RNN tanh"}
MODES = ("fwdbwd", "fwd")

CPU_GRID = ((10, 5, 100, 100), (20, 35, 200, 200), (20, 35, 650, 650), (20, 30, 128, 1024),
            (64, 50, 256, 256), (1, 100, 256, 256))
CPU_QUICK_GRID = ((10, 5, 100, 100), (20, 35, 200, 200), (64, 50, 256, 256))
GPU_GRID = tuple((N, 100, H, H) for N, H in ((1, 256), (1, 1024), (16, 512), (64, 512),
                                              (64, 1024), (256, 1024))) + ((20, 35, 650, 650),)
GPU_QUICK_GRID = ((1, 100, 256, 256), (64, 100, 512, 512), (20, 35, 650, 650))

CPU_COLUMNS = ("reference", "numba", "torch", "gemm")

# (name, numerator column, denominator column, meaning)
CPU_RATIOS = (
    ("numba_vs_gemm", "numba", "gemm", "numba time / GEMMs-alone time (1.0 = the floor)"),
    ("torch_speedup", "torch", "numba", "torch time / numba time (>1: numba faster)"),
    ("ref_speedup", "reference", "numba", "reference time / numba time"),
)
GPU_RATIOS = (
    ("cuda_vs_gemm", "cuda", "gemm", "fastrnn cuda time / GEMMs-alone (cupy) time"),
    ("cudnn_speedup", "cudnn_fp32", "cuda", "cuDNN fp32 time / fastrnn cuda time"),
    ("cudnn_tf32_speedup", "cudnn_tf32", "cuda", "cuDNN TF32 time / fastrnn cuda time"),
    ("ref_speedup", "reference", "cuda", "reference-on-CuPy time / fastrnn cuda time"),
)

# Agreement check of a fast backend against the reference on the warm-up call.
CHECK_TOL = {"float32": 2e-3, "float64": 1e-8}


# ================================================================================== utilities
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def parse_sizes(text, default):
    """'10x5x100x100,20x35x200x200' -> ((10, 5, 100, 100), ...); None -> default."""
    if not text:
        return tuple(default)
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = item.replace("*", "x").split("x")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise SystemExit(f"bench: --sizes wants NxTxDxH items separated by commas, "
                             f"got {item!r}")
        N, T, D, H = (int(p) for p in parts)
        if min(N, T, D, H) < 1:
            raise SystemExit(f"bench: every size must be >= 1, got {item!r}")
        sizes.append((N, T, D, H))
    return tuple(sizes)


def parse_list(text, allowed, what):
    items = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise SystemExit(f"bench: unknown {what} {', '.join(bad) or '(none)'}; choose from "
                         f"{', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


def size_label(size):
    return "x".join(str(s) for s in size)


def median(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    """n, min, quartiles and max of a list of durations (seconds)."""
    xs = sorted(xs)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {"n": len(xs), "min": xs[0], "p25": q1, "median": statistics.median(xs), "p75": q3,
            "max": xs[-1]}


NOISY_IQR = 0.25  # a median is flagged noisy when (p75 - p25) / median exceeds this


def noisy(sp):
    return bool(sp) and sp["n"] >= 4 and sp["median"] > 0 and \
        (sp["p75"] - sp["p25"]) / sp["median"] > NOISY_IQR


def load_average():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


class OtherLoad:
    """CPU time that other processes used while this run went on, from /proc/stat minus this
    process and its children (Linux only; None elsewhere)."""

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
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        other = max(0.0, busy - own)
        return {"wall_s": wall, "cpus": cpus, "machine_busy_cpu_s": busy, "this_run_cpu_s": own,
                "other_processes_cpu_s": other,
                "other_processes_share": other / (wall * cpus) if wall > 0 else None}


def print_other_load(load, out=print):
    if not load or load.get("other_processes_share") is None:
        return
    share = load["other_processes_share"]
    out(f"Other processes used {share:.0%} of the machine's CPU time during this run"
        + (" (noisy: re-run on an idle machine)" if share > 0.1 else "") + ".")


def busy_warning(log):
    """Warn when other processes load the machine (timings are then noisy)."""
    la = load_average()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if la and la[0] > 0.5 * (cpus or 1):
        log(f"warning: load average {la[0]:.2f} on {cpus} CPUs before the run: other processes "
            f"are busy, timings will be noisy")
    return la


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt_ms(t):
    if t is None:
        return "-"
    ms = t * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def short_error(e):
    msg = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return msg[:300]


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


def repeats_for(t_one, args):
    """Timed calls per block: --repeat, or enough to fill --budget seconds."""
    if args.repeat:
        return args.repeat
    k = math.ceil(args.budget / max(t_one, 1e-7))
    return max(args.min_repeat, min(args.max_repeat, k))


WARM_BLOCK_S = 0.02  # untimed calls at the start of each block: at least one, and this long


def time_block_cpu(fn, args):
    """Untimed calls (at least one, at least WARM_BLOCK_S seconds: the first call after another
    library ran pays for waking this library's thread pool), then k timed calls. Returns the k
    durations in seconds."""
    with gc_paused():
        t_start = time.perf_counter()
        for _ in range(50):
            t0 = time.perf_counter()
            fn()
            t_one = time.perf_counter() - t0
            if t0 + t_one - t_start >= WARM_BLOCK_S:
                break
        k = repeats_for(t_one, args)
        out = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


# ============================================================================= machine info
def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _blas_info():
    info = {}
    try:
        info["numpy"] = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas")
    except Exception as e:  # older numpy: no mode= argument
        info["numpy"] = short_error(e)
    try:
        import scipy
        info["scipy"] = scipy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas")
    except Exception as e:
        info["scipy"] = short_error(e)
    try:
        import threadpoolctl
        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                   "threading_layer", "architecture", "filepath")}
            for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    except Exception as e:
        info["threadpools"] = short_error(e)
    return info


def machine_info():
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cores
    return {"cpu_model": cpu_model(), "logical_cpus": cores, "usable_cpus": usable,
            "platform": platform.platform(), "python": platform.python_version(),
            "hostname": platform.node()}


def versions(torch_mod=None):
    import numba
    import scipy

    import fastrnn
    v = {"fastrnn": getattr(fastrnn, "__version__", None), "numpy": np.__version__,
         "numba": numba.__version__, "scipy": scipy.__version__,
         "torch": getattr(torch_mod, "__version__", None) if torch_mod else _torch_version()}
    v["blas"] = _blas_info()
    return v


def _torch_version():
    try:
        from importlib import metadata
        return metadata.version("torch")
    except Exception:
        return None


def thread_info(torch_mod=None):
    import numba
    t = {"numba": numba.get_num_threads(), "numba_threading_layer": None,
         "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE",
                                                "OPENBLAS_L2_SIZE")
                 if os.environ.get(k) is not None}}
    try:
        t["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        t["numba_threading_layer"] = "not initialised (no prange kernel ran)"
    if torch_mod is not None:
        t["torch"] = torch_mod.get_num_threads()
        t["torch_interop"] = torch_mod.get_num_interop_threads()
        t["torch_mkldnn"] = bool(torch_mod.backends.mkldnn.is_available())
    return t


# ============================================================================ model building
def make_weights(cell, D, H, dtype, seed=0):
    """NumPy weights of one recurrent layer: Wx (D, G*H), Wh (H, G*H), b (G*H,)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    Wx = (rng.standard_normal((D, G * H)) / np.sqrt(D)).astype(dtype)
    Wh = (rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(dtype)
    b = (0.1 * rng.standard_normal(G * H)).astype(dtype)
    extra = (0.1 * rng.standard_normal(H)).astype(dtype) if cell == "gru_ra" else None
    return Wx, Wh, b, extra


def make_inputs(size, dtype, seed=1):
    N, T, D, H = size
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((N, T, D)).astype(dtype)
    w = rng.standard_normal((N, T, H)).astype(dtype)
    return xs, w


def make_layer(cell, weights, xp=np):
    """A fastrnn layer for ``cell`` on arrays of module ``xp`` (numpy or cupy)."""
    from fastrnn import layers
    Wx, Wh, b, extra = (None if a is None else xp.asarray(a) for a in weights)
    if cell == "lstm":
        return layers.TimeLSTM(Wx, Wh, b)
    if cell == "gru":
        return layers.TimeGRU(Wx, Wh, b)
    if cell == "gru_ra":
        return layers.TimeGRU(Wx, Wh, b, reset_after=True, b_hn=extra)
    if cell == "rnn":
        return layers.TimeRNN(Wx, Wh, b)
    raise ValueError(cell)


def layer_fns(layer, xs, w):
    def fwd():
        return layer.forward(xs)

    def fwdbwd():
        hs = layer.forward(xs)
        dxs = layer.backward(w)
        return hs, dxs
    return {"fwd": fwd, "fwdbwd": fwdbwd}


class GemmFloor:
    """The matrix products of the design for one cell, with no gate math (xp = numpy or cupy).

    Forward: xw = X @ Wx + b over all N*T rows, then per step h_{t-1} @ Wh (GRU reset-before:
    h_{t-1} @ Wh[:, :2H] and (r*h)_t @ Wh[:, 2H:]). Backward: per step dA_t @ Wh^T (GRU
    reset-before: dA_t[:, 2H:] @ Wh_h^T and dA_t[:, :2H] @ Wh_zr^T), then dWx = X^T dA,
    dWh = Hprev^T dA (GRU: per block, as the layer does), db = sum(dA), dX = dA @ Wx^T.
    The state sequences are fixed random arrays (no recurrence math), the outputs go into
    preallocated buffers."""

    def __init__(self, cell, size, weights, xp=np):
        N, T, D, H = size
        dtype = weights[0].dtype
        rng = np.random.default_rng(2)
        G = GATES[cell]
        self.cell, self.size, self.xp = cell, size, xp
        a = lambda *shape: xp.asarray(rng.standard_normal(shape).astype(dtype))  # noqa: E731
        self.Wx, self.Wh, self.b = (xp.asarray(v) for v in weights[:3])
        self.X = a(T * N, D)
        self.h0 = a(N, H)
        self.hs = a(T, N, H)        # stands for the hidden states
        self.rh = a(T, N, H)        # GRU reset-before: r*h per step
        self.dA = a(T, N, G * H)    # stands for the gate gradients
        self.dhn = a(T, N, H)       # GRU reset-after: recurrent-side candidate gradient
        self.step = xp.empty((N, G * H), dtype)
        self.step_h = xp.empty((N, H), dtype)
        self.dh = xp.empty((N, H), dtype)
        self.drh = xp.empty((N, H), dtype)
        if cell == "gru":
            self.Wh_zr, self.Wh_h = self.Wh[:, :2 * H], self.Wh[:, 2 * H:]
            self.step_zr = xp.empty((N, 2 * H), dtype)

    def forward(self):
        xp, T = self.xp, self.size[1]
        xw = self.X @ self.Wx
        xw += self.b
        for t in range(T):
            h = self.h0 if t == 0 else self.hs[t - 1]
            if self.cell == "gru":
                xp.matmul(h, self.Wh_zr, out=self.step_zr)
                xp.matmul(self.rh[t], self.Wh_h, out=self.step_h)
            else:
                xp.matmul(h, self.Wh, out=self.step)
        return xw

    def backward(self):
        xp = self.xp
        N, T, D, H = self.size
        for t in range(T - 1, -1, -1):
            if self.cell == "gru":
                xp.matmul(self.dA[t, :, 2 * H:], self.Wh_h.T, out=self.drh)
                xp.matmul(self.dA[t, :, :2 * H], self.Wh_zr.T, out=self.dh)
            else:
                xp.matmul(self.dA[t], self.Wh.T, out=self.dh)
        dA2 = self.dA.reshape(T * N, -1)
        dWx = self.X.T @ dA2
        db = dA2.sum(axis=0)
        dX = dA2 @ self.Wx.T
        if self.cell == "gru":
            dWh = xp.empty_like(self.Wh)
            dWh[:, :2 * H] = self._prev_product(self.dA[..., :2 * H])
            dWh[:, 2 * H:] = self.rh.reshape(-1, H).T @ self.dA[..., 2 * H:].reshape(-1, H)
        elif self.cell == "gru_ra":
            dWh = xp.empty_like(self.Wh)
            dWh[:, :2 * H] = self._prev_product(self.dA[..., :2 * H])
            dWh[:, 2 * H:] = self._prev_product(self.dhn)
        else:
            dWh = self._prev_product(self.dA)
        return dWx, dWh, db, dX

    def _prev_product(self, dR):
        """[h0, hs[0], ..., hs[T-2]]^T @ dR without building the stacked matrix."""
        H, K = self.hs.shape[2], dR.shape[2]
        out = self.h0.T @ dR[0]
        if self.hs.shape[0] > 1:
            out += self.hs[:-1].reshape(-1, H).T @ dR[1:].reshape(-1, K)
        return out

    def fns(self):
        def fwdbwd():
            self.forward()
            return self.backward()
        return {"fwd": self.forward, "fwdbwd": fwdbwd}


# ================================================================================ CPU columns
class Column:
    """One thing to time for a (cell, size): ``fns`` maps mode -> callable; ``context`` is entered
    around every block (e.g. ``backend.use``); ``error`` is set when it cannot run."""

    def __init__(self, name, fns=None, context=contextlib.nullcontext, error=None, note=None):
        self.name, self.fns, self.context, self.error, self.note = name, fns, context, error, note


def _backend_available(name):
    from fastrnn import backend
    try:
        backend.load(name)
        return None
    except Exception as e:
        return short_error(e)


def _import_torch():
    try:
        import torch
        return torch
    except Exception:
        return None


def torch_fns(torch, cell, size, dtype, device="cpu"):
    """torch.nn.LSTM / GRU / RNN on ``device``: fwd (no_grad) and fwd+bwd (autograd)."""
    N, T, D, H = size
    tdtype = {"float32": torch.float32, "float64": torch.float64}[np.dtype(dtype).name]
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "gru_ra": torch.nn.GRU,
           "rnn": torch.nn.RNN}[cell]
    torch.manual_seed(0)
    mod = cls(D, H, batch_first=True).to(device=device, dtype=tdtype)
    params = list(mod.parameters())
    xs_np, w_np = make_inputs(size, dtype)
    x = torch.from_numpy(xs_np).to(device)
    x_grad = x.clone().requires_grad_(True)
    w = torch.from_numpy(w_np).to(device)

    def fwd():
        with torch.no_grad():
            return mod(x)[0]

    def fwdbwd():
        for p in params:
            p.grad = None
        x_grad.grad = None
        out = mod(x_grad)[0]
        (out * w).sum().backward()
        return out
    return {"fwd": fwd, "fwdbwd": fwdbwd}


def cpu_columns(cell, size, dtype, wanted, torch):
    from fastrnn import backend
    weights = make_weights(cell, size[2], size[3], dtype)
    xs, w = make_inputs(size, dtype)
    cols = []
    for name in wanted:
        if name in ("reference", "numba"):
            bname = "numpy" if name == "reference" else "numba"
            err = _backend_available(bname)
            if err:
                cols.append(Column(name, error=err))
                continue
            layer = make_layer(cell, weights)
            cols.append(Column(name, layer_fns(layer, xs, w),
                               context=lambda b=bname: backend.use(b)))
        elif name == "torch":
            if torch is None:
                cols.append(Column(name, error="torch is not installed"))
                continue
            note = "torch GRU is the reset-after form" if cell == "gru" else None
            try:
                cols.append(Column(name, torch_fns(torch, cell, size, dtype), note=note))
            except Exception as e:
                cols.append(Column(name, error=short_error(e)))
        elif name == "gemm":
            cols.append(Column(name, GemmFloor(cell, size, weights).fns()))
    return cols


def _as_numpy(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    elif hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":
        a = a.get()
    return np.asarray(a)


def _agreement(fast_out, ref_out, dtype):
    """Max abs difference of (hs, dxs) between a fast backend and the reference, scaled."""
    worst = 0.0
    for a, r in zip(fast_out, ref_out):
        a, r = _as_numpy(a).astype(np.float64), _as_numpy(r).astype(np.float64)
        if a.shape != r.shape:
            return {"max_abs_diff": None, "ok": False, "why": f"shape {a.shape} != {r.shape}"}
        if a.size:
            if not np.isfinite(a).all():
                return {"max_abs_diff": None, "ok": False, "why": "non-finite output"}
            worst = max(worst, float(np.max(np.abs(a - r)) / max(1.0, float(np.max(np.abs(r))))))
    return {"max_abs_diff": worst, "ok": worst <= CHECK_TOL[np.dtype(dtype).name]}


# ============================================================================ the measurement
def run_grid(cells, sizes, modes, make_columns, timer, args, fast, log):
    """Times every column of every (cell, size, mode). ``make_columns(cell, size)`` -> [Column];
    ``timer(fn, args)`` -> durations of one block; ``fast`` is the column checked against
    ``reference`` on the warm-up call. Returns (rows, first_calls)."""
    rows = []
    first_calls = {}
    for cell in cells:
        for size in sizes:
            t_setup = time.perf_counter()
            try:
                cols = make_columns(cell, size)
            except Exception as e:
                log(f"  {cell} {size_label(size)}: setup failed: {short_error(e)}")
                continue
            errors = {c.name: c.error for c in cols if c.error}
            notes = {c.name: c.note for c in cols if c.note}
            live = [c for c in cols if not c.error]
            # warm-up: two fwd+bwd calls per column (compile, thread pools, allocator)
            warm_out = {}
            for c in list(live):
                try:
                    with c.context():
                        t0 = time.perf_counter()
                        warm_out[c.name] = c.fns["fwdbwd"]()
                        first = time.perf_counter() - t0
                        c.fns["fwdbwd"]()
                    first_calls.setdefault(c.name, {}).setdefault(cell, first)
                except Exception as e:
                    errors[c.name] = short_error(e)
                    live.remove(c)
            check = None
            for fname in fast:
                if fname in warm_out and "reference" in warm_out:
                    check = check or {}
                    check[fname] = _agreement(warm_out[fname], warm_out["reference"],
                                              args.dtype)
            for mode in modes:
                samples = {c.name: [] for c in live}
                for _ in range(args.rounds):
                    for c in live:
                        if c.name in errors:
                            continue
                        try:
                            with c.context():
                                samples[c.name] += timer(c.fns[mode], args)
                        except Exception as e:
                            errors[c.name] = short_error(e)
                times = {c.name: (median(samples[c.name]) if c.name not in errors else None)
                         for c in cols}
                kept = {k: v for k, v in samples.items() if k not in errors and v}
                row = {"cell": cell, "mode": mode, "size": dict(zip("NTDH", size)),
                       "label": size_label(size), "times_s": times,
                       "spread": {k: spread(v) for k, v in kept.items()},
                       "samples_s": kept,
                       "errors": {k: v for k, v in errors.items()}, "notes": notes}
                if check:
                    row["check"] = check
                rows.append(row)
            log(f"  {cell:6s} {size_label(size):16s} "
                + "  ".join(f"{c.name}={fmt_ms(r['times_s'].get(c.name))}"
                            for r in rows[-len(modes):] for c in cols if r['mode'] == 'fwdbwd')
                + f"  ({time.perf_counter() - t_setup:.1f}s)")
    return rows, first_calls


def add_ratios(rows, ratio_specs):
    for row in rows:
        t = row["times_s"]
        row["ratios"] = {name: (t[a] / t[b] if t.get(a) and t.get(b) else None)
                         for name, a, b, _ in ratio_specs}


def geomeans(rows, ratio_specs, modes, cells):
    out = {}
    for mode in modes:
        out[mode] = {}
        for name, _, _, _ in ratio_specs:
            vals = [r["ratios"][name] for r in rows if r["mode"] == mode]
            per_cell = {cell: geomean([r["ratios"][name] for r in rows
                                       if r["mode"] == mode and r["cell"] == cell])
                        for cell in cells}
            out[mode][name] = {"all": geomean(vals), "n": sum(v is not None for v in vals),
                               "per_cell": per_cell}
    return out


# ==================================================================================== targets
def _target(name, values, ok, required):
    """values: [(label, value)]; ok(value) -> bool."""
    have = [(lab, v) for lab, v in values if v is not None]
    if not have:
        return {"target": name, "required": required, "status": "not measured", "values": {}}
    failing = {lab: v for lab, v in have if not ok(v)}
    return {"target": name, "required": required, "values": dict(have),
            "status": "pass" if not failing else "FAIL", "failing": failing,
            "missing": [lab for lab, v in values if v is None]}


def cpu_targets(rows, train=None):
    """The performance targets of issue 2 (fwd+bwd rows of lstm, gru, rnn), evaluated."""
    fb = [r for r in rows if r["mode"] == "fwdbwd" and r["cell"] in ("lstm", "gru", "rnn")]
    lab = lambda r: f"{r['cell']} {r['label']}"  # noqa: E731
    out = [
        _target("numba fwd+bwd <= 1.15x GEMMs alone at H >= 256",
                [(lab(r), r["ratios"]["numba_vs_gemm"]) for r in fb if r["size"]["H"] >= 256],
                lambda v: v <= 1.15, "numba/gemm <= 1.15"),
        _target("GRU and RNN no slower than torch",
                [(lab(r), r["ratios"]["torch_speedup"]) for r in fb if r["cell"] != "lstm"],
                lambda v: v >= 1.0, "torch/numba >= 1.0"),
        _target("LSTM at least 0.9x torch",
                [(lab(r), r["ratios"]["torch_speedup"]) for r in fb if r["cell"] == "lstm"],
                lambda v: v >= 0.9, "torch/numba >= 0.9"),
        _target("geometric mean over cells and sizes >= 1.3x faster than torch",
                [("geomean lstm,gru,rnn", geomean([r["ratios"]["torch_speedup"] for r in fb])
                  if any(r["ratios"]["torch_speedup"] for r in fb) else None)],
                lambda v: v >= 1.3, "geomean torch/numba >= 1.3"),
    ]
    if train is not None:
        vals = [(f"V={c['V']} D=H={c['H']}", c.get("speedup")) for c in train.get("configs", [])
                if c["H"] == 100]
        out.append(_target("training step >= 2.5x faster than reference at V=10000, D=H=100",
                           vals, lambda v: v >= 2.5, "reference/numba >= 2.5"))
    return out


def gpu_targets(rows):
    """The performance targets of issue 3 for the default fastrnn cuda column."""
    fb = [r for r in rows if r["mode"] == "fwdbwd"]
    fw = [r for r in rows if r["mode"] == "fwd"]
    lab = lambda r: f"{r['cell']} {r['label']}"  # noqa: E731
    return [
        _target("fwd+bwd >= 3x faster than cuDNN (fp32) at N <= 64",
                [(lab(r), r["ratios"]["cudnn_speedup"]) for r in fb if r["size"]["N"] <= 64],
                lambda v: v >= 3.0, "cudnn_fp32/cuda >= 3"),
        _target("at least as fast as cuDNN at N=256, H=1024",
                [(f"{lab(r)} {r['mode']}", r["ratios"]["cudnn_speedup"]) for r in rows
                 if r["size"]["N"] == 256 and r["size"]["H"] == 1024],
                lambda v: v >= 1.0, "cudnn_fp32/cuda >= 1"),
        _target("forward-only at N=1 >= 5x faster than cuDNN",
                [(lab(r), r["ratios"]["cudnn_speedup"]) for r in fw if r["size"]["N"] == 1],
                lambda v: v >= 5.0, "cudnn_fp32/cuda >= 5"),
        _target(">= 50x faster than the reference backend on CuPy arrays",
                [(f"{lab(r)} {r['mode']}", r["ratios"]["ref_speedup"]) for r in rows],
                lambda v: v >= 50.0, "reference/cuda >= 50"),
    ]


# ====================================================================================== JIT
_JIT_PROBE_SIZE = (2, 3, 4, 5)


def _kernel_cache_stats():
    """Sum of Numba dispatcher cache hits / misses over the modules of fastrnn.kernels."""
    hits = misses = 0
    seen = set()
    paths = set()
    for mname, mod in list(sys.modules.items()):
        if not mname.startswith("fastrnn.kernels") or mod is None:
            continue
        for obj in vars(mod).values():
            stats = getattr(obj, "stats", None)
            if stats is None or id(obj) in seen or not hasattr(obj, "signatures"):
                continue
            seen.add(id(obj))
            try:
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
                if stats.cache_path:
                    paths.add(stats.cache_path)
            except AttributeError:
                continue
    return {"dispatchers": len(seen), "cache_hits": hits, "cache_misses": misses,
            "cache_paths": sorted(paths)}


def _other_op_calls(dtype):
    """First-call closures of the non-recurrent layers: embedding, softmax loss, dropout."""
    from fastrnn import layers
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(2, 3))
    emb = layers.TimeEmbedding(rng.standard_normal((7, 4)).astype(dtype))
    scores = rng.standard_normal((2, 3, 7)).astype(dtype)
    loss = layers.TimeSoftmaxWithLoss()
    drop = layers.TimeDropout(0.5, seed=0)

    def embedding():
        emb.backward(emb.forward(ids))

    def softmax():
        loss.forward(scores, ids)
        loss.backward()

    def dropout():
        drop.backward(drop.forward(scores))
    return {"embedding": embedding, "softmax_loss": softmax, "dropout": dropout}


def jit_probe(cells, dtype):
    """Runs in a fresh interpreter: times importing the Numba backend, the first fwd+bwd layer
    call of each cell (tiny shape) and a second one, then the first call of the embedding,
    softmax-loss and dropout layers. Prints one JSON line."""
    from fastrnn import backend
    res = {"cells": {}, "dtype": dtype}
    t0 = time.perf_counter()
    try:
        backend.load("numba")
    except Exception as e:
        res["error"] = short_error(e)
        print(json.dumps(res))
        return
    res["import_s"] = time.perf_counter() - t0
    xs, w = make_inputs(_JIT_PROBE_SIZE, dtype)
    with backend.use("numba"):
        for cell in cells:
            layer = make_layer(cell, make_weights(cell, _JIT_PROBE_SIZE[2],
                                                  _JIT_PROBE_SIZE[3], dtype))
            fn = layer_fns(layer, xs, w)["fwdbwd"]
            try:
                t0 = time.perf_counter()
                fn()
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                fn()
                res["cells"][cell] = {"first_call_s": first,
                                      "second_call_s": time.perf_counter() - t0}
            except Exception as e:
                res["cells"][cell] = {"error": short_error(e)}
        # the other ops of the backend (the training step uses them)
        for name, fn in _other_op_calls(dtype).items():
            try:
                t0 = time.perf_counter()
                fn()
                res["cells"][name] = {"first_call_s": time.perf_counter() - t0}
            except Exception as e:
                res["cells"][name] = {"error": short_error(e)}
    res["total_first_calls_s"] = sum(c.get("first_call_s", 0.0) for c in res["cells"].values())
    st = _kernel_cache_stats()
    res["numba_cache"] = st
    if st["cache_misses"] == 0 and st["cache_hits"] > 0:
        res["from_cache"] = "yes"
    elif st["cache_hits"] == 0 and st["cache_misses"] > 0:
        res["from_cache"] = "no (compiled)"
    elif st["cache_hits"] or st["cache_misses"]:
        res["from_cache"] = "partly"
    else:
        res["from_cache"] = "unknown (no cached dispatchers found)"
    print(json.dumps(res))


def _child_env(cache_dir=None):
    """(environment, cwd) for a child ``python -m benchmarks.bench_cells`` that imports the same
    fastrnn and benchmarks packages as this process."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import fastrnn
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([pkg_root, root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                          if p]))
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return env, root


def _run_probe(cells, dtype, cache_dir=None, timeout=900):
    env, root = _child_env(cache_dir)
    cmd = [sys.executable, "-m", "benchmarks.bench_cells", "--jit-probe", ",".join(cells),
           "--dtype", dtype]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {timeout}s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"probe exited {p.returncode}: {tail[0][:300]}"}
    res = json.loads(lines[-1])
    res["process_wall_s"] = wall
    return res


def measure_jit(cells, dtype, how, log):
    out = {"probe_size": dict(zip("NTDH", _JIT_PROBE_SIZE)), "how": how}
    if how in ("default", "both"):
        log("JIT: first call in a fresh process (normal on-disk cache) ...")
        out["fresh_process"] = _run_probe(cells, dtype)
    if how in ("cold", "both"):
        with tempfile.TemporaryDirectory(prefix="fastrnn-numba-cache-") as d:
            log("JIT: cold compile in a fresh process (empty NUMBA_CACHE_DIR) ...")
            out["cold_compile"] = _run_probe(cells, dtype, cache_dir=d)
            log("JIT: cache load in a second fresh process ...")
            out["cache_load"] = _run_probe(cells, dtype, cache_dir=d)
    return out


# ===================================================================================== output
def print_table(rows, columns, ratio_specs, modes, geo, title, out=print):
    for mode in modes:
        mrows = [r for r in rows if r["mode"] == mode]
        if not mrows:
            continue
        out("")
        out(f"### {title}: {'forward + backward' if mode == 'fwdbwd' else 'forward only'} "
            f"(median ms)")
        out("")
        head = ["cell", "N x T x D x H"] + [f"{c} ms" for c in columns] + \
            [name for name, *_ in ratio_specs]
        out("| " + " | ".join(head) + " |")
        out("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
        for r in mrows:
            cells = [r["cell"], r["label"]]
            cells += [(fmt_ms(r["times_s"][c]) + ("~" if noisy(r["spread"].get(c)) else ""))
                      if r["times_s"].get(c) is not None
                      else ("err" if c in r["errors"] else "-") for c in columns]
            cells += [fmt_ratio(r["ratios"][name]) for name, *_ in ratio_specs]
            out("| " + " | ".join(cells) + " |")
        g = geo.get(mode, {})
        out("| **geomean** | | " + " | ".join("" for _ in columns) + " | "
            + " | ".join(fmt_ratio(g.get(name, {}).get("all")) for name, *_ in ratio_specs)
            + " |")
    if any(noisy(sp) for r in rows for sp in r["spread"].values()):
        out("")
        out(f"~ noisy: the interquartile range of that column's samples exceeds "
            f"{NOISY_IQR:.0%} of its median (machine busy?)")
    errs = {}
    for r in rows:
        for c, e in r["errors"].items():
            errs.setdefault((c, e), []).append(f"{r['cell']} {r['label']}")
    if errs:
        out("")
        for (c, e), where in errs.items():
            out(f"- column {c} not measured ({len(set(where))} cell/size pairs): {e}")
    notes = {}
    for r in rows:
        if r["mode"] != "fwdbwd":
            continue
        for c, n in r.get("notes", {}).items():
            notes.setdefault((c, n), []).append(f"{r['cell']} {r['label']}")
    for (c, n), where in notes.items():
        out(f"- note, column {c}: {n} ({', '.join(where)})")
    bad = [(r["cell"], r["label"], k, v) for r in rows if r.get("check") and r["mode"] == "fwdbwd"
           for k, v in r["check"].items() if not v["ok"]]
    for cell, label, k, v in bad:
        out(f"- WARNING: {k} disagrees with the reference on {cell} {label}: {v}")


def print_ratio_legend(ratio_specs, out=print):
    out("")
    for name, _, _, meaning in ratio_specs:
        out(f"- {name}: {meaning}")


def print_targets(targets, out=print):
    if not targets:
        return
    out("")
    out("Performance targets (informational; this is a benchmark, not a test):")
    for t in targets:
        extra = ""
        if t["status"] == "FAIL":
            worst = sorted(t["failing"].items(), key=lambda kv: kv[1])
            extra = "; failing: " + ", ".join(f"{k} {v:.2f}" for k, v in worst[:6])
            if len(worst) > 6:
                extra += f" (+{len(worst) - 6} more)"
        out(f"- [{t['status']}] {t['target']} ({t['required']}){extra}")


def print_jit(jit, out=print):
    if not jit:
        return
    out("")
    probe = tuple(jit["probe_size"].values())
    out(f"Numba JIT (first fwd+bwd layer call per cell at N,T,D,H={probe}, then the embedding, "
        f"softmax-loss and dropout layers; fresh process):")
    for key, what in (("fresh_process", "normal cache"), ("cold_compile", "empty cache, compile"),
                      ("cache_load", "cache written by the cold run")):
        r = jit.get(key)
        if r is None:
            continue
        if "error" in r:
            out(f"- {what}: not measured: {r['error']}")
            continue
        per = ", ".join(f"{c} {v['first_call_s']:.2f}s" if "first_call_s" in v else f"{c} error"
                        for c, v in r["cells"].items())
        out(f"- {what}: import (numba + kernels) {r['import_s']:.2f}s, first calls "
            f"{r['total_first_calls_s']:.2f}s ({per}); from cache: {r['from_cache']}")
    inrun = jit.get("in_run_first_call_s")
    if inrun:
        out("- first fwd+bwd call in this benchmark process (first size of each cell, includes "
            "compile or cache load): " + ", ".join(f"{c} {t:.2f}s" for c, t in inrun.items()))


# ======================================================================================== CPU
def run_cpu(args, log):
    cells, dtype = args.cells, args.dtype
    sizes = parse_sizes(args.sizes, CPU_QUICK_GRID if args.quick else CPU_GRID)
    wanted = args.columns
    # With --isolate the parent never imports torch: importing it starts torch's OpenMP
    # runtime in this process, and the training step timed here afterwards ran 68 ms instead
    # of 36 ms (Numba's OpenMP pool then shares torch's runtime, whose workers spin).
    if args.isolate:
        torch = None
        have_torch = _torch_version() is not None
    else:
        torch = _import_torch() if "torch" in wanted else None
        have_torch = torch is not None
    if "torch" in wanted and not have_torch:
        log("torch is not installed: the torch column is left out")
    columns = [c for c in wanted if not (c == "torch" and not have_torch)]
    modes = args.modes

    result = {"schema": SCHEMA, "created": _now(), "argv": args._argv,
              "device": "cpu", "config": _config(args, sizes), "machine": machine_info(),
              "versions": versions(torch), "columns": columns,
              "ratio_definitions": {n: m for n, _, _, m in CPU_RATIOS}}
    result["load_average_start"] = busy_warning(log)
    other_load = OtherLoad()
    jit = None
    if args.jit != "none" and "numba" in columns:
        jit = measure_jit(cells, dtype, args.jit, log)

    log(f"timing {len(cells)} cells x {len(sizes)} sizes x {len(modes)} modes, columns "
        f"{', '.join(columns)}, dtype {dtype}, {args.rounds} round(s)")
    if args.isolate:
        rows, first_calls = run_isolated(args, sizes, columns, log)
    else:
        rows, first_calls = run_grid(
            cells, sizes, modes, lambda cell, size: cpu_columns(cell, size, dtype, columns, torch),
            time_block_cpu, args, fast=("numba",), log=log)
    result["first_call_s"] = first_calls
    add_ratios(rows, CPU_RATIOS)
    geo = geomeans(rows, CPU_RATIOS, modes, cells)
    if jit is not None and "numba" in first_calls:
        jit["in_run_first_call_s"] = first_calls["numba"]
    result.update(rows=rows, geomean=geo, jit=jit, threads=thread_info(torch))

    train = None
    if args.train:
        bench_train = _import_bench_train()
        log("training step (benchmarks.bench_train) ...")
        train = bench_train.run(bench_train.default_configs(args.quick), dtype=dtype,
                                args=args, log=log)
        result["train"] = train
    result["targets"] = cpu_targets(rows, train)
    result["load_average_end"] = load_average()
    result["other_load"] = other_load.report()

    print_table(rows, columns, CPU_RATIOS, modes, geo, f"CPU, {dtype}")
    print_ratio_legend(CPU_RATIOS)
    if train is not None:
        bench_train.print_table(train)
    print_jit(jit)
    print_targets(result["targets"])
    print_machine(result)
    print_other_load(result["other_load"])
    return result


def print_machine(result, out=print):
    m, v = result["machine"], result["versions"]
    la = [result.get("load_average_start"), result.get("load_average_end")]
    la = ", ".join("-" if x is None else f"{x[0]:.2f}" for x in la)
    out("")
    threads = {k: x for k, x in result.get("threads", {}).items() if k != "env"}
    out(f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs; numpy {v['numpy']}, "
        f"numba {v['numba']}, scipy {v['scipy']}, torch {v['torch'] or 'not installed'}; "
        f"threads {json.dumps(threads)}; 1-min load average at start, end: {la}")


def run_isolated(args, sizes, columns, log):
    """--isolate: each column in its own child process, one after the other (no other
    library's thread pools in the process), then the rows merged. Same options otherwise; the
    agreement check against the reference is not available in this mode."""
    env, root = _child_env()
    merged, order, first_calls = {}, [], {}
    for col in columns:
        with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as d:
            out = os.path.join(d, "column.json")
            cmd = [sys.executable, "-m", "benchmarks.bench_cells", "--columns", col,
                   "--cells", ",".join(args.cells),
                   "--sizes", ",".join(size_label(s) for s in sizes),
                   "--modes", ",".join(args.modes), "--dtype", args.dtype,
                   "--rounds", str(args.rounds), "--budget", str(args.budget),
                   "--min-repeat", str(args.min_repeat), "--max-repeat", str(args.max_repeat),
                   "--jit", "none", "--no-train", "--no-isolate", "--out", out]
            if args.repeat:
                cmd += ["--repeat", str(args.repeat)]
            if args.quiet:
                cmd.append("--quiet")
            log(f"column {col} in its own process ...")
            p = subprocess.run(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL)
            if p.returncode != 0 or not os.path.exists(out):
                raise SystemExit(f"bench: the child process for column {col} failed "
                                 f"(exit {p.returncode})")
            with open(out, encoding="utf-8") as f:
                child = json.load(f)
        for name, per_cell in child.get("first_call_s", {}).items():
            first_calls.setdefault(name, {}).update(per_cell)
        for r in child["rows"]:
            key = (r["cell"], r["mode"], r["label"])
            if key not in merged:
                order.append(key)
                merged[key] = {k: r[k] for k in ("cell", "mode", "size", "label")}
                merged[key].update(times_s={}, spread={}, samples_s={}, errors={}, notes={})
            m = merged[key]
            m["times_s"][col] = r["times_s"].get(col)
            for k in ("spread", "samples_s", "errors", "notes"):
                if col in r.get(k, {}):
                    m[k][col] = r[k][col]
    return [merged[k] for k in order], first_calls


def _import_bench_train():
    try:
        from benchmarks import bench_train
    except ImportError:  # this file was run by path, without the benchmarks package importable
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from benchmarks import bench_train
    return bench_train


def _config(args, sizes):
    return {"cells": list(args.cells), "sizes": [dict(zip("NTDH", s)) for s in sizes],
            "modes": list(args.modes), "dtype": args.dtype, "quick": args.quick,
            "rounds": args.rounds, "repeat": args.repeat, "budget_s": args.budget,
            "min_repeat": args.min_repeat, "max_repeat": args.max_repeat, "jit": args.jit,
            "columns_requested": list(getattr(args, "gpu_columns", None) or args.columns),
            "isolate": bool(getattr(args, "isolate", False))}


# ======================================================================================== GPU
def _cuda_strategy_names(cuda_mod):
    names = getattr(cuda_mod, "STRATEGIES", None)
    if names is None:
        names = getattr(getattr(cuda_mod, "planning", None), "STRATEGIES", None)
    return tuple(names or ())


def _cuda_strategy_contexts(cuda_mod):
    """[(label, context factory)] for fastrnn.cuda: the automatic choice ("cuda"), then each
    strategy forced through ``fastrnn.cuda.set_strategy(name)`` ("cuda[persistent]",
    "cuda[graph]"), restoring the previous choice afterwards. Strategy names come from
    ``fastrnn.cuda.planning.STRATEGIES``."""
    out = [("cuda", contextlib.nullcontext)]
    names = _cuda_strategy_names(cuda_mod)
    setter = getattr(cuda_mod, "set_strategy", None)
    getter = getattr(cuda_mod, "get_strategy", None)
    if not names or not callable(setter):
        return out

    def forced(n):
        @contextlib.contextmanager
        def cm():
            previous = getter() if callable(getter) else None
            setter(n)
            try:
                yield
            finally:
                setter(previous)
        return cm
    for n in names:
        out.append((f"cuda[{n}]", forced(n)))
    return out


def _cuda_plans(cuda_mod, cell, size, dtype, labels):
    """What ``fastrnn.cuda.plan`` says each cuda column runs, forward and backward:
    {label: {direction: {"strategy", "reason", "grid", "launches"} or {"error"}}}."""
    plan = getattr(cuda_mod, "plan", None)
    if not callable(plan):
        return None
    N, T, D, H = size
    out = {}
    for label in labels:
        forced = label[5:-1] if label.startswith("cuda[") else None
        out[label] = {}
        for direction in ("forward", "backward"):
            try:
                p = plan(cell, T, N, H, dtype=np.dtype(dtype), direction=direction,
                         strategy=forced)
                out[label][direction] = {k: getattr(p, k, None) for k in
                                         ("strategy", "reason", "grid", "launches", "resident")}
            except Exception as e:
                out[label][direction] = {"error": short_error(e)}
    return out


def _warm_gpu(fn, sync):
    """Untimed synchronized calls (at least one, at least WARM_BLOCK_S seconds); returns the
    wall time of the last one."""
    sync()
    t_start = time.perf_counter()
    for _ in range(50):
        t0 = time.perf_counter()
        fn()
        sync()
        t_one = time.perf_counter() - t0
        if t0 + t_one - t_start >= WARM_BLOCK_S:
            break
    return t_one


def time_block_cupy(cupy):
    def timer(fn, args):
        """One untimed call, then k calls each between two CUDA events on the current stream,
        synchronized after every call (so every call starts on an idle device)."""
        stream = cupy.cuda.get_current_stream()
        with gc_paused():
            k = repeats_for(_warm_gpu(fn, stream.synchronize), args)
            out = []
            for _ in range(k):
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record(stream)
                fn()
                end.record(stream)
                end.synchronize()
                out.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
        return out
    return timer


def time_block_torch(torch):
    def timer(fn, args):
        with gc_paused():
            k = repeats_for(_warm_gpu(fn, torch.cuda.synchronize), args)
            out = []
            for _ in range(k):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end) / 1e3)
        return out
    return timer


@contextlib.contextmanager
def _torch_tf32(torch, on):
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _gpu_unavailable(msg):
    print(f"bench_cells: --device gpu cannot run: {msg}", file=sys.stderr)
    return 2


def run_gpu(args, log):
    try:
        import cupy
    except Exception as e:
        return _gpu_unavailable(f"CuPy is not importable ({type(e).__name__}: {e}); install "
                                f"CuPy for your CUDA (pip install '.[gpu]') on a machine with "
                                f"an NVIDIA GPU")
    try:
        ndev = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return _gpu_unavailable(f"CuPy finds no usable CUDA device ({short_error(e)})")
    if ndev < 1:
        return _gpu_unavailable("CuPy finds no CUDA device")

    from fastrnn import backend
    cells, dtype = args.cells, args.dtype
    sizes = parse_sizes(args.sizes, GPU_QUICK_GRID if args.quick else GPU_GRID)
    modes = args.modes
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    device_info = {"name": name, "id": dev.id, "compute_capability": dev.compute_capability,
                   "count": ndev, "cupy": cupy.__version__,
                   "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                   "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
                   "CUPY_TF32": os.environ.get("CUPY_TF32", "unset (fp32 GEMMs in CuPy)")}

    torch = _import_torch() if "cudnn" in args.gpu_columns else None
    torch_note = None
    if torch is not None and not torch.cuda.is_available():
        torch_note, torch = "torch has no CUDA support here", None
    elif torch is None and "cudnn" in args.gpu_columns:
        torch_note = "torch is not installed"
    if torch is not None:
        device_info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                           cudnn=torch.backends.cudnn.version(),
                           torch_device_name=torch.cuda.get_device_name())

    cuda_err = None
    strategies = [("cuda", contextlib.nullcontext)]
    if "cuda" in args.gpu_columns:
        cuda_err = _backend_available("cuda")
        if cuda_err is None:
            strategies = _cuda_strategy_contexts(backend.load("cuda"))

    cup_timer, torch_timer = time_block_cupy(cupy), (time_block_torch(torch) if torch else None)
    tf32 = {label: {"torch.backends.cuda.matmul.allow_tf32": on,
                    "torch.backends.cudnn.allow_tf32": on}
            for label, on in (("cudnn_fp32", False), ("cudnn_tf32", True))}
    if torch is not None:
        tf32["torch_defaults"] = {
            "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32}

    def make_columns(cell, size):
        weights = make_weights(cell, size[2], size[3], dtype)
        xs_np, w_np = make_inputs(size, dtype)
        xs, w = cupy.asarray(xs_np), cupy.asarray(w_np)
        cols = []
        if "cuda" in args.gpu_columns:
            for label, ctx in strategies:
                if cuda_err:
                    cols.append(Column(label, error=cuda_err))
                    continue
                layer = make_layer(cell, weights, cupy)

                def both(ctx=ctx):
                    return _stack(backend.use("cuda"), ctx())
                cols.append(Column(label, layer_fns(layer, xs, w), context=both))
        if "cudnn" in args.gpu_columns:
            for label, on in (("cudnn_fp32", False), ("cudnn_tf32", True)):
                if torch is None:
                    cols.append(Column(label, error=torch_note))
                    continue
                note = "torch GRU is the reset-after form" if cell == "gru" else None
                fns = torch_fns(torch, cell, size, dtype, device="cuda")
                cols.append(Column(label, fns, context=lambda on=on: _torch_tf32(torch, on),
                                   note=note))
        if "reference" in args.gpu_columns:
            layer = make_layer(cell, weights, cupy)
            cols.append(Column("reference", layer_fns(layer, xs, w),
                               context=lambda: backend.use("numpy")))
        if "gemm" in args.gpu_columns:
            cols.append(Column("gemm", GemmFloor(cell, size, weights, cupy).fns()))
        return cols

    def timer(fn, args_):
        # torch columns carry a torch timer; CuPy ones the CuPy timer (see _GpuFn)
        return fn.timer(fn, args_) if hasattr(fn, "timer") else cup_timer(fn, args_)

    def make_columns_timed(cell, size):
        cols = make_columns(cell, size)
        for c in cols:
            if c.fns and c.name.startswith("cudnn"):
                c.fns = {m: _GpuFn(f, torch_timer) for m, f in c.fns.items()}
        return cols

    columns = [s[0] for s in strategies] if "cuda" in args.gpu_columns else []
    columns += [c for c in ("cudnn_fp32", "cudnn_tf32", "reference", "gemm")
                if c.split("_")[0] in args.gpu_columns]
    result = {"schema": SCHEMA, "created": _now(), "argv": args._argv,
              "device": "gpu", "device_info": device_info, "config": _config(args, sizes),
              "machine": machine_info(), "versions": versions(torch), "columns": columns,
              "ratio_definitions": {n: m for n, _, _, m in GPU_RATIOS},
              "timing": "CUDA events around each call, device synchronized after each call; "
                        "medians", "tf32": dict(tf32, CUPY_TF32=device_info["CUPY_TF32"]),
              "load_average_start": load_average()}
    other_load = OtherLoad()
    log(f"GPU {name}: {len(cells)} cells x {len(sizes)} sizes, columns {', '.join(columns)}")
    rows, first_calls = run_grid(cells, sizes, modes, make_columns_timed, timer, args,
                                 fast=tuple(c for c in columns if c.startswith("cuda")), log=log)
    # first fwd+bwd call per column and cell (first size): NVRTC compile or cache load, graph
    # capture, cuDNN set-up; excluded from the medians
    result["first_call_s"] = first_calls
    if "cuda" in args.gpu_columns and cuda_err is None:
        cmod = backend.load("cuda")
        labels = [s[0] for s in strategies]
        for r in rows:
            plans = _cuda_plans(cmod, r["cell"], tuple(r["size"].values()), dtype, labels)
            if plans is None:
                continue
            r["cuda_plan"] = plans
            for label, dirs in plans.items():
                forced = label[5:-1] if label.startswith("cuda[") else None
                ran = {d: v.get("strategy") for d, v in dirs.items()}
                if forced and any(v not in (None, forced) for v in ran.values()):
                    r["notes"][label] = (f"{forced} was forced but plan() runs "
                                         f"{ran['forward']} forward / {ran['backward']} backward "
                                         f"at this shape")
    add_ratios(rows, GPU_RATIOS)
    geo = geomeans(rows, GPU_RATIOS, modes, cells)
    result.update(rows=rows, geomean=geo, targets=gpu_targets(rows),
                  load_average_end=load_average(), other_load=other_load.report())
    print_table(rows, columns, GPU_RATIOS, modes, geo, f"GPU {name}, {dtype}")
    print_ratio_legend(GPU_RATIOS)
    print_targets(result["targets"])
    print_other_load(result["other_load"])
    return result


class _GpuFn:
    """A callable that carries the timer able to time it (torch events vs CuPy events)."""

    def __init__(self, fn, timer):
        self.fn, self.timer_fn = fn, timer

    def __call__(self):
        return self.fn()

    def timer(self, fn, args):
        return self.timer_fn(self.fn, args)


@contextlib.contextmanager
def _stack(*cms):
    with contextlib.ExitStack() as st:
        for cm in cms:
            st.enter_context(cm)
        yield


# ======================================================================================= main
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_cells",
        description="Time fastrnn recurrent layers against the reference backend, PyTorch and "
                    "the GEMMs-alone floor; print a table, optionally write JSON.")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--cells", default=None,
                   help=f"comma list of {', '.join(CELLS)} (default: all; --quick: lstm,gru,rnn)")
    p.add_argument("--sizes", default=None,
                   help="comma list of NxTxDxH (default: the issue's grid; --quick: a subset)")
    p.add_argument("--modes", default="fwdbwd,fwd", help="comma list of fwdbwd, fwd")
    p.add_argument("--columns", default=None,
                   help="CPU: comma list of reference, numba, torch, gemm (default: all); "
                        "GPU: of cuda, cudnn, reference, gemm")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed calls per column per round (default: fill --budget seconds)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds over the columns (default 2; --quick 1)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timed calls per column per round when --repeat is not given "
                        "(default 0.2; --quick 0.08)")
    p.add_argument("--min-repeat", type=int, default=None,
                   help="at least this many timed calls per block (default 3)")
    p.add_argument("--max-repeat", type=int, default=200)
    # Default on: measured on the 2-core dev machine, once torch had run in the process every
    # later column stalled (LSTM 10x5x100x100: numba 0.6 ms before, 72 ms after; GEMMs alone
    # likewise), the thread pools of torch and OpenBLAS spinning against each other.
    p.add_argument("--isolate", dest="isolate", action="store_true", default=True,
                   help="CPU: time each column in its own child process, one after the other, "
                        "so no library's thread pool disturbs another's (default)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="CPU: run all columns in one process (interleaved rounds; checks "
                        "numba's outputs against the reference)")
    p.add_argument("--quick", action="store_true",
                   help="a fast run (about a minute): fewer sizes, one round, shorter budget")
    p.add_argument("--jit", choices=("default", "cold", "both", "none"), default=None,
                   help="Numba compile-time measurement in fresh processes (default: both; "
                        "--quick: default)")
    p.add_argument("--train", dest="train", action="store_true", default=True,
                   help="also run the training-step benchmark (default)")
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--out", default=None, help="write the results as JSON to this path")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--jit-probe", default=None, help=argparse.SUPPRESS)
    return p


def finish_args(args, argv):
    args._argv = list(sys.argv[1:] if argv is None else argv)
    gpu = args.device == "gpu"
    default_cells = "lstm,gru,rnn" if args.quick else ",".join(CELLS)
    args.cells = parse_list(args.cells or default_cells, CELLS, "cell")
    args.modes = parse_list(args.modes, MODES, "mode")
    if gpu:
        args.gpu_columns = parse_list(args.columns or "cuda,cudnn,reference,gemm",
                                      ("cuda", "cudnn", "reference", "gemm"), "GPU column")
        args.columns = ()
    else:
        args.columns = parse_list(args.columns or ",".join(CPU_COLUMNS), CPU_COLUMNS, "column")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.budget is None:
        args.budget = 0.08 if args.quick else 0.2
    if args.min_repeat is None:
        args.min_repeat = 3
    if args.jit is None:
        args.jit = "default" if args.quick else "both"
    for name in ("repeat", "rounds", "min_repeat", "max_repeat"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise SystemExit(f"bench: --{name.replace('_', '-')} must be >= 1, got {v}")
    return args


def write_json(result, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def main(argv=None):
    args = finish_args(build_parser().parse_args(argv), argv)
    if args.jit_probe is not None:
        jit_probe(parse_list(args.jit_probe, CELLS, "cell"), args.dtype)
        return 0

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if args.device == "gpu":
        result = run_gpu(args, log)
        if isinstance(result, int):
            return result
    else:
        result = run_cpu(args, log)
    result["wall_s"] = time.perf_counter() - t0
    print(f"\n(total {result['wall_s']:.0f} s)")
    if args.out:
        write_json(result, args.out)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
