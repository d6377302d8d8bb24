"""The CUDA backend (fastrnn/cuda).

Three layers, so that most of it runs without a GPU:

1. nvcc compiles every ``.cu`` file under fastrnn/cuda for sm_90 and sm_80, float and double,
   with the options the runtime uses (skipped when nvcc is not on PATH);
2. the pure planning / marshalling logic (fastrnn/cuda/planning.py, compile.py), loaded by path
   so that CuPy is never imported;
3. ``gpu``-marked tests of what only CUDA has: both launch strategies against the reference and
   the graph cache (skipped with a reason when CuPy or a device is absent). Every op's
   equivalence with the reference is the shared suite, tests/test_equivalence.py.
"""
import concurrent.futures
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from tolerances import assert_close

ROOT = pathlib.Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "fastrnn" / "cuda"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))
ARCHS = ("sm_90", "sm_80")
DTYPES = (np.float32, np.float64)


def _load(name):
    """fastrnn/cuda/<name>.py without importing the package (whose __init__ imports CuPy)."""
    spec = importlib.util.spec_from_file_location(f"_fastrnn_cuda_{name}", CUDA_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


planning = _load("planning")
cucompile = _load("compile")


# --------------------------------------------------------------------------- 1. nvcc compiles
def _variants():
    for path in CU_FILES:
        for arch in ARCHS:
            for dtype in DTYPES:
                # The cooperative variant is a superset (it adds the persistent kernels).
                yield path, arch, dtype, path.name == "recurrence.cu"


def _compile_one(path, arch, dtype, cooperative, outdir):
    opts = cucompile.compile_options(dtype, cooperative)
    out = pathlib.Path(outdir) / f"{path.stem}_{arch}_{np.dtype(dtype).name}.cubin"
    cmd = ["nvcc", f"-arch={arch}", "-cubin", "-Xptxas", "-v", *opts, str(path), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return cmd, proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def nvcc_results():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: cannot compile-check the CUDA sources")
    with tempfile.TemporaryDirectory() as tmp:
        workers = max(2, os.cpu_count() or 2)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {v: pool.submit(_compile_one, *v, tmp) for v in _variants()}
            return {v: f.result() for v, f in futures.items()}


def test_cuda_sources_exist():
    names = {p.name for p in CU_FILES}
    assert set(cucompile.SOURCES) <= names, f"compile.SOURCES lists missing files: {names}"


@pytest.mark.parametrize("variant", list(_variants()),
                         ids=lambda v: f"{v[0].name}-{v[1]}-{np.dtype(v[2]).name}")
def test_nvcc_compiles(nvcc_results, variant):
    cmd, rc, log = nvcc_results[variant]
    assert rc == 0, f"{' '.join(cmd)} failed:\n{log}"
    assert "warning" not in log.lower(), f"{' '.join(cmd)} warned:\n{log}"
    if variant[1] == "sm_90":
        spills = re.findall(r"Compiling entry function '(\w+)'.*?(\d+) bytes spill stores", log, re.S)
        bad = [name for name, n in spills if int(n)]
        assert not bad, f"register spills in {bad} ({' '.join(cmd)}):\n{log}"


def test_recurrence_kernels_cover_every_kind():
    text = (CUDA_DIR / "recurrence.cu").read_text()
    for kind in planning.KINDS:
        for d in ("fwd", "bwd"):
            for strategy in ("persist", "step"):
                assert f"{kind}_{d}_{strategy}" in text, f"missing kernel {kind}_{d}_{strategy}"


def test_rec_args_layout_matches_source():
    """planning.REC_ARGS_* must list struct RecArgs and rec_set_args in the source's order."""
    text = (CUDA_DIR / "recurrence.cu").read_text()
    struct = re.search(r"struct RecArgs \{(.*?)\};", text, re.S).group(1)
    struct = re.sub(r"//[^\n]*", "", struct)
    pointers = re.findall(r"(?:real|long long)\*\s*(\w+);", struct)
    ints = [n for decl in re.findall(r"\bint ([\w ,]+);", struct)
            for n in (s.strip() for s in decl.split(","))]
    assert tuple(pointers) == planning.REC_ARGS_POINTERS
    assert tuple(ints) == planning.REC_ARGS_INTS + ("pad0", "pad1")
    params = re.search(r"void rec_set_args\((.*?)\)", text, re.S).group(1)
    names = [p.strip().split()[-1].lstrip("*") for p in params.split(",")]
    assert tuple(names) == ("dst",) + planning.REC_ARGS_POINTERS + planning.REC_ARGS_INTS
    assert planning.REC_ARGS_BYTES == 8 * 15 + 4 * 12


def test_rec_args_byte_layout(tmp_path):
    """nvcc lays struct RecArgs out as the host assumes: 8-byte pointers in REC_ARGS_POINTERS
    order, then int32 fields, REC_ARGS_BYTES in all; lengths is the int64 pointer the contract
    hands over (checked at compile time, so no device is needed)."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: cannot compile-check the CUDA sources")
    pointers, ints = planning.REC_ARGS_POINTERS, planning.REC_ARGS_INTS
    offsets = [(name, 8 * i) for i, name in enumerate(pointers)]
    offsets += [(name, 8 * len(pointers) + 4 * i) for i, name in enumerate(ints)]
    checks = [f'static_assert(__builtin_offsetof(RecArgs, {name}) == {offset}, "{name}");'
              for name, offset in offsets]
    checks += [f'static_assert(sizeof(RecArgs) == {planning.REC_ARGS_BYTES}, "size");',
               "template <class A, class B> struct same { static const bool value = false; };",
               "template <class A> struct same<A, A> { static const bool value = true; };",
               'static_assert(same<decltype(RecArgs::lengths), const long long*>::value &&'
               ' sizeof(long long) == 8, "lengths must be int64");']
    source = tmp_path / "rec_args_layout.cu"
    source.write_text(f'#include "{CUDA_DIR / "recurrence.cu"}"\n' + "\n".join(checks) + "\n")
    cmd, rc, log = _compile_one(source, ARCHS[0], np.float32, False, tmp_path)
    assert rc == 0, f"{' '.join(cmd)} failed:\n{log}"


# -------------------------------------------------------------------------- 2. planning logic
GRID = [(1, 100, 256), (1, 100, 1024), (16, 100, 512), (64, 100, 512), (64, 100, 1024),
        (256, 100, 1024), (20, 35, 650)]


def _invariants(p, device):
    assert p.strategy in planning.STRATEGIES
    assert p.U % 4 == 0 and p.U >= 4
    assert p.ntiles * p.U >= p.H > (p.ntiles - 1) * p.U
    assert p.ngroups * p.rows_per_group >= p.N > (p.ngroups - 1) * p.rows_per_group
    assert p.rows_per_group % 4 == 0 and p.NB % 4 == 0
    Kb, J = planning.product_shape(p.kind, p.direction, p.H, p.U)
    assert p.NB * J <= planning.MAX_TILE_OUTPUTS  # one 4x4 tile per thread at most
    assert 1 <= p.KC <= Kb
    assert p.smem_bytes == planning.smem_elements(Kb, J, p.NB, p.KC, p.resident) * p.itemsize
    assert p.smem_bytes <= device.smem_per_block_optin
    assert p.grid == p.ntiles * p.ngroups
    if p.strategy == "persistent":
        assert p.launches == 1
        assert p.grid <= device.sm_count * planning.default_blocks_per_sm(device, p.smem_bytes)
    else:
        assert not p.resident
        assert p.launches == len(planning.graph_sequence(p.kind, p.direction, p.T))


@pytest.mark.parametrize("kind", planning.KINDS)
@pytest.mark.parametrize("direction", planning.DIRECTIONS)
@pytest.mark.parametrize("itemsize", (4, 8))
def test_plan_benchmark_grid(kind, direction, itemsize):
    device = planning.DeviceInfo()
    for N, T, H in GRID:
        p = planning.choose(kind, direction, T, N, H, itemsize, device=device)
        _invariants(p, device)
        wh_bytes = H * planning.GATES[kind] * H * itemsize
        if N >= planning.PERSISTENT_MAX_N:
            assert p.strategy == "graph", p
        elif p.strategy == "graph":  # rule 4: float64 H=1024 LSTM/GRU, Wh of 24-32 MB
            assert itemsize == 8 and wh_bytes > device.l2_bytes // 2 and "L2" in p.reason, p
        else:
            assert p.strategy == "persistent", p
            # 1 block per SM, one row group: all the small-batch points fit on an H100.
            assert p.grid <= device.sm_count


def test_plan_h1024_fp32_lstm_keeps_wh_on_chip():
    for direction in planning.DIRECTIONS:
        p = planning.choose("lstm", direction, 100, 64, 1024, 4)
        assert p.strategy == "persistent" and p.resident and p.U == 8 and p.grid == 128, p


def test_plan_streams_when_slice_does_not_fit():
    p = planning.choose("gru", "forward", 100, 1, 1024, 8)  # 192 KB slice + staging, 24 MB Wh
    assert p.strategy == "persistent" and not p.resident, p
    p = planning.choose("lstm", "forward", 100, 1, 4096, 4)  # Wh 256 MB > L2 / 2
    assert p.strategy == "graph" and "L2" in p.reason, p


def test_plan_overrides_and_fallbacks():
    p = planning.choose("gru", "backward", 10, 300, 64, 4, strategy="persistent")
    assert p.strategy == "persistent" and "forced" in p.reason
    p = planning.choose("gru", "backward", 10, 3, 64, 4, strategy="graph")
    assert p.strategy == "graph" and p.reason == "forced"
    no_coop = planning.DeviceInfo(cooperative=False)
    p = planning.choose("rnn", "forward", 10, 3, 64, 4, device=no_coop)
    assert p.strategy == "graph" and "cooperative" in p.reason
    with pytest.raises(ValueError, match="persistent"):
        planning.choose("rnn", "forward", 10, 3, 64, 4, device=no_coop, strategy="persistent")
    # The occupancy API says nothing fits: graph, and forcing persistent is an error.
    p = planning.choose("lstm", "forward", 10, 3, 64, 4, blocks_per_sm=lambda smem: 0)
    assert p.strategy == "graph" and "co-resident" in p.reason
    with pytest.raises(ValueError, match="co-resident"):
        planning.choose("lstm", "forward", 10, 3, 64, 4, blocks_per_sm=lambda s: 0,
                        strategy="persistent")


def test_plan_splits_rows_over_spare_blocks():
    device = planning.DeviceInfo(sm_count=8)
    # H=8 -> 2 tiles of 4 units; the 6 spare SMs take row groups of >= 16 rows.
    p = planning.choose("rnn", "forward", 5, 64, 8, 4, device=device,
                        blocks_per_sm=lambda smem: 1)
    assert p.strategy == "persistent" and p.ntiles == 2 and p.ngroups == 4 and p.grid == 8, p
    p = planning.choose("rnn", "forward", 5, 5, 8, 4, device=device, blocks_per_sm=lambda s: 1)
    assert p.ngroups == 1, p


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        planning.choose("transformer", "forward", 1, 1, 1, 4)
    with pytest.raises(ValueError, match="direction"):
        planning.choose("rnn", "sideways", 1, 1, 1, 4)
    with pytest.raises(ValueError, match="itemsize"):
        planning.choose("rnn", "forward", 1, 1, 1, 2)
    with pytest.raises(ValueError, match="T"):
        planning.choose("rnn", "forward", 0, 1, 1, 4)
    with pytest.raises(ValueError, match="strategy"):
        planning.choose("rnn", "forward", 1, 1, 1, 4, strategy="fast")


def test_strategy_names_and_environment():
    assert planning.normalize_strategy(None) is None
    assert planning.normalize_strategy(" AUTO ") is None
    assert planning.normalize_strategy("Graph") == "graph"
    assert planning.env_strategy({}) is None
    assert planning.env_strategy({planning.ENV_STRATEGY: "persistent"}) == "persistent"
    with pytest.raises(ValueError, match=planning.ENV_STRATEGY):
        planning.env_strategy({planning.ENV_STRATEGY: "warp-speed"})


def test_graph_sequence():
    assert planning.graph_sequence("lstm", "forward", 3) == [(0, 0), (1, 0), (2, 0)]
    assert planning.graph_sequence("gru", "forward", 2) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert planning.graph_sequence("gru", "backward", 2) == [(1, 0), (1, 1), (0, 0), (0, 1),
                                                             (-1, 0)]
    assert planning.graph_sequence("rnn", "backward", 1) == [(0, 0), (-1, 0)]


def test_rec_args_marshalling():
    p = planning.choose("lstm", "forward", 7, 3, 37, 4)
    xw, Wh = object(), object()
    args = planning.rec_args(p, dict(xw=xw, Wh=Wh))
    assert len(args) == len(planning.REC_ARGS_POINTERS) + len(planning.REC_ARGS_INTS)
    npointers = len(planning.REC_ARGS_POINTERS)
    assert args[0] is xw and args[1] is Wh and all(a is None for a in args[2:npointers])
    ints = args[npointers:]
    assert all(type(v) is np.int32 for v in ints)  # CuPy passes Python ints as int64
    assert dict(zip(planning.REC_ARGS_INTS, map(int, ints)))["H"] == 37
    assert int(ints[-1]) == int(p.resident)
    with pytest.raises(KeyError, match="bogus"):
        planning.rec_args(p, dict(bogus=xw))
    for (kind, direction), names in planning.REC_ARRAYS.items():
        assert set(names) <= set(planning.REC_ARGS_POINTERS), (kind, direction)
        assert "lengths" in names, (kind, direction)  # null when the caller gives None


def test_elementwise_grid():
    assert planning.elementwise_grid(0, 132) == 0
    assert planning.elementwise_grid(1, 132) == 1
    assert planning.elementwise_grid(10 ** 9, 132) == 132 * 8
    assert planning.elementwise_grid(256 * 5 + 1, 132) == 6


def test_compile_options():
    assert cucompile.compile_options(np.float32) == ("-std=c++17", "-DFASTRNN_REAL=float")
    assert cucompile.compile_options("float64", cooperative=True) == (
        "-std=c++17", "-DFASTRNN_REAL=double", "-DFASTRNN_COOP")
    with pytest.raises(TypeError, match="float32 or float64"):
        cucompile.compile_options(np.int32)
    with pytest.raises(ValueError, match="unknown CUDA source"):
        cucompile.source_path("nope.cu")


def test_planning_and_compile_do_not_import_cupy():
    code = ("import sys, importlib.util as u\n"
            "for n in ('planning', 'compile'):\n"
            f"    s = u.spec_from_file_location(n, r'{CUDA_DIR}/' + n + '.py')\n"
            "    m = u.module_from_spec(s); s.loader.exec_module(m)\n"
            "m.compile_options('float32')\n"
            "import fastrnn\n"
            "assert 'cupy' not in sys.modules, 'cupy imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=300, deadline=None)
    @given(kind=st.sampled_from(planning.KINDS), direction=st.sampled_from(planning.DIRECTIONS),
           T=st.integers(1, 300), N=st.integers(1, 600), H=st.integers(1, 3000),
           itemsize=st.sampled_from((4, 8)), sm_count=st.sampled_from((1, 8, 80, 108, 132)),
           strategy=st.sampled_from((None, "graph")))
    def test_plan_invariants_property(kind, direction, T, N, H, itemsize, sm_count, strategy):
        device = planning.DeviceInfo(sm_count=sm_count)
        p = planning.choose(kind, direction, T, N, H, itemsize, device=device, strategy=strategy)
        _invariants(p, device)


# ------------------------------------------------------------------------------- 3. GPU tests
# Op-by-op equivalence with the reference (every op, dtype, shape and layout) is the shared
# suite in tests/test_equivalence.py, which runs the "cuda" backend like any other. Here: what
# only CUDA has, the two launch strategies and the graph cache.
@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed: GPU tests skipped")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - no driver is as good a reason as no device
        pytest.skip(f"no usable CUDA device: {e}")
    if count < 1:
        pytest.skip("no CUDA device")
    return cupy


@pytest.fixture(scope="module")
def fc(cp):
    import fastrnn.cuda as fc
    return fc


@pytest.fixture(scope="module")
def cuda_backend(cp):
    from conftest import load_backend
    return load_backend("cuda")


@pytest.fixture(params=planning.STRATEGIES)
def strategy(request, fc):
    previous = fc.get_strategy()
    fc.set_strategy(request.param)
    yield request.param
    fc.set_strategy(previous)


def _poison(cp, dtype):
    """Fill pool memory with NaN and free it, so outputs that a kernel leaves unwritten show."""
    block = cp.full((1 << 22,), np.nan, dtype=dtype)
    del block


REC_SHAPES = [(1, 1, 1), (1, 3, 5), (5, 1, 33), (7, 4, 37), (3, 70, 20), (4, 2, 130)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", planning.KINDS)
def test_recurrence_matches_reference_under_each_strategy(cp, fc, cuda_backend, rec, strategy,
                                                          kind, dtype):
    from test_equivalence import check_recurrence
    for T, N, H in REC_SHAPES:
        p = fc.plan(kind, T, N, H, dtype, "forward")
        assert p.strategy == strategy, p
        # Row n runs n mod (T + 1) steps: row 0 is all padding, every length in [0, T] occurs
        # once N > T.
        for lengths in (None, np.arange(N) % (T + 1)):
            _poison(cp, dtype)
            check_recurrence(cuda_backend, rec, kind, dtype, T, N, H, seed=T * N * H,
                             lengths=lengths)


@pytest.mark.gpu
def test_graph_replays_on_new_arrays(cp, fc, cuda_backend, rec):
    """The captured graph is reused for later calls of the same shape with other arrays, and
    other lengths (none, then two different sets): nothing of a call is baked into it."""
    import fastrnn.reference as ref

    def ref_call(name, *a):
        return getattr(ref, name)(*a)

    previous = fc.get_strategy()
    fc.set_strategy("graph")
    try:
        fc.clear_graph_cache()
        runs = (None, np.array([4, 0, 2, 1, 3]), np.array([1, 4, 0, 4, 2]))
        for seed, lengths in enumerate(runs):
            p = rec.inputs("lstm", 4, 5, 19, np.float32, seed)
            got = rec.forward(cuda_backend.call, "lstm", p, lengths)
            want = rec.forward(ref_call, "lstm", p, lengths)
            assert_close(f"lstm graph replay hs, lengths {lengths}", got["hs"], want["hs"],
                         "output")
            dhs = np.ones_like(got["hs"])
            got_b = rec.backward(cuda_backend.call, "lstm", p, got, dhs, lengths)
            want_b = rec.backward(ref_call, "lstm", p, got, dhs, lengths)
            assert_close(f"lstm graph replay dA, lengths {lengths}", got_b["dA"], want_b["dA"],
                         "grad")
        assert len(fc._graphs) == 2  # one forward, one backward graph
    finally:
        fc.set_strategy(previous)


@pytest.mark.gpu
def test_plan_is_visible_and_overridable(cp, fc, monkeypatch):
    p = fc.plan("lstm", 100, 64, 512, np.float32)
    want = fc.planning.choose("lstm", "forward", 100, 64, 512, 4, device=fc.device_info(),
                              blocks_per_sm=fc._occupancy("lstm_fwd_persist", np.float32))
    assert p == want and p.reason, (p, want)
    assert fc.plan("lstm", 100, 64, 512, np.float32, strategy="graph").strategy == "graph"
    previous = fc.get_strategy()
    try:
        fc.set_strategy(None)
        monkeypatch.setenv(planning.ENV_STRATEGY, "graph")
        fc._strategy = fc._UNSET
        assert fc.get_strategy() == "graph"
        assert fc.plan("rnn", 3, 2, 8, np.float64).strategy == "graph"
    finally:
        fc.set_strategy(previous)
    with pytest.raises(ValueError):
        fc.set_strategy("fastest")
