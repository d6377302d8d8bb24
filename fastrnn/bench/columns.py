"""What the cell benchmark times for one cell and size (N, T, D, H), column by column.

- ``reference``: the fastrnn layer (``TimeLSTM`` ...) with the NumPy reference backend forced.
- ``numba``, ``cpu``: the same layer with that fastrnn backend forced (``backend.load(name)``;
  a backend that cannot load here is reported with its reason). The time is everything the
  layer does (input checks, layout copies, the big GEMMs, the recurrence): what a user gets.
- ``torch``: ``torch.nn.LSTM / GRU / RNN`` (batch_first) with the same weights (converted by
  ``fastrnn.interop``); fwdbwd is autograd of ``(out * w).sum()`` with ``xs.requires_grad``.
  torch's GRU is the reset-after form: it is checked against the ``gru_ra`` reference and is the
  same-FLOPs stand-in on the ``gru`` rows.
- ``gemm``: the layer's matrix products alone through NumPy's BLAS (per step ``h @ Wh``,
  ``dA @ Wh^T``, and the big input and weight-gradient products), no gate math: what those
  products cost when a library multiplies them one call at a time.

Modes: ``fwdbwd`` (forward, then backward of ``sum(out * w)``), ``fwd``, and ``lengths``: fwdbwd
with fixed random per-row lengths in [T/2, T] (``make_lengths``). In ``lengths`` the fastrnn
columns pass the lengths to the layer; torch runs ``pack_padded_sequence(...,
enforce_sorted=False)``, the module, then ``pad_packed_sequence`` to T steps; gemm has no such
mode. Its rows set beside the fwdbwd rows give the cost of the lengths against the full T.
Every cell column is
checked against the reference on its warm-up call, in every mode, before anything is timed: a
column that disagrees gets a "wrong result" error and no time.
"""
import contextlib

import numpy as np

from ..checks import GATES  # gates per cell, G
from . import harness as hn

CELLS = ("lstm", "gru", "gru_ra", "rnn")
MODES = ("fwdbwd", "fwd", "lengths")
FASTRNN_COLUMNS = ("numba", "cpu")  # fastrnn CPU backends, by registry name
COLUMNS = ("reference",) + FASTRNN_COLUMNS + ("torch", "gemm")
CPU_GRID = ((10, 5, 100, 100), (20, 35, 200, 200), (20, 35, 650, 650), (20, 30, 128, 1024),
            (64, 50, 256, 256), (1, 100, 256, 256))
QUICK_GRID = ((20, 35, 200, 200), (64, 50, 256, 256))
# scaled max |column - reference| allowed on the check call (an agreement check, not a test)
CHECK_TOL = {"float32": 2e-3, "float64": 1e-8}


class WrongResult(Exception):
    """A column's outputs disagree with the reference: it must not be timed."""


def size_label(size):
    return "x".join(str(s) for s in size)


def matrix_flops(cell, size, mode):
    """Matrix FLOPs of one call: 2*N*T*G*H*(D+H) forward, three times that forward+backward;
    in ``lengths`` mode the N*T steps are the sum of the lengths."""
    N, T, D, H = size
    steps = int(make_lengths(size).sum()) if mode == "lengths" else N * T
    fwd = 2 * steps * GATES[cell] * H * (D + H)
    return fwd if mode == "fwd" else 3 * fwd


