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


def _unary_backward_samples(**params):
    """Samples ``(g, x)`` of a unary op's backward, ``x`` away from the kinks at 0 and
    at the bounds in ``params``."""
    def samples(rng):
        return [Sample(away_from_zero(rng, s), away_from_zero(rng, s), **params)
                for s in ((2, 3), (4,), ())]
    return samples


def abs_backward_vjp(ctx, g):
    grad_out, x = ctx.inputs
    # linear in grad_out; x only picks the sign: zero gradient almost everywhere
    return (abs_backward(g, x) if ctx.needs[0] else None), None


@primitive(vjp=abs_backward_vjp, samples=_unary_backward_samples(), family=FAMILY)
def abs_backward(xp, g, x):
    """The VJP of abs: ``g * sign(x)`` (0 at 0).

    >>> import gradkit as gk
    >>> gk.abs_backward(gk.tensor([3.0, 3.0, 3.0]), gk.tensor([-2.0, 0.0, 1.0])).numpy().tolist()
    [-3.0, 0.0, 3.0]
    """
    return g * xp.astype(xp.sign(x), g.dtype)


def abs_vjp(ctx, g):
    (x,) = ctx.inputs
    return (abs_backward(g, x),)


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

def _selection_backward_samples(rng):
    """``(g, x, other)``: distinct pairs (every operand perturbed), then ties, where only
    ``g`` is perturbed (``x`` and ``other`` sit on the kink there)."""
    out = [Sample(away_from_zero(rng, np.broadcast_shapes(a, b)), *pair.args)
           for (a, b), pair in zip(BROADCAST_PAIRS[:5], distinct_pairs(rng))]
    x = away_from_zero(rng, (2, 3))
    other = np.where(rng.random((2, 3)) > 0.5, x, -x)  # ties and non-ties mixed
    return out + [Sample(away_from_zero(rng, (2, 3)), x, other, nondiff=(1, 2)),
                  Sample(away_from_zero(rng, (2, 3)), x, x[0], nondiff=(1, 2))]


def _winner_share(xp, wins, ties, dtype):
    """1 where ``x`` wins, 0.5 on ties, 0 elsewhere, as ``dtype``."""
    return xp.astype(wins, dtype) + xp.astype(ties, dtype) * 0.5


def maximum_backward_vjp(ctx, g):
    grad_out, x, other = ctx.inputs
    # linear in grad_out; x and other only pick the share: zero gradient almost everywhere
    return (unbroadcast(maximum_backward(g, x, other), grad_out) if ctx.needs[0] else None,
            None, None)


@primitive(vjp=maximum_backward_vjp, samples=_selection_backward_samples, family=FAMILY)
def maximum_backward(xp, g, x, other):
    """The VJP of maximum in ``x``: ``g`` where ``x > other``, ``g / 2`` on ties, else 0.

    Before unbroadcasting; maximum's gradient in ``other`` is ``maximum_backward(g, other, x)``.

    >>> import gradkit as gk
    >>> gk.maximum_backward(gk.tensor([4.0, 4.0, 4.0]), gk.tensor([1.0, 2.0, 3.0]),
    ...                     2.0).numpy().tolist()
    [0.0, 2.0, 4.0]
    """
    return g * _winner_share(xp, x > other, x == other, g.dtype)


def maximum_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(maximum_backward(g, x, y), x) if ctx.needs[0] else None,
            unbroadcast(maximum_backward(g, y, x), y) if ctx.needs[1] else None)


@primitive(vjp=maximum_vjp, samples=distinct_pairs, family=FAMILY)
def maximum(xp, x1, x2):
    """Elementwise larger of ``x1`` and ``x2``; ties split the gradient evenly.

    >>> import gradkit as gk
    >>> gk.maximum(gk.tensor([1.0, 5.0]), 2.0).numpy().tolist()
    [2.0, 5.0]
    """
    return xp.maximum(x1, x2)


def minimum_backward_vjp(ctx, g):
    grad_out, x, other = ctx.inputs
    return (unbroadcast(minimum_backward(g, x, other), grad_out) if ctx.needs[0] else None,
            None, None)


@primitive(vjp=minimum_backward_vjp, samples=_selection_backward_samples, family=FAMILY)
def minimum_backward(xp, g, x, other):
    """The VJP of minimum in ``x``: ``g`` where ``x < other``, ``g / 2`` on ties, else 0.

    >>> import gradkit as gk
    >>> gk.minimum_backward(gk.tensor([4.0, 4.0, 4.0]), gk.tensor([1.0, 2.0, 3.0]),
    ...                     2.0).numpy().tolist()
    [4.0, 2.0, 0.0]
    """
    return g * _winner_share(xp, x < other, x == other, g.dtype)


