"""Elementwise math of the Array API standard, each op with its VJP beside it.

Trigonometric and hyperbolic functions and their inverses, logarithms and
exponentials in other bases, rounding (zero gradient), and the binary functions
``atan2``, ``hypot``, ``logaddexp``, ``remainder``, ``floor_divide``, ``copysign``.
Then the ops without a gradient: tests (``isnan``, ``signbit``...), logical and
bitwise operators. Special values (inf, nan, -0.0) follow the standard, since every
forward is the array library's own function.

>>> import gradkit as gk
>>> x = gk.tensor([0.0, 1.0], dtype="float64", requires_grad=True)
>>> gk.sin(x).sum().backward()
>>> [round(v, 4) for v in x.grad.numpy().tolist()]
[1.0, 0.5403]
"""
from __future__ import annotations

import math

import numpy as np

from gradkit.dtypes import to_numpy_dtype
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.elementwise import exp, sqrt
from gradkit.ops.samples import (BROADCAST_PAIRS, away_from_zero, binary_samples,
                                 distinct_pairs, unary_samples)
from gradkit.registry import Sample, primitive

FAMILY = "math"

LN2 = math.log(2.0)
LN10 = math.log(10.0)


def _within(low: float, high: float, shapes=((2, 3), (4,), ())):
    """Samples of one operand drawn uniformly from ``[low, high]``."""
    def samples(rng):
        return [Sample(rng.uniform(low, high, size=s)) for s in shapes]
    return samples


def _off_integers(rng, shape, scale: float = 3.0):
    """Values whose fractional part is in [0.1, 0.4] or [0.6, 0.9]: no rounding jump
    (floor, ceil, trunc at integers; round at halves) within reach of a gradcheck."""
    whole = np.floor(rng.uniform(-scale, scale, size=shape))
    frac = rng.uniform(0.1, 0.4, size=shape) + 0.5 * rng.integers(0, 2, size=shape)
    return whole + frac


def _rounding_samples(rng):
    return [Sample(_off_integers(rng, s)) for s in ((2, 3), (4,), ())]


def _zero_vjp(ctx, g):
    """A gradient of zero for every input that needs one (piecewise constant ops)."""
    xp = ctx.backend.xp
    return tuple(ctx.constant(xp.zeros(t.shape, dtype=t.data.dtype), from_input_values=False)
                 if needed else None
                 for t, needed in zip(ctx.inputs, ctx.needs))


def _is_integer(x) -> bool:
    return to_numpy_dtype(x.dtype).kind in "iu"


# -- trigonometric ----------------------------------------------------------------

def sin_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g * cos(x),)


@primitive(vjp=sin_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def sin(xp, x):
    """Sine (radians).

    >>> import gradkit as gk
    >>> gk.sin(gk.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    return xp.sin(x)


def cos_vjp(ctx, g):
    (x,) = ctx.inputs
    return (-g * sin(x),)


@primitive(vjp=cos_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def cos(xp, x):
    """Cosine (radians).

    >>> import gradkit as gk
    >>> gk.cos(gk.tensor([0.0])).numpy().tolist()
    [1.0]
    """
    return xp.cos(x)


def tan_vjp(ctx, g):
    out = ctx.out
    return (g * (1 + out * out),)


@primitive(vjp=tan_vjp, samples=_within(-1.2, 1.2), family=FAMILY, float_only=True)
def tan(xp, x):
    """Tangent (radians).

    >>> import gradkit as gk
    >>> gk.tan(gk.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    return xp.tan(x)


def asin_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / sqrt(1 - x * x),)


@primitive(vjp=asin_vjp, samples=_within(-0.8, 0.8), family=FAMILY, float_only=True)
def asin(xp, x):
    """Inverse sine, in ``[-pi/2, pi/2]``; nan outside ``[-1, 1]``.

    >>> import gradkit as gk
    >>> round(gk.asin(gk.tensor([1.0])).item(), 4)
    1.5708
    """
    return xp.asin(x)


def acos_vjp(ctx, g):
    (x,) = ctx.inputs
    return (-g / sqrt(1 - x * x),)


@primitive(vjp=acos_vjp, samples=_within(-0.8, 0.8), family=FAMILY, float_only=True)
def acos(xp, x):
    """Inverse cosine, in ``[0, pi]``; nan outside ``[-1, 1]``.

    >>> import gradkit as gk
    >>> gk.acos(gk.tensor([1.0])).numpy().tolist()
    [0.0]
    """
    return xp.acos(x)


def atan_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / (1 + x * x),)


