"""The CUDA backend ("cuda"): the ops of ``fastrnn.reference`` on CuPy arrays, as raw CUDA kernels.

Importing this package imports CuPy (``fastrnn`` itself never does; ``fastrnn.backend`` imports
this package only when the "cuda" backend is selected or a CuPy array arrives).

Recurrences (``*_forward`` / ``*_backward``) run the whole time loop on the device with one of two
strategies, chosen per call by ``plan()`` (rule in ``fastrnn.cuda.planning``):

- ``"persistent"``: one cooperative kernel launch for all T steps, ``Wh`` slices kept in shared
  memory (or streamed from L2), ``grid.sync()`` between steps;
- ``"graph"``: per-step kernels captured once per shape into a CUDA graph and replayed.

Both strategies take per-row ``lengths`` (see ``fastrnn.contract``): the step's product runs over
the whole batch and the gate epilogue stores zeros for a padded row; ``lengths=None`` passes a
null pointer (every row runs all T steps).

Override with ``set_strategy("persistent" | "graph" | None)`` or the environment variable
``FASTRNN_CUDA_STRATEGY`` (``set_strategy`` wins; ``None``/``"auto"`` restores the rule).
Sources: ``recurrence.cu`` and ``ops.cu``, compiled by ``fastrnn.cuda.compile``.
"""
import collections
import functools
import threading
import types

import cupy
import numpy as np

from .. import contract
from ..reference import layer
from ..reference import ops as reference_ops
from ..reference.ops import dropout_threshold
from . import compile as _compile
from . import planning
from .planning import DeviceInfo, Plan

# The ops of fastrnn.contract are added by contract.export at the end of this module.
__all__ = [
    "plan", "set_strategy", "get_strategy", "device_info", "clear_graph_cache", "Plan",
    "DeviceInfo",
]

_REC = "recurrence.cu"
_OPS = "ops.cu"
_UNSET = object()
_strategy = _UNSET  # _UNSET: read FASTRNN_CUDA_STRATEGY; None: automatic
_graphs = collections.OrderedDict()  # (plan, dtype, device, stream) -> _Captured
_graph_lock = threading.Lock()


# ------------------------------------------------------------------------------------ strategy
def set_strategy(name):
    """Force "persistent" or "graph" for every recurrence, or None (or "auto") for the rule."""
    global _strategy
    _strategy = planning.normalize_strategy(name)


def get_strategy():
    """The forced strategy, or None when ``plan()`` decides."""
    if _strategy is _UNSET:
        return planning.env_strategy()
    return _strategy


@functools.lru_cache(maxsize=None)
def device_info(device_id=None):
    """The planner's view of a GPU (the current one by default)."""
    dev = cupy.cuda.Device().id if device_id is None else int(device_id)
    props = cupy.cuda.runtime.getDeviceProperties(dev)
    attrs = cupy.cuda.Device(dev).attributes
    default = DeviceInfo()

    def get(prop, attr, fallback):
        value = props.get(prop)
        if value is None:
            value = attrs.get(attr, fallback)
        return int(value)

    name = props.get("name", b"")
    return DeviceInfo(
        name=name.decode(errors="replace") if isinstance(name, bytes) else str(name),
        sm_count=get("multiProcessorCount", "MultiProcessorCount", default.sm_count),
        smem_per_block_optin=get("sharedMemPerBlockOptin", "MaxSharedMemoryPerBlockOptin",
                                 48 * 1024),
        smem_per_sm=get("sharedMemPerMultiprocessor", "MaxSharedMemoryPerMultiprocessor",
                        64 * 1024),
        l2_bytes=get("l2CacheSize", "L2CacheSize", 0),
        regs_per_sm=get("regsPerMultiprocessor", "MaxRegistersPerMultiprocessor", 65536),
        max_threads_per_sm=get("maxThreadsPerMultiProcessor", "MaxThreadsPerMultiProcessor",
                               2048),
        cooperative=bool(get("cooperativeLaunch", "CooperativeLaunch", 0)),
    )


def _occupancy(kernel_name, dtype):
    """Co-resident blocks per SM of a persistent kernel for a dynamic shared-memory size,
    from the driver's occupancy calculator."""
    def blocks_per_sm(smem_bytes):
        kernel = _compile.get_kernel(_REC, kernel_name, dtype, cooperative=True,
                                     smem_bytes=smem_bytes)
        return cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
            kernel.kernel.ptr, planning.NTHREADS, int(smem_bytes))
    return blocks_per_sm


