"""Input validation shared by every backend: the checks that ``fastrnn.contract`` declares.

``check(op, values)`` runs them for one op (the order and the rules are in the contract's module
doc); a call whose arrays have the dtypes, shapes, strides and writeability of a call that
passed (and were handed on unchanged) has only its values checked again (id and label ranges,
scalars). The ``require_*`` helpers are also used by the layers. Messages start with the op or layer
name and state the expected and the actual shape or dtype.
"""
import functools
import numbers
import sys

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Argument kinds of the contract: FLOAT arrays share the op's float dtype; INT arrays hold ids or
# labels of any integer dtype; OUT is a FLOAT array the op overwrites and returns; MAT and
# MAT_OUT are a 2-D FLOAT / OUT array that may also be in Fortran order (a transposed view, as
# in weight tying), which matrix products read or write in place; LENGTHS is an optional (None:
# every row has all T steps) integer array of per-row lengths in [0, T], handed to the
# implementation as int64; RATIO, SEED, FLAG and REAL (any real number, a coefficient) are
# scalars. FLOATS and OUTS are a list or tuple of at least one FLOAT / OUT array, each of its own
# shape (declared "[...]"): the shapes of the list named in ``Op.sizes["[...]"]``, which every
# other list argument of the op must repeat element by element.
FLOAT, INT, OUT, MAT, MAT_OUT, LENGTHS, RATIO, SEED, FLAG, REAL, FLOATS, OUTS = (
    "float", "int", "out", "mat", "mat out", "lengths", "ratio", "seed", "flag", "real",
    "floats", "outs")
ARRAY_KINDS = (FLOAT, INT, OUT, MAT, MAT_OUT)
FLOAT_KINDS = (FLOAT, OUT, MAT, MAT_OUT)
OUT_KINDS = (OUT, MAT_OUT)
LIST_KINDS = (FLOATS, OUTS)
SHAPES = "[...]"  # the size symbol of list arguments: a tuple of shapes


def array_module(a):
    """numpy for NumPy arrays, cupy for CuPy arrays (cupy is never imported here)."""
    if type(a).__module__.split(".")[0] == "cupy":
        return sys.modules["cupy"]
    return np


def is_array(a):
    return isinstance(a, np.ndarray) or type(a).__module__.split(".")[0] == "cupy"


