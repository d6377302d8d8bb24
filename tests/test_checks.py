"""Bad input to every op of every backend, non-contiguous input, and backend selection.

Input errors (the checks declared in fastrnn.contract): wrong rank or shape is a
ValueError naming the expected and the actual shape; mismatched or integer dtypes a TypeError
naming the dtypes; ids outside [0, V), labels outside [-1, V), dropout ratios outside [0, 1) a
ValueError. Slices and transposes give the same result as the contiguous call.
"""
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
import fastrnn.backend as fb
import fastrnn.reference as R
from fastrnn import contract
from conftest import layout
from tolerances import assert_close

CELLS = contract.CELLS
T, N, H = 2, 3, 4  # distinct, so every shape in a message is unambiguous


def recurrence_env(rec, cell):
    """Every argument of the forward and the backward op of ``cell``, by name (float64)."""
    p = rec.inputs(cell, T, N, H, np.float64, 1)
    fwd = rec.forward(lambda name, *a: getattr(R, name)(*a), cell, p)
    dhs = np.random.default_rng(2).standard_normal((T, N, H))
    return dict(p, **fwd, dhs=dhs)


def recurrence_ops(rec, cell):
    return [(f"{cell}_forward", rec.FORWARD_ARGS[cell]),
            (f"{cell}_backward", rec.BACKWARD_ARGS[cell])]


def expect_error(backend, exc, op, args, *mentions):
    """``op(*args)`` on ``backend`` raises ``exc`` whose message contains every mention."""
    with pytest.raises(exc) as info:
        backend.call(op, *args)
    msg = str(info.value)
    for m in mentions:
        assert str(m) in msg, f"{backend.name} {op}: message {msg!r} does not mention {m!r}"
    return msg


def replaced(env, names, name, value):
    return [value if n == name else env[n] for n in names]


# ---------------------------------------------------------------------------- recurrences
@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_wrong_rank(backend, rec, cell):
    env = recurrence_env(rec, cell)
    for op, names in recurrence_ops(rec, cell):
        first = names[0]
        bad = env[first][0]  # 3-D -> 2-D
        expect_error(backend, ValueError, op, replaced(env, names, first, bad), first, "3-D",
                     bad.shape)
        bad = env["Wh"][0]  # 2-D -> 1-D
        expect_error(backend, ValueError, op, replaced(env, names, "Wh", bad), "Wh", bad.shape)
        for name in names:  # an extra leading axis on any argument
            bad = env[name][None]
            expect_error(backend, ValueError, op, replaced(env, names, name, bad), name, bad.shape)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_wrong_shape_names_expected_and_actual(backend, rec, cell):
    env = recurrence_env(rec, cell)
    for op, names in recurrence_ops(rec, cell):
        for name in names:
            good = env[name]
            bad = np.zeros(good.shape[:-1] + (good.shape[-1] + 1,))
            expect_error(backend, ValueError, op, replaced(env, names, name, bad), name,
                         tuple(good.shape), tuple(bad.shape))
        if "h0" in names:  # wrong batch size of the state
            bad = np.zeros((N + 1, H))
            expect_error(backend, ValueError, op, replaced(env, names, "h0", bad), "h0",
                         (N, H), (N + 1, H))


@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_mismatched_dtypes(backend, rec, cell):
    env = recurrence_env(rec, cell)
    for op, names in recurrence_ops(rec, cell):
        for name in names:
            bad = env[name].astype(np.float32)
            expect_error(backend, TypeError, op, replaced(env, names, name, bad),
                         "float32", "float64")


@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_integer_or_non_array_input(backend, rec, cell):
    env = recurrence_env(rec, cell)
    for op, names in recurrence_ops(rec, cell):
        for name in names:
            bad = np.ones(env[name].shape, np.int64)
            expect_error(backend, TypeError, op, replaced(env, names, name, bad), "int64")
            bad = np.ones(env[name].shape, np.float16)
            expect_error(backend, TypeError, op, replaced(env, names, name, bad), "float16")
        # a whole call in int: the first argument is reported
        expect_error(backend, TypeError, op, [np.ones(env[n].shape, np.int32) for n in names],
                     names[0], "int32")
        expect_error(backend, TypeError, op,
                     replaced(env, names, names[0], env[names[0]].tolist()), names[0])


