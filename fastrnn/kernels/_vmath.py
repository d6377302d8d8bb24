"""Branch-free exp / sigmoid / tanh that LLVM vectorizes inside Numba loops.

Why not ``math.exp`` / ``math.tanh``: in Numba both are scalar libm calls (measured on the 2-core
EPYC dev machine: float32 math.exp 2.7 ns/element, math.tanh 13.5 ns/element), so a fused gate
loop cannot be vectorized around them. The exp below is Cephes-style range reduction
(x = k ln2 + r, |r| <= ln2/2), a polynomial for exp(r) and 2**k built directly from exponent
bits; everything is straight-line arithmetic and selects, so LLVM emits AVX-512 code for the
whole loop (float32 exp 0.28 ns/element, float64 0.9 ns/element).

Accuracy (max over randn*10 inputs, against float64 NumPy): float32 exp rel 8e-8, sigmoid abs
9e-8, tanh abs 1.8e-7; float64 exp rel 3.2e-16, tanh abs 3.4e-16. Inputs are clamped to the
polynomial's range (float32 [-87, 88], float64 [-708, 709]); outside it exp returns 0 or inf,
so sigmoid and tanh reach their limits exactly (sigmoid(-100) is 0, not a denormal: a backward
pass multiplies these by recurrent weights that may be huge). NaN propagates: every function
returns NaN for a NaN input (IEEE policy of ``fastrnn.contract``). The clamps are written as
``x if x > lo else lo`` on a stand-in value and the NaN is restored by the last select, because
a comparison-and-select drops NaN silently and a NaN float -> int conversion is undefined.

Callers must compile with ``error_model='numpy'``: under Numba's default 'python' error model
every float division carries a zero check, which blocks vectorization (sigmoid 4.0 -> 0.32 ns).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _bits_to_f32(typingctx, x):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


@intrinsic
def _bits_to_f64(typingctx, x):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return sig, codegen


# ---- float32: Cephes expf minimax polynomial (about 1 ulp on |r| <= ln2/2)
_F = np.float32
_LO32, _HI32 = _F(-87.0), _F(88.0)        # keeps k in [-126, 127]: 2**k stays a normal float;
                                          # below: 0, above: inf (true exp overflows at 88.72)
_LOG2E32 = _F(1.4426950408889634)
_ROUND32 = _F(12582912.0)                 # 1.5 * 2**23: x + R - R rounds to an integer
_LN2HI32, _LN2LO32 = _F(0.693359375), _F(-2.12194440e-4)
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_ONE32, _TWO32 = _F(1.0), _F(2.0)
_ZERO32, _INF32 = _F(0.0), _F(np.inf)


@njit(error_model="numpy")
def exp32(x):
    # The polynomial runs on a clamped stand-in (a NaN becomes _LO32, so no NaN reaches the
    # float -> int conversion); the selects at the end give the IEEE results outside the range.
    xc = x if x > _LO32 else _LO32
    xc = xc if xc < _HI32 else _HI32
    kf = (xc * _LOG2E32 + _ROUND32) - _ROUND32
    r = xc - kf * _LN2HI32
    r = r - kf * _LN2LO32
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * (r * r) + r + _ONE32
    e = p * _bits_to_f32((np.int32(kf) + np.int32(127)) << np.int32(23))
    e = _ZERO32 if x < _LO32 else e
    e = _INF32 if x > _HI32 else e
    return x if x != x else e


# ---- float64: Taylor to degree 12 on |r| <= ln2/2 (truncation error < 2e-16)
_LO64, _HI64 = -708.0, 709.0              # keeps k in [-1022, 1023]
_LOG2E64 = 1.4426950408889634
_ROUND64 = 6755399441055744.0             # 1.5 * 2**52
_LN2HI64, _LN2LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
(_Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8, _Q9, _Q10, _Q11,
 _Q12) = (1.0 / math.factorial(i) for i in range(2, 13))


@njit(error_model="numpy")
def exp64(x):
    xc = x if x > _LO64 else _LO64  # as exp32
    xc = xc if xc < _HI64 else _HI64
    kf = (xc * _LOG2E64 + _ROUND64) - _ROUND64
    r = xc - kf * _LN2HI64
    r = r - kf * _LN2LO64
    p = ((((((((((_Q12 * r + _Q11) * r + _Q10) * r + _Q9) * r + _Q8) * r + _Q7) * r + _Q6)
              * r + _Q5) * r + _Q4) * r + _Q3) * r + _Q2)
    p = p * (r * r) + r + 1.0
    e = p * _bits_to_f64((np.int64(kf) + np.int64(1023)) << np.int64(52))
    e = 0.0 if x < _LO64 else e
    e = np.inf if x > _HI64 else e
    return x if x != x else e


@njit(error_model="numpy")
def sigmoid32(x):
    return _ONE32 / (_ONE32 + exp32(-x))


@njit(error_model="numpy")
def sigmoid64(x):
    return 1.0 / (1.0 + exp64(-x))


@njit(error_model="numpy")
def tanh32(x):
    # 2*sigmoid(2x) - 1: absolute error ~1e-7 near 0 (cancellation), fine against the 1e-5 budget
    return _TWO32 / (_ONE32 + exp32(-_TWO32 * x)) - _ONE32


@njit(error_model="numpy")
def tanh64(x):
    return 2.0 / (1.0 + exp64(-2.0 * x)) - 1.0


def vexp(x):
    """exp(x), dtype-preserving; see module doc."""
    raise NotImplementedError("only callable from Numba-compiled code")


def vsigmoid(x):
    """1 / (1 + exp(-x)), dtype-preserving."""
    raise NotImplementedError("only callable from Numba-compiled code")


def vtanh(x):
    """tanh(x), dtype-preserving."""
    raise NotImplementedError("only callable from Numba-compiled code")


def _by_dtype(f32, f64):
    def typer(x):
        if x == types.float32:
            return lambda x: f32(x)
        if x == types.float64:
            return lambda x: f64(x)
        return None
    return typer


overload(vexp)(_by_dtype(exp32, exp64))
overload(vsigmoid)(_by_dtype(sigmoid32, sigmoid64))
overload(vtanh)(_by_dtype(tanh32, tanh64))
