"""Bad and odd input to every op of every CPU backend: the answer is the reference's or a clear
error from fastrnn, never a crash, a foreign exception or a silently different result.

Each example starts from valid arguments (conftest.op_inputs, sizes from 0, both dtypes), gives
every array a memory layout (C, Fortran, strided, reversed, zero strides) and maybe makes it
read-only, then applies one mutation: none, NaN / inf at drawn places, bad ids or labels, a
wrong shape, a wrong dtype or type, a bad scalar, or per-row lengths for a recurrence (valid
ones of several integer dtypes, or out of [0, T], of the wrong shape or dtype). The outcome must be one of

- the reference's result: the float64 NumPy reference on the same values, within the table of
  tests/tolerances.py, with NaN and inf exactly where the reference has them;
- a ValueError / TypeError / RuntimeError whose message starts with the op's name, raised by
  the reference too (the checks of fastrnn.contract are shared, so every backend agrees).

Examples: ``FASTRNN_FUZZ_EXAMPLES`` in total over the file (default 2000, about 30 s), spread
over the (available backend, op) pairs. ``FASTRNN_FUZZ_REPORT=path`` writes the
outcome counts as JSON when the module finishes (for a long run).
"""
import collections
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastrnn.backend
import fastrnn.reference as R
from conftest import LAYOUTS, layout, load_backend, op_inputs
from fastrnn import contract
from fastrnn.checks import (ARRAY_KINDS, FLOAT, FLOAT_KINDS, FLOATS, INT, LENGTHS, LIST_KINDS,
                            MAT_OUT, OUT, OUT_KINDS, OUTS, has_c_strides, has_f_strides)
from tolerances import assert_close

CPU_BACKENDS = [name for name in fastrnn.backend.BACKENDS if name != "cuda"]


def _available(name):
    try:
        fastrnn.backend.load(name)
        return True
    except ValueError:
        return False


TOTAL = int(os.environ.get("FASTRNN_FUZZ_EXAMPLES", "2000"))
PER_TEST = max(1, TOTAL // (max(1, sum(map(_available, CPU_BACKENDS))) * len(contract.NAMES)))
MUTATIONS = ("none", "non_finite", "ids", "shape", "dtype", "scalar", "lengths")
OUTCOMES = collections.Counter()
SIZES = {"T": st.integers(0, 4), "N": st.integers(0, 3),
         "H": st.sampled_from([0, 1, 2, 3, 5, 9, 17, 67]), "D": st.integers(0, 5),
         "V": st.integers(0, 6)}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    path = os.environ.get("FASTRNN_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"examples_requested": TOTAL, "per_test": PER_TEST,
                       "examples_run": sum(OUTCOMES.values()),
                       "outcomes": dict(sorted(OUTCOMES.items()))}, f, indent=1)


@pytest.fixture(scope="module", params=CPU_BACKENDS)
def cpu_backend(request):
    return load_backend(request.param)


class Slot:
    """One array among an op's arguments: argument ``i``, or element ``k`` of list argument
    ``i``; ``kind`` is the array's own (an element of an OUTS list is an OUT array)."""

    def __init__(self, op, i, k=None):
        self.i, self.k = i, k
        kind = op.args[i].kind
        self.kind = {FLOATS: FLOAT, OUTS: OUT}.get(kind, kind)

    def get(self, args):
        return args[self.i] if self.k is None else args[self.i][self.k]

    def put(self, args, value):
        if self.k is None:
            args[self.i] = value
        else:  # (a tuple is rebuilt)
            items = list(args[self.i])
            items[self.k] = value
            args[self.i] = type(args[self.i])(items)


def _slots(op, args):
    """Every array argument and every array of a list argument, as Slots."""
    out = []
    for i, a in enumerate(op.args[:len(args)]):
        if a.kind in ARRAY_KINDS:
            out.append(Slot(op, i))
        elif a.kind in LIST_KINDS and isinstance(args[i], (list, tuple)):
            out.extend(Slot(op, i, k) for k in range(len(args[i])))
    return out