@primitive(vjp=atan_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def atan(xp, x):
    """Inverse tangent, in ``[-pi/2, pi/2]``.

    >>> import gradkit as gk
    >>> round(gk.atan(gk.tensor([1.0])).item(), 4)
    0.7854
    """
    return xp.atan(x)


def atan2_vjp(ctx, g):
    y, x = ctx.inputs
    denominator = x * x + y * y
    return (unbroadcast(g * x / denominator, y) if ctx.needs[0] else None,
            unbroadcast(-g * y / denominator, x) if ctx.needs[1] else None)


@primitive(vjp=atan2_vjp, samples=binary_samples(), family=FAMILY, float_only=True)
def atan2(xp, x1, x2):
    """The angle of the point ``(x2, x1)``: ``atan(x1 / x2)`` in the right quadrant.

    The gradient is undefined at the origin and along the branch cut (``x1 == 0``,
    ``x2 < 0``).

    >>> import gradkit as gk
    >>> round(gk.atan2(gk.tensor([1.0]), gk.tensor([-1.0])).item(), 4)
    2.3562
    """
    return xp.atan2(x1, x2)


# -- hyperbolic ---------------------------------------------------------------------

def sinh_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g * cosh(x),)


@primitive(vjp=sinh_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def sinh(xp, x):
    """Hyperbolic sine.

    >>> import gradkit as gk
    >>> gk.sinh(gk.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    return xp.sinh(x)


def cosh_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g * sinh(x),)


@primitive(vjp=cosh_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def cosh(xp, x):
    """Hyperbolic cosine.

    >>> import gradkit as gk
    >>> gk.cosh(gk.tensor([0.0])).numpy().tolist()
    [1.0]
    """
    return xp.cosh(x)


def asinh_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / sqrt(x * x + 1),)


@primitive(vjp=asinh_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def asinh(xp, x):
    """Inverse hyperbolic sine.

    >>> import gradkit as gk
    >>> gk.asinh(gk.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    return xp.asinh(x)


def acosh_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / sqrt(x * x - 1),)


@primitive(vjp=acosh_vjp, samples=_within(1.2, 3.0), family=FAMILY, float_only=True)
def acosh(xp, x):
    """Inverse hyperbolic cosine, for ``x >= 1`` (nan below).

    >>> import gradkit as gk
    >>> gk.acosh(gk.tensor([1.0])).numpy().tolist()
    [0.0]
    """
    return xp.acosh(x)


def atanh_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / (1 - x * x),)


