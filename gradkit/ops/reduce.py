"""Reductions: sum, mean, max, min, logsumexp, var, argmax, argmin.

``axis`` is None (all), an int or a tuple; ``keepdims`` keeps reduced axes as 1.

>>> import gradkit as gk
>>> x = gk.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
>>> x.max().backward()          # a tie: the gradient is split evenly
>>> x.grad.numpy().tolist()
[[0.0, 0.5], [0.5, 0.0]]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.errors import ArgumentError
from gradkit.ops.broadcasting import expand_reduced, keepdims_shape, normalize_axes
from gradkit.ops.elementwise import exp
from gradkit.ops.samples import away_from_zero
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor

FAMILY = "reduce"

AXIS_CASES = [dict(axis=None, keepdims=False), dict(axis=0, keepdims=False),
              dict(axis=1, keepdims=True), dict(axis=(0, 2), keepdims=False),
              dict(axis=-1, keepdims=False)]


def reduction_samples(rng):
    """One (2, 3, 4) input per axis case, plus a 0-d input."""
    return [Sample(away_from_zero(rng, (2, 3, 4)), **case) for case in AXIS_CASES] + [
        Sample(away_from_zero(rng, ()), axis=None, keepdims=False)]


def distinct_reduction_samples(rng):
    """Like reduction_samples, with all elements distinct (no ties for max/min)."""
    def distinct(shape):
        values = rng.permutation(int(np.prod(shape))) * 0.25 + rng.uniform(0, 0.05)
        return values.reshape(shape)
    return [Sample(distinct((2, 3, 4)), **case) for case in AXIS_CASES] + [
        Sample(distinct(()), axis=None, keepdims=False)]


def _reduced_count(shape: tuple[int, ...], axis: Any) -> int:
    return int(np.prod([shape[a] for a in normalize_axes(axis, len(shape))], dtype=np.int64))


def sum_vjp(ctx, g):
    (x,) = ctx.inputs
    return (expand_reduced(g, x.shape, ctx.params["axis"], ctx.params["keepdims"]),)


@primitive("sum", vjp=sum_vjp, samples=reduction_samples, family=FAMILY)
def sum_(xp, x, *, axis=None, keepdims=False):
    """Sum over ``axis``.

    >>> import gradkit as gk
    >>> gk.sum(gk.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0).numpy().tolist()
    [4.0, 6.0]
    """
    return xp.sum(x, axis=axis, keepdims=keepdims)


def mean_vjp(ctx, g):
    (x,) = ctx.inputs
    axis = ctx.params["axis"]
    count = _reduced_count(x.shape, axis)
    return (expand_reduced(g, x.shape, axis, ctx.params["keepdims"]) / count,)


@primitive(vjp=mean_vjp, samples=reduction_samples, family=FAMILY)
def mean(xp, x, *, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``.

    >>> import gradkit as gk
    >>> gk.mean(gk.tensor([1.0, 2.0, 3.0])).item()
    2.0
    """
    return xp.mean(x, axis=axis, keepdims=keepdims)


def _extreme_vjp(ctx, g):
    """Gradient of max/min: to every element equal to the result, split evenly."""
    (x,) = ctx.inputs
    axis, keepdims = ctx.params["axis"], ctx.params["keepdims"]
    xp = ctx.backend.xp
    out = ctx.out_data if keepdims else xp.reshape(ctx.out_data, keepdims_shape(x.shape, axis))
    hits = xp.astype(x.data == out, x.data.dtype)
    share = ctx.constant(hits / xp.sum(hits, axis=axis, keepdims=True))
    return (expand_reduced(g, x.shape, axis, keepdims) * share,)


@primitive("max", vjp=_extreme_vjp, samples=distinct_reduction_samples, family=FAMILY)
def max_(xp, x, *, axis=None, keepdims=False):
    """Largest element over ``axis``; ties split the gradient evenly.

    >>> import gradkit as gk
    >>> gk.max(gk.tensor([[1.0, 5.0], [7.0, 2.0]]), axis=1).numpy().tolist()
    [5.0, 7.0]
    """
    return xp.max(x, axis=axis, keepdims=keepdims)


@primitive("min", vjp=_extreme_vjp, samples=distinct_reduction_samples, family=FAMILY)
def min_(xp, x, *, axis=None, keepdims=False):
    """Smallest element over ``axis``; ties split the gradient evenly.

    >>> import gradkit as gk
    >>> gk.min(gk.tensor([[1.0, 5.0], [7.0, 2.0]]), axis=1).numpy().tolist()
    [1.0, 2.0]
    """
    return xp.min(x, axis=axis, keepdims=keepdims)


def logsumexp_vjp(ctx, g):
    (x,) = ctx.inputs
    axis, keepdims = ctx.params["axis"], ctx.params["keepdims"]
    out = expand_reduced(ctx.out, x.shape, axis, keepdims)
    return (expand_reduced(g, x.shape, axis, keepdims) * exp(x - out),)


@primitive(vjp=logsumexp_vjp, samples=reduction_samples, family=FAMILY)
def logsumexp(xp, x, *, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis``, computed without overflow.

    >>> import gradkit as gk
    >>> round(gk.logsumexp(gk.tensor([1000.0, 1000.0], dtype="float64")).item(), 4)
    1000.6931
    """
    if x.size == 0:  # log of an empty sum
        return xp.log(xp.sum(xp.exp(x), axis=axis, keepdims=keepdims))
    shift = xp.max(x, axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0)
    total = xp.sum(xp.exp(x - shift), axis=axis, keepdims=True)
    out = xp.log(total) + shift
    return out if keepdims else xp.reshape(out, tuple(
        n for i, n in enumerate(x.shape) if i not in normalize_axes(axis, x.ndim)))


def _var_samples(rng):
    return reduction_samples(rng)[:5] + [Sample(away_from_zero(rng, (5, 2)), axis=0, ddof=1)]


@composite(samples=_var_samples, family=FAMILY)
def var(x: Tensor, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance over ``axis``, dividing by ``N - ddof``.

    >>> import gradkit as gk
    >>> gk.var(gk.tensor([1.0, 2.0, 3.0, 4.0])).item()
    1.25
    """
    from gradkit.ops.elementwise import multiply
    centered = x - mean(x, axis=axis, keepdims=True)
    count = _reduced_count(x.shape, axis)
    if count - ddof <= 0:
        raise ArgumentError(f"var: ddof={ddof} leaves no degrees of freedom for {count} elements")
    return sum_(multiply(centered, centered), axis=axis, keepdims=keepdims) / (count - ddof)


def _arg_samples(rng):
    return [Sample(away_from_zero(rng, (3, 4)), axis=None), Sample(away_from_zero(rng, (3, 4)), axis=1)]


@primitive(vjp=None, samples=_arg_samples, family=FAMILY)
def argmax(xp, x, *, axis=None):
    """Index of the largest element (flattened when ``axis`` is None); no gradient.

    >>> import gradkit as gk
    >>> gk.argmax(gk.tensor([[1.0, 5.0], [7.0, 2.0]]), axis=1).numpy().tolist()
    [1, 0]
    """
    return xp.argmax(x, axis=axis)


@primitive(vjp=None, samples=_arg_samples, family=FAMILY)
def argmin(xp, x, *, axis=None):
    """Index of the smallest element (flattened when ``axis`` is None); no gradient."""
    return xp.argmin(x, axis=axis)