def _mutate(data, name, args):
    """Apply one drawn mutation to ``args`` (a list, changed in place); returns its label."""
    op = contract.OPS_BY_NAME[name]
    slots = _slots(op, args)
    lists = [i for i, a in enumerate(op.args) if a.kind in LIST_KINDS]
    floats = [s for s in slots if s.kind in FLOAT_KINDS]
    ints = [i for i, a in enumerate(op.args) if a.kind == INT]
    scalars = [i for i, a in enumerate(op.args) if a.kind in ("ratio", "seed", "flag", "real")]
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    if kind == "non_finite":
        slot = data.draw(st.sampled_from(floats), label="argument")
        target = slot.get(args)
        if target.size == 0 or slot.kind in OUT_KINDS:
            return "none"
        flat = target.reshape(-1)
        for _ in range(data.draw(st.integers(1, 3), label="how many")):
            k = data.draw(st.integers(0, flat.size - 1), label="where")
            flat[k] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
    elif kind == "lengths":
        if not any(a.kind == "lengths" for a in op.args):
            return "none"
    elif kind == "ids":
        if not ints or args[ints[0]].size == 0:
            return "none"
        i = ints[0]
        bad = data.draw(st.sampled_from([-2, -1, 0, 6, 7, 10 ** 9, 2 ** 40]), label="id")
        args[i] = args[i].astype(data.draw(st.sampled_from(
            [np.int8, np.uint8, np.int32, np.uint64, np.int64, ">i8"]), label="id dtype"))
        try:
            args[i].reshape(-1)[0] = bad
        except OverflowError:  # not representable in that dtype: the ids stay valid
            return "ids in a narrow dtype"
    elif kind == "shape":
        if lists and data.draw(st.booleans(), label="a list's length"):
            i = data.draw(st.sampled_from(lists), label="argument")
            how = data.draw(st.sampled_from(["drop", "repeat", "empty"]), label="how")
            args[i] = {"drop": args[i][:-1], "repeat": args[i] + args[i][-1:],
                       "empty": []}[how]
            return kind
        slot = data.draw(st.sampled_from(slots), label="argument")
        a = slot.get(args)
        how = data.draw(st.sampled_from(["add_axis", "drop_axis", "grow", "shrink"]), label="how")
        if how == "add_axis":
            slot.put(args, a[None])
        elif how == "drop_axis" and a.ndim:
            slot.put(args, np.zeros(a.shape[1:], a.dtype))
        elif a.ndim:
            axis = data.draw(st.integers(0, a.ndim - 1), label="axis")
            n = a.shape[axis] + (1 if how == "grow" else -1)
            if n < 0:
                return "none"
            shape = list(a.shape)
            shape[axis] = n
            slot.put(args, np.zeros(shape, a.dtype))
    elif kind == "dtype":
        if lists and data.draw(st.booleans(), label="a list's type"):
            i = data.draw(st.sampled_from(lists), label="argument")
            new = data.draw(st.sampled_from(["tuple", "array", "nested"]), label="new type")
            args[i] = {"tuple": tuple(args[i]), "array": args[i][0],
                       "nested": [args[i]]}[new]
            return kind
        slot = data.draw(st.sampled_from(slots), label="argument")
        new = data.draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_,
                                         np.complex64, ">f8", object, "list", "scalar", "masked",
                                         "matrix"]), label="new type")
        a = slot.get(args)
        if new == "matrix" and a.ndim == 2:
            slot.put(args, np.asmatrix(a))
        elif new in ("list", "scalar", "masked", "matrix"):
            slot.put(args, {"list": a.tolist(), "scalar": 1.0, "masked": np.ma.array(a),
                            "matrix": a}[new])
        else:
            slot.put(args, a.astype(new))
    elif kind == "scalar":
        if not scalars:
            return "none"
        i = data.draw(st.sampled_from(scalars), label="argument")
        args[i] = data.draw(st.sampled_from(
            [-0.1, 1.0, 1.5, np.nan, np.inf, -1, 2 ** 64, 0.5, 3, True, None, "0.5", 1.5j,
             np.float32(0.25), np.int64(7), np.uint64(2 ** 64 - 1), np.array([1, 2])]),
            label="value")
    return kind


def _lengths(data, args):
    """A lengths argument for a recurrence whose first argument is (T, N, ...)."""
    T, N = args[0].shape[:2]
    variant = data.draw(st.sampled_from(["valid", "valid", "negative", "long", "shape", "float",
                                         "list"]), label="lengths variant")
    values = np.array(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N),
                                label="lengths"), dtype=np.int64)
    if variant == "valid":
        return values.astype(data.draw(st.sampled_from([np.int64, np.int32, np.uint8]),
                                       label="lengths dtype"))
    if variant == "negative" and N:
        values[0] = -1
    elif variant == "long" and N:
        values[-1] = T + 1
    elif variant == "shape":
        return np.zeros(N + 1, np.int64)
    elif variant == "float":
        return values.astype(np.float64)
    elif variant == "list":
        return values.tolist()
    return values