# ------------------------------------------------------------------------------ embedding
def test_embedding_ids_out_of_range(backend):
    V, D = 5, 3
    W = np.ones((V, D))
    for bad in (V, -1, 10 ** 9):
        idx = np.array([[0, 1], [bad, 2]])
        expect_error(backend, ValueError, "embedding_forward", [W, idx], "idx", f"[0, {V})", bad)
        expect_error(backend, ValueError, "embedding_backward",
                     [np.ones((2, 2, D)), idx, np.zeros((V, D))], "idx", f"[0, {V})", bad)


def test_embedding_bad_types_and_shapes(backend):
    V, D = 5, 3
    W = np.ones((V, D))
    idx = np.array([[0, 1, 4]])
    expect_error(backend, TypeError, "embedding_forward", [W, idx.astype(np.float64)], "idx")
    expect_error(backend, TypeError, "embedding_forward", [W.astype(np.int64), idx], "W", "int64")
    expect_error(backend, ValueError, "embedding_forward", [W[0], idx], "W", (D,))
    dW = np.zeros((V, D))
    expect_error(backend, ValueError, "embedding_backward", [np.ones((1, 3, D + 1)), idx, dW],
                 "dout", (1, 3, D), (1, 3, D + 1))
    expect_error(backend, ValueError, "embedding_backward", [np.ones((3, 1, D)), idx, dW],
                 "dout", (1, 3, D), (3, 1, D))
    expect_error(backend, TypeError, "embedding_backward",
                 [np.ones((1, 3, D), np.float32), idx, dW], "float32", "float64")
    expect_error(backend, TypeError, "embedding_backward",
                 [np.ones((1, 3, D)), idx.astype(np.float32), dW], "idx")


def test_embedding_backward_rejects_non_contiguous_dW(backend):
    """dW is written in place: a strided dW cannot be silently replaced by a copy."""
    V, D = 4, 3
    idx = np.array([[0, 3]])
    base = backend.asarray(np.zeros((V, 2 * D)))
    with pytest.raises(ValueError, match="contiguous"):
        backend.op("embedding_backward")(backend.asarray(np.ones((1, 2, D))),
                                         backend.asarray(idx), base[:, ::2])


def test_embedding_backward_rejects_read_only_dW(backend):
    if backend.xp is not np:
        pytest.skip("only NumPy arrays can be read-only")
    dW = np.zeros((4, 3))
    dW.flags.writeable = False
    expect_error(backend, ValueError, "embedding_backward", [np.ones((1, 2, 3)),
                                                             np.array([[0, 3]]), dW],
                 "embedding_backward", "dW", "writeable")


# ------------------------------------------------------------------ softmax cross-entropy
def test_softmax_labels_out_of_range(backend):
    M, V = 4, 6
    x = np.zeros((M, V))
    for bad in (-2, V, 100):
        t = np.array([0, bad, -1, 5])
        expect_error(backend, ValueError, "softmax_cross_entropy", [x, t], "t", f"[-1, {V})", bad)


def test_softmax_bad_types_and_shapes(backend):
    M, V = 4, 6
    x = np.zeros((M, V))
    t = np.array([0, 1, -1, 5])
    expect_error(backend, TypeError, "softmax_cross_entropy", [x.astype(np.int64), t], "x")
    expect_error(backend, TypeError, "softmax_cross_entropy", [x, t.astype(np.float64)], "t")
    expect_error(backend, ValueError, "softmax_cross_entropy", [x[0], t], "x", (V,))
    expect_error(backend, ValueError, "softmax_cross_entropy", [x, t[:3]], "t", (M,), (3,))
    expect_error(backend, ValueError, "softmax_cross_entropy", [x, t[:, None]], "t", (M,),
                 (M, 1))
    # no classes at all: a clear error on every backend (not a reduction error or a stray read)
    expect_error(backend, ValueError, "softmax_cross_entropy",
                 [np.zeros((M, 0)), np.full(M, -1)], "x", (M, 0))


# -------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, math.nan, math.inf])
def test_dropout_ratio_outside_unit_interval(backend, ratio):
    expect_error(backend, ValueError, "dropout_forward", [np.ones((2, 3)), ratio, 0], "ratio")


def test_dropout_bad_input(backend):
    expect_error(backend, TypeError, "dropout_forward", [np.ones((2, 3), np.int64), 0.5, 0], "x")
    for seed in (-1, 2 ** 64):
        expect_error(backend, ValueError, "dropout_forward", [np.ones((2, 3)), 0.5, seed], "seed")
    for seed in (1.5, "7", None, np.array([1, 2]), True):
        expect_error(backend, TypeError, "dropout_forward", [np.ones((2, 3)), 0.5, seed],
                     "dropout_forward: seed must be an integer")
    for ratio in ("0.5", None, np.array([0.1, 0.2])):
        expect_error(backend, TypeError, "dropout_forward", [np.ones((2, 3)), ratio, 0],
                     "dropout_forward: ratio must be a real number")


