"""The op contract: what every backend op takes, returns and checks, declared once.

A backend ("numpy" = ``fastrnn.reference``, "numba" = ``fastrnn.kernels``, "cpu" =
``fastrnn.engine``, "cuda" = ``fastrnn.cuda``) is a module exporting one function per entry of
``OPS`` with the same name and parameters. It writes plain implementations and exports them with
``export(globals(), impl_module, ...)`` (or one at a time with ``bind(name, impl)``): the exported
op binds its arguments, runs the checks declared here, and calls the implementation with
validated arrays that have exact C strides. An implementation whose parameters differ from the
contract fails at import, so a renamed parameter cannot silently change what is checked. A
backend may also re-export ops another backend already bound (``export(globals(), own_impls,
fastrnn.kernels)`` takes what ``own_impls`` lacks from the Numba backend, unchanged).

Shapes use N batch, T time, D input or embedding width, H hidden, V vocabulary (classes, or
the output width of a linear op), M rows, G gates per cell (``GATES``) and ``...`` for any
leading shape. Recurrences are time-major: one step is one contiguous (N, .) block. ``[...]``
is a list argument (a list or tuple of at least one array, each of any shape; a second list
argument of the op holds arrays of the same shapes, in the same order).

Two levels of recurrent ops:

- ``{cell}_forward`` / ``{cell}_backward``: the sequential part alone, on the input projection
  ``xw = x @ Wx + b`` that the caller computed (time-major throughout).
- ``{cell}_layer_forward`` / ``{cell}_layer_backward``: a whole recurrent layer, as the layers
  of ``fastrnn.layers`` call it. The forward takes the batch-major input xs (N, T, D) and the
  weights and returns the batch-major hs (N, T, H), each row's final state (``h_last``, LSTM
  also ``c_last``: the state after the row's own last step, h0 / c0 for length 0), what the
  backward needs (time-major, as the recurrence returns it) and last ``hs_kept``, the values of
  hs in an array of their own (a layer hands hs on, where the next layer may change it, and
  passes hs_kept to its backward as ``hs``). The backward takes dhs (N, T, H)
  and returns dxs (N, T, D), the initial-state gradients, and writes the weight gradients into
  the ``dWx``, ``dWh``, ``db`` (and ``db_hn``) it is given, which it also returns. A backend may
  run a layer op as one fused computation (the compiled engine does); the others compose it
  from the recurrence op and matrix products (``fastrnn.reference.layer``).

Checks, in order (the first failure is raised, its message starts with the op name):
1. every array argument is a NumPy or CuPy array; float arguments are float32 or float64 and
   all of one dtype (``TypeError``); id and label arguments have an integer dtype (``TypeError``);
   a list argument is a list or tuple (``TypeError``) of at least one array (``ValueError``),
   all of one array library, its elements checked like float arguments;
2. the arguments that define a size (``Op.sizes``) have the declared rank, then every array has
   exactly its declared shape (``ValueError`` naming the symbolic and the actual shape);
3. ids lie in [0, V), labels in [-1, V); a dropout ratio in [0, 1); a seed is an integer in
   [0, 2**64); a flag is a bool (``ValueError`` / ``TypeError``);
4. an argument written in place (``dW``, each array of ``ys``) is writeable and exactly
   C-strided, or for a matrix argument (kind ``mat out``) C- or Fortran-strided
   (``ValueError``: a copy would not be seen by the caller); every other array is copied
   unless its strides are exactly the C strides of its shape, or for a matrix argument (kind
   ``mat``, such as a tied weight ``embed_W.T``) the Fortran strides. NumPy calls a one-row
   view with stride 0 or a negative stride (``w[None, :]``, ``np.broadcast_to``, ``Wh[::-1]``
   with H = 1) C-contiguous; kernels hand strides to BLAS as leading dimensions, so only the
   exact layout is passed through.

Empty sizes: N = 0, T = 0, H = 0, D = 0 and V = 0 (with no ids) give correctly shaped empty
outputs and zero state gradients on every backend. ``softmax_cross_entropy`` needs V >= 1 (a
distribution over no classes has no loss).

Variable lengths: every recurrence takes ``lengths`` (N,), integers in [0, T], or None (all T).
Step t of row n is padding when t >= lengths[n]: its outputs, activations and gradients are
zero and its ``dhs`` is ignored, so nothing flows to or from padding; the state a row ends in is
its state after its own last step, which the caller gathers from ``hs`` (``h0`` when the length
is 0). Rows keep their place: nothing is sorted or packed.

Non-finite values (one policy for every backend): IEEE propagation. Ops do not scan for NaN or
inf; a NaN or inf in any element an op reads gives NaN or inf in every output element that the
NumPy reference computes from it, never a finite made-up value. Rows of
``softmax_cross_entropy`` whose label is -1 do not enter the loss, but their ``dx`` rows are
``softmax * 0`` (NaN where the row holds NaN or +inf). The layers additionally reject non-finite
inputs and states before a recurrence carries them on (see ``fastrnn.layers``).

Adding a cell: one entry in ``GATES`` (and ``_LAYER_SAVED``), a forward and a backward ``Op``
below, and the implementations in every backend (reference first: it is the oracle of the test
suite); its layer ops follow from ``_layer_ops``.
"""
import dataclasses
import functools
import inspect