@functools.lru_cache(maxsize=1024)
def _plan(kind, direction, T, N, H, dtype_str, strategy, device_id):
    dtype = np.dtype(dtype_str)
    info = device_info(device_id)
    name = f"{kind}_{'fwd' if direction == 'forward' else 'bwd'}_persist"
    return planning.choose(kind, direction, T, N, H, dtype.itemsize, device=info,
                           strategy=strategy, blocks_per_sm=_occupancy(name, dtype))


def plan(kind, T, N, H, dtype=np.float32, direction="forward", strategy=None):
    """How a recurrence of this shape runs on the current device: a ``planning.Plan`` whose
    ``strategy`` is "persistent" or "graph" and whose ``reason`` says why. ``kind`` is "rnn",
    "lstm", "gru" or "gru_ra". ``strategy`` overrides ``get_strategy()`` for this query."""
    dtype = np.dtype(dtype)
    _compile.real_name(dtype)
    forced = planning.normalize_strategy(strategy) if strategy is not None else get_strategy()
    return _plan(kind, direction, int(T), int(N), int(H), dtype.str, forced,
                 cupy.cuda.Device().id)


def clear_graph_cache():
    """Drop every captured graph (they are rebuilt on demand)."""
    with _graph_lock:
        _graphs.clear()


# ----------------------------------------------------------------------------------- launching
class _Captured:
    """A captured step sequence and the argument table its kernels read."""

    def __init__(self, graph, table):
        self.graph = graph
        self.table = table


def _set_args(table, p, arrays, dtype):
    kernel = _compile.get_kernel(_REC, "rec_set_args", dtype)
    kernel((1,), (1,), (table,) + planning.rec_args(p, arrays))


def _run_persistent(p, dtype, arrays):
    kernel = _compile.get_kernel(_REC, p.kernel, dtype, cooperative=True, smem_bytes=p.smem_bytes)
    # Freed after return, but the pool reuses it only for work ordered after this launch.
    table = cupy.empty(planning.REC_ARGS_BYTES, dtype=cupy.uint8)
    _set_args(table, p, arrays, dtype)
    kernel((p.grid,), (p.block,), (table,), shared_mem=p.smem_bytes)


def _capture(p, dtype):
    kernel = _compile.get_kernel(_REC, p.kernel, dtype, smem_bytes=p.smem_bytes)
    _compile.get_kernel(_REC, "rec_set_args", dtype)
    table = cupy.empty(planning.REC_ARGS_BYTES, dtype=cupy.uint8)
    capture_stream = cupy.cuda.Stream(non_blocking=True)
    with capture_stream:
        capture_stream.begin_capture()
        try:
            for t, phase in planning.graph_sequence(p.kind, p.direction, p.T):
                kernel((p.grid,), (p.block,), (table, np.int32(t), np.int32(phase)),
                       shared_mem=p.smem_bytes)
        finally:
            graph = capture_stream.end_capture()
    return _Captured(graph, table)


def _run_graph(p, dtype, arrays):
    stream = cupy.cuda.get_current_stream()
    key = (p, np.dtype(dtype).str, cupy.cuda.Device().id, stream.ptr)
    with _graph_lock:
        entry = _graphs.get(key)
        if entry is not None:
            _graphs.move_to_end(key)
    if entry is None:
        entry = _capture(p, dtype)
        with _graph_lock:
            _graphs[key] = entry
            while len(_graphs) > planning.GRAPH_CACHE_SIZE:
                _graphs.popitem(last=False)
    # The table write is ordered after any earlier replay of this graph on this stream.
    _set_args(entry.table, p, arrays, dtype)
    entry.graph.launch(stream=stream)


def _require_cupy(op, arrays):
    for name, a in arrays.items():
        if a is not None and not isinstance(a, cupy.ndarray):
            raise TypeError(f"{op}: the cuda backend takes CuPy arrays; {name} is "
                            f"{type(a).__module__}.{type(a).__name__}")


def _recurrence(kind, direction, T, N, H, dtype, arrays, lengths):
    # lengths (N,) int64 or None (a null pointer: every row runs all T steps). Like every other
    # pointer it goes through the argument table, so a captured graph replays on new lengths.
    arrays = dict(arrays, lengths=lengths)
    _require_cupy(f"{kind}_{direction}", arrays)
    p = plan(kind, T, N, H, dtype, direction)
    if p.strategy == "persistent":
        _run_persistent(p, dtype, arrays)
    else:
        _run_graph(p, dtype, arrays)


def _empty_state(T, N, H):
    return T == 0 or N == 0 or H == 0


# ----------------------------------------------------------------------------------------- RNN
def rnn_forward(xw, Wh, h0, lengths=None):
    """h' = tanh(xw[t] + h @ Wh). Returns hs (T, N, H)."""
    T, N, _ = xw.shape
    H = Wh.shape[0]
    hs = cupy.empty((T, N, H), dtype=xw.dtype)
    if not _empty_state(T, N, H):
        _recurrence("rnn", "forward", T, N, H, xw.dtype, dict(xw=xw, Wh=Wh, h0=h0, hs=hs), lengths)
    return hs