def test_softmax_grad_flag_must_be_bool(backend):
    expect_error(backend, TypeError, "softmax_cross_entropy",
                 [np.zeros((2, 3)), np.array([0, 1]), "yes"], "grad", "True or False")


def test_a_call_like_one_that_passed_still_has_its_values_checked(backend):
    """check() remembers the argument signatures (dtypes, shapes, strides, writeability) that
    passed; a later call with the same signature still has its ids, labels and scalars
    checked, and a changed writeability is checked again."""
    from fastrnn import checks
    V, D = 5, 3
    W, good = np.ones((V, D)), np.array([[0, 1], [4, 2]])
    backend.call("embedding_forward", W, good)
    if backend.xp is np:  # (CuPy arrays always take the whole check)
        assert checks._PASSED.get("embedding_forward"), "the passing signature was not kept"
    expect_error(backend, ValueError, "embedding_forward", [W, np.array([[0, 1], [V, 2]])],
                 "idx", f"[0, {V})", V)
    x, t = np.zeros((4, 6)), np.array([0, 1, -1, 5])
    backend.call("softmax_cross_entropy", x, t, True)
    expect_error(backend, ValueError, "softmax_cross_entropy", [x, np.array([0, 6, -1, 5]), True],
                 "t", "[-1, 6)", 6)
    expect_error(backend, TypeError, "softmax_cross_entropy", [x, t, np.True_ + 1], "grad")
    backend.call("dropout_forward", np.ones((2, 3)), 0.5, 0)
    expect_error(backend, ValueError, "dropout_forward", [np.ones((2, 3)), 1.5, 0], "ratio")
    expect_error(backend, ValueError, "dropout_forward", [np.ones((2, 3)), 0.5, -1], "seed")
    if backend.xp is np:
        dW, dout = np.zeros((V, D)), np.ones((2, 2, D))
        backend.call("embedding_backward", dout, good, dW)
        dW.flags.writeable = False
        expect_error(backend, ValueError, "embedding_backward", [dout, good, dW], "dW",
                     "writeable")


def test_list_arguments_bad_lists(backend):
    x, y = np.ones((2, 3)), np.ones((2, 3))
    expect_error(backend, TypeError, "sum_squares", [x], "xs", "list or tuple", "ndarray")
    expect_error(backend, ValueError, "sum_squares", [[]], "xs", "at least one")
    expect_error(backend, TypeError, "sum_squares", [[x, [1.0]]], "xs[1]", "NumPy or CuPy")
    expect_error(backend, TypeError, "sum_squares", [[x, x.astype(np.float32)]], "xs[1]",
                 "float32", "float64")
    expect_error(backend, TypeError, "axpby", [1.0, [x, x.astype(np.int32)], 1.0, [y, y]],
                 "xs[1]", "int32")
    expect_error(backend, TypeError, "axpby", [1.0, [x], 1.0, [y.astype(np.float32)]], "ys[0]",
                 "float32")
    expect_error(backend, ValueError, "axpby", [1.0, [x], 1.0, [y, y]], "xs", "2 arrays", "1")
    expect_error(backend, ValueError, "axpby", [1.0, [x, np.ones((3, 2))], 1.0, [y, y]],
                 "xs[1]", "(2, 3)", "(3, 2)")
    expect_error(backend, TypeError, "axpby", [1.0, [x], "2", [y]], "b", "real number")
    if backend.xp is np:  # (CuPy arrays are always writeable)
        ro = np.ones(3)
        ro.flags.writeable = False
        expect_error(backend, ValueError, "axpby", [1.0, [np.ones(3)], 0.0, [ro]], "ys[0]",
                     "writeable")
        expect_error(backend, ValueError, "axpby", [1.0, [np.ones(3)], 0.0, [np.ones(6)[::2]]],
                     "ys[0]", "C-contiguous")


def test_wrong_argument_count_names_the_op(backend):
    with pytest.raises(TypeError, match=r"rnn_forward: .*rnn_forward\(xw, Wh, h0, lengths=None\)"):
        backend.op("rnn_forward")(np.zeros((1, 1, 1)), np.zeros((1, 1)))