from .checks import (ARRAY_KINDS, FLAG, FLOAT, FLOATS, INT, LENGTHS, LIST_KINDS, MAT, MAT_OUT,
                     OUT, OUTS, RATIO, REAL, SEED, check)

# Gates per cell: the only place this fact is written.
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "gru_ra": 3}
CELLS = tuple(GATES)


@dataclasses.dataclass(frozen=True)
class Arg:
    """One parameter: name, kind (see fastrnn.checks), symbolic shape (arrays), default."""
    name: str
    kind: str
    shape: str = ""
    default: object = inspect.Parameter.empty

    @functools.cached_property
    def dims(self):
        """The shape as a tuple of symbols, e.g. ("T", "N", "G*H")."""
        inner = self.shape.strip("()").replace(" ", "")
        return tuple(s for s in inner.split(",") if s)


@dataclasses.dataclass(frozen=True)
class Op:
    """One op: its arguments in order, what it returns, and how sizes are read and checked.

    ``sizes`` maps each size symbol to the argument whose shape defines it (its axis is where
    the symbol stands in that argument's shape). ``ranges`` maps an INT argument to the
    half-open interval its values must lie in, bounds given as ints or size symbols.
    ``nonempty`` lists sizes that must be at least 1."""
    name: str
    args: tuple
    returns: tuple
    sizes: dict
    summary: str
    gates: int = 1
    ranges: dict = dataclasses.field(default_factory=dict)
    nonempty: tuple = ()

    @functools.cached_property
    def arg_by_name(self):
        return {a.name: a for a in self.args}

    @functools.cached_property
    def arg_index(self):
        """Each argument's position, by name."""
        return {a.name: i for i, a in enumerate(self.args)}

    @functools.cached_property
    def signature(self):
        return inspect.Signature([
            inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=a.default)
            for a in self.args])

    def describe(self):
        """The contract of this op as text (used as the exported op's docstring)."""
        def fmt(a):
            shaped = a.kind in ARRAY_KINDS or a.kind in LIST_KINDS or a.kind == LENGTHS
            return f"{a.name} {self.symbolic(a.shape)} {a.kind}" if shaped else \
                f"{a.name} ({a.kind})"
        lines = [f"{self.name}{self.signature}: {self.summary}", "",
                 "Arguments: " + "; ".join(fmt(a) for a in self.args) + ".",
                 "Returns: " + ", ".join(f"{n} {self.symbolic(s)}" for n, s in self.returns)
                 + " (float outputs in the inputs' float dtype)."]
        return "\n".join(lines)

    def symbolic(self, shape):
        return shape.replace("G*H", f"{self.gates}*H") if self.gates != 1 else \
            shape.replace("G*H", "H")


