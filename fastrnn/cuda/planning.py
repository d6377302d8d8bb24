"""Launch planning for the CUDA recurrences: pure Python, no CuPy, so CI tests it without a GPU.

Two strategies run the T sequential steps of a recurrence (fastrnn/cuda/recurrence.cu):

``persistent``
    One cooperative launch runs every step; blocks synchronize with ``grid.sync()`` between the
    phases of a step. A block owns ``U`` hidden units (all G gate columns of them) and a group
    of batch rows, and keeps its slice of ``Wh`` in shared memory for the whole launch when the
    slice fits ("resident"); otherwise it streams the slice from L2 every step.
``graph``
    One ordinary launch per phase and step (the ``*_step`` kernels: a tiled product of the
    step's input with ``Wh`` fused with the gate math), captured once per shape into a CUDA graph
    and replayed; no Python runs per step.

Selection rule (``choose``), in order:

1. an explicit strategy (argument, ``set_strategy`` in ``fastrnn.cuda``, or the environment
   variable ``FASTRNN_CUDA_STRATEGY=persistent|graph|auto``) wins, if it can run at all;
2. ``graph`` when the device cannot launch cooperative kernels, or when the persistent grid does
   not fit co-resident (occupancy API) even with one row group;
3. ``graph`` when ``N >= PERSISTENT_MAX_N``: the step product is then large enough that launch
   cost is small next to it, and the graph kernels may use many more blocks than fit
   co-resident;
4. ``graph`` when the ``Wh`` slices do not fit in shared memory and ``Wh`` is larger than half of
   L2 (a persistent grid would stream it from HBM every step with few blocks);
5. ``persistent`` otherwise.

Block-level product (both strategies): outputs ``(rows, J)`` with ``J = G*U`` (forward) or ``U``
(backward), computed in row chunks of ``NB`` rows; each of the 256 threads owns a 4x4 register
tile of one k-slice, so ``NB * J <= 4096``; ``A`` (h or dA) is staged ``KC`` columns at a time.
"""
import dataclasses
import math
import os

# Absolute import: the tests load this file by path, without the package (which imports CuPy).
from fastrnn.contract import GATES

NTHREADS = 256          # threads per block of every recurrence kernel
TILE_ELEMS = 16         # 4x4 register tile per thread
MAX_TILE_OUTPUTS = NTHREADS * TILE_ELEMS  # NB * J bound
NB_MAX = 64             # rows per product chunk
A_STAGE_BYTES = 32 * 1024   # staged A^T chunk (KC x (NB + 4))
B_STAGE_BYTES = 32 * 1024   # staged B chunk when Wh is not resident (KC x J)
MIN_ROWS_PER_GROUP = 16     # split batch rows across blocks only down to this many rows
PERSISTENT_MAX_N = 128      # see rule 3; to be tuned on the device
GRAPH_CACHE_SIZE = 32       # captured graphs kept per process (LRU)

# Phases per step: reset-before GRU needs r*h of all units before its candidate product.
PHASES = {"rnn": 1, "lstm": 1, "gru": 2, "gru_ra": 1}
KINDS = tuple(GATES)
DIRECTIONS = ("forward", "backward")
STRATEGIES = ("persistent", "graph")
ENV_STRATEGY = "FASTRNN_CUDA_STRATEGY"

# Argument table of the recurrence kernels (struct RecArgs in recurrence.cu), in order.
REC_ARGS_POINTERS = ("xw", "Wh", "h0", "c0", "b_hn", "dhs", "lengths", "hs", "cs", "acts",
                     "aux", "dA", "dhn", "dh0", "dc0")
REC_ARGS_INTS = ("T", "N", "H", "U", "ntiles", "ngroups", "rows_per_group", "NB", "KC",
                 "resident")
REC_ARGS_BYTES = 8 * len(REC_ARGS_POINTERS) + 4 * (len(REC_ARGS_INTS) + 2)  # + 2 pad ints

