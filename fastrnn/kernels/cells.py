"""Numba recurrences: one compiled call runs the whole time loop of a cell.

Same ops, signatures and return values as ``fastrnn.reference.cells`` (read its module doc for
the math and the shapes). Per step the kernel does the recurrent product as one BLAS call
(``_blas.gemm``: NumPy's CBLAS, writing straight into the output/gate buffers, column blocks of
``Wh`` and ``Wh^T`` addressed through BLAS leading dimensions, so nothing is split, transposed
or copied) and then ONE fused pass of gate math over the (N, G*H) step block, written with the
branch-free exp of ``_vmath`` so LLVM vectorizes it. Nothing is allocated inside the time loop:
outputs and the little per-step scratch are allocated by the Python wrappers.

Shapes: T time, N batch, H hidden, G gates; buffers are time-major (T, N, G*H).

Backward passes write the pointwise part of the gradient into h_prev in the fused pass and let
the BLAS call accumulate its product on top (beta=1), so no extra pass adds them.

Lengths: every kernel takes ``lens`` (N,) int64, each row's steps (T for all when the caller
gave None). A padded step's row (t >= lens[n]) gets zeros in the fused pass, after the step's
BLAS product has filled it: the product is over the whole batch, the mask only in the pass.

Empty inputs (T, N or H equal to 0) never reach BLAS: the wrappers return correctly shaped
empty outputs and zero initial-state gradients, like the reference. Every operand arrives with
exact C strides (``fastrnn.contract``), so the leading dimensions handed to BLAS are valid.

Non-finite values propagate as in the reference (the contract's IEEE policy): BLAS carries NaN
and inf through the products and the ``_vmath`` functions return NaN for NaN and exact 0 / +-1
at saturation, so the gate formulas below, written in the reference's order of operations,
give NaN and inf where it does.
"""
import numpy as np
from numba import njit

from ._blas import gemm
from ._vmath import vsigmoid, vtanh

_JIT = dict(cache=True, error_model="numpy", nogil=True)


def _writeable(a):
    # Numba types read-only arrays differently, which would break `h0 if t == 0 else hs[t-1]`
    # unification in the kernels; read-only inputs are rare, copying them is cheap.
    return a if a.flags.writeable else a.copy()


def _one(a):
    # typed 1 of the input dtype: an int or Python-float literal would promote float32 math
    # to float64 inside the kernels (zero is derived as one - one)
    return a.dtype.type(1)


def _lens(lengths, T, N):
    """Each row's number of steps, int64 (N,)."""
    return np.full(N, T, dtype=np.int64) if lengths is None else lengths


def _empty(xw):
    T, N, GH = xw.shape
    return T == 0 or N == 0 or GH == 0


# The gate loops index each H-wide block through its own view (j from 0): indexing one row as
# ar[2*H + j] makes LLVM keep Numba's negative-index wraparound select (it cannot prove H >= 0),
# which turns every vector access into a gather. Measured, LSTM forward gate pass, N=20 H=200,
# float32: 25 ns/cell with ar[k*H + j], 3.0 ns/cell with block views.
@njit(**_JIT)
def _split4(r, H):
    return r[:H], r[H:2 * H], r[2 * H:3 * H], r[3 * H:4 * H]


@njit(**_JIT)
def _split3(r, H):
    return r[:H], r[H:2 * H], r[2 * H:3 * H]


# ----------------------------------------------------------------------------------------- RNN
@njit(**_JIT)
def _rnn_fwd(xw, Wh, h0, hs, lens, one):
    T, N, H = hs.shape
    zero = one - one
    for t in range(T):
        hp = h0 if t == 0 else hs[t - 1]
        out = hs[t]
        gemm(hp, Wh, out, zero, False)  # hs[t] (N, H) = h_prev @ Wh, activated in place below
        x = xw[t]
        for n in range(N):
            o, xr = out[n], x[n]
            if t >= lens[n]:
                o[:] = 0
                continue
            for j in range(H):
                o[j] = vtanh(o[j] + xr[j])


def rnn_forward(xw, Wh, h0, lengths=None):
    """h' = tanh(xw[t] + h @ Wh). Returns hs (T, N, H)."""
    hs = np.empty_like(xw)
    if not _empty(xw):
        _rnn_fwd(xw, Wh, _writeable(h0), hs, _lens(lengths, *xw.shape[:2]), _one(xw))
    return hs