# --------------------------------------------------------------------------- the op table
# Every argument and result of the recurrences, by name.
_RECURRENCE_SHAPES = {
    "xw": "(T, N, G*H)", "Wh": "(H, G*H)", "h0": "(N, H)", "c0": "(N, H)", "b_hn": "(H,)",
    "dhs": "(T, N, H)", "hs": "(T, N, H)", "cs": "(T, N, H)", "acts": "(T, N, G*H)",
    "rh": "(T, N, H)", "hn": "(T, N, H)", "dA": "(T, N, G*H)", "dhn": "(T, N, H)",
    "dh0": "(N, H)", "dc0": "(N, H)",
}


def _recurrence(cell, direction, args, returns, summary):
    """A recurrence op: T and N are read from its first argument, H from Wh. The last argument,
    ``lengths`` (N,) or None, gives each row's number of steps (see the module doc)."""
    return Op(f"{cell}_{direction}",
              tuple(Arg(n, FLOAT, _RECURRENCE_SHAPES[n]) for n in args)
              + (Arg("lengths", LENGTHS, "(N,)", default=None),),
              tuple((n, _RECURRENCE_SHAPES[n]) for n in returns),
              sizes={"T": args[0], "N": args[0], "H": "Wh"}, summary=summary,
              gates=GATES[cell])


# Every argument and result of the layer ops, by name; the weight gradients are written in place.
_LAYER_SHAPES = {
    "xs": "(N, T, D)", "dxs": "(N, T, D)", "Wx": "(D, G*H)", "b": "(G*H,)", "Wh": "(H, G*H)",
    "b_hn": "(H,)", "h0": "(N, H)", "c0": "(N, H)", "hs": "(N, T, H)", "dhs": "(N, T, H)",
    "h_last": "(N, H)", "c_last": "(N, H)", "cs": "(T, N, H)", "acts": "(T, N, G*H)",
    "rh": "(T, N, H)", "hn": "(T, N, H)", "dh0": "(N, H)", "dc0": "(N, H)",
    "dWx": "(D, G*H)", "dWh": "(H, G*H)", "db": "(G*H,)", "db_hn": "(H,)", "hs_kept": "(N, T, H)",
}
_WRITTEN = ("dWx", "dWh", "db", "db_hn")


def _layer(cell, direction, args, returns, summary):
    """A layer op: N and T are read from its first argument (xs or dhs), D from Wx, H from Wh;
    ``lengths`` last, as for the recurrences."""
    return Op(f"{cell}_layer_{direction}",
              tuple(Arg(n, OUT if n in _WRITTEN else FLOAT, _LAYER_SHAPES[n]) for n in args)
              + (Arg("lengths", LENGTHS, "(N,)", default=None),),
              tuple((n, _LAYER_SHAPES[n]) for n in returns),
              sizes={"N": args[0], "T": args[0], "D": "Wx", "H": "Wh"}, summary=summary,
              gates=GATES[cell])


# The forward and backward layer ops of every cell: what each saves for the backward pass.
_LAYER_SAVED = {"rnn": (), "lstm": ("cs", "acts"), "gru": ("acts", "rh"), "gru_ra": ("acts", "hn")}


def _layer_ops(cell):
    b_hn = ("b_hn",) if cell == "gru_ra" else ()
    states = ("h0", "c0") if cell == "lstm" else ("h0",)
    last = ("h_last", "c_last") if cell == "lstm" else ("h_last",)
    dstates = tuple("d" + s for s in states)
    saved = _LAYER_SAVED[cell]
    grads = ("dWx", "dWh", "db") + (("db_hn",) if cell == "gru_ra" else ())
    return (
        _layer(cell, "forward", ("xs", "Wx", "b", "Wh") + b_hn + states,
               ("hs",) + last + saved + ("hs_kept",),
               f"the whole {cell} layer: hs = the recurrence over xs @ Wx + b."),
        _layer(cell, "backward", ("dhs", "xs", "Wx", "Wh", "hs") + saved + states + grads,
               ("dxs",) + dstates + grads,
               "input and initial-state gradients; weight gradients written in place."),
    )