def rnn_backward(dhs, Wh, hs, h0, lengths=None):
    """Returns (dA (T, N, H), dh0 (N, H))."""
    T, N, H = dhs.shape
    dA = cupy.empty_like(dhs)
    if _empty_state(T, N, H):
        return dA, cupy.zeros((N, H), dtype=dhs.dtype)
    dh0 = cupy.empty((N, H), dtype=dhs.dtype)
    _recurrence("rnn", "backward", T, N, H, dhs.dtype,
                dict(dhs=dhs, Wh=Wh, hs=hs, dA=dA, dh0=dh0), lengths)
    return dA, dh0


# ---------------------------------------------------------------------------------------- LSTM
def lstm_forward(xw, Wh, h0, c0, lengths=None):
    """Gates [f | g | i | o]. Returns hs, cs (T, N, H) and acts (T, N, 4H)."""
    T, N, _ = xw.shape
    H = Wh.shape[0]
    hs = cupy.empty((T, N, H), dtype=xw.dtype)
    cs = cupy.empty_like(hs)
    acts = cupy.empty_like(xw)
    if not _empty_state(T, N, H):
        _recurrence("lstm", "forward", T, N, H, xw.dtype,
                    dict(xw=xw, Wh=Wh, h0=h0, c0=c0, hs=hs, cs=cs, acts=acts), lengths)
    return hs, cs, acts


def lstm_backward(dhs, Wh, cs, acts, c0, lengths=None):
    """Returns (dA (T, N, 4H), dh0 (N, H), dc0 (N, H))."""
    T, N, H = dhs.shape
    dA = cupy.empty_like(acts)
    if _empty_state(T, N, H):
        return dA, cupy.zeros((N, H), dtype=dhs.dtype), cupy.zeros((N, H), dtype=dhs.dtype)
    dh0 = cupy.empty((N, H), dtype=dhs.dtype)
    dc0 = cupy.empty((N, H), dtype=dhs.dtype)
    _recurrence("lstm", "backward", T, N, H, dhs.dtype,
                dict(dhs=dhs, Wh=Wh, cs=cs, acts=acts, c0=c0, dA=dA, dh0=dh0, dc0=dc0), lengths)
    return dA, dh0, dc0


# ------------------------------------------------------------------------ GRU, reset before
def gru_forward(xw, Wh, h0, lengths=None):
    """Gates [z | r | h~]. Returns hs (T, N, H), acts (T, N, 3H) and rh (T, N, H) = r * h_prev."""
    T, N, _ = xw.shape
    H = Wh.shape[0]
    hs = cupy.empty((T, N, H), dtype=xw.dtype)
    rh = cupy.empty_like(hs)
    acts = cupy.empty_like(xw)
    if not _empty_state(T, N, H):
        _recurrence("gru", "forward", T, N, H, xw.dtype,
                    dict(xw=xw, Wh=Wh, h0=h0, hs=hs, acts=acts, aux=rh), lengths)
    return hs, acts, rh


def gru_backward(dhs, Wh, hs, acts, h0, lengths=None):
    """Returns (dA (T, N, 3H), dh0 (N, H))."""
    T, N, H = dhs.shape
    dA = cupy.empty_like(acts)
    if _empty_state(T, N, H):
        return dA, cupy.zeros((N, H), dtype=dhs.dtype)
    dh0 = cupy.empty((N, H), dtype=dhs.dtype)
    _recurrence("gru", "backward", T, N, H, dhs.dtype,
                dict(dhs=dhs, Wh=Wh, hs=hs, acts=acts, h0=h0, dA=dA, dh0=dh0), lengths)
    return dA, dh0


# ------------------------------------------------------------------------- GRU, reset after
def gru_ra_forward(xw, Wh, b_hn, h0, lengths=None):
    """Gates [z | r | n]. Returns hs (T, N, H), acts (T, N, 3H), hn (T, N, H) = h@Wh_n + b_hn."""
    T, N, _ = xw.shape
    H = Wh.shape[0]
    hs = cupy.empty((T, N, H), dtype=xw.dtype)
    hn = cupy.empty_like(hs)
    acts = cupy.empty_like(xw)
    if not _empty_state(T, N, H):
        _recurrence("gru_ra", "forward", T, N, H, xw.dtype,
                    dict(xw=xw, Wh=Wh, b_hn=b_hn, h0=h0, hs=hs, acts=acts, aux=hn), lengths)
    return hs, acts, hn


