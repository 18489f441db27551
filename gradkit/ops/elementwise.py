"""Elementwise arithmetic, comparisons and casts, each with its VJP beside it.

Binary ops broadcast like NumPy; every VJP ends in ``unbroadcast`` so gradients
keep their input's shape and dtype.

>>> import gradkit as gk
>>> x = gk.tensor([1.0, 4.0], requires_grad=True)
>>> gk.sqrt(x).sum().backward()
>>> x.grad.numpy().tolist()
[0.5, 0.25]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.dtypes import native_dtype
from gradkit.errors import ArgumentError, DTypeError, describe
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.samples import (binary_samples, distinct_pairs, unary_samples,
                                 away_from_zero, BROADCAST_PAIRS)
from gradkit.registry import Sample, primitive, composite
from gradkit.tensor import Tensor

FAMILY = "elementwise"


# -- arithmetic ------------------------------------------------------------------

def add_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(g, x) if ctx.needs[0] else None,
            unbroadcast(g, y) if ctx.needs[1] else None)


@primitive(vjp=add_vjp, samples=binary_samples(), family=FAMILY)
def add(xp, x1, x2):
    """``x1 + x2`` with broadcasting.

    >>> import gradkit as gk
    >>> gk.add(gk.tensor([1.0, 2.0]), 1.0).numpy().tolist()
    [2.0, 3.0]
    """
    return xp.add(x1, x2)


def subtract_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(g, x) if ctx.needs[0] else None,
            unbroadcast(-g, y) if ctx.needs[1] else None)


@primitive(vjp=subtract_vjp, samples=binary_samples(), family=FAMILY)
def subtract(xp, x1, x2):
    """``x1 - x2`` with broadcasting.

    >>> import gradkit as gk
    >>> gk.subtract(1.0, gk.tensor([1.0, 2.0])).numpy().tolist()
    [0.0, -1.0]
    """
    return xp.subtract(x1, x2)


def multiply_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(g * y, x) if ctx.needs[0] else None,
            unbroadcast(g * x, y) if ctx.needs[1] else None)


@primitive(vjp=multiply_vjp, samples=binary_samples(), family=FAMILY)
def multiply(xp, x1, x2):
    """``x1 * x2`` with broadcasting.

    >>> import gradkit as gk
    >>> gk.multiply(gk.tensor([1.0, 2.0]), 3.0).numpy().tolist()
    [3.0, 6.0]
    """
    return xp.multiply(x1, x2)


def divide_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(g / y, x) if ctx.needs[0] else None,
            unbroadcast(-g * x / (y * y), y) if ctx.needs[1] else None)


@primitive(vjp=divide_vjp, samples=binary_samples(low=0.5), family=FAMILY, float_only=True)
def divide(xp, x1, x2):
    """``x1 / x2`` with broadcasting (true division).

    >>> import gradkit as gk
    >>> gk.divide(gk.tensor([1.0, 2.0]), 4.0).numpy().tolist()
    [0.25, 0.5]
    """
    return xp.divide(x1, x2)


def power_vjp(ctx, g):
    x, y = ctx.inputs
    gx = gy = None
    if ctx.needs[0]:
        # y * x ** (y - 1) with y == 0 is 0 (not 0 * inf at x == 0); the exponent is
        # kept finite on that branch too, so second derivatives stay NaN-free.
        zero_exponent = y == 0  # a comparison: an op without gradient
        safe_y = where(zero_exponent, 1.0, y)
        gx = unbroadcast(where(zero_exponent, 0.0, g * y * x ** (safe_y - 1)), x)
    if ctx.needs[1]:
        positive_base = x > 0
        safe_x = where(positive_base, x, 1.0)
        gy = unbroadcast(where(positive_base, g * ctx.out * log(safe_x), 0.0), y)
    return gx, gy


@primitive(vjp=power_vjp, samples=binary_samples(low=0.5), family=FAMILY)
def power(xp, x1, x2):
    """``x1 ** x2`` with broadcasting. The gradient in ``x2`` is 0 where ``x1 <= 0``.

    >>> import gradkit as gk
    >>> gk.power(gk.tensor([2.0, 3.0]), 2.0).numpy().tolist()
    [4.0, 9.0]
    """
    return xp.pow(x1, x2)


def negative_vjp(ctx, g):
    return (-g,)


@primitive(vjp=negative_vjp, samples=unary_samples(), family=FAMILY)
def negative(xp, x):
    """``-x``.

    >>> import gradkit as gk
    >>> gk.negative(gk.tensor([1.0, -2.0])).numpy().tolist()
    [-1.0, 2.0]
    """
    return xp.negative(x)


def copy_vjp(ctx, g):
    return (g,)


@primitive(vjp=copy_vjp, samples=unary_samples(), family=FAMILY)
def copy(xp, x):
    """A new array with ``x``'s values (never a view of it); the gradient passes through.

    >>> import gradkit as gk
    >>> x = gk.tensor([1.0, 2.0])
    >>> y = gk.copy(x)
    >>> y.numpy().tolist(), y.data is x.data
    ([1.0, 2.0], False)
    """
    return xp.asarray(x, copy=True)


def abs_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g * sign(x),)


@primitive("abs", vjp=abs_vjp, samples=unary_samples(), family=FAMILY)
def abs_(xp, x):
    """``|x|``; the gradient at 0 is 0.

    >>> import gradkit as gk
    >>> gk.abs(gk.tensor([-1.5, 2.0])).numpy().tolist()
    [1.5, 2.0]
    """
    return xp.abs(x)


def exp_vjp(ctx, g):
    return (g * ctx.out,)


@primitive(vjp=exp_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def exp(xp, x):
    """``e ** x``.

    >>> import gradkit as gk
    >>> gk.exp(gk.tensor([0.0])).numpy().tolist()
    [1.0]
    """
    return xp.exp(x)


def log_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g / x,)


@primitive(vjp=log_vjp, samples=unary_samples(low=0.3), family=FAMILY, float_only=True)
def log(xp, x):
    """Natural logarithm.

    >>> import gradkit as gk
    >>> gk.log(gk.tensor([1.0])).numpy().tolist()
    [0.0]
    """
    return xp.log(x)


def sqrt_vjp(ctx, g):
    return (g / (2 * ctx.out),)


@primitive(vjp=sqrt_vjp, samples=unary_samples(low=0.3), family=FAMILY, float_only=True)
def sqrt(xp, x):
    """Square root.

    >>> import gradkit as gk
    >>> gk.sqrt(gk.tensor([4.0])).numpy().tolist()
    [2.0]
    """
    return xp.sqrt(x)


@composite(samples=unary_samples(), family=FAMILY)
def square(x: Any, /) -> Tensor:
    """``x * x``.

    >>> import gradkit as gk
    >>> gk.square(gk.tensor([3.0])).numpy().tolist()
    [9.0]
    """
    return multiply(x, x)


# -- selection -------------------------------------------------------------------

def _tie_split_vjp(ctx, g, x_wins):
    """Route ``g`` to the winning operand; on ties each operand gets half."""
    x, y = ctx.inputs
    dtype = g.dtype  # comparisons are ops without gradients: share is a constant
    share = x_wins(x, y).astype(dtype) + 0.5 * (x == y).astype(dtype)
    return (unbroadcast(g * share, x) if ctx.needs[0] else None,
            unbroadcast(g * (1 - share), y) if ctx.needs[1] else None)


def maximum_vjp(ctx, g):
    return _tie_split_vjp(ctx, g, lambda a, b: a > b)


@primitive(vjp=maximum_vjp, samples=distinct_pairs, family=FAMILY)
def maximum(xp, x1, x2):
    """Elementwise larger of ``x1`` and ``x2``; ties split the gradient evenly.

    >>> import gradkit as gk
    >>> gk.maximum(gk.tensor([1.0, 5.0]), 2.0).numpy().tolist()
    [2.0, 5.0]
    """
    return xp.maximum(x1, x2)


def minimum_vjp(ctx, g):
    return _tie_split_vjp(ctx, g, lambda a, b: a < b)


@primitive(vjp=minimum_vjp, samples=distinct_pairs, family=FAMILY)
def minimum(xp, x1, x2):
    """Elementwise smaller of ``x1`` and ``x2``; ties split the gradient evenly.

    >>> import gradkit as gk
    >>> gk.minimum(gk.tensor([1.0, 5.0]), 2.0).numpy().tolist()
    [1.0, 2.0]
    """
    return xp.minimum(x1, x2)


def where_vjp(ctx, g):
    condition, x, y = ctx.inputs
    return (None,
            unbroadcast(where(condition, g, 0.0), x) if ctx.needs[1] else None,
            unbroadcast(where(condition, 0.0, g), y) if ctx.needs[2] else None)


def where_samples(rng):
    out = []
    for a, b in BROADCAST_PAIRS[:6]:
        shape = np.broadcast_shapes(a, b)
        out.append(Sample(rng.random(shape) > 0.5, away_from_zero(rng, a),
                          away_from_zero(rng, b)))
    return out


@primitive(vjp=where_vjp, samples=where_samples, family=FAMILY)
def where(xp, condition, x1, x2):
    """``x1`` where ``condition`` is true, else ``x2`` (all three broadcast).

    >>> import gradkit as gk
    >>> x = gk.tensor([1.0, -2.0])
    >>> gk.where(x > 0, x, 0.0).numpy().tolist()
    [1.0, 0.0]
    """
    return xp.where(condition, x1, x2)


def clip_vjp(ctx, g):
    (x,) = ctx.inputs
    lo, hi = ctx.params["min"], ctx.params["max"]
    inside = None  # comparisons are ops without gradients
    if lo is not None:
        inside = x >= lo
    if hi is not None:
        inside = (x <= hi) if inside is None else inside & (x <= hi)
    return (g * 1 if inside is None else g * inside.astype(g.dtype),)


def check_clip(x, *, min=None, max=None) -> None:
    """Bounds are Python numbers (or None): the gradient does not flow into them."""
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and not isinstance(bound, (int, float, np.integer, np.floating)):
            raise DTypeError(f"clip: argument {name} must be a number or None, got "
                            f"{type(bound).__name__}; for tensor bounds use "
                            "gk.minimum(gk.maximum(x, lo), hi)")
    if min is None and max is None:
        raise ArgumentError(f"clip: give min, max or both (operand: {describe(x)})")
    if min is not None and max is not None and min > max:
        raise ArgumentError(f"clip: min={min} is greater than max={max} (operand: {describe(x)})")


def clip_samples(rng):
    return [Sample(away_from_zero(rng, (3, 4)), min=-0.5, max=1.0),
            Sample(away_from_zero(rng, (5,)), min=0.1, max=None),
            Sample(away_from_zero(rng, (5,)), min=None, max=0.1)]


@primitive(vjp=clip_vjp, samples=clip_samples, family=FAMILY, check=check_clip)
def clip(xp, x, *, min=None, max=None):
    """``x`` limited to ``[min, max]`` (either may be None); gradient 0 outside.

    >>> import gradkit as gk
    >>> gk.clip(gk.tensor([-2.0, 0.5, 3.0]), min=0.0, max=1.0).numpy().tolist()
    [0.0, 0.5, 1.0]
    """
    return xp.clip(x, min, max)


# -- casts and comparisons (comparisons have no gradient) -------------------------

def astype_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g.astype(x.dtype),)


def astype_samples(rng):
    return [Sample(away_from_zero(rng, (2, 3)), dtype=np.dtype("float64"))]


@primitive(vjp=astype_vjp, samples=astype_samples, family=FAMILY)
def astype(xp, x, *, dtype):
    """``x`` converted to ``dtype``; the gradient converts back.

    >>> import gradkit as gk
    >>> gk.astype(gk.tensor([1.5]), "float64").dtype
    dtype('float64')
    """
    return xp.astype(x, native_dtype(xp, dtype))


def _comparison_samples(rng):
    return [Sample(away_from_zero(rng, a), away_from_zero(rng, b)) for a, b in BROADCAST_PAIRS]


@primitive(vjp=None, samples=_comparison_samples, family=FAMILY)
def equal(xp, x1, x2):
    """``x1 == x2`` as a bool tensor (no gradient).

    >>> import gradkit as gk
    >>> gk.equal(gk.tensor([1.0, 2.0]), 2.0).numpy().tolist()
    [False, True]
    """
    return xp.equal(x1, x2)


@primitive(vjp=None, samples=_comparison_samples, family=FAMILY)
def not_equal(xp, x1, x2):
    """``x1 != x2`` as a bool tensor (no gradient)."""
    return xp.not_equal(x1, x2)


@primitive(vjp=None, samples=_comparison_samples, family=FAMILY)
def less(xp, x1, x2):
    """``x1 < x2`` as a bool tensor (no gradient)."""
    return xp.less(x1, x2)


@primitive(vjp=None, samples=_comparison_samples, family=FAMILY)
def less_equal(xp, x1, x2):
    """``x1 <= x2`` as a bool tensor (no gradient)."""
    return xp.less_equal(x1, x2)


@primitive(vjp=None, samples=_comparison_samples, family=FAMILY)
def greater(xp, x1, x2):
    """``x1 > x2`` as a bool tensor (no gradient).

    >>> import gradkit as gk
    >>> gk.greater(gk.tensor([1.0, 3.0]), 2.0).numpy().tolist()
    [False, True]
    """
    return xp.greater(x1, x2)


@primitive(vjp=None, samples=_comparison_samples, family=FAMILY)
def greater_equal(xp, x1, x2):
    """``x1 >= x2`` as a bool tensor (no gradient)."""
    return xp.greater_equal(x1, x2)


@primitive(vjp=None, samples=unary_samples(), family=FAMILY)
def sign(xp, x):
    """-1, 0 or 1 by the sign of ``x`` (no gradient).

    >>> import gradkit as gk
    >>> gk.sign(gk.tensor([-2.0, 3.0])).numpy().tolist()
    [-1.0, 1.0]
    """
    return xp.sign(x)