OPS = (
    _recurrence("rnn", "forward", ("xw", "Wh", "h0"), ("hs",), "h' = tanh(xw[t] + h @ Wh)."),
    _recurrence("rnn", "backward", ("dhs", "Wh", "hs", "h0"), ("dA", "dh0"),
                "gradients of the pre-activations and of h0."),
    _recurrence("lstm", "forward", ("xw", "Wh", "h0", "c0"), ("hs", "cs", "acts"),
                "gates [f | g | i | o]; c' = f*c + g*i, h' = o*tanh(c')."),
    _recurrence("lstm", "backward", ("dhs", "Wh", "cs", "acts", "c0"), ("dA", "dh0", "dc0"),
                "gradients of the pre-activations, h0, c0."),
    _recurrence("gru", "forward", ("xw", "Wh", "h0"), ("hs", "acts", "rh"),
                "reset before, gates [z | r | h~]; rh = r * h_prev feeds the candidate."),
    _recurrence("gru", "backward", ("dhs", "Wh", "hs", "acts", "h0"), ("dA", "dh0"),
                "gradients of the pre-activations and of h0."),
    _recurrence("gru_ra", "forward", ("xw", "Wh", "b_hn", "h0"), ("hs", "acts", "hn"),
                "reset after (cuDNN form), gates [z | r | n]; hn = h @ Wh_n + b_hn."),
    _recurrence("gru_ra", "backward", ("dhs", "Wh", "hs", "acts", "hn", "h0"),
                ("dA", "dhn", "dh0"),
                "gradients of the input-side pre-activations, of hn, and of h0."),
    *(op for cell in CELLS for op in _layer_ops(cell)),
    Op("linear_forward", (Arg("x", FLOAT, "(M, D)"), Arg("W", MAT, "(D, V)"),
                          Arg("b", FLOAT, "(V,)")),
       (("y", "(M, V)"),), sizes={"M": "x", "D": "W", "V": "W"},
       summary="y = x @ W + b; W may be a transposed view (a tied weight)."),
    Op("linear_backward", (Arg("dy", FLOAT, "(M, V)"), Arg("x", FLOAT, "(M, D)"),
                           Arg("W", MAT, "(D, V)"), Arg("dW", MAT_OUT, "(D, V)"),
                           Arg("db", OUT, "(V,)")),
       (("dx", "(M, D)"), ("dW", "(D, V)"), ("db", "(V,)")),
       sizes={"M": "dy", "V": "dy", "D": "x"},
       summary="dx = dy @ W.T; dW and db (= x.T @ dy, the column sums of dy) written in place."),
    Op("embedding_forward", (Arg("W", FLOAT, "(V, D)"), Arg("idx", INT, "(...)")),
       (("out", "(..., D)"),), sizes={"V": "W", "D": "W", "...": "idx"},
       ranges={"idx": (0, "V")}, summary="rows of W picked by idx (usually idx (N, T))."),
    Op("embedding_backward", (Arg("dout", FLOAT, "(..., D)"), Arg("idx", INT, "(...)"),
                              Arg("dW", OUT, "(V, D)")),
       (("dW", "(V, D)"),), sizes={"V": "dW", "D": "dW", "...": "idx"},
       ranges={"idx": (0, "V")},
       summary="dW is overwritten with the scatter-add of dout by idx and returned."),
    Op("softmax_cross_entropy", (Arg("x", FLOAT, "(M, V)"), Arg("t", INT, "(M,)"),
                                 Arg("grad", FLAG, default=True)),
       (("loss", "()"), ("dx", "(M, V)")), sizes={"M": "x", "V": "x"},
       ranges={"t": (-1, "V")}, nonempty=("V",),
       summary="mean cross-entropy of softmax(x) over the rows whose label is not -1 (0 when "
               "there are none); dx its gradient, None when grad is False."),
    Op("dropout_forward", (Arg("x", FLOAT, "(...)"), Arg("ratio", RATIO), Arg("seed", SEED)),
       (("y", "(...)"), ("mask", "(...)")), sizes={"...": "x"},
       summary="inverted dropout; mask = keep / (1 - ratio), keep a pure function of (seed, "
               "flat index), identical on every backend."),
    # The optimizers' elementwise work (fastrnn.optim): every parameter or gradient of a model,
    # of any shapes, in one call.
    Op("sum_squares", (Arg("xs", FLOATS, "[...]"),), (("total", "()"),), sizes={"[...]": "xs"},
       summary="the sum of the squares of the elements of every array of xs (a squared L2 norm "
               "of them all), accumulated in float64."),
    Op("axpby", (Arg("a", REAL), Arg("xs", FLOATS, "[...]"), Arg("b", REAL),
                 Arg("ys", OUTS, "[...]")),
       (("ys", "[...]"),), sizes={"[...]": "ys"},
       summary="ys[k] = a*xs[k] + b*ys[k] in place for every k, as a loop over k in order "
               "would; when b is 0, ys[k] = a*xs[k] (its old values are not read). xs[k] may be "
               "ys[k] or overlap any of ys: it is read as it is when the loop reaches k. "
               "Returns ys."),
)
OPS_BY_NAME = {op.name: op for op in OPS}
NAMES = tuple(OPS_BY_NAME)