def minimum_vjp(ctx, g):
    x, y = ctx.inputs
    return (unbroadcast(minimum_backward(g, x, y), x) if ctx.needs[0] else None,
            unbroadcast(minimum_backward(g, y, x), y) if ctx.needs[1] else None)


@primitive(vjp=minimum_vjp, samples=distinct_pairs, family=FAMILY)
def minimum(xp, x1, x2):
    """Elementwise smaller of ``x1`` and ``x2``; ties split the gradient evenly.

    >>> import gradkit as gk
    >>> gk.minimum(gk.tensor([1.0, 5.0]), 2.0).numpy().tolist()
    [1.0, 2.0]
    """
    return xp.minimum(x1, x2)


def where_backward_vjp(ctx, g):
    grad_out, condition = ctx.inputs
    branch = ctx.params["branch"]
    return (unbroadcast(where_backward(g, condition, branch=branch), grad_out)
            if ctx.needs[0] else None, None)


def where_backward_samples(rng):
    return [Sample(away_from_zero(rng, g), rng.random(c) > 0.5, branch=branch)
            for g, c in (((2, 3), (2, 3)), ((2, 3), (3,)), ((4,), ())) for branch in (1, 2)]


def check_where_backward(g, condition, *, branch=1) -> None:
    if branch not in (1, 2) or type(branch) is bool:
        raise ArgumentError(f"where_backward: branch must be 1 (x1's gradient) or 2 (x2's), "
                            f"got {branch!r} (operands: {describe(g)}, {describe(condition)})")


@primitive(vjp=where_backward_vjp, samples=where_backward_samples, family=FAMILY,
           check=check_where_backward)
def where_backward(xp, g, condition, *, branch=1):
    """The VJP of ``where(condition, x1, x2)`` before unbroadcasting: in ``x1``
    (``branch=1``) ``g`` where ``condition`` holds, else 0; in ``x2`` (``branch=2``)
    the other way round. Masked entries are 0 even where ``g`` is inf or nan.

    >>> import gradkit as gk
    >>> c = gk.tensor([True, False])
    >>> gk.where_backward(gk.tensor([3.0, 4.0]), c, branch=2).numpy().tolist()
    [0.0, 4.0]
    """
    zero = xp.zeros((), dtype=g.dtype)
    return xp.where(condition, g, zero) if branch == 1 else xp.where(condition, zero, g)


def where_vjp(ctx, g):
    condition, x, y = ctx.inputs
    return (None,
            unbroadcast(where_backward(g, condition, branch=1), x) if ctx.needs[1] else None,
            unbroadcast(where_backward(g, condition, branch=2), y) if ctx.needs[2] else None)


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
    return (clip_backward(g, x, min=ctx.params["min"], max=ctx.params["max"]),)


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


def clip_backward_vjp(ctx, g):
    grad_out, x = ctx.inputs
    # linear in grad_out; x only picks where it passes: zero gradient almost everywhere
    return (clip_backward(g, x, **ctx.params) if ctx.needs[0] else None), None


def clip_backward_samples(rng):
    return [Sample(away_from_zero(rng, (3, 4)), away_from_zero(rng, (3, 4)), min=-0.1, max=1.0),
            Sample(away_from_zero(rng, (5,)), away_from_zero(rng, (5,)), min=0.1, max=None),
            Sample(away_from_zero(rng, ()), away_from_zero(rng, ()), min=None, max=0.1),
            Sample(away_from_zero(rng, (2,)), away_from_zero(rng, (2,)), min=None, max=None)]


@primitive(vjp=clip_backward_vjp, samples=clip_backward_samples, family=FAMILY)
def clip_backward(xp, g, x, *, min=None, max=None):
    """The VJP of clip: ``g`` where ``min <= x <= max`` (a None bound is no bound), else 0.

    >>> import gradkit as gk
    >>> gk.clip_backward(gk.tensor([5.0, 5.0, 5.0]), gk.tensor([-2.0, 0.5, 3.0]),
    ...                  min=0.0, max=1.0).numpy().tolist()
    [0.0, 5.0, 0.0]
    """
    if min is None and max is None:
        return g * xp.ones_like(x, dtype=g.dtype)  # a new array, like every other kernel's
    inside = (x >= min) if max is None else (x <= max) if min is None else \
        (x >= min) & (x <= max)
    return g * xp.astype(inside, g.dtype)


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