@functools.lru_cache(maxsize=1024)
def c_strides(shape, itemsize):
    """The strides of a freshly allocated C-order array of this shape (cached: the same shapes
    come back every call of a training loop)."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


def has_c_strides(a):
    return a.size == 0 or a.strides == c_strides(a.shape, a.itemsize)


def has_f_strides(a):
    """Exactly the strides of a Fortran-order array (a transposed C-order array)."""
    return a.size == 0 or tuple(a.strides) == c_strides(a.shape[::-1], a.itemsize)[::-1]


def c_layout(a):
    """``a`` itself when its strides are exactly the C strides of its shape, else a C copy."""
    return a if has_c_strides(a) else a.copy(order="C")


# -------------------------------------------------------------------------------- checks
def require_array(op, name, a):
    if not is_array(a):
        raise TypeError(f"{op}: {name} must be a NumPy or CuPy array, got {type(a).__name__}")


def require_float(op, name, a, dtype=None):
    require_array(op, name, a)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype} (the dtype of the other inputs), "
                        f"got {a.dtype}")


def require_int(op, name, a):
    require_array(op, name, a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be an integer array, got dtype {a.dtype}")


def require_shape(op, name, a, shape, symbolic=None):
    if tuple(a.shape) != tuple(shape):
        sym = f" {symbolic} =" if symbolic else ""
        raise ValueError(f"{op}: {name} must have shape{sym} {tuple(shape)}, got {tuple(a.shape)}")


def require_rank(op, name, a, ndim, symbolic):
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {symbolic}, got shape {tuple(a.shape)}")


def require_range(op, name, a, lo, hi):
    """Every element of the integer array a in [lo, hi)."""
    if a.size == 0:
        return
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax >= hi:
        bad = amin if amin < lo else amax
        raise ValueError(f"{op}: {name} must lie in [{lo}, {hi}), found {bad}")


def _scalar(op, arg, value):
    if arg.kind == FLAG:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{op.name}: {arg.name} must be True or False, got {value!r}")
        return bool(value)
    if arg.kind == REAL:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{op.name}: {arg.name} must be a real number, got {value!r}")
        return float(value)
    if arg.kind == RATIO:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{op.name}: {arg.name} must be a real number in [0, 1), got "
                            f"{value!r}")
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{op.name}: {arg.name} must lie in [0, 1), got {value}")
        return float(value)
    # SEED
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op.name}: {arg.name} must be an integer in [0, 2**64), got {value!r}")
    if not 0 <= int(value) < 2 ** 64:
        raise ValueError(f"{op.name}: {arg.name} must lie in [0, 2**64), got {value}")
    return int(value)


def _plain(op, arg, v, name=None, written=None):
    """A NumPy subclass (matrix, memmap, ...) as a plain ndarray view: subclasses change what
    indexing and reductions return. A masked array is refused: its mask would be ignored.
    ``name`` and ``written`` override the argument's (an element of a list argument)."""
    if type(v) is np.ndarray:
        return v
    if isinstance(v, np.ma.MaskedArray):
        raise TypeError(f"{op.name}: {name or arg.name} is a masked array; pass a plain array "
                        f"(e.g. .filled(...))")
    if written is None:
        written = arg.kind in OUT_KINDS
    if isinstance(v, np.ndarray) and not written:
        return np.asarray(v)
    return v


def _plain_list(op, arg, v):
    """A FLOATS / OUTS argument as a list of plain arrays (see _plain), all of one array
    library."""
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"{op.name}: {arg.name} must be a list or tuple of arrays, got "
                        f"{type(v).__name__}")
    if not v:
        raise ValueError(f"{op.name}: {arg.name} must hold at least one array, got none")
    out = []
    written = arg.kind == OUTS
    xp0 = None
    for k, e in enumerate(v):
        if type(e) is np.ndarray:
            xp = np
        else:
            require_array(op.name, f"{arg.name}[{k}]", e)
            xp = array_module(e)
        xp0 = xp0 or xp
        if xp is not xp0:
            raise TypeError(f"{op.name}: {arg.name}[{k}] is a {_library(e)} array but "
                            f"{arg.name}[0] a {_library(v[0])} array: one call takes arrays of "
                            f"one library")
        out.append(e if type(e) is np.ndarray else
                   _plain(op, arg, e, f"{arg.name}[{k}]", written))
    return out


def _library(a):
    return "CuPy" if array_module(a) is not np else "NumPy"


def _require_shapes(op, arg, v, shapes):
    """List argument ``v`` holds one array of each of ``shapes`` (those of the op's defining
    list argument), in order."""
    defining = op.sizes[SHAPES]
    if len(v) != len(shapes):
        raise ValueError(f"{op.name}: {arg.name} must hold {len(shapes)} arrays (one per array "
                         f"of {defining}), got {len(v)}")
    for k, (e, shape) in enumerate(zip(v, shapes)):
        if e.shape != shape:
            raise ValueError(f"{op.name}: {arg.name}[{k}] must have the shape of "
                             f"{defining}[{k}], {tuple(shape)}, got {tuple(e.shape)}")


def _require_writable(op, name, v, either_order):
    """An array the op writes in place: writeable, and exactly C-strided (or Fortran-strided
    when ``either_order``); a copy would not be seen by the caller."""
    if not getattr(v.flags, "writeable", True):  # CuPy arrays are always writeable
        raise ValueError(f"{op.name}: {name} is written in place and must be writeable")
    if not has_c_strides(v) and not (either_order and has_f_strides(v)):
        order = "C- or Fortran-contiguous" if either_order else "C-contiguous"
        raise ValueError(f"{op.name}: {name} is written in place and must be "
                         f"{order} (strides {v.strides} for shape {v.shape})")