def forward_op(cell):
    return OPS_BY_NAME[f"{cell}_forward"]


def backward_op(cell):
    return OPS_BY_NAME[f"{cell}_backward"]


def layer_forward_op(cell):
    return OPS_BY_NAME[f"{cell}_layer_forward"]


def layer_backward_op(cell):
    return OPS_BY_NAME[f"{cell}_layer_backward"]


# ------------------------------------------------------------------------------- binding
def bind(name, impl, before=None):
    """The exported op ``name``: binds arguments by the contract's signature, checks them,
    then calls ``impl`` positionally. ``impl`` must have exactly the contract's parameters.
    ``before()``, when given, runs first (the compiled engine wakes its threads there, so that
    they are up by the time the checks are done); an op re-exported already bound keeps its
    own."""
    op = OPS_BY_NAME[name]
    if getattr(impl, "__fastrnn_op__", None) == name:  # already bound (re-exported)
        return impl
    params = [(p.name, p.default) for p in inspect.signature(impl).parameters.values()]
    expected = [(a.name, a.default) for a in op.args]
    if params != expected:
        raise TypeError(f"{getattr(impl, '__module__', '?')}.{name}"
                        f"{inspect.signature(impl)} does not match the contract {name}"
                        f"{op.signature}")
    signature = op.signature
    nargs = len(op.args)

    @functools.wraps(impl)
    def checked_op(*args, **kwargs):
        if before is not None:
            before()
        if kwargs or len(args) != nargs:  # the general path; all positional is the fast one
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{name}: {e}; expected {name}{signature}") from None
            bound.apply_defaults()
            args = bound.args
        return impl(*check(op, args))

    checked_op.__doc__ = op.describe() + ("\n\n" + inspect.cleandoc(impl.__doc__)
                                          if impl.__doc__ else "")
    checked_op.__fastrnn_op__ = name
    return checked_op


def export(namespace, *modules, before=None):
    """Bind every op of the contract into ``namespace`` (a backend module's ``globals()``),
    taking each implementation from the first of ``modules`` that has it, or from the namespace
    itself; sets ``__all__``. A missing op is an ImportError naming it. ``before``: see bind."""
    sources = modules or (namespace,)
    for name in NAMES:
        for src in sources:
            impl = src.get(name) if isinstance(src, dict) else getattr(src, name, None)
            if impl is not None:
                break
        else:
            raise ImportError(f"{namespace.get('__name__', '?')}: no implementation of {name}")
        namespace[name] = bind(name, impl, before)
    namespace["__all__"] = list(NAMES) + [n for n in namespace.get("__all__", ())
                                          if n not in NAMES]
