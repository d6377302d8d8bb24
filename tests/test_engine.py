"""What is specific to the compiled CPU engine ("cpu"): instruction-set dispatch, thread-count
independence, the thread-count setting. Its equivalence with the reference is covered, like
every backend's, by the shared backend suite; here each dispatch target the machine can run is
compared with the reference too, since that suite runs only the default target.

Skipped as a whole when the extension was not built (no C compiler at install time)."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tolerances import assert_close, rms

engine = pytest.importorskip("fastrnn.engine", reason="compiled engine not built")
from fastrnn import reference, threads  # noqa: E402
from fastrnn.checks import GATES  # noqa: E402

CELLS = tuple(GATES)
ISAS = ("avx512", "avx2", "portable")


def runnable(isa):
    best = engine._engine.isa()
    try:
        engine.set_isa(isa)
        return True
    except ValueError:
        return False
    finally:
        engine.set_isa(best)


@pytest.fixture
def isa(request):
    if not runnable(request.param):
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    before = engine.isa()
    engine.set_isa(request.param)
    yield request.param
    engine.set_isa(before)


@pytest.fixture
def kc_bytes(request):
    """A product's depth-block size in force for the test: the machine's default (from its L2),
    or the smallest, with which modest shapes pass several depth blocks."""
    engine._engine.set_kc_bytes(request.param)
    yield request.param
    engine._engine.set_kc_bytes(0)


def make(cell, T, N, H, dtype, seed):
    """Inputs of one recurrence: xw (T, N, G*H), Wh (H, G*H), h0, c0 (N, H), b_hn (H,),
    dhs (T, N, H)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    return dict(xw=rng.standard_normal((T, N, G * H)).astype(dtype),
                Wh=(rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(dtype),
                h0=(0.5 * rng.standard_normal((N, H))).astype(dtype),
                c0=(0.5 * rng.standard_normal((N, H))).astype(dtype),
                b_hn=rng.standard_normal(H).astype(dtype),
                dhs=rng.standard_normal((T, N, H)).astype(dtype))


def run(module, cell, a):
    """Forward outputs and backward outputs of ``cell`` through ``module``; the backward pass
    consumes the reference's forward outputs so that each op is compared on its own."""
    xw, Wh, h0, c0, b_hn, dhs = (a[k] for k in ("xw", "Wh", "h0", "c0", "b_hn", "dhs"))
    if cell == "rnn":
        fwd = (module.rnn_forward(xw, Wh, h0),)
        ref = reference.rnn_forward(xw, Wh, h0)
        bwd = module.rnn_backward(dhs, Wh, ref, h0)
    elif cell == "lstm":
        fwd = module.lstm_forward(xw, Wh, h0, c0)
        _, cs, acts = reference.lstm_forward(xw, Wh, h0, c0)
        bwd = module.lstm_backward(dhs, Wh, cs, acts, c0)
    elif cell == "gru":
        fwd = module.gru_forward(xw, Wh, h0)
        hs, acts, _ = reference.gru_forward(xw, Wh, h0)
        bwd = module.gru_backward(dhs, Wh, hs, acts, h0)
    else:
        fwd = module.gru_ra_forward(xw, Wh, b_hn, h0)
        hs, acts, hn = reference.gru_ra_forward(xw, Wh, b_hn, h0)
        bwd = module.gru_ra_backward(dhs, Wh, hs, acts, hn, h0)
    return tuple(fwd), tuple(bwd)


def as64(a):
    return {k: v.astype(np.float64) for k, v in a.items()}


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
# The isa fixture holds for every generated example on purpose.
@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(T=st.integers(1, 5), N=st.integers(1, 13), H=st.integers(1, 37), seed=st.integers(0, 99))
def test_every_dispatch_target_matches_reference(isa, cell, dtype, T, N, H, seed):
    # H up to 37 crosses every vector width (2..16 lanes) with a partial last unit vector.
    a = make(cell, T, N, H, dtype, seed)
    got_f, got_b = run(engine, cell, a)
    ref_f, ref_b = run(reference, cell, as64(a))
    for i, (g, r) in enumerate(zip(got_f, ref_f)):
        assert_close(f"{isa} {cell} forward output {i}", g, r, "output", dtype)
    for i, (g, r) in enumerate(zip(got_b, ref_b)):
        assert_close(f"{isa} {cell} backward output {i}", g, r, "grad", dtype)


def run_layer(module, cell, N, T, D, H, dtype, seed):
    """Layer forward and backward outputs of ``cell`` through ``module`` (the backward pass
    consumes the reference's forward outputs)."""
    from conftest import layer_inputs, run_layer_backward, run_layer_forward
    p = layer_inputs(cell, N, T, D, H, dtype, seed)
    call = lambda name, *a: getattr(module, name)(*a)  # noqa: E731
    fwd = run_layer_forward(call, cell, p)
    ref = run_layer_forward(lambda name, *a: getattr(reference, name)(*a), cell, p)
    dhs = np.random.default_rng(seed).standard_normal((N, T, H)).astype(dtype)
    bwd = run_layer_backward(call, cell, p, ref, dhs)
    return fwd, bwd


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(N=st.integers(1, 13), T=st.integers(1, 4), D=st.integers(1, 40), H=st.integers(1, 37),
       seed=st.integers(0, 99))
@example(N=9, T=2, D=20, H=32, seed=1)  # LSTM: input multiplied inside the steps, Wx in place
@example(N=5, T=4, D=20, H=32, seed=2)  # LSTM: too few rows for that, input projected first
def test_every_dispatch_target_runs_layer_ops_like_the_reference(isa, cell, dtype, N, T, D, H,
                                                                 seed):
    got_f, got_b = run_layer(engine, cell, N, T, D, H, dtype, seed)
    ref_f, ref_b = run_layer(reference, cell, N, T, D, H, np.float64, seed)
    for k in ref_f:
        assert_close(f"{isa} {cell}_layer_forward {k}", got_f[k], ref_f[k], "output", dtype)
    for k in ref_b:  # sums over N*T rows or G*H columns
        assert_close(f"{isa} {cell}_layer_backward {k}", got_b[k], ref_b[k], "grad", dtype,
                     scale=rms(ref_b[k]))


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("kc_bytes", [0, 32768], ids=["kc_default", "kc_32K"], indirect=True)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_backward_over_a_long_depth_matches_the_reference(isa, kc_bytes, cell, dtype):
    # N*T = 703 rows are the depth of the weight products: their transposed A is packed in
    # several runs and (at 32 KB) depth blocks, none a whole number of vectors; H = 45 puts
    # partial vectors inside the gate blocks of the products over G*H columns, whose tiles
    # are 2 or 4 vectors wide by instruction set.
    got_f, got_b = run_layer(engine, cell, 19, 37, 23, 45, dtype, seed=3)
    ref_f, ref_b = run_layer(reference, cell, 19, 37, 23, 45, np.float64, seed=3)
    for k in ref_b:
        assert_close(f"{isa} {cell}_layer_backward {k}", got_b[k], ref_b[k], "grad", dtype,
                     scale=rms(ref_b[k]))


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("kc_bytes", [0, 32768], ids=["kc_default", "kc_32K"], indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
# (700, 300, 2000): with W in Fortran order, dW^T = dy^T x has row items that pack their own
# rows of a transposed A and pass two column chunks, and with small depth blocks several of
# them.
@pytest.mark.parametrize("M,D,V", [(1, 1, 1), (37, 19, 70), (300, 150, 130), (5, 700, 40),
                                   (700, 300, 2000)])
def test_every_dispatch_target_multiplies_like_numpy(isa, kc_bytes, dtype, M, D, V):
    rng = np.random.default_rng(M + D + V)
    x, dy = rng.standard_normal((M, D)).astype(dtype), rng.standard_normal((M, V)).astype(dtype)
    for W in (rng.standard_normal((D, V)).astype(dtype),
              np.asfortranarray(rng.standard_normal((D, V)).astype(dtype))):
        b = rng.standard_normal(V).astype(dtype)
        dW, db = np.empty_like(W), np.empty(V, dtype)
        dx, _, _ = engine.linear_backward(dy, x, W, dW, db)
        for name, got, want, kind in (
                ("linear_forward", engine.linear_forward(x, W, b),
                 x.astype(float) @ W.astype(float) + b, "output"),
                ("linear_backward dx", dx, dy.astype(float) @ W.T.astype(float), "grad"),
                ("linear_backward dW", dW, x.T.astype(float) @ dy.astype(float), "grad"),
                ("linear_backward db", db, dy.astype(float).sum(0), "grad")):
            assert_close(f"{isa} {name}", got, want, kind, dtype, scale=rms(want))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_results_do_not_depend_on_the_thread_count(cell, dtype):
    # The products split their columns or rows over the threads and the recurrence its tiles;
    # every element is summed in an order fixed by the shapes, so results are bit-identical.
    before = threads._num_threads
    try:
        outs = []
        for n in (1, 2, 3, 8):
            threads._num_threads = n
            f, b = run_layer(engine, cell, 24, 5, 150, 130, dtype, seed=5)
            outs.append(list(f.values()) + list(b.values()))
            rng = np.random.default_rng(0)
            x, W = rng.standard_normal((333, 170)).astype(dtype), rng.standard_normal(
                (170, 2000)).astype(dtype)
            outs[-1].append(engine.linear_forward(x, W, np.zeros(2000, dtype)))
            # dx split by rows; dW of a narrow output; a tied dW^T in row items
            for D, V, order in ((40, 300, "C"), (260, 20, "C"), (300, 2000, "F")):
                x, dy = (rng.standard_normal((700, D)).astype(dtype),
                         rng.standard_normal((700, V)).astype(dtype))
                dW, db = np.empty((D, V), dtype, order=order), np.empty(V, dtype)
                outs[-1].extend(engine.linear_backward(dy, x, rng.standard_normal((D, V)).astype(
                    dtype), dW, db))
    finally:
        threads._num_threads = before
    for other in outs[1:]:
        for x, y in zip(outs[0], other):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_results_do_not_depend_on_the_thread_count(cell, dtype):
    # Large enough that the engine really splits the step over several threads; every output
    # element is summed in the same order whatever the split, so results are bit-identical.
    a = make(cell, 4, 24, 200, dtype, seed=7)
    before = threads._num_threads
    try:
        outs = []
        for n in (1, 2, 3, 4, 8):  # 8 threads on fewer cores: items change hands
            threads._num_threads = n
            outs.append(run(engine, cell, a))
    finally:
        threads._num_threads = before
    for other in outs[1:]:
        for x, y in zip(outs[0][0] + outs[0][1], other[0] + other[1]):
            np.testing.assert_array_equal(x, y)


# Sizes for the flat ops that span several blocks (8192 elements) and threads, with a tail.
FLAT_SIZES = (1, 17, 8192 * 9 + 37, 300_001)


def _f64(arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n", FLAT_SIZES)
def test_every_dispatch_target_runs_the_flat_ops_like_the_reference(isa, dtype, n):
    rng = np.random.default_rng(n)
    # the optimizers' list ops: n elements among other arrays, whose blocks are numbered
    # through the list (an empty one and a 0-d one among them)
    shapes = [(3, 5), (n,), (0,), (), (n // 7 + 1, 7)]
    xs = [np.array(rng.standard_normal(s), dtype) for s in shapes]
    ys = [np.array(rng.standard_normal(s), dtype) for s in shapes]
    assert_close(f"{isa} sum_squares", engine.sum_squares(xs), reference.sum_squares(_f64(xs)),
                 dtype=dtype)
    for a, b in ((-0.1, 1.0), (0.7, 0.0), (1.5, -0.25)):
        got, want = [y.copy() for y in ys], _f64(ys)
        engine.axpby(a, xs, b, got)
        reference.axpby(a, _f64(xs), b, want)
        assert_close(f"{isa} axpby a={a} b={b}", got, want, dtype=dtype)
        same = [y.copy() for y in ys]  # xs are ys: the clip's g *= rate
        engine.axpby(a, same, b, same)
        assert_close(f"{isa} axpby in place a={a} b={b}", same,
                     [(a + b) * y for y in _f64(ys)], dtype=dtype)
    nan = [np.full(s, np.nan, dtype) for s in shapes]  # b = 0: ys' old values are not read
    engine.axpby(2.0, xs, 0.0, nan)
    for got, x in zip(nan, xs):
        np.testing.assert_array_equal(got, 2 * x)
    x = xs[1]
    y_ref, m_ref = reference.dropout_forward(x, 0.3, 99)
    y_got, m_got = engine.dropout_forward(x, 0.3, 99)
    np.testing.assert_array_equal(m_got, m_ref)
    np.testing.assert_array_equal(y_got, y_ref)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
# V: under one vector, a whole number of vectors, vectors and a tail (the char LM's 28)
@pytest.mark.parametrize("M,V", [(1, 1), (7, 13), (40, 16), (33, 28), (5, 1000)])
def test_every_dispatch_target_runs_softmax_cross_entropy_like_the_reference(isa, dtype, M, V):
    rng = np.random.default_rng(M * V)
    x = (3 * rng.standard_normal((M, V))).astype(dtype)
    t = rng.integers(-1, V, M)
    loss, dx = engine.softmax_cross_entropy(x, t)
    want_loss, want_dx = reference.softmax_cross_entropy(x.astype(np.float64), t)
    assert_close(f"{isa} softmax_cross_entropy loss", loss, want_loss, "output", dtype)
    assert_close(f"{isa} softmax_cross_entropy dx", dx, want_dx, "grad", dtype)


@pytest.mark.parametrize("q", [5, 3 * 8192 + 5])
def test_axpby_over_overlapping_arrays_runs_as_a_loop_in_order(q):
    # x overlapping its own y is read as it was; x overlapping an earlier y is read after that
    # y's update; a y written twice gets both updates, in order: what the reference's loop does
    rng = np.random.default_rng(q)
    cases = {  # (xs, ys) as views of one buffer of 4q elements
        "x overlaps its y, ahead": lambda b: ([b[5:]], [b[:-5]]),
        "x overlaps its y, behind": lambda b: ([b[:-5]], [b[5:]]),
        "x is an earlier y": lambda b: ([b[:2 * q], b[:2 * q]], [b[:2 * q], b[2 * q:]]),
        "ys overlap": lambda b: ([b[2 * q:], b[:2 * q]], [b[:2 * q], b[q:3 * q]]),
        "the same y twice": lambda b: ([b[2 * q:], b[2 * q:]], [b[:2 * q], b[:2 * q]]),
        "xs overlap, ys apart": lambda b: ([b[:q], b[1:q + 1]], [b[2 * q:3 * q], b[3 * q:]]),
        "apart, one x its y": lambda b: ([b[:q], b[q:2 * q]], [b[:q], b[2 * q:3 * q]]),
    }
    for label, make in cases.items():
        buf = rng.standard_normal(4 * q).astype(np.float32)
        want = buf.astype(np.float64)
        engine.axpby(2.0, make(buf)[0], 0.5, make(buf)[1])
        reference.axpby(2.0, make(want)[0], 0.5, make(want)[1])
        assert_close(f"axpby, {label}", buf, want, dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_flat_ops_do_not_depend_on_the_thread_count(dtype):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(500_003).astype(dtype), rng.standard_normal(500_003).astype(dtype)
    dout, idx = rng.standard_normal((40, 35, 64)).astype(dtype), rng.integers(0, 3000, (40, 35))
    idx[:, :5] = 7  # a row that many ids add to
    before = threads._num_threads
    try:
        outs = []
        for n in (1, 2, 3, 8):
            threads._num_threads = n
            z, w = y.copy(), y[:1000] * 2
            engine.axpby(0.3, [x, x[7:1007]], 0.9, [z, w])
            outs.append([engine.sum_squares([x, y]), z, w, *engine.dropout_forward(x, 0.5, 5),
                         engine.embedding_backward(dout, idx, np.empty((3000, 64), dtype)),
                         engine.softmax_cross_entropy(x[:500_000].reshape(500, 1000),
                                                      idx.reshape(-1)[:500] % 1000)[1]])
    finally:
        threads._num_threads = before
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nt", [1, 2, 3, 8])
def test_a_parallel_loop_completes_when_the_other_threads_never_start(nt):
    # The pool releases a worker that has not started when the caller finishes its part (on a
    # busy machine); the caller must then take over that worker's items, not skip them.
    for n in (1, 5, 64, 1001):
        assert engine._engine.selftest_takeover(n, nt) == n


_BACKWARDS_IN_A_ROW = """
import numpy as np, fastrnn
from fastrnn import engine
from fastrnn.layers import TimeGRU, TimeLSTM
fastrnn.set_num_threads(2)
rng = np.random.default_rng(0)
for make in (TimeLSTM, TimeGRU, lambda *a, **k: TimeGRU(*a, reset_after=True, **k)):
    G = 4 if make is TimeLSTM else 3
    for N, T, D, H in ((20, 35, 200, 200), (24, 5, 150, 130), (3, 40, 28, 256)):
        layer = make((rng.standard_normal((D, G * H)) * 0.1).astype(np.float32),
                     (rng.standard_normal((H, G * H)) * 0.1).astype(np.float32),
                     np.zeros(G * H, np.float32))
        xs = rng.standard_normal((N, T, D)).astype(np.float32)
        dhs = rng.standard_normal((N, T, H)).astype(np.float32)
        for _ in range(60):
            layer.forward(xs)
            layer.backward(dhs)
print("done")
"""


def test_products_that_do_not_meet_between_them_always_finish():
    # A layer backward's products after its recurrence run without a meeting between them, so
    # the last item to finish may belong to an earlier product than the one a sleeping thread
    # waits on; that item must wake it (a lost wake-up hangs the call). In a child process,
    # so that a hang fails the test instead of the run.
    root = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
    e = {k: v for k, v in os.environ.items() if k != "FASTRNN_BACKEND"}
    e["PYTHONPATH"] = root + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _BACKWARDS_IN_A_ROW], capture_output=True,
                       text=True, env=e, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stdout + r.stderr


def test_waking_the_sleeping_pool_ahead_of_an_op_changes_nothing():
    # pool_wake (run before every op) wakes sleeping workers with no region for them: they
    # must spin, sleep again, and still join the next region.
    a = make("lstm", 6, 40, 130, np.float32, seed=4)
    before = threads._num_threads
    try:
        threads._num_threads = 2
        first = run(engine, "lstm", a)
        for _ in range(3):
            time.sleep(0.005)  # past the workers' spin: they sleep on their futex
            engine._engine.pool_wake()
            engine._engine.pool_wake()
        time.sleep(0.005)
        again = run(engine, "lstm", a)
    finally:
        threads._num_threads = before
    for x, y in zip(first[0] + first[1], again[0] + again[1]):
        np.testing.assert_array_equal(x, y)


def test_repeated_calls_are_bit_identical():
    a = make("lstm", 6, 20, 130, np.float32, seed=3)
    first, again = run(engine, "lstm", a), run(engine, "lstm", a)
    for x, y in zip(first[0] + first[1], again[0] + again[1]):
        np.testing.assert_array_equal(x, y)


def test_set_isa_rejects_unknown_and_unsupported_names():
    with pytest.raises(ValueError, match="unknown instruction set"):
        engine.set_isa("sse9")
    engine.set_isa(None)
    assert engine.isa() in ISAS
    for name in ISAS:
        if not runnable(name):
            with pytest.raises(ValueError, match="cannot run"):
                engine.set_isa(name)


def test_nan_in_weights_propagates():
    a = make("lstm", 3, 4, 20, np.float32, seed=1)
    a["Wh"][5, 7] = np.nan
    (hs, cs, acts), _ = run(engine, "lstm", a)
    ref_hs = reference.lstm_forward(a["xw"], a["Wh"], a["h0"], a["c0"])[0]
    np.testing.assert_array_equal(np.isnan(hs), np.isnan(ref_hs))
    assert np.isnan(hs).any()


def test_saturated_gates_match_reference_exactly_at_the_limits():
    # Pre-activations far beyond the saturation points: gates are exactly 0 or 1, as in the
    # reference, so (1 - f) terms vanish exactly instead of leaving tiny values that a large
    # gradient would amplify.
    a = make("lstm", 2, 3, 17, np.float32, seed=2)
    a["xw"] *= 1e4
    (hs, cs, acts), _ = run(engine, "lstm", a)
    ref = reference.lstm_forward(a["xw"], a["Wh"], a["h0"], a["c0"])
    np.testing.assert_array_equal(acts, ref[2])


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values(n):
    with pytest.raises(ValueError, match="positive int"):
        threads.set_num_threads(n)


def test_num_threads_default_follows_omp_num_threads(monkeypatch):
    monkeypatch.setattr(threads, "_num_threads", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.get_num_threads() == 3
    monkeypatch.setattr(threads, "_num_threads", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        threads.get_num_threads()
    monkeypatch.setattr(threads, "_num_threads", None)


def run_lengths(cell, a, lengths):
    """The engine's recurrences with per-row lengths (T, N as in ``a``): forward outputs, then
    backward outputs from those forward outputs."""
    xw, Wh, h0, c0, b_hn, dhs = (a[k] for k in ("xw", "Wh", "h0", "c0", "b_hn", "dhs"))
    if cell == "rnn":
        fwd = (engine.rnn_forward(xw, Wh, h0, lengths),)
        bwd = engine.rnn_backward(dhs, Wh, fwd[0], h0, lengths)
    elif cell == "lstm":
        fwd = engine.lstm_forward(xw, Wh, h0, c0, lengths)
        bwd = engine.lstm_backward(dhs, Wh, fwd[1], fwd[2], c0, lengths)
    elif cell == "gru":
        fwd = engine.gru_forward(xw, Wh, h0, lengths)
        bwd = engine.gru_backward(dhs, Wh, fwd[0], fwd[1], h0, lengths)
    else:
        fwd = engine.gru_ra_forward(xw, Wh, b_hn, h0, lengths)
        bwd = engine.gru_ra_backward(dhs, Wh, fwd[0], fwd[1], fwd[2], h0, lengths)
    return tuple(fwd), tuple(bwd)


@pytest.mark.parametrize("cell", CELLS)
def test_lengths_results_do_not_depend_on_the_thread_count(cell):
    # 24 rows on 2 or 3 threads: the LSTM runs its rows apart (each thread takes whole rows
    # through every step), on 1 thread by tiles; padding included, the results are the same.
    a = make(cell, 5, 24, 70, np.float64, seed=3)
    lengths = np.random.default_rng(3).integers(0, 6, 24).astype(np.int64)
    before = threads._num_threads
    try:
        outs = []
        for n in (1, 2, 3):
            threads._num_threads = n
            fwd, bwd = run_lengths(cell, a, lengths)
            outs.append(fwd + bwd)
    finally:
        threads._num_threads = before
    for other in outs[1:]:
        for x, y in zip(outs[0], other):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=10)
@given(T=st.integers(1, 6), N=st.integers(1, 9), H=st.integers(1, 35), seed=st.integers(0, 99),
       data=st.data())
def test_kernel_lengths_equal_each_row_run_alone(cell, T, N, H, seed, data):
    # Per-row lengths in the kernels (the groundwork of variable-length layers): a row of
    # length L gives what the reference gives for that row alone over its first L steps, and
    # zeros (outputs, activations, gradients) after them.
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)),
                       dtype=np.int64)
    a = make(cell, T, N, H, np.float64, seed)
    fwd, bwd = run_lengths(cell, a, lengths)
    for n, L in enumerate(lengths):
        row = {k: (v[:L, n:n + 1] if v.ndim == 3 else v[n:n + 1] if k in ("h0", "c0") else v)
               for k, v in a.items()}
        got_f = [x[:, n:n + 1] for x in fwd]
        got_b = [x[:, n:n + 1] if x.ndim == 3 else x[n:n + 1] for x in bwd]
        for x in got_f + [x for x in got_b if x.ndim == 3]:
            np.testing.assert_array_equal(x[L:], 0)
        if L == 0:
            for x in got_b:
                np.testing.assert_array_equal(x, 0)
            continue
        ref_f, ref_b = run(reference, cell, row)
        for i, (g, r) in enumerate(zip(got_f, ref_f)):
            assert_close(f"{cell} row {n} forward {i}", g[:L], r, "output")
        for i, (g, r) in enumerate(zip(got_b, ref_b)):
            assert_close(f"{cell} row {n} backward {i}", g[:L] if g.ndim == 3 else g, r, "grad")