def _expected_shape(op, arg, sizes):
    out = []
    for s in arg.dims:
        if s == "...":
            out.extend(sizes["..."])
        elif s == "G*H":
            out.append(op.gates * sizes["H"])
        else:
            out.append(sizes[s])
    return tuple(out)


_PLANS = {}


def _plan(op):
    """What check() needs of ``op``, worked out once: per argument (index, arg, kind flags),
    and per size symbol the argument index, rank and axis that define it."""
    plan = _PLANS.get(op.name)
    if plan is None or plan[0] is not op:
        plan = _PLANS[op.name] = (op,) + _make_plan(op)
    return plan[1:]


def _make_plan(op):
    args = [(i, a, a.kind in FLOAT_KINDS, a.kind in ARRAY_KINDS) for i, a in enumerate(op.args)]
    sizes = []
    for sym, name in op.sizes.items():
        i = op.arg_index[name]
        a = op.args[i]
        sizes.append((sym, i, len(a.dims), None if sym in ("...", SHAPES) else a.dims.index(sym)))
    return args, sizes


# Per op, the argument signatures (see _signature) whose check passed with every array
# handed on as it was, and the sizes read from them: a training loop calls each op with the
# same shapes, strides and dtypes at every step, and then only what depends on the values
# (id ranges, scalars) is checked again. Inside the char LM's training step check() took
# 15-40 us an op (twice to three times its time in a loop of its own).
_PASSED = {}
_PASSED_MAX = 64  # signatures kept per op; more are a sign of shapes that change every call


def _signature(plan_args, values):
    """The dtype, shape, strides and writeability of every array argument (each array of a
    list too), and the type of every scalar; None where an argument is anything but a plain
    NumPy array, an array list, a scalar or absent lengths."""
    sig = []
    for i, a, _, is_array_kind in plan_args:
        v = values[i]
        if is_array_kind or a.kind == LENGTHS:
            if v is None and a.kind == LENGTHS:
                sig.append(None)
                continue
            if type(v) is not np.ndarray or a.kind == LENGTHS:
                return None
            sig.append((v.dtype, v.shape, v.strides, v.flags.writeable))
        elif a.kind in LIST_KINDS:
            if type(v) is not list and type(v) is not tuple:
                return None
            for e in v:
                if type(e) is not np.ndarray:
                    return None
                sig.append((e.dtype, e.shape, e.strides, e.flags.writeable))
            sig.append(len(v))
        else:
            sig.append(type(v))
    return tuple(sig)


def check(op, values):
    """Validate ``values`` (one per argument of ``op``, in order) and return what the
    implementation gets: arrays with exact C strides, scalars converted (see module doc)."""
    plan_args, plan_sizes = _plan(op)
    sig = _signature(plan_args, values)
    passed = _PASSED.get(op.name)
    if sig is not None and passed is not None and sig in passed:
        sizes = passed[sig]
        for name, (lo, hi) in op.ranges.items():
            require_range(op.name, name, values[op.arg_index[name]], sizes.get(lo, lo),
                          sizes.get(hi, hi))
        return [list(v) if a.kind == FLOATS else
                v if is_array_kind or a.kind in (LENGTHS, OUTS) else _scalar(op, a, v)
                for (_, a, _, is_array_kind), v in zip(plan_args, values)]
    out, sizes = _check(op, values, plan_args, plan_sizes)
    if sig is not None and all(_handed_on(a, v, o) for (_, a, _, _), v, o in
                               zip(plan_args, values, out)):
        if passed is None or len(passed) >= _PASSED_MAX:
            passed = _PASSED[op.name] = {}
        passed[sig] = sizes
    return out


def _handed_on(arg, v, o):
    """The argument went to the implementation as it was given (no copy or conversion)."""
    if arg.kind in LIST_KINDS:
        return all(e is f for e, f in zip(v, o))
    return o is v or arg.kind not in ARRAY_KINDS