# ---------------------------------------------------------------- non-contiguous input
def strided(backend, a, kind):
    """A non-contiguous device view equal to the NumPy array ``a`` (conftest.layout)."""
    v = layout(backend.xp, a, kind)
    if a.ndim > 1 or kind == "strided":
        assert not v.flags.c_contiguous
    np.testing.assert_array_equal(backend.asnumpy(v), a)
    return v


def call_raw(backend, op, args):
    return backend.asnumpy(backend.op(op)(*args))


@pytest.mark.parametrize("kind", ["fortran", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_non_contiguous_equals_contiguous(backend, rec, cell, dtype, kind):
    env = {k: v.astype(dtype) for k, v in recurrence_env(rec, cell).items()}
    for op, names in recurrence_ops(rec, cell):
        want = call_raw(backend, op, [backend.asarray(env[n]) for n in names])
        got = call_raw(backend, op, [strided(backend, env[n], kind) for n in names])
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(f"{backend.name} {op} output {i} ({kind} inputs)", g, w,
                         "output" if op.endswith("forward") else "grad")


@pytest.mark.parametrize("kind", ["fortran", "strided"])
def test_other_ops_non_contiguous_equal_contiguous(backend, kind, rng):
    V, D, M = 7, 5, 6
    W = rng.standard_normal((V, D))
    idx = rng.integers(0, V, (3, 4))
    dout = rng.standard_normal((3, 4, D))
    # embedding
    want = call_raw(backend, "embedding_forward", [backend.asarray(W), backend.asarray(idx)])
    got = call_raw(backend, "embedding_forward", [strided(backend, W, kind),
                                                  strided(backend, idx, kind)])
    np.testing.assert_array_equal(got, want)
    dW1, dW2 = backend.asarray(np.empty((V, D))), backend.asarray(np.empty((V, D)))
    backend.op("embedding_backward")(backend.asarray(dout), backend.asarray(idx), dW1)
    backend.op("embedding_backward")(strided(backend, dout, kind), strided(backend, idx, kind), dW2)
    assert_close(f"embedding_backward dW ({kind} inputs)", backend.asnumpy(dW2),
                 backend.asnumpy(dW1), "grad")
    # softmax cross-entropy
    x = 3 * rng.standard_normal((M, V))
    t = np.array([0, -1, 6, 2, 2, -1])
    want = call_raw(backend, "softmax_cross_entropy", [backend.asarray(x), backend.asarray(t)])
    got = call_raw(backend, "softmax_cross_entropy", [strided(backend, x, kind),
                                                      strided(backend, t, kind)])
    assert_close(f"softmax loss ({kind} inputs)", got[0], want[0])
    assert_close(f"softmax dx ({kind} inputs)", got[1], want[1], "grad")
    # dropout: the mask follows the flat (C-order) index of the logical array
    x = rng.standard_normal((6, 9))
    want = call_raw(backend, "dropout_forward", [backend.asarray(x), 0.4, 17])
    got = call_raw(backend, "dropout_forward", [strided(backend, x, kind), 0.4, 17])
    np.testing.assert_array_equal(got[1], want[1])
    assert_close(f"dropout y ({kind} inputs)", got[0], want[0])


# ------------------------------------------------------------------------- backend selection
@pytest.fixture
def fresh_backend_state(monkeypatch):
    """Undecided backend choice (as at import), restored after the test."""
    monkeypatch.setattr(fb, "_default", fb._UNSET)
    monkeypatch.delenv("FASTRNN_BACKEND", raising=False)
    return monkeypatch


def test_set_backend_unknown_name(fresh_backend_state):
    fb.set_backend(None)
    with pytest.raises(ValueError, match="bogus") as info:
        fastrnn.set_backend("bogus")
    for name in ("numpy", "numba", "cuda"):
        assert name in str(info.value), f"message {info.value} does not list {name!r}"
    assert fastrnn.get_backend() is None, "a failed set_backend must not change the choice"


def _automatic_cpu_backend():
    """The compiled engine where it was built, else the Numba kernels."""
    return "cpu" if importlib.util.find_spec("fastrnn.engine._engine") is not None else "numba"


def test_automatic_choice_and_set_backend(fresh_backend_state):
    x = np.zeros(3)
    assert fastrnn.get_backend() is None
    assert fb.name_for(x) == _automatic_cpu_backend()
    fastrnn.set_backend("numpy")
    assert fastrnn.get_backend() == "numpy"
    assert fb.ops_for(x) is R
    fastrnn.set_backend(None)
    assert fastrnn.get_backend() is None and fb.name_for(x) == _automatic_cpu_backend()


def test_set_backend_numba(fresh_backend_state):
    try:
        import fastrnn.kernels as K
    except ImportError as e:
        pytest.skip(f"fastrnn.kernels cannot be imported: {e}")
    fastrnn.set_backend("numba")
    assert fb.ops_for(np.zeros(1)) is K


def test_set_backend_cuda_without_cupy_is_an_error(fresh_backend_state):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("cupy is installed here; this checks the error where it is not")
    with pytest.raises(ValueError, match="cuda"):
        fastrnn.set_backend("cuda")
    assert fastrnn.get_backend() is None


def test_forced_backend_rejects_the_wrong_array_type(fresh_backend_state):
    fresh_backend_state.setattr(fb, "_default", "cuda")
    with pytest.raises(ValueError, match="NumPy"):
        fb.name_for(np.zeros(2))


def test_numba_backend_with_cupy_array_is_an_error(fresh_backend_state):
    cupy = pytest.importorskip("cupy", reason="cupy is not installed")
    try:
        a = cupy.zeros(3)
    except Exception as e:
        pytest.skip(f"no usable CUDA device: {e}")
    fresh_backend_state.setattr(fb, "_default", "numba")
    with pytest.raises(ValueError, match="CuPy"):
        fb.name_for(a)


def test_environment_variable(fresh_backend_state):
    fresh_backend_state.setenv("FASTRNN_BACKEND", "numpy")
    assert fastrnn.get_backend() == "numpy"
    assert fb.ops_for(np.zeros(1)) is R


def test_environment_variable_unknown_name(fresh_backend_state):
    fresh_backend_state.setenv("FASTRNN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FASTRNN_BACKEND"):
        fastrnn.get_backend()


def test_use_context_restores_previous_choice(fresh_backend_state):
    fb.set_backend(None)
    with fb.use("numpy"):
        assert fastrnn.get_backend() == "numpy"
        assert fb.ops_for(np.zeros(1)) is R
    assert fastrnn.get_backend() is None
    with pytest.raises(RuntimeError):
        with fb.use("numpy"):
            raise RuntimeError("inside")
    assert fastrnn.get_backend() is None, "use() must restore the choice after an exception"
    fb.set_backend("numpy")
    with pytest.raises(ValueError):
        with fb.use("bogus"):
            pass
    assert fastrnn.get_backend() == "numpy"


def test_use_is_isolated_per_thread(fresh_backend_state):
    """A use() block in one thread does not change what another thread computes with."""
    import threading
    fb.set_backend(None)
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def inside():
        with fb.use("numpy"):
            seen["inside"] = fb.get_backend()
            entered.set()
            release.wait(10)
            seen["inside_after"] = fb.get_backend()

    def outside():
        entered.wait(10)
        seen["outside"] = fb.get_backend()
        seen["outside_ops"] = fb.name_for(np.zeros(1))
        release.set()

    threads = [threading.Thread(target=inside), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["inside"] == seen["inside_after"] == "numpy"
    assert seen["outside"] is None and seen["outside_ops"] != "numpy", seen
    assert fb.get_backend() is None


def test_set_backend_is_the_process_default_under_use(fresh_backend_state):
    fb.set_backend("numpy")
    with fb.use(None):
        assert fb.get_backend() is None
    assert fb.get_backend() == "numpy"


def test_engine_is_not_available_here_with_a_clear_error(fresh_backend_state):
    if importlib.util.find_spec("fastrnn.engine") is not None:
        pytest.skip("the compiled engine is built here")
    with pytest.raises(ValueError, match="backend 'cpu' is not available"):
        fb.load("cpu")
    with pytest.raises(ValueError, match="'cpu' is not available"):
        fastrnn.set_backend("cpu")


def test_automatic_cpu_backend_falls_back_with_one_warning():
    """NumPy arrays go to the compiled engine when it is built, else to Numba with one
    warning per process that says how to build it; a forced backend never warns."""
    code = ("import warnings, numpy as np, fastrnn.backend as b\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    names = {b.name_for(np.zeros(1)) for _ in range(3)}\n"
            "print(sorted(names), len(w), w[0].message if w else '')\n")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    if importlib.util.find_spec("fastrnn.engine") is not None:
        assert r.stdout.startswith("['cpu'] 0"), r.stdout
    else:
        assert r.stdout.startswith("['numba'] 1 "), r.stdout
        assert "pip install ." in r.stdout and "Numba" in r.stdout, r.stdout
    r = _python(code, FASTRNN_BACKEND="numba")
    assert r.returncode == 0 and r.stdout.startswith("['numba'] 0"), r.stdout + r.stderr


# --------------------------------------------------------------------- import side effects
def _python(code, **env):
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    e = {k: v for k, v in os.environ.items() if k not in ("FASTRNN_BACKEND", "PYTHONWARNINGS")}
    e["PYTHONPATH"] = root + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=300)


def test_import_prints_nothing_and_imports_no_gpu_or_torch():
    mods = ["fastrnn", "fastrnn.backend", "fastrnn.reference"]
    for extra in ("fastrnn.layers", "fastrnn.kernels"):
        if importlib.util.find_spec(extra) is not None:
            mods.append(extra)
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods) +
            "bad = sorted(m for m in ('cupy', 'torch') if m in sys.modules)\n"
            "sys.stderr.write('LOADED:' + ','.join(bad))\n")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "", f"importing {mods} printed {r.stdout!r}"
    assert r.stderr == "LOADED:", f"importing {mods} wrote {r.stderr!r} (or imported cupy/torch)"