# Which arrays each op hands to the kernel (the rest are null); every op also hands
# ``lengths``, null when the caller gave None.
REC_ARRAYS = {key: names + ("lengths",) for key, names in {
    ("rnn", "forward"): ("xw", "Wh", "h0", "hs"),
    ("lstm", "forward"): ("xw", "Wh", "h0", "c0", "hs", "cs", "acts"),
    ("gru", "forward"): ("xw", "Wh", "h0", "hs", "acts", "aux"),
    ("gru_ra", "forward"): ("xw", "Wh", "b_hn", "h0", "hs", "acts", "aux"),
    ("rnn", "backward"): ("dhs", "Wh", "hs", "dA", "dh0"),
    ("lstm", "backward"): ("dhs", "Wh", "cs", "acts", "c0", "dA", "dh0", "dc0"),
    ("gru", "backward"): ("dhs", "Wh", "hs", "acts", "h0", "dA", "dh0"),
    ("gru_ra", "backward"): ("dhs", "Wh", "hs", "acts", "aux", "h0", "dA", "dhn", "dh0"),
}.items()}


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What the planner needs to know about a GPU (defaults: an H100 SXM)."""
    name: str = "NVIDIA H100 80GB HBM3"
    sm_count: int = 132
    smem_per_block_optin: int = 227 * 1024
    smem_per_sm: int = 228 * 1024
    l2_bytes: int = 50 * 1024 * 1024
    regs_per_sm: int = 65536
    max_threads_per_sm: int = 2048
    cooperative: bool = True


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one recurrence call is launched. ``strategy`` is "persistent" or "graph"."""
    kind: str
    direction: str
    strategy: str
    reason: str
    T: int
    N: int
    H: int
    itemsize: int
    G: int
    U: int               # hidden units per tile (multiple of 4)
    ntiles: int
    ngroups: int
    rows_per_group: int
    NB: int
    KC: int
    resident: bool       # Wh slice kept in shared memory for the whole launch
    smem_bytes: int      # dynamic shared memory per block
    grid: int            # blocks per launch
    block: int = NTHREADS
    launches: int = 1    # kernel launches per call (graph: nodes of the captured graph)

    @property
    def kernel(self):
        suffix = "persist" if self.strategy == "persistent" else "step"
        return f"{self.kind}_{'fwd' if self.direction == 'forward' else 'bwd'}_{suffix}"

    def int_args(self):
        """The integer fields of the kernel argument table, in REC_ARGS_INTS order."""
        values = dict(T=self.T, N=self.N, H=self.H, U=self.U, ntiles=self.ntiles,
                      ngroups=self.ngroups, rows_per_group=self.rows_per_group, NB=self.NB,
                      KC=self.KC, resident=int(self.resident))
        return tuple(values[k] for k in REC_ARGS_INTS)