@primitive(vjp=atanh_vjp, samples=_within(-0.8, 0.8), family=FAMILY, float_only=True)
def atanh(xp, x):
    """Inverse hyperbolic tangent, for ``-1 < x < 1`` (+-inf at +-1, nan beyond).

    >>> import gradkit as gk
    >>> gk.atanh(gk.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    return xp.atanh(x)


# -- exponentials and logarithms -------------------------------------------------------

def expm1_vjp(ctx, g):
    return (g * (ctx.out + 1),)


@primitive(vjp=expm1_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def expm1(xp, x):
    """``exp(x) - 1``, accurate for small ``x``.

    >>> import gradkit as gk
    >>> gk.expm1(gk.tensor([1e-10], dtype="float64")).item()
    1.00000000005e-10
    """
    return xp.expm1(x)


def log1p_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / (1 + x),)


@primitive(vjp=log1p_vjp, samples=_within(-0.6, 2.0), family=FAMILY, float_only=True)
def log1p(xp, x):
    """``log(1 + x)``, accurate for small ``x``.

    >>> import gradkit as gk
    >>> gk.log1p(gk.tensor([1e-10], dtype="float64")).item() == 1e-10 - 0.5e-20
    True
    """
    return xp.log1p(x)


def log2_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / (x * LN2),)


@primitive(vjp=log2_vjp, samples=unary_samples(low=0.3), family=FAMILY, float_only=True)
def log2(xp, x):
    """Base-2 logarithm.

    >>> import gradkit as gk
    >>> gk.log2(gk.tensor([8.0])).numpy().tolist()
    [3.0]
    """
    return xp.log2(x)


def log10_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / (x * LN10),)


@primitive(vjp=log10_vjp, samples=unary_samples(low=0.3), family=FAMILY, float_only=True)
def log10(xp, x):
    """Base-10 logarithm.

    >>> import gradkit as gk
    >>> gk.log10(gk.tensor([100.0])).numpy().tolist()
    [2.0]
    """
    return xp.log10(x)


def exp2_vjp(ctx, g):
    return (g * ctx.out * LN2,)


@primitive(vjp=exp2_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def exp2(xp, x):
    """``2 ** x`` (NumPy's name; the standard spells it ``pow(2, x)``).

    >>> import gradkit as gk
    >>> gk.exp2(gk.tensor([3.0])).numpy().tolist()
    [8.0]
    """
    return xp.exp2(x) if hasattr(xp, "exp2") else xp.pow(2.0, x)


def logaddexp_vjp(ctx, g):
    x, y = ctx.inputs
    out = ctx.out
    return (unbroadcast(g * exp(x - out), x) if ctx.needs[0] else None,
            unbroadcast(g * exp(y - out), y) if ctx.needs[1] else None)


@primitive(vjp=logaddexp_vjp, samples=binary_samples(), family=FAMILY, float_only=True)
def logaddexp(xp, x1, x2):
    """``log(exp(x1) + exp(x2))`` without overflow.

    >>> import gradkit as gk
    >>> round(gk.logaddexp(gk.tensor([1000.0], dtype="float64"), 1000.0).item(), 4)
    1000.6931
    """
    return xp.logaddexp(x1, x2)


def reciprocal_vjp(ctx, g):
    out = ctx.out
    return (-g * out * out,)


@primitive(vjp=reciprocal_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def reciprocal(xp, x):
    """``1 / x``.

    >>> import gradkit as gk
    >>> gk.reciprocal(gk.tensor([4.0])).numpy().tolist()
    [0.25]
    """
    return xp.divide(xp.ones_like(x), x)


def hypot_vjp(ctx, g):
    x, y = ctx.inputs
    out = ctx.out
    return (unbroadcast(g * x / out, x) if ctx.needs[0] else None,
            unbroadcast(g * y / out, y) if ctx.needs[1] else None)


@primitive(vjp=hypot_vjp, samples=binary_samples(), family=FAMILY, float_only=True)
def hypot(xp, x1, x2):
    """``sqrt(x1**2 + x2**2)`` without overflow; the gradient is undefined at (0, 0).

    >>> import gradkit as gk
    >>> gk.hypot(gk.tensor([3.0]), 4.0).numpy().tolist()
    [5.0]
    """
    return xp.hypot(x1, x2)


# -- rounding and division (piecewise constant parts have a zero gradient) ------------

@primitive(vjp=_zero_vjp, samples=_rounding_samples, family=FAMILY)
def floor(xp, x):
    """The largest integer <= ``x`` (integer inputs come back as they are); zero gradient.

    >>> import gradkit as gk
    >>> gk.floor(gk.tensor([-1.5, 1.5])).numpy().tolist()
    [-2.0, 1.0]
    """
    return xp.positive(x) if _is_integer(x) else xp.floor(x)


@primitive(vjp=_zero_vjp, samples=_rounding_samples, family=FAMILY)
def ceil(xp, x):
    """The smallest integer >= ``x``; zero gradient.

    >>> import gradkit as gk
    >>> gk.ceil(gk.tensor([-1.5, 1.5])).numpy().tolist()
    [-1.0, 2.0]
    """
    return xp.positive(x) if _is_integer(x) else xp.ceil(x)


@primitive(vjp=_zero_vjp, samples=_rounding_samples, family=FAMILY)
def trunc(xp, x):
    """``x`` rounded towards zero; zero gradient.

    >>> import gradkit as gk
    >>> gk.trunc(gk.tensor([-1.5, 1.5])).numpy().tolist()
    [-1.0, 1.0]
    """
    return xp.positive(x) if _is_integer(x) else xp.trunc(x)


@primitive("round", vjp=_zero_vjp, samples=_rounding_samples, family=FAMILY)
def round_(xp, x):
    """``x`` rounded to the nearest integer, halves to even; zero gradient.

    >>> import gradkit as gk
    >>> gk.round(gk.tensor([0.5, 1.5, 2.6])).numpy().tolist()
    [0.0, 2.0, 3.0]
    """
    return xp.positive(x) if _is_integer(x) else xp.round(x)


def _division_samples(rng):
    """|x| < |y| (quotients in (-1, 1), never an integer), plus larger quotients kept
    off the integers, so the jumps of floor(x / y) stay out of a gradcheck's reach."""
    y = away_from_zero(rng, (2, 3), 0.5, 2.0)
    return distinct_pairs(rng) + [Sample(y * _off_integers(rng, (2, 3)), y)]


@primitive(vjp=_zero_vjp, samples=_division_samples, family=FAMILY)
def floor_divide(xp, x1, x2):
    """``floor(x1 / x2)`` (Python's ``//``); zero gradient.

    >>> import gradkit as gk
    >>> gk.floor_divide(gk.tensor([7.0, -7.0]), 2.0).numpy().tolist()
    [3.0, -4.0]
    """
    return xp.floor_divide(x1, x2)


def _with_upstream(pairs):
    """Samples ``(g, x1, x2)`` of a binary op's backward from samples of ``(x1, x2)``."""
    def samples(rng):
        return [Sample(away_from_zero(rng, np.broadcast_shapes(*(np.shape(a) for a in s.args))),
                       *s.args) for s in pairs(rng)]
    return samples


def remainder_backward_vjp(ctx, g):
    grad_out, x1, x2 = ctx.inputs
    # linear in grad_out; the quotient is piecewise constant: no gradient into x1, x2
    return (unbroadcast(remainder_backward(g, x1, x2), grad_out) if ctx.needs[0] else None,
            None, None)


@primitive(vjp=remainder_backward_vjp, samples=_with_upstream(_division_samples),
           family=FAMILY)
def remainder_backward(xp, g, x1, x2):
    """The VJP of remainder in ``x2`` (before unbroadcasting): ``-g * floor(x1 / x2)``.

    >>> import gradkit as gk
    >>> gk.remainder_backward(gk.tensor([1.0, 1.0]), gk.tensor([7.0, -7.0]), 3.0).numpy().tolist()
    [-2.0, 3.0]
    """
    return -g * xp.astype(xp.floor_divide(x1, x2), g.dtype)


def remainder_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(g, x) if ctx.needs[0] else None,
            unbroadcast(remainder_backward(g, x, y), y) if ctx.needs[1] else None)


