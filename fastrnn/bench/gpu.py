"""The cell benchmark on a GPU (``--device gpu``): fastrnn's CUDA backend vs cuDNN (through torch),
the reference on CuPy arrays and the GEMMs alone (CuPy). This mode has never run: no GPU has been
available to the project.

Columns: ``cuda`` (automatic strategy), ``cuda[persistent]`` / ``cuda[graph]`` (forced with
``fastrnn.cuda.set_strategy``), ``cudnn_fp32`` / ``cudnn_tf32`` (``torch.nn`` on CUDA with TF32
off / on), ``reference`` and ``gemm``. Each column is checked against the host reference before
it is timed (TF32 with a looser bound). Timing: CUDA events around each call on the legacy
default stream, which CuPy and torch both use unless told otherwise, device synchronized after
every call (launch overhead included).
"""
import contextlib
import sys

import numpy as np

from . import columns as cl
from . import harness as hn

GRID = tuple((N, 100, H, H) for N, H in ((1, 256), (1, 1024), (16, 512), (64, 512), (64, 1024),
                                         (256, 1024))) + ((20, 35, 650, 650),)
QUICK_GRID = ((1, 100, 256, 256), (64, 100, 512, 512), (20, 35, 650, 650))
TF32_TOL = 2e-2


def event_block(cupy):
    def block(fn, timing):
        stream = cupy.cuda.get_current_stream()
        stream.synchronize()
        fn()
        stream.synchronize()
        out, k = [], timing.repeat or timing.min_repeat
        with hn.gc_paused():
            for _ in range(k if timing.repeat else timing.max_repeat):
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record(stream)
                fn()
                end.record(stream)
                end.synchronize()
                out.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
                if not timing.repeat and len(out) >= k and sum(out) >= timing.budget:
                    break
        return out
    return block


@contextlib.contextmanager
def _tf32(torch, on):
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _strategy(cuda_mod, name):
    @contextlib.contextmanager
    def forced():
        previous = cuda_mod.get_strategy()
        cuda_mod.set_strategy(name)
        try:
            yield
        finally:
            cuda_mod.set_strategy(previous)
    return forced


def builder(cupy):
    def build(name, cell, size, dtype):
        from fastrnn import backend
        weights = cl.make_weights(cell, size[2], size[3], dtype)
        xs, w = cl.make_inputs(size, dtype)
        lengths = cl.make_lengths(size)
        if name == "gemm":
            return cl.GemmFloor(cell, size, weights, cupy).fns(), contextlib.nullcontext, None
        if name.startswith("cudnn"):
            import torch
            fns = cl.torch_fns(cell, weights, xs, w, device="cuda", lengths=lengths)
            return (fns, lambda: _tf32(torch, name.endswith("tf32")),
                    "gru_ra" if cell == "gru" else cell)
        layer = cl.make_layer(cell, weights, cupy)
        fns = cl.layer_fns(layer, cupy.asarray(xs), cupy.asarray(w), lengths)
        if name == "reference":
            return fns, lambda: backend.use("numpy"), None
        cuda_mod = backend.load("cuda")
        forced = _strategy(cuda_mod, name[5:-1]) if name.startswith("cuda[") else \
            contextlib.nullcontext

        @contextlib.contextmanager
        def both():
            with backend.use("cuda"), forced():
                yield
        return fns, both, cell
    return build


def peak(cupy, dtype, n=8192, tries=5):
    a, b = (cupy.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(dtype))
            for _ in range(2))
    best = min(event_block(cupy)(lambda: a @ b, hn.Timing(repeat=tries)))
    return {"n": n, "dtype": dtype, "best_s": best, "gflops": 2 * n ** 3 / best / 1e9}


def run(a, log):
    """The GPU grid; returns (result dict, column names) or an exit status when no GPU."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as e:
        print(f"bench: --device gpu cannot run: {hn.short_error(e)} (needs CuPy, "
              f"pip install '.[gpu]', and an NVIDIA GPU)", file=sys.stderr)
        return 2
    from fastrnn import backend
    names = ["cuda"]
    try:
        names += [f"cuda[{s}]" for s in backend.load("cuda").planning.STRATEGIES]
    except Exception as e:
        log(f"cuda backend: {hn.short_error(e)}")
    names += ["cudnn_fp32", "cudnn_tf32", "reference", "gemm"]
    sizes = a.sizes if a.sizes_given else (QUICK_GRID if a.quick else GRID)
    p = peak(cupy, a.dtype)
    build, block = builder(cupy), event_block(cupy)
    per_col = {}
    for name in names:
        log(f"column {name} ...")
        per_col[name] = cl.measure(name, a.cells, sizes, a.modes, a.dtype, a.timing, log,
                                   builder=build, block=block,
                                   tol=TF32_TOL if name == "cudnn_tf32" else None)
    dev = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    from . import report
    return {"device": dev["name"].decode() if isinstance(dev["name"], bytes) else dev["name"],
            "peak": p, "rows": report.merge(per_col, "gpu", p["gflops"],
                                            fast=[n for n in names if n.startswith("cuda")],
                                            rival="cudnn_fp32")}, names


def targets(rows):
    """The CUDA backend's targets against cuDNN fp32 (column ``cuda``, automatic strategy)."""
    from .report import target
    v = lambda r: r["ratios"]["cuda_vs_cudnn_fp32"]  # noqa: E731
    lab = lambda r: f"{r['cell']} {r['label']} {r['mode']}"  # noqa: E731
    ref = lambda r: hn.ratio(r["times_s"].get("reference"), r["times_s"].get("cuda"))  # noqa
    return [
        target("cuda fwd+bwd >= 3x cuDNN (fp32) at N <= 64",
               [(lab(r), v(r), (v(r) or 0) >= 3) for r in rows
                if r["mode"] == "fwdbwd" and r["size"]["N"] <= 64]),
        target("cuda at least as fast as cuDNN at N=256, H=1024",
               [(lab(r), v(r), (v(r) or 0) >= 1) for r in rows
                if r["size"]["N"] == 256 and r["size"]["H"] == 1024]),
        target("cuda forward-only at N=1 >= 5x cuDNN",
               [(lab(r), v(r), (v(r) or 0) >= 5) for r in rows
                if r["mode"] == "fwd" and r["size"]["N"] == 1]),
        target("cuda >= 50x the reference on CuPy arrays",
               [(lab(r), ref(r), (ref(r) or 0) >= 50) for r in rows]),
    ]