@njit(**_JIT)
def _rnn_bwd(dhs, Wh, hs, dA, dh, lens, one):
    T, N, H = hs.shape
    zero = one - one
    for t in range(T - 1, -1, -1):
        d, g, h = dA[t], dhs[t], hs[t]
        for n in range(N):
            dr, gr, hr, dhr = d[n], g[n], h[n], dh[n]
            if t >= lens[n]:
                dr[:] = 0
                continue
            for j in range(H):
                y = hr[j]
                dr[j] = (gr[j] + dhr[j]) * (one - y * y)
        gemm(d, Wh, dh, zero, True)  # dh (N, H) = dA[t] @ Wh^T


def rnn_backward(dhs, Wh, hs, h0, lengths=None):
    """Returns (dA (T, N, H), dh0 (N, H))."""
    dA = np.empty_like(dhs)
    dh = np.zeros_like(h0)
    if not _empty(dhs):
        _rnn_bwd(dhs, Wh, hs, dA, dh, _lens(lengths, *dhs.shape[:2]), _one(dhs))
    return dA, dh


# ---------------------------------------------------------------------------------------- LSTM
@njit(**_JIT)
def _lstm_fwd(xw, Wh, h0, c0, hs, cs, acts, lens, one):
    T, N, H = hs.shape
    zero = one - one
    for t in range(T):
        hp = h0 if t == 0 else hs[t - 1]
        cp = c0 if t == 0 else cs[t - 1]
        a = acts[t]
        gemm(hp, Wh, a, zero, False)  # acts[t] (N, 4H) = h_prev @ Wh, activated in place below
        x, hn, cn = xw[t], hs[t], cs[t]
        for n in range(N):
            af, ag, ai, ao = _split4(a[n], H)
            xf, xg, xi, xo = _split4(x[n], H)
            cpr, cr, hr = cp[n], cn[n], hn[n]
            if t >= lens[n]:
                a[n, :] = 0
                cr[:] = 0
                hr[:] = 0
                continue
            for j in range(H):
                f = vsigmoid(af[j] + xf[j])
                g = vtanh(ag[j] + xg[j])
                i = vsigmoid(ai[j] + xi[j])
                o = vsigmoid(ao[j] + xo[j])
                c = f * cpr[j] + g * i
                af[j] = f
                ag[j] = g
                ai[j] = i
                ao[j] = o
                cr[j] = c
                hr[j] = o * vtanh(c)


def lstm_forward(xw, Wh, h0, c0, lengths=None):
    """c' = f*c + g*i, h' = o*tanh(c'). Returns hs, cs (T, N, H), acts (T, N, 4H) = [f|g|i|o]."""
    T, N, _ = xw.shape
    H = h0.shape[1]
    hs = np.empty((T, N, H), dtype=xw.dtype)
    cs = np.empty_like(hs)
    acts = np.empty_like(xw)
    if not _empty(xw):
        _lstm_fwd(xw, Wh, _writeable(h0), _writeable(c0), hs, cs, acts, _lens(lengths, T, N),
                  _one(xw))
    return hs, cs, acts


@njit(**_JIT)
def _lstm_bwd(dhs, Wh, cs, acts, c0, dA, dh, dc, lens, one):
    T, N, H = cs.shape
    zero = one - one
    for t in range(T - 1, -1, -1):
        cp = c0 if t == 0 else cs[t - 1]
        d, a, c, g = dA[t], acts[t], cs[t], dhs[t]
        for n in range(N):
            af, ag, ai, ao = _split4(a[n], H)
            df, dg, di, do = _split4(d[n], H)
            cr, cpr, gr, dhr, dcr = c[n], cp[n], g[n], dh[n], dc[n]
            if t >= lens[n]:
                d[n, :] = 0
                dcr[:] = 0
                continue
            for j in range(H):
                f = af[j]
                gg = ag[j]
                i = ai[j]
                o = ao[j]
                tc = vtanh(cr[j])
                dhv = gr[j] + dhr[j]
                dcv = dcr[j] + dhv * o * (one - tc * tc)
                df[j] = dcv * cpr[j] * f * (one - f)
                dg[j] = dcv * i * (one - gg * gg)
                di[j] = dcv * gg * i * (one - i)
                do[j] = dhv * tc * o * (one - o)
                dcr[j] = dcv * f
        gemm(d, Wh, dh, zero, True)  # dh (N, H) = dA[t] (N, 4H) @ Wh^T