@primitive(vjp=remainder_vjp, samples=_division_samples, family=FAMILY)
def remainder(xp, x1, x2):
    """``x1 - floor(x1 / x2) * x2``, with the sign of ``x2`` (Python's ``%``).

    >>> import gradkit as gk
    >>> gk.remainder(gk.tensor([7.0, -7.0]), 3.0).numpy().tolist()
    [1.0, 2.0]
    """
    return xp.remainder(x1, x2)


def copysign_backward_vjp(ctx, g):
    grad_out, x1, x2 = ctx.inputs
    # linear in grad_out; the signs are piecewise constant: no gradient into x1, x2
    return (unbroadcast(copysign_backward(g, x1, x2), grad_out) if ctx.needs[0] else None,
            None, None)


@primitive(vjp=copysign_backward_vjp, samples=_with_upstream(binary_samples()), family=FAMILY)
def copysign_backward(xp, g, x1, x2):
    """The VJP of copysign in ``x1`` (before unbroadcasting): ``g`` where ``x1`` and ``x2``
    have the same sign bit, else ``-g``.

    >>> import gradkit as gk
    >>> gk.copysign_backward(gk.tensor([2.0, 2.0]), gk.tensor([1.0, -1.0]),
    ...                      gk.tensor([-0.0, -3.0])).numpy().tolist()
    [-2.0, 2.0]
    """
    return xp.where(xp.signbit(x1) == xp.signbit(x2), g, -g)