def test_environment_variable_in_a_fresh_process():
    code = ("import numpy, fastrnn.backend as b\n"
            "print(b.ops_for(numpy.zeros(1)).__name__)\n")
    r = _python(code, FASTRNN_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fastrnn.reference"


# -------------------------------------------------------------------- the tolerance helper
def test_assert_close_names_tensor_worst_index_and_error():
    ref = np.zeros((2, 3), np.float32)
    act = ref.copy()
    act[1, 2] = 1e-3   # worst
    act[0, 1] = 2e-4   # also out of tolerance
    assert_close("ok", act * 0, ref)
    with pytest.raises(AssertionError) as info:
        assert_close("my_tensor", act, ref, "grad")
    msg = str(info.value)
    for part in ("my_tensor", "2 of 6", "(1, 2)", "actual=0.001", "reference=0",
                 "|error|=1.000e-03", "allowed 5.000e-05", "float32"):
        assert part in msg, f"{part!r} missing from {msg!r}"
    with pytest.raises(AssertionError, match="shape"):
        assert_close("s", np.zeros(3), np.zeros(4))
    with pytest.raises(AssertionError, match="nan"):
        assert_close("n", np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    for actual, ref in [(1.0, np.nan), (1.0, np.inf), (np.inf, -np.inf), (np.nan, np.inf)]:
        with pytest.raises(AssertionError, match="out of tolerance"):
            assert_close("one side non-finite", np.array([actual]), np.array([ref]))
    assert_close("both nan", np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert_close("same inf", np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0]))


# ------------------------------------------------------------------------- the op contract
def test_bind_refuses_an_implementation_with_other_parameters():
    def rnn_forward(xw, W, h0, lengths=None):  # "W" instead of the contract's "Wh"
        return xw
    with pytest.raises(TypeError, match=r"does not match the contract "
                                        r"rnn_forward\(xw, Wh, h0, lengths=None\)"):
        contract.bind("rnn_forward", rnn_forward)


def test_export_binds_own_ops_and_reexports_bound_ones():
    """How a backend that implements only some ops (the compiled engine) builds its table."""
    calls = []

    def rnn_forward(xw, Wh, h0, lengths=None):
        calls.append((xw.flags.c_contiguous, xw.strides))
        return R.rnn_forward(xw, Wh, h0, lengths)

    namespace = {"__name__": "fake_backend"}
    contract.export(namespace, {"rnn_forward": rnn_forward}, R)
    assert set(contract.NAMES) <= set(namespace["__all__"])
    assert namespace["lstm_forward"] is R.lstm_forward  # re-exported unchanged
    xw = np.zeros((2, 3, 8))[:, :, ::2]  # strided: the implementation gets a C copy
    namespace["rnn_forward"](xw, np.zeros((4, 4)), np.zeros((3, 4)))
    assert calls == [(True, (96, 32, 8))]
    with pytest.raises(ValueError, match="rnn_forward: Wh"):
        namespace["rnn_forward"](xw, np.zeros((4, 5)), np.zeros((3, 4)))
    with pytest.raises(ImportError, match="no implementation of rnn_forward"):
        contract.export({"__name__": "empty"}, {})


def test_checks_gates_is_the_contract_table():
    import fastrnn.checks
    assert fastrnn.checks.GATES is contract.GATES