def _check(op, values, plan_args, plan_sizes):
    values = [v if arg.kind == LENGTHS and v is None else
              _plain_list(op, arg, v) if arg.kind in LIST_KINDS else _plain(op, arg, v)
              for arg, v in zip(op.args, values)]
    dtype = None
    for i, arg, is_float, _ in plan_args:
        v = values[i]
        if is_float:
            require_float(op.name, arg.name, v, dtype)
            dtype = v.dtype
        elif arg.kind in LIST_KINDS:
            for k, e in enumerate(v):
                if e.dtype is not dtype:  # (dtype objects of one type are usually one object)
                    require_float(op.name, f"{arg.name}[{k}]", e, dtype)
                    dtype = e.dtype
        elif arg.kind == INT or (arg.kind == LENGTHS and v is not None):
            require_int(op.name, arg.name, v)
    sizes = {}
    for sym, i, rank, axis in plan_sizes:
        v = values[i]
        if sym == SHAPES:
            sizes[sym] = tuple(e.shape for e in v)
            continue
        if axis is None:  # the whole shape of an argument declared "(...)"
            sizes[sym] = tuple(v.shape)
            continue
        if v.ndim != rank:
            a = op.args[i]
            require_rank(op.name, a.name, v, rank, op.symbolic(a.shape))
        sizes[sym] = v.shape[axis]
    for i, a, _, is_array_kind in plan_args:
        v = values[i]
        if a.kind in LIST_KINDS:
            if a.name != op.sizes[SHAPES]:  # (the defining list has its own shapes)
                _require_shapes(op, a, v, sizes[SHAPES])
        elif is_array_kind or (a.kind == LENGTHS and v is not None):
            expected = _expected_shape(op, a, sizes)
            if v.shape != expected:
                require_shape(op.name, a.name, v, expected, op.symbolic(a.shape))
        if a.kind == LENGTHS and v is not None and v.size:
            lo, hi = int(v.min()), int(v.max())
            if lo < 0 or hi > sizes["T"]:
                raise ValueError(f"{op.name}: {a.name} must lie in [0, T] = [0, {sizes['T']}], "
                                 f"found {lo if lo < 0 else hi}")
    for sym in op.nonempty:
        if sizes[sym] < 1:
            name = op.sizes[sym]
            raise ValueError(f"{op.name}: {name} must have shape "
                             f"{op.symbolic(op.arg_by_name[name].shape)} with {sym} >= 1, got "
                             f"{tuple(values[op.arg_index[name]].shape)}")
    for name, (lo, hi) in op.ranges.items():
        require_range(op.name, name, values[op.arg_index[name]], sizes.get(lo, lo),
                      sizes.get(hi, hi))
    out = []
    for i, a, _, is_array_kind in plan_args:
        v = values[i]
        if a.kind in OUT_KINDS:
            _require_writable(op, a.name, v, a.kind == MAT_OUT)
            out.append(v)
        elif a.kind == OUTS:
            for k, e in enumerate(v):
                _require_writable(op, f"{a.name}[{k}]", e, False)
            out.append(v)
        elif a.kind == FLOATS:
            out.append([c_layout(e) for e in v])
        elif a.kind == MAT and has_f_strides(v):
            out.append(v)
        elif a.kind == INT and not v.dtype.isnative:  # compiled kernels take native order only
            out.append(v.astype(v.dtype.newbyteorder("=")))
        elif a.kind == LENGTHS:
            out.append(None if v is None else array_module(v).ascontiguousarray(v, dtype=np.int64))
        elif is_array_kind:
            out.append(c_layout(v))
        else:
            out.append(_scalar(op, a, v))
    return out, sizes


def __getattr__(name):
    # GATES lives in fastrnn.contract; kept reachable here for older imports.
    if name == "GATES":
        from .contract import GATES
        return GATES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