def copysign_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(copysign_backward(g, x, y), x) if ctx.needs[0] else None), None


@primitive(vjp=copysign_vjp, samples=binary_samples(), family=FAMILY, float_only=True)
def copysign(xp, x1, x2):
    """``|x1|`` with the sign of ``x2``; no gradient flows into ``x2``.

    >>> import gradkit as gk
    >>> gk.copysign(gk.tensor([1.0, 2.0]), gk.tensor([-0.0, 3.0])).numpy().tolist()
    [-1.0, 2.0]
    """
    return xp.copysign(x1, x2)


def positive_vjp(ctx, g):
    return (g,)


@primitive(vjp=positive_vjp, samples=unary_samples(), family=FAMILY)
def positive(xp, x):
    """``+x``: a new tensor with the values of ``x``.

    >>> import gradkit as gk
    >>> gk.positive(gk.tensor([-1.0])).numpy().tolist()
    [-1.0]
    """
    return xp.positive(x)


# -- no gradient: tests, logical and bitwise operators ---------------------------------

def _special_values(rng):
    values = np.array([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 1e-310])
    return [Sample(values), Sample(away_from_zero(rng, (2, 3)))]


@primitive(vjp=None, samples=_special_values, family=FAMILY)
def isnan(xp, x):
    """True where ``x`` is nan.

    >>> import gradkit as gk
    >>> gk.isnan(gk.tensor([1.0, float("nan")])).numpy().tolist()
    [False, True]
    """
    return xp.isnan(x)


@primitive(vjp=None, samples=_special_values, family=FAMILY)
def isinf(xp, x):
    """True where ``x`` is +inf or -inf.

    >>> import gradkit as gk
    >>> gk.isinf(gk.tensor([1.0, float("-inf")])).numpy().tolist()
    [False, True]
    """
    return xp.isinf(x)


@primitive(vjp=None, samples=_special_values, family=FAMILY)
def isfinite(xp, x):
    """True where ``x`` is neither inf nor nan.

    >>> import gradkit as gk
    >>> gk.isfinite(gk.tensor([1.0, float("inf")])).numpy().tolist()
    [True, False]
    """
    return xp.isfinite(x)


@primitive(vjp=None, samples=_special_values, family=FAMILY, float_only=True)
def signbit(xp, x):
    """True where the sign bit of ``x`` is set (including ``-0.0``).

    >>> import gradkit as gk
    >>> gk.signbit(gk.tensor([-0.0, 0.0, -1.0])).numpy().tolist()
    [True, False, True]
    """
    return xp.signbit(x)


def _nextafter_samples(rng):
    return [Sample(away_from_zero(rng, a), away_from_zero(rng, b)) for a, b in BROADCAST_PAIRS[:4]]


@primitive(vjp=None, samples=_nextafter_samples, family=FAMILY, float_only=True)
def nextafter(xp, x1, x2):
    """The next representable float after ``x1`` towards ``x2`` (no gradient).

    >>> import gradkit as gk
    >>> gk.nextafter(gk.tensor([1.0]), 2.0).item() > 1.0
    True
    """
    return xp.nextafter(x1, x2)


def _bool_samples(rng):
    return [Sample(rng.random(a) > 0.5, rng.random(b) > 0.5) for a, b in BROADCAST_PAIRS[:6]]


def _bool_unary_samples(rng):
    return [Sample(rng.random(s) > 0.5) for s in ((2, 3), (4,), ())]


@primitive(vjp=None, samples=_bool_samples, family=FAMILY)
def logical_and(xp, x1, x2):
    """Elementwise ``x1 and x2`` of bool tensors.

    >>> import gradkit as gk
    >>> gk.logical_and(gk.tensor([True, True]), gk.tensor([True, False])).numpy().tolist()
    [True, False]
    """
    return xp.logical_and(x1, x2)