def ceil_div(a, b):
    return -(-a // b)


def round_up(a, m):
    return ceil_div(a, m) * m


def normalize_strategy(name, source="strategy"):
    """None/"auto"/"" -> None; "persistent"/"graph" unchanged; anything else a ValueError."""
    if name is None:
        return None
    value = str(name).strip().lower()
    if value in ("", "auto"):
        return None
    if value not in STRATEGIES:
        raise ValueError(f"{source}: unknown CUDA strategy {name!r}; expected 'persistent', "
                         f"'graph' or 'auto'")
    return value


def env_strategy(environ=None):
    environ = os.environ if environ is None else environ
    return normalize_strategy(environ.get(ENV_STRATEGY), ENV_STRATEGY)


def _check(kind, direction, T, N, H, itemsize):
    if kind not in GATES:
        raise ValueError(f"unknown recurrence kind {kind!r}; expected one of {', '.join(KINDS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize must be 4 (float32) or 8 (float64), got {itemsize}")
    for name, v in (("T", T), ("N", N), ("H", H)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def product_shape(kind, direction, H, U):
    """(Kb, J): rows of the block's B (K of its widest product) and its columns."""
    G = GATES[kind]
    return (H, G * U) if direction == "forward" else (G * H, U)


def rows_per_chunk(rows, J):
    """NB: rows of one product chunk, a multiple of 4 with NB * J <= MAX_TILE_OUTPUTS."""
    cap = (MAX_TILE_OUTPUTS // J) // 4 * 4
    return max(4, min(NB_MAX, round_up(rows, 4), cap))


def k_chunk(Kb, J, NB, itemsize, resident):
    """KC: K columns staged per chunk, bounded by the A (and, when streaming, B) budgets."""
    kc = min(Kb, (A_STAGE_BYTES // itemsize) // (NB + 4))
    if not resident:
        kc = min(kc, (B_STAGE_BYTES // itemsize) // J)
    return max(1, kc)


def smem_elements(Kb, J, NB, KC, resident):
    """Dynamic shared memory in elements; the same carve as recurrence.cu:carve()."""
    b = Kb * J if resident else KC * J
    return b + KC * (NB + 4) + TILE_ELEMS * NTHREADS + NB * J


def default_blocks_per_sm(device, smem_bytes, regs_per_thread=128, threads=NTHREADS):
    """Occupancy model used when no occupancy API is at hand (tests, planning without a GPU)."""
    reserved = 1024  # per-block system shared memory on sm_80+
    by_smem = device.smem_per_sm // (smem_bytes + reserved) if smem_bytes else 32
    by_regs = device.regs_per_sm // (regs_per_thread * threads)
    by_threads = device.max_threads_per_sm // threads
    return max(0, min(by_smem, by_regs, by_threads))


def _geometry(kind, direction, T, N, H, itemsize, U, ngroups, allow_resident, device):
    """Tile geometry for a given U and number of row groups; resident when it fits."""
    G = GATES[kind]
    ntiles = ceil_div(H, U)
    rows_per_group = round_up(ceil_div(N, ngroups), 4)
    ngroups = ceil_div(N, rows_per_group)
    Kb, J = product_shape(kind, direction, H, U)
    NB = rows_per_chunk(rows_per_group, J)
    resident = False
    if allow_resident:
        KC = k_chunk(Kb, J, NB, itemsize, True)
        if smem_elements(Kb, J, NB, KC, True) * itemsize <= device.smem_per_block_optin:
            resident = True
    if not resident:
        KC = k_chunk(Kb, J, NB, itemsize, False)
    smem = smem_elements(Kb, J, NB, KC, resident) * itemsize
    return dict(G=G, U=U, ntiles=ntiles, ngroups=ngroups, rows_per_group=rows_per_group,
                NB=NB, KC=KC, resident=resident, smem_bytes=smem, grid=ntiles * ngroups)


def launches_per_call(kind, direction, T, strategy):
    if strategy == "persistent":
        return 1
    return len(graph_sequence(kind, direction, T))


def graph_sequence(kind, direction, T):
    """(t, phase) of every step-kernel launch in a captured graph, in order; t = -1 is the final
    dh0 product of the backward pass."""
    phases = range(PHASES[kind])
    if direction == "forward":
        return [(t, p) for t in range(T) for p in phases]
    return [(t, p) for t in range(T - 1, -1, -1) for p in phases] + [(-1, 0)]


def persistent_geometry(kind, direction, T, N, H, itemsize, device, blocks_per_sm=None):
    """The persistent launch for this shape, or (None, reason) when it cannot be co-resident."""
    bps_fn = blocks_per_sm or (lambda smem: default_blocks_per_sm(device, smem))
    # One tile per SM: U is the smallest multiple of 4 giving at most sm_count tiles.
    U = round_up(ceil_div(H, device.sm_count), 4)
    _, J = product_shape(kind, direction, H, U)
    if J * 4 > MAX_TILE_OUTPUTS:
        return None, f"tile too wide (J={J} > {MAX_TILE_OUTPUTS // 4})"
    ntiles = ceil_div(H, U)
    spare = max(1, device.sm_count // ntiles)
    ngroups = max(1, min(spare, ceil_div(N, MIN_ROWS_PER_GROUP)))
    while True:
        geo = _geometry(kind, direction, T, N, H, itemsize, U, ngroups, True, device)
        bps = bps_fn(geo["smem_bytes"])
        capacity = bps * device.sm_count
        if bps >= 1 and geo["grid"] <= capacity:
            return geo, (f"{geo['grid']} blocks <= {capacity} co-resident, Wh "
                         f"{'resident in shared memory' if geo['resident'] else 'streamed from L2'}")
        if ngroups == 1:
            return None, (f"persistent grid of {geo['grid']} blocks does not fit co-resident "
                          f"({bps} per SM x {device.sm_count} SMs)")
        ngroups = 1


def graph_geometry(kind, direction, T, N, H, itemsize, device):
    """Per-step kernels: no co-residency limit, so narrow tiles and one row chunk per block."""
    U = 4 if N <= 16 else 8 if N <= 64 else 16
    U = min(U, round_up(H, 4))
    _, J = product_shape(kind, direction, H, U)
    NB = rows_per_chunk(N, J)
    ngroups = ceil_div(N, NB)
    return _geometry(kind, direction, T, N, H, itemsize, U, ngroups, False, device)


def choose(kind, direction, T, N, H, itemsize, device=None, strategy=None, blocks_per_sm=None):
    """Plan one recurrence call (see the module docstring for the rule)."""
    device = device or DeviceInfo()
    _check(kind, direction, T, N, H, itemsize)
    strategy = normalize_strategy(strategy)
    pgeo, preason = (None, "device has no cooperative launch")
    if device.cooperative:
        pgeo, preason = persistent_geometry(kind, direction, T, N, H, itemsize, device,
                                            blocks_per_sm)
    G = GATES[kind]
    wh_bytes = H * G * H * itemsize
    if strategy == "persistent":
        if pgeo is None:
            raise ValueError(f"strategy 'persistent' cannot run {kind} {direction} with "
                             f"N={N}, H={H}: {preason}")
        chosen, reason = "persistent", f"forced; {preason}"
    elif strategy == "graph":
        chosen, reason = "graph", "forced"
    elif pgeo is None:
        chosen, reason = "graph", preason
    elif N >= PERSISTENT_MAX_N:
        chosen, reason = "graph", f"N={N} >= {PERSISTENT_MAX_N}: product-bound steps"
    elif not pgeo["resident"] and wh_bytes > device.l2_bytes // 2:
        chosen, reason = "graph", (f"Wh ({wh_bytes} bytes) fits neither shared memory nor half "
                                   f"of L2")
    else:
        chosen, reason = "persistent", preason
    geo = pgeo if chosen == "persistent" else graph_geometry(kind, direction, T, N, H, itemsize,
                                                             device)
    return Plan(kind=kind, direction=direction, strategy=chosen, reason=reason, T=T, N=N, H=H,
                itemsize=itemsize, launches=launches_per_call(kind, direction, T, chosen),
                **geo)


def rec_args(plan, arrays):
    """Arguments of the rec_set_args kernel after its table pointer: one entry per pointer
    field (the array, or None for a null pointer) then the int32 fields. ``arrays`` maps field
    names (REC_ARGS_POINTERS) to arrays; unknown names are an error."""
    import numpy as np
    unknown = set(arrays) - set(REC_ARGS_POINTERS)
    if unknown:
        raise KeyError(f"unknown recurrence argument(s): {sorted(unknown)}")
    return (tuple(arrays.get(name) for name in REC_ARGS_POINTERS)
            + tuple(np.int32(v) for v in plan.int_args()))


def elementwise_grid(n, sm_count, threads=256, waves=8):
    """Blocks for a grid-stride elementwise kernel: enough waves to hide latency, never more
    blocks than there is work."""
    if n <= 0:
        return 0
    return int(max(1, min(ceil_div(n, threads), sm_count * waves)))