def make_weights(cell, D, H, dtype, seed=0):
    """Wx (D, G*H), Wh (H, G*H), b (G*H,), and b_hn (H,) for gru_ra (else None)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    Wx = (rng.standard_normal((D, G * H)) / np.sqrt(D)).astype(dtype)
    Wh = (rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(dtype)
    b = (0.1 * rng.standard_normal(G * H)).astype(dtype)
    b_hn = (0.1 * rng.standard_normal(H)).astype(dtype) if cell == "gru_ra" else None
    return Wx, Wh, b, b_hn


def make_inputs(size, dtype, seed=1):
    """xs (N, T, D) and the output weights w (N, T, H) of the loss sum(out * w)."""
    N, T, D, H = size
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, T, D)).astype(dtype),
            rng.standard_normal((N, T, H)).astype(dtype))


def make_lengths(size, seed=3):
    """Per-row lengths (N,) int64, uniform in [ceil(T/2), T]: the ragged batch of ``lengths``
    mode, the same in every column and process."""
    N, T = size[:2]
    return np.random.default_rng(seed).integers((T + 1) // 2, T + 1, size=N, dtype=np.int64)


def make_layer(cell, weights, xp=np):
    from fastrnn import layers
    Wx, Wh, b, b_hn = (None if a is None else xp.asarray(a) for a in weights)
    if cell == "lstm":
        return layers.TimeLSTM(Wx, Wh, b)
    if cell == "rnn":
        return layers.TimeRNN(Wx, Wh, b)
    if cell == "gru_ra":
        return layers.TimeGRU(Wx, Wh, b, reset_after=True, b_hn=b_hn)
    return layers.TimeGRU(Wx, Wh, b)


def layer_fns(layer, xs, w, lengths=None):
    """mode -> callable returning what the check compares: hs, then dxs and the grads (the
    ``lengths`` mode only when ``lengths`` (N,) is given)."""
    def fwd():
        return (layer.forward(xs),)

    def fwdbwd(lens=None):
        hs = layer.forward(xs, lens)
        return (hs, layer.backward(w)) + tuple(layer.grads)
    fns = {"fwd": fwd, "fwdbwd": fwdbwd}
    if lengths is not None:
        fns["lengths"] = lambda: fwdbwd(lengths)
    return fns


def torch_fns(cell, weights, xs_np, w_np, device="cpu", lengths=None):
    """torch.nn.LSTM / GRU / RNN with ``weights``: fwd (no_grad), fwdbwd (hs, dxs) and, when
    ``lengths`` (N,) is given, lengths (the same through packed sequences)."""
    import torch

    from fastrnn import interop
    Wx, Wh, b, b_hn = weights
    H = Wh.shape[0]
    kind = {"lstm": "lstm", "rnn": "rnn"}.get(cell, "gru")
    if kind == "gru" and b_hn is None:
        b_hn = np.zeros(H, Wx.dtype)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    mod = cls(Wx.shape[0], H, batch_first=True).to(device=device,
                                                    dtype=getattr(torch, Wx.dtype.name))
    with torch.no_grad():
        for k, v in interop.fastrnn_to_torch(kind, Wx, Wh, b, b_hn).items():
            getattr(mod, k + "_l0").copy_(torch.from_numpy(v))
    x = torch.from_numpy(xs_np).to(device)
    x_grad = x.clone().requires_grad_(True)
    w = torch.from_numpy(w_np).to(device)
    params = list(mod.parameters())

    def fwd():
        with torch.no_grad():
            return (mod(x)[0],)

    def run(x):
        return mod(x)[0]

    def fwdbwd(forward=run):
        for p in params:
            p.grad = None
        x_grad.grad = None
        out = forward(x_grad)
        (out * w).sum().backward()
        return out, x_grad.grad
    fns = {"fwd": fwd, "fwdbwd": fwdbwd}
    if lengths is not None:
        from torch.nn.utils import rnn
        lens = torch.from_numpy(np.asarray(lengths, np.int64))  # on the CPU, as torch wants

        def packed(x):
            seq = rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            return rnn.pad_packed_sequence(mod(seq)[0], batch_first=True,
                                           total_length=x.shape[1])[0]
        fns["lengths"] = lambda: fwdbwd(packed)
    return fns


class GemmFloor:
    """The matrix products of the design for one cell with no gate math (xp: numpy or cupy).

    Forward: X @ Wx + b over all N*T rows, then per step h @ Wh (GRU reset-before: the 2H block
    and the (r*h) @ Wh_h block apart). Backward: per step dA @ Wh^T (GRU reset-before: two
    products), then dWx = X^T dA, dWh = Hprev^T dA (per block for GRU), db, dX = dA Wx^T.
    States and gate gradients are fixed random arrays; outputs go to preallocated buffers."""

    def __init__(self, cell, size, weights, xp=np):
        N, T, D, H = size
        dtype = weights[0].dtype
        rng = np.random.default_rng(2)
        a = lambda *shape: xp.asarray(rng.standard_normal(shape).astype(dtype))  # noqa: E731
        self.cell, self.size, self.xp = cell, size, xp
        self.Wx, self.Wh, self.b = (xp.asarray(v) for v in weights[:3])
        self.X, self.h0, self.hs, self.rh = a(T * N, D), a(N, H), a(T, N, H), a(T, N, H)
        self.dA, self.dhn = a(T, N, GATES[cell] * H), a(T, N, H)
        self.step = xp.empty((N, GATES[cell] * H), dtype)
        self.step_h, self.dh, self.drh = (xp.empty((N, H), dtype) for _ in range(3))
        if cell == "gru":
            self.Wh_zr, self.Wh_h = self.Wh[:, :2 * H], self.Wh[:, 2 * H:]
            self.step_zr = xp.empty((N, 2 * H), dtype)

    def forward(self):
        xp = self.xp
        xw = self.X @ self.Wx
        xw += self.b
        for t in range(self.size[1]):
            h = self.h0 if t == 0 else self.hs[t - 1]
            if self.cell == "gru":
                xp.matmul(h, self.Wh_zr, out=self.step_zr)
                xp.matmul(self.rh[t], self.Wh_h, out=self.step_h)
            else:
                xp.matmul(h, self.Wh, out=self.step)
        return xw

    def backward(self):
        xp = self.xp
        N, T, D, H = self.size
        for t in range(T - 1, -1, -1):
            if self.cell == "gru":
                xp.matmul(self.dA[t, :, 2 * H:], self.Wh_h.T, out=self.drh)
                xp.matmul(self.dA[t, :, :2 * H], self.Wh_zr.T, out=self.dh)
            else:
                xp.matmul(self.dA[t], self.Wh.T, out=self.dh)
        dA2 = self.dA.reshape(T * N, -1)
        dWx, db, dX = self.X.T @ dA2, dA2.sum(axis=0), dA2 @ self.Wx.T
        if self.cell in ("gru", "gru_ra"):
            dWh = xp.empty_like(self.Wh)
            dWh[:, :2 * H] = self._prev_product(self.dA[..., :2 * H])
            dWh[:, 2 * H:] = (self.rh.reshape(-1, H).T @ self.dA[..., 2 * H:].reshape(-1, H)
                              if self.cell == "gru" else self._prev_product(self.dhn))
        else:
            dWh = self._prev_product(self.dA)
        return dWx, dWh, db, dX

    def _prev_product(self, dR):
        """[h0, hs[0], ..., hs[T-2]]^T @ dR without building the stacked matrix."""
        H, K = self.hs.shape[2], dR.shape[2]
        out = self.h0.T @ dR[0]
        if self.hs.shape[0] > 1:
            out += self.hs[:-1].reshape(-1, H).T @ dR[1:].reshape(-1, K)
        return out

    def fns(self):
        def fwdbwd():
            self.forward()
            return self.backward()
        return {"fwd": self.forward, "fwdbwd": fwdbwd}


def build(name, cell, size, dtype):
    """(mode -> callable, context factory, reference cell or None when there is nothing to
    check) of column ``name``; raises when the column cannot run here."""
    from fastrnn import backend
    weights = make_weights(cell, size[2], size[3], dtype)
    xs, w = make_inputs(size, dtype)
    lengths = make_lengths(size)
    if name == "gemm":
        return GemmFloor(cell, size, weights).fns(), contextlib.nullcontext, None
    if name == "torch":
        ref_cell = "gru_ra" if cell == "gru" else cell
        return torch_fns(cell, weights, xs, w, lengths=lengths), contextlib.nullcontext, ref_cell
    bname = "numpy" if name == "reference" else name
    backend.load(bname)  # ValueError with the reason when it cannot load here
    return (layer_fns(make_layer(cell, weights), xs, w, lengths), lambda: backend.use(bname),
            None if name == "reference" else cell)


def reference_outputs(cell, size, dtype, src_cell):
    """The reference backend's outputs for every mode, on the weights of ``src_cell`` (torch's
    GRU runs the reset-after form on the reset-before rows' weights, with b_hn = 0)."""
    from fastrnn import backend
    Wx, Wh, b, b_hn = make_weights(src_cell, size[2], size[3], dtype)
    if cell == "gru_ra" and b_hn is None:
        b_hn = np.zeros(Wh.shape[0], dtype)
    fns = layer_fns(make_layer(cell, (Wx, Wh, b, b_hn)), *make_inputs(size, dtype),
                    make_lengths(size))
    with backend.use("numpy"):
        return {m: [np.array(o) for o in fn()] for m, fn in fns.items()}


