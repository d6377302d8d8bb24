"""Cold start, and step times while competitor processes load the machine.

Load modes: ``idle`` (nothing started), ``busy1`` / ``busy2`` (one / two Python busy loops),
``twin`` (a second process training the same model in a loop). Competitors are started and
stopped by the benchmark: stopped in ``finally`` and at exit, and each also ends by itself when
its parent is gone or after ``MAX_LIFE_S``, so none outlives the run.
"""
import atexit
import json
import subprocess
import sys
import tempfile
import time

from . import harness as hn

MODES = ("idle", "busy1", "busy2", "twin")
MAX_LIFE_S = 900
_BUSY = ("import os, sys, time\n"
         "ppid, end = os.getppid(), time.monotonic() + float(sys.argv[1])\n"
         "while os.getppid() == ppid and time.monotonic() < end:\n"
         "    for _ in range(200000):\n"
         "        pass\n")
_LIVE = set()


def _stop(p):
    if p.poll() is None:
        p.kill()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    _LIVE.discard(p)


@atexit.register
def _stop_all():
    for p in list(_LIVE):
        _stop(p)


class Competitors:
    """Context manager running the competitor processes of one load mode."""

    def __init__(self, mode, twin_cmd=None, env=None, ready_timeout=180):
        self.mode, self.twin_cmd, self.env = mode, twin_cmd, env
        self.ready_timeout, self.procs = ready_timeout, []

    def __enter__(self):
        try:
            if self.mode in ("busy1", "busy2"):
                for _ in range(int(self.mode[-1])):
                    self._start([sys.executable, "-c", _BUSY, str(MAX_LIFE_S)])
            elif self.mode == "twin":
                p = self._start(self.twin_cmd, stdout=subprocess.PIPE)
                self._wait_ready(p)
            elif self.mode != "idle":
                raise ValueError(f"unknown load mode {self.mode!r}; expected {', '.join(MODES)}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, cmd, stdout=subprocess.DEVNULL):
        p = subprocess.Popen(cmd, env=self.env, stdout=stdout, stderr=subprocess.DEVNULL,
                             text=True)
        _LIVE.add(p)
        self.procs.append(p)
        return p

    def _wait_ready(self, p):
        """The twin prints "ready" once warm (compiled, first steps done)."""
        end = time.monotonic() + self.ready_timeout
        while time.monotonic() < end:
            line = p.stdout.readline()
            if line.strip() == "ready":
                return
            if not line and p.poll() is not None:
                raise RuntimeError(f"the competing training exited {p.returncode} before ready")
        raise RuntimeError(f"the competing training was not ready in {self.ready_timeout} s")

    def __exit__(self, *exc):
        for p in self.procs:
            _stop(p)
        self.procs = []
        return False


def steps_under_load(step, modes, seconds, twin_cmd=None, env=None, max_steps=2000):
    """{mode: {median_s, p90_s, n, vs_idle}}: ``step()`` repeated for ``seconds`` in each mode
    (after half a second for the competitors to take their cores)."""
    out = {}
    for mode in modes:
        with Competitors(mode, twin_cmd, env):
            if mode != "idle":
                time.sleep(0.5)
            samples = []
            with hn.gc_paused():
                end = time.perf_counter() + seconds
                while time.perf_counter() < end and len(samples) < max_steps:
                    samples.append(hn.timed(step))
        out[mode] = {"median_s": hn.median(samples), "p90_s": hn.quantile(samples, 0.9),
                     "n": len(samples)}
    idle = out.get("idle", {}).get("median_s")
    for v in out.values():
        v["vs_idle"] = hn.ratio(v["median_s"], idle)
    return out


# A fresh interpreter: import fastrnn, then the first LSTM forward + backward at the size of the
# main job's model (N=32, T=35, D=28, H=256), timed from inside; one JSON line.
_COLD = """
import json, time
t0 = time.perf_counter()
import numpy as np
import fastrnn
from fastrnn.layers import TimeLSTM
t1 = time.perf_counter()
rng = np.random.default_rng(0)
N, T, D, H = 32, 35, 28, 256
f = lambda *s: (rng.standard_normal(s) * 0.1).astype("float32")
layer = TimeLSTM(f(D, 4 * H), f(H, 4 * H), f(4 * H))
layer.backward(layer.forward(f(N, T, D)))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_fwdbwd_s": t2 - t1, "total_s": t2 - t0,
                  "backend": fastrnn.backend.name_for(np.zeros(1, "float32"))}))
"""


def cold_start(env, empty_cache=True, timeout=600):
    """Import + first LSTM fwd+bwd in fresh processes: with the user's Numba cache (as warm as
    earlier runs left it) and, with ``empty_cache``, with an empty one (a fresh install)."""
    out = {}
    cases = [("user_cache", None)] + ([("empty_cache", "empty")] if empty_cache else [])
    for name, cache in cases:
        with tempfile.TemporaryDirectory(prefix="fastrnn-cold-") as d:
            e = dict(env)
            if cache:
                e["NUMBA_CACHE_DIR"] = d
            t0 = time.perf_counter()
            try:
                p = subprocess.run([sys.executable, "-c", _COLD], env=e, capture_output=True,
                                   text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                out[name] = {"error": f"timed out after {timeout} s"}
                continue
            wall = time.perf_counter() - t0
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if p.returncode or not lines:
                tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
                out[name] = {"error": f"exit {p.returncode}: {tail[:300]}"}
                continue
            out[name] = dict(json.loads(lines[-1]), process_wall_s=wall)
    return out


def print_cold(cold, out=print):
    if not cold:
        return
    out("")
    out("Cold start (fresh process: import fastrnn + first LSTM fwd+bwd, N=32 T=35 D=28 H=256):")
    for name, v in cold.items():
        what = {"user_cache": "Numba cache as left by earlier runs",
                "empty_cache": "empty Numba cache (a fresh install)"}[name]
        if "error" in v:
            out(f"- {what}: not measured: {v['error']}")
        else:
            out(f"- {what}: import {v['import_s']:.2f} s + first fwd+bwd "
                f"{v['first_fwdbwd_s']:.2f} s = {v['total_s']:.2f} s (backend {v['backend']}; "
                f"process wall {v['process_wall_s']:.2f} s)")


def print_load(load, out=print):
    if not load:
        return
    out("")
    out("### Training step under load (median / p90 ms, and median vs idle)")
    out("")
    out("| column | model | setting | " + " | ".join(MODES) + " |")
    out("|---|---|---|" + "---:|" * len(MODES))
    for e in load:
        if "error" in e:
            out(f"| {e['column']} | {e['model']} | {e['setting']} | not measured: "
                f"{e['error']} |")
            continue
        cells = []
        for m in MODES:
            v = e["modes"].get(m)
            cells.append("-" if not v or v["median_s"] is None else
                         f"{hn.fmt_ms(v['median_s'])} / {hn.fmt_ms(v['p90_s'])} "
                         f"({hn.fmt_ratio(v['vs_idle'])})")
        out(f"| {e['column']} | {e['model']} | {e['setting']} | " + " | ".join(cells) + " |")
    out("busy1 / busy2: one / two Python busy loops; twin: a second training of the same model.")