def _relayout(data, name, args):
    op = contract.OPS_BY_NAME[name]
    slots = _slots(op, args) + [Slot(op, i) for i, a in enumerate(op.args[:len(args)])
                                if a.kind == LENGTHS]
    for slot in slots:
        a = slot.get(args)
        if isinstance(a, np.ndarray):
            label = op.args[slot.i].name + ("" if slot.k is None else f"[{slot.k}]")
            kind = data.draw(st.sampled_from(LAYOUTS), label=f"{label} layout")
            v = layout(np, a, kind)
            if data.draw(st.booleans(), label=f"{label} read-only"):
                v.flags.writeable = False
            slot.put(args, v)


def _reference_copy(a, upcast, kind):
    """What the reference gets for argument ``a``: the same values, in float64 when
    ``upcast``; an output array gets a fresh array holding a's values (``axpby`` reads y) with
    the same failings (not C-strided, read-only), so that the reference accepts or rejects it
    like the backend."""
    if kind not in OUT_KINDS:
        return np.array(a, dtype=np.float64) if upcast else a
    c = np.empty(a.shape, np.float64 if upcast else a.dtype)
    if kind == MAT_OUT and has_f_strides(a):  # a matrix written in place in either order
        c = np.asfortranarray(c)
    elif not has_c_strides(a):
        c = layout(np, c, "strided")
    if a.dtype.kind in "biuf":
        c[...] = a
    c.flags.writeable = a.flags.writeable
    return c


def _run(fn, args):
    try:
        with np.errstate(all="ignore"):
            return fn(*args), None
    except Exception as e:  # noqa: BLE001 - classified by the caller
        return None, e


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("name", contract.NAMES)
@settings(max_examples=PER_TEST)
@given(data=st.data())
def test_fuzz_op(cpu_backend, name, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    sizes = {k: data.draw(s, label=k) for k, s in SIZES.items()}
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    args = op_inputs(name, dtype, seed, **sizes)
    mutation = _mutate(data, name, args)
    if mutation == "lengths":
        args.append(_lengths(data, args))
    _relayout(data, name, args)
    def reference_arg(a, kind):
        if isinstance(a, (list, tuple)) and kind in LIST_KINDS:
            return type(a)(reference_arg(e, {FLOATS: FLOAT, OUTS: OUT}[kind]) for e in a)
        if isinstance(a, np.ndarray):
            return _reference_copy(a, a.dtype == dtype and mutation != "dtype", kind)
        return a
    ref_args = [reference_arg(a, arg.kind) for a, arg in zip(args, contract.OPS_BY_NAME[name].args)]
    got, err = _run(cpu_backend.op(name), args)
    want, ref_err = _run(getattr(R, name), ref_args)
    if err is not None:
        assert isinstance(err, (ValueError, TypeError, RuntimeError)), \
            f"{cpu_backend.name} {name} ({mutation}) raised {type(err).__name__}: {err}"
        assert str(err).startswith(f"{name}:"), \
            f"{cpu_backend.name} {name} ({mutation}): message not from fastrnn: {err}"
        assert type(ref_err) is type(err), \
            f"{cpu_backend.name} {name} ({mutation}) raised {err!r}; the reference: {ref_err!r}"
        OUTCOMES[f"{cpu_backend.name} {mutation}: {type(err).__name__}"] += 1
        return
    assert ref_err is None, \
        f"{cpu_backend.name} {name} ({mutation}) returned, the reference raised {ref_err!r}"
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    op = contract.OPS_BY_NAME[name]
    kind = "grad" if name.endswith("backward") else "output"
    # The op ran, so its float arguments share one dtype (a dtype mutation may have changed it).
    dtype = next(s.get(args).dtype for s in _slots(op, args) if s.kind in FLOAT_KINDS)
    for (out, _), g, w in zip(op.returns, got, want):
        if w is None:
            assert g is None, f"{cpu_backend.name} {name}: {out} should be None"
            continue
        for e in (g if isinstance(g, list) else [g]):
            assert np.asarray(e).dtype == dtype, f"{cpu_backend.name} {name}: {out} dtype"
        assert_close(f"{cpu_backend.name} {name} {out} ({mutation})", g, w, kind, dtype=dtype)
    OUTCOMES[f"{cpu_backend.name} {mutation}: result"] += 1