def lstm_backward(dhs, Wh, cs, acts, c0, lengths=None):
    """Returns (dA (T, N, 4H), dh0 (N, H), dc0 (N, H))."""
    dA = np.empty_like(acts)
    dh = np.zeros_like(c0)
    dc = np.zeros_like(c0)
    if not _empty(dhs):
        _lstm_bwd(dhs, Wh, cs, acts, _writeable(c0), dA, dh, dc, _lens(lengths, *dhs.shape[:2]),
                  _one(dhs))
    return dA, dh, dc


# ------------------------------------------------------------------------ GRU, reset before
@njit(**_JIT)
def _gru_fwd(xw, Wh, h0, hs, acts, rh, lens, one):
    T, N, H = hs.shape
    zero = one - one
    for t in range(T):
        hp = h0 if t == 0 else hs[t - 1]
        a, x, rht, hn = acts[t], xw[t], rh[t], hs[t]
        gemm(hp, Wh[:, :2 * H], a[:, :2 * H], zero, False)  # acts[t, :, :2H] = h_prev @ Wh_zr
        for n in range(N):
            az, ar, _ = _split3(a[n], H)
            xz, xr, _ = _split3(x[n], H)
            rhr, hpr = rht[n], hp[n]
            if t >= lens[n]:
                a[n, :] = 0
                rhr[:] = 0
                continue
            for j in range(H):
                z = vsigmoid(az[j] + xz[j])
                r = vsigmoid(ar[j] + xr[j])
                az[j] = z
                ar[j] = r
                rhr[j] = r * hpr[j]
        gemm(rht, Wh[:, 2 * H:], hn, zero, False)  # hs[t] (N, H) = (r*h_prev) @ Wh_h, for now
        for n in range(N):
            az, _, ah = _split3(a[n], H)
            _, _, xh = _split3(x[n], H)
            hr, hpr = hn[n], hp[n]
            if t >= lens[n]:
                hr[:] = 0
                continue
            for j in range(H):
                z = az[j]
                ht = vtanh(xh[j] + hr[j])
                ah[j] = ht
                hr[j] = (one - z) * hpr[j] + z * ht


def gru_forward(xw, Wh, h0, lengths=None):
    """GRU, reset before. Returns hs (T, N, H), acts (T, N, 3H) = [z|r|h~], rh (T, N, H)."""
    T, N, _ = xw.shape
    H = h0.shape[1]
    hs = np.empty((T, N, H), dtype=xw.dtype)
    rh = np.empty_like(hs)
    acts = np.empty_like(xw)
    if not _empty(xw):
        _gru_fwd(xw, Wh, _writeable(h0), hs, acts, rh, _lens(lengths, T, N), _one(xw))
    return hs, acts, rh


@njit(**_JIT)
def _gru_bwd(dhs, Wh, hs, acts, h0, dA, dh, drh, lens, one):
    T, N, H = hs.shape
    zero = one - one
    for t in range(T - 1, -1, -1):
        hp = h0 if t == 0 else hs[t - 1]
        d, a, g = dA[t], acts[t], dhs[t]
        for n in range(N):
            az, _, ah = _split3(a[n], H)
            _, _, dah = _split3(d[n], H)
            gr, dhr = g[n], dh[n]
            if t >= lens[n]:
                d[n, :] = 0
                continue
            for j in range(H):
                z = az[j]
                ht = ah[j]
                dah[j] = (gr[j] + dhr[j]) * z * (one - ht * ht)
        gemm(d[:, 2 * H:], Wh[:, 2 * H:], drh, zero, True)  # drh (N, H) = dA_h @ Wh_h^T
        for n in range(N):
            az, ar, ah = _split3(a[n], H)
            daz, dar, _ = _split3(d[n], H)
            gr, dhr, drhr, hpr = g[n], dh[n], drh[n], hp[n]
            if t >= lens[n]:
                dhr[:] = 0  # the product below adds zero rows of dA to it
                continue
            for j in range(H):
                dhv = gr[j] + dhr[j]
                z = az[j]
                r = ar[j]
                ht = ah[j]
                hv = hpr[j]
                daz[j] = dhv * (ht - hv) * z * (one - z)
                dar[j] = drhr[j] * hv * r * (one - r)
                dhr[j] = dhv * (one - z) + drhr[j] * r
        gemm(d[:, :2 * H], Wh[:, :2 * H], dh, one, True)  # dh += [dA_z | dA_r] @ Wh_zr^T