def as_numpy(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    elif hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":
        a = a.get()
    return np.asarray(a)


def check(outputs, ref, dtype, tol=None):
    """Largest |out - ref| scaled by max(1, |ref|max) over the outputs the column returns;
    raises WrongResult over ``tol`` (default CHECK_TOL of the dtype)."""
    worst = 0.0
    for i, (a, r) in enumerate(zip(outputs, ref)):
        a = as_numpy(a).astype(np.float64)
        if a.shape != r.shape:
            raise WrongResult(f"output {i} has shape {a.shape}, the reference {r.shape}")
        if a.size:
            if not np.isfinite(a).all():
                raise WrongResult(f"output {i} is not finite")
            worst = max(worst, float(np.max(np.abs(a - r)) / max(1.0, float(np.abs(r).max()))))
    tol = tol or CHECK_TOL[np.dtype(dtype).name]
    if worst > tol:
        raise WrongResult(f"differs from the reference by {worst:.2e} (> {tol:g})")
    return worst


def measure(name, cells, sizes, modes, dtype, timing, log=lambda m: None, builder=None,
            block=hn.time_block, tol=None):
    """Rows {cell, size, label, mode, time_s | error, ...} of column ``name``: built, warmed,
    checked against the reference in every mode, then timed in ``timing.rounds`` blocks.
    ``builder`` (default ``build``) and ``block`` (default ``harness.time_block``) are what the
    GPU benchmark replaces; ``tol`` overrides CHECK_TOL. A mode the column does not have
    (gemm's lengths) gives no row."""
    rows = []
    for cell in cells:
        for size in sizes:
            base = {"cell": cell, "size": dict(zip("NTDH", size)), "label": size_label(size)}
            try:
                fns, context, ref_cell = (builder or build)(name, cell, size, dtype)
                own = [m for m in modes if m in fns]
                samples, checks = {m: [] for m in own}, {}
                with context():
                    first = block(fns["fwdbwd"], hn.Timing(repeat=1))[0]
                    if ref_cell is not None:
                        ref = reference_outputs(ref_cell, size, dtype, cell)
                        for m in own:
                            checks[m] = check(fns[m](), ref[m], dtype, tol)
                    for _ in range(timing.rounds):
                        for m in own:
                            samples[m] += block(fns[m], timing)
            except WrongResult as e:
                rows += [dict(base, mode=m, error=f"WRONG RESULT: {e}", wrong=True)
                         for m in own]
                log(f"  {name:9s} {cell:6s} {base['label']:16s} WRONG RESULT: {e}")
                continue
            except Exception as e:
                rows += [dict(base, mode=m, error=hn.short_error(e)) for m in modes]
                continue
            for m in own:
                rows.append(dict(base, mode=m, time_s=hn.median(samples[m]),
                                 spread=hn.spread(samples[m]), samples_s=samples[m],
                                 check_err=checks.get(m), first_call_s=first))
            log(f"  {name:9s} {cell:6s} {base['label']:16s} "
                + "  ".join(f"{m} {hn.fmt_ms(hn.median(samples[m]))} ms" for m in own))
    return rows