def gru_ra_backward(dhs, Wh, hs, acts, hn, h0, lengths=None):
    """Returns (dA (T, N, 3H), dhn (T, N, H), dh0 (N, H))."""
    T, N, H = dhs.shape
    dA = cupy.empty_like(acts)
    dhn = cupy.empty_like(dhs)
    if _empty_state(T, N, H):
        return dA, dhn, cupy.zeros((N, H), dtype=dhs.dtype)
    dh0 = cupy.empty((N, H), dtype=dhs.dtype)
    _recurrence("gru_ra", "backward", T, N, H, dhs.dtype,
                dict(dhs=dhs, Wh=Wh, hs=hs, acts=acts, aux=hn, h0=h0, dA=dA, dhn=dhn, dh0=dh0),
                lengths)
    return dA, dhn, dh0


# ------------------------------------------------------------------------------ other ops
def _grid(n):
    return (planning.elementwise_grid(n, device_info(cupy.cuda.Device().id).sm_count),)


def embedding_forward(W, idx):
    """W (V, D), idx (N, T) int -> (N, T, D) rows of W."""
    _require_cupy("embedding_forward", dict(W=W, idx=idx))
    D = W.shape[1]
    out = cupy.empty(tuple(idx.shape) + (D,), dtype=W.dtype)
    if out.size:
        ids = cupy.ascontiguousarray(idx.reshape(-1), dtype=cupy.int64)
        kernel = _compile.get_kernel(_OPS, "embedding_gather", W.dtype)
        kernel(_grid(out.size), (256,), (W, ids, out, np.int64(ids.size), np.int64(D)))
    return out


def embedding_backward(dout, idx, dW):
    """Scatter-add dout (N, T, D) into dW (V, D) by idx (N, T); dW is overwritten and returned."""
    _require_cupy("embedding_backward", dict(dout=dout, idx=idx, dW=dW))
    dW.fill(0)
    if dout.size:
        ids = cupy.ascontiguousarray(idx.reshape(-1), dtype=cupy.int64)
        kernel = _compile.get_kernel(_OPS, "embedding_scatter_add", dW.dtype)
        kernel(_grid(dout.size), (256,), (dout, ids, dW, np.int64(ids.size), np.int64(dW.shape[1])))
    return dW


def softmax_cross_entropy(x, t, grad=True):
    """Mean cross-entropy over rows whose label is not -1. Returns (loss 0-d, dx (M, V) or None)."""
    _require_cupy("softmax_cross_entropy", dict(x=x, t=t))
    M, V = x.shape
    loss = cupy.zeros((), dtype=x.dtype)
    dx = cupy.empty_like(x) if grad else None
    if M == 0:
        return loss, dx
    if V == 0:
        raise ValueError("softmax_cross_entropy: x must have at least one column (M, V>=1), "
                         f"got shape {tuple(x.shape)}")
    labels = cupy.ascontiguousarray(t, dtype=cupy.int64)
    count = cupy.empty((1,), dtype=cupy.int64)
    rowloss = cupy.empty((M,), dtype=cupy.float64)
    sm_count = device_info(cupy.cuda.Device().id).sm_count
    _compile.get_kernel(_OPS, "xent_count", x.dtype)((1,), (256,), (labels, np.int64(M), count))
    _compile.get_kernel(_OPS, "xent_rows", x.dtype)(
        (int(min(M, sm_count * 32)),), (256,),
        (x, labels, count, dx, rowloss, np.int64(M), np.int64(V), np.int32(bool(grad))))
    _compile.get_kernel(_OPS, "xent_sum", x.dtype)((1,), (256,), (rowloss, np.int64(M), loss))
    return loss, dx


def dropout_forward(x, ratio, seed):
    """Inverted dropout with the reference's counter hash. Returns (y, mask), both x.dtype."""
    _require_cupy("dropout_forward", dict(x=x))
    y = cupy.empty_like(x)
    mask = cupy.empty_like(x)
    if x.size:
        kernel = _compile.get_kernel(_OPS, "dropout_forward", x.dtype)
        kernel(_grid(x.size), (256,), (x, y, mask, np.int64(x.size), np.uint64(seed),
                                       np.uint64(dropout_threshold(ratio)),
                                       np.float64(1.0 / (1.0 - ratio))))
    return y, mask


# Layer ops: these recurrences between cuBLAS products (fastrnn.reference.layer); linear ops:
# the reference's, which run on CuPy arrays as they are.
_recurrences = types.SimpleNamespace(**{op.name: globals()[op.name] for op in contract.OPS
                                        if op.name.rsplit("_", 1)[0] in contract.GATES})
contract.export(globals(), globals(), layer.layer_ops(_recurrences), reference_ops)