@primitive(vjp=None, samples=_bool_samples, family=FAMILY)
def logical_or(xp, x1, x2):
    """Elementwise ``x1 or x2`` of bool tensors.

    >>> import gradkit as gk
    >>> gk.logical_or(gk.tensor([False, False]), gk.tensor([True, False])).numpy().tolist()
    [True, False]
    """
    return xp.logical_or(x1, x2)


@primitive(vjp=None, samples=_bool_samples, family=FAMILY)
def logical_xor(xp, x1, x2):
    """Elementwise exclusive or of bool tensors.

    >>> import gradkit as gk
    >>> gk.logical_xor(gk.tensor([True, True]), gk.tensor([True, False])).numpy().tolist()
    [False, True]
    """
    return xp.logical_xor(x1, x2)


@primitive(vjp=None, samples=_bool_unary_samples, family=FAMILY)
def logical_not(xp, x):
    """Elementwise ``not x`` of a bool tensor.

    >>> import gradkit as gk
    >>> gk.logical_not(gk.tensor([True, False])).numpy().tolist()
    [False, True]
    """
    return xp.logical_not(x)


def _int_samples(rng, shift: bool = False):
    """Integer pairs (shift counts in [0, 8)); bool pairs too, except for shifts."""
    low, high = (0, 8) if shift else (-100, 100)
    out = [Sample(rng.integers(-100, 100, size=a), rng.integers(low, high, size=b))
           for a, b in BROADCAST_PAIRS[:6]]
    if not shift:
        out.append(Sample(rng.random((2, 3)) > 0.5, rng.random((3,)) > 0.5))
    return out


@primitive(vjp=None, samples=_int_samples, family=FAMILY)
def bitwise_and(xp, x1, x2):
    """Bitwise and of integer or bool tensors (the ``&`` operator).

    >>> import gradkit as gk
    >>> gk.bitwise_and(gk.tensor([12]), gk.tensor([10])).numpy().tolist()
    [8]
    """
    return xp.bitwise_and(x1, x2)


@primitive(vjp=None, samples=_int_samples, family=FAMILY)
def bitwise_or(xp, x1, x2):
    """Bitwise or of integer or bool tensors (the ``|`` operator).

    >>> import gradkit as gk
    >>> gk.bitwise_or(gk.tensor([12]), gk.tensor([10])).numpy().tolist()
    [14]
    """
    return xp.bitwise_or(x1, x2)


@primitive(vjp=None, samples=_int_samples, family=FAMILY)
def bitwise_xor(xp, x1, x2):
    """Bitwise exclusive or of integer or bool tensors (the ``^`` operator).

    >>> import gradkit as gk
    >>> gk.bitwise_xor(gk.tensor([12]), gk.tensor([10])).numpy().tolist()
    [6]
    """
    return xp.bitwise_xor(x1, x2)


@primitive(vjp=None, samples=lambda rng: [Sample(rng.integers(-100, 100, size=(2, 3))),
                                          Sample(rng.random(4) > 0.5)], family=FAMILY)
def bitwise_invert(xp, x):
    """Bitwise not of an integer or bool tensor (the ``~`` operator).

    >>> import gradkit as gk
    >>> gk.bitwise_invert(gk.tensor([0, 5])).numpy().tolist()
    [-1, -6]
    """
    return xp.bitwise_invert(x)


@primitive(vjp=None, samples=lambda rng: _int_samples(rng, shift=True), family=FAMILY)
def bitwise_left_shift(xp, x1, x2):
    """``x1 << x2`` of integer tensors (``x2 >= 0``).

    >>> import gradkit as gk
    >>> gk.bitwise_left_shift(gk.tensor([1, 3]), gk.tensor([2, 1])).numpy().tolist()
    [4, 6]
    """
    return xp.bitwise_left_shift(x1, x2)


@primitive(vjp=None, samples=lambda rng: _int_samples(rng, shift=True), family=FAMILY)
def bitwise_right_shift(xp, x1, x2):
    """``x1 >> x2`` of integer tensors (``x2 >= 0``).

    >>> import gradkit as gk
    >>> gk.bitwise_right_shift(gk.tensor([8, -8]), gk.tensor([2, 1])).numpy().tolist()
    [2, -4]
    """
    return xp.bitwise_right_shift(x1, x2)