def gru_backward(dhs, Wh, hs, acts, h0, lengths=None):
    """Returns (dA (T, N, 3H), dh0 (N, H))."""
    T, N, H = dhs.shape
    dA = np.empty_like(acts)
    dh = np.zeros_like(h0)
    if not _empty(dhs):
        _gru_bwd(dhs, Wh, hs, acts, _writeable(h0), dA, dh, np.empty((N, H), dhs.dtype),
                 _lens(lengths, T, N), _one(dhs))
    return dA, dh


# ------------------------------------------------------------------------- GRU, reset after
@njit(**_JIT)
def _gru_ra_fwd(xw, Wh, b_hn, h0, hs, acts, hn, lens, one):
    T, N, H = hs.shape
    zero = one - one
    for t in range(T):
        hp = h0 if t == 0 else hs[t - 1]
        a, x, hnt, hout = acts[t], xw[t], hn[t], hs[t]
        gemm(hp, Wh, a, zero, False)  # acts[t] (N, 3H) = h_prev @ Wh, activated in place below
        for n in range(N):
            az, ar, an = _split3(a[n], H)
            xz, xr, xn = _split3(x[n], H)
            hnr, hr, hpr = hnt[n], hout[n], hp[n]
            if t >= lens[n]:
                a[n, :] = 0
                hnr[:] = 0
                hr[:] = 0
                continue
            for j in range(H):
                z = vsigmoid(xz[j] + az[j])
                r = vsigmoid(xr[j] + ar[j])
                q = an[j] + b_hn[j]
                nv = vtanh(xn[j] + r * q)
                hnr[j] = q
                az[j] = z
                ar[j] = r
                an[j] = nv
                hr[j] = (one - z) * nv + z * hpr[j]


def gru_ra_forward(xw, Wh, b_hn, h0, lengths=None):
    """GRU, reset after. Returns hs (T, N, H), acts (T, N, 3H) = [z|r|n], hn (T, N, H)."""
    T, N, _ = xw.shape
    H = h0.shape[1]
    hs = np.empty((T, N, H), dtype=xw.dtype)
    hn = np.empty_like(hs)
    acts = np.empty_like(xw)
    if not _empty(xw):
        _gru_ra_fwd(xw, Wh, b_hn, _writeable(h0), hs, acts, hn, _lens(lengths, T, N), _one(xw))
    return hs, acts, hn


@njit(**_JIT)
def _gru_ra_bwd(dhs, Wh, hs, acts, hn, h0, dA, dhn, drec, dh, lens, one):
    T, N, H = hs.shape
    for t in range(T - 1, -1, -1):
        hp = h0 if t == 0 else hs[t - 1]
        d, a, g, hnt, dhnt = dA[t], acts[t], dhs[t], hn[t], dhn[t]
        for n in range(N):
            az, ar, an = _split3(a[n], H)
            dz, dr, dn = _split3(d[n], H)
            ez, er, en = _split3(drec[n], H)
            gr, dhr, hpr, hnr, dnr = g[n], dh[n], hp[n], hnt[n], dhnt[n]
            if t >= lens[n]:
                d[n, :] = 0
                drec[n, :] = 0
                dnr[:] = 0
                dhr[:] = 0
                continue
            for j in range(H):
                dhv = gr[j] + dhr[j]
                z = az[j]
                r = ar[j]
                nv = an[j]
                dan = dhv * (one - z) * (one - nv * nv)
                daz = dhv * (hpr[j] - nv) * z * (one - z)
                dar = dan * hnr[j] * r * (one - r)
                q = dan * r
                dz[j] = daz
                dr[j] = dar
                dn[j] = dan
                dnr[j] = q
                ez[j] = daz
                er[j] = dar
                en[j] = q
                dhr[j] = dhv * z
        # dh += [dA_z | dA_r | dhn] (N, 3H) @ Wh^T: one GEMM over a copy written in the fused pass,
        # expected cheaper than two smaller GEMMs (not measured)
        gemm(drec, Wh, dh, one, True)


def gru_ra_backward(dhs, Wh, hs, acts, hn, h0, lengths=None):
    """Returns (dA (T, N, 3H), dhn (T, N, H), dh0 (N, H))."""
    T, N, H = dhs.shape
    dA = np.empty_like(acts)
    dhn = np.empty_like(hn)
    dh = np.zeros_like(h0)
    if not _empty(dhs):
        _gru_ra_bwd(dhs, Wh, hs, acts, hn, _writeable(h0), dA, dhn,
                    np.empty((N, 3 * H), dhs.dtype), dh, _lens(lengths, T, N), _one(dhs))
    return dA, dhn, dh
