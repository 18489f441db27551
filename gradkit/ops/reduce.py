"""Reductions: sum, prod, mean, max, min, logsumexp, var, std, any, all, argmax, argmin,
count_nonzero, and the scan cumulative_sum.

``axis`` is None (all), an int or a tuple; ``keepdims`` keeps reduced axes as 1.

>>> import gradkit as gk
>>> x = gk.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
>>> x.max().backward()          # a tie: the gradient is split evenly
>>> x.grad.numpy().tolist()
[[0.0, 0.5], [0.5, 0.0]]
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from gradkit.dtypes import as_dtype, native_dtype, to_numpy_dtype
from gradkit.errors import ArgumentError, GradkitError, ShapeError, describe
from gradkit.ops.broadcasting import keepdims_shape, normalize_axes
from gradkit.ops.elementwise import exp, sqrt, where
from gradkit.ops.samples import away_from_zero
from gradkit.ops.shape import flip, getitem, normalize_axis_list
from gradkit.registry import Sample, as_shape, composite, primitive
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
    if not shape:  # a 0-d array reduces to itself (NumPy takes axis 0 or -1 there)
        return 1
    return int(np.prod([shape[a] for a in normalize_axes(axis, len(shape))], dtype=np.int64))


def _accumulator(xp, dtype):
    """``dtype`` (None, a name or a dtype) as the array module's own dtype object."""
    return None if dtype is None else native_dtype(xp, as_dtype(dtype, "dtype"))


def _in_dtype_of(g, x):
    """``g`` cast to ``x``'s dtype (a reduction with ``dtype=`` may have changed it)."""
    return g if g.data.dtype == x.data.dtype else g.astype(x.dtype)


def expand_reduced(g: Tensor, x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    """The gradient ``g`` of a reduction of ``x`` over ``axis``, copied back along the
    reduced axes to ``x``'s shape (sum's gradient)."""
    return sum_backward(g, shape=x.shape, axis=axis, keepdims=keepdims)


def sum_vjp(ctx, g):
    (x,) = ctx.inputs
    return (_in_dtype_of(expand_reduced(g, x, ctx.params["axis"], ctx.params["keepdims"]), x),)


def _sum_samples(rng):
    return reduction_samples(rng) + [Sample(away_from_zero(rng, (3, 2)), axis=0,
                                            dtype=np.dtype("float64"))]


@primitive("sum", vjp=sum_vjp, samples=_sum_samples, family=FAMILY)
def sum_(xp, x, *, axis=None, keepdims=False, dtype=None):
    """Sum over ``axis``; ``dtype`` picks the accumulator and result dtype (by default
    the input's, or the default integer dtype for smaller integers, as the standard says).

    >>> import gradkit as gk
    >>> gk.sum(gk.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0).numpy().tolist()
    [4.0, 6.0]
    """
    return xp.sum(x, axis=axis, keepdims=keepdims, dtype=_accumulator(xp, dtype))


def _backward_samples(rng):
    """A gradient of the result of each reduction_samples case, with the input's shape."""
    cases = [(case, np.sum(np.zeros((2, 3, 4)), **case).shape) for case in AXIS_CASES]
    return [Sample(away_from_zero(rng, reduced), shape=(2, 3, 4), **case)
            for case, reduced in cases] + [
        Sample(away_from_zero(rng, ()), shape=(), axis=None, keepdims=False)]


def _as_reduced_with_keepdims(xp, g, shape, axis, keepdims):
    return g if keepdims else xp.reshape(g, keepdims_shape(shape, axis))


@functools.lru_cache(maxsize=256)
def _reduced_shape(shape: tuple, axis: Any, keepdims: bool, op: str) -> tuple:
    """The shape of a reduction over ``axis`` of an array of ``shape`` (a ShapeError
    for an axis out of range or named twice)."""
    if not shape and axis in (0, -1) and type(axis) is int:  # NumPy reduces 0-d ones so
        return ()
    axes = range(len(shape)) if axis is None else normalize_axis_list(
        axis, len(shape), op, "axis")
    return tuple(1 if i in axes else n for i, n in enumerate(shape) if keepdims or i not in axes)


def _reduction_backward_check(op: str):
    """The check of ``op`` (sum_backward, mean_backward): ``shape`` a shape, ``axis``
    axes of it, ``g`` shaped like the reduction's result."""
    def check(g, *, shape, axis=None, keepdims=False) -> None:
        shape = as_shape(shape, op, operand=g)
        try:
            expected = _reduced_shape(shape, tuple(axis) if type(axis) is list else axis,
                                      bool(keepdims), op)
        except GradkitError as exc:  # out of range, or named twice
            raise ShapeError(f"{exc} (shape {shape}); operand: {describe(g)}") from None
        except TypeError:
            raise ArgumentError(f"{op}: axis must be None, an int or a tuple of ints, got "
                                f"{axis!r}; operand: {describe(g)}") from None
        if g.data.shape != expected:
            raise ShapeError(f"{op}: g must have the shape of the reduction's result, "
                             f"{expected} (shape {shape}, axis {axis!r}, keepdims "
                             f"{keepdims}); got {describe(g)}")
    return check


def sum_backward_vjp(ctx, gg):
    return (sum_(gg, axis=ctx.params["axis"], keepdims=ctx.params["keepdims"]),)


@primitive(vjp=sum_backward_vjp, samples=_backward_samples, family=FAMILY,
           check=_reduction_backward_check("sum_backward"))
def sum_backward(xp, g, *, shape, axis=None, keepdims=False):
    """The VJP of ``sum(x, axis=axis, keepdims=keepdims)`` for an ``x`` of ``shape``:
    ``g`` repeated along the reduced axes (a read-only broadcast view).

    >>> import gradkit as gk
    >>> gk.sum_backward(gk.tensor([1.0, 2.0]), shape=(3, 2), axis=0).numpy().tolist()
    [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]
    """
    return xp.broadcast_to(_as_reduced_with_keepdims(xp, g, shape, axis, keepdims),
                           tuple(shape))


def prod_others_vjp(ctx, g):
    """d others_i / d x_j (i != j) is the product of all but x_i and x_j, so the gradient
    in x_j is ``prod(safe_x) / safe_x_j * sum over i != j of g_i / safe_x_i``, keeping
    the terms whose dropped pair {i, j} holds every zero of the slice (none with 3+)."""
    (x,) = ctx.inputs
    axis = ctx.params["axis"]
    zero = x == 0  # comparisons are ops without gradients
    safe_x = where(zero, 1.0, x)
    zeros = sum_(zero.astype(x.dtype), axis=axis, keepdims=True)
    q = g / safe_x
    total = sum_(q, axis=axis, keepdims=True)  # every i
    at_zeros = sum_(where(zero, q, 0.0), axis=axis, keepdims=True)  # i at a zero
    pairs = where(zero, where(zeros <= 1, total - q, where(zeros == 2, at_zeros - q, 0.0)),
                  where(zeros == 0, total - q, where(zeros == 1, at_zeros, 0.0)))
    return (prod(safe_x, axis=axis, keepdims=True) / safe_x * pairs,)


def _prod_others_samples(rng):
    """Without zeros (as prod's; tests/test_math_ops.py checks slices with zeros)."""
    return [Sample(away_from_zero(rng, (2, 3, 4)), axis=axis) for axis in (None, 0, (0, 2), -1)]


@primitive(vjp=prod_others_vjp, samples=_prod_others_samples, family=FAMILY)
def prod_others(xp, x, *, axis=None):
    """Each element's product of the other elements of its slice along ``axis``: the
    gradient of ``prod``, exact where ``x`` has zeros (one zero in a slice gets the
    product of the rest, every other element 0; two or more zeros, all 0).

    >>> import gradkit as gk
    >>> gk.prod_others(gk.tensor([[2.0, 3.0, 4.0], [2.0, 0.0, 5.0]]), axis=1).numpy().tolist()
    [[12.0, 8.0, 6.0], [0.0, 10.0, 0.0]]
    """
    zero = x == 0
    safe_x = xp.where(zero, xp.ones_like(x), x)
    zeros = xp.sum(xp.astype(zero, xp.int64), axis=axis, keepdims=True)
    rest = xp.prod(safe_x, axis=axis, keepdims=True)  # the product of the nonzero elements
    return xp.where(zero, xp.where(zeros == 1, rest, xp.zeros_like(x)),
                    xp.where(zeros == 0, rest / safe_x, xp.zeros_like(x)))


def prod_vjp(ctx, g):
    (x,) = ctx.inputs
    axis, keepdims = ctx.params["axis"], ctx.params["keepdims"]
    return (_in_dtype_of(expand_reduced(g, x, axis, keepdims), x) * prod_others(x, axis=axis),)


def _prod_samples(rng):
    """Without zeros: near a zero, finite differences of the third derivative cancel
    catastrophically (tests/test_math_ops.py checks zeros to second order)."""
    return reduction_samples(rng) + [Sample(away_from_zero(rng, (3, 2)), axis=0,
                                            dtype=np.dtype("float64"))]


@primitive(vjp=prod_vjp, samples=_prod_samples, family=FAMILY)
def prod(xp, x, *, axis=None, keepdims=False, dtype=None):
    """Product over ``axis``; the gradient is exact at zeros too (see ``prod_others``).

    >>> import gradkit as gk
    >>> x = gk.tensor([2.0, 0.0, 3.0], requires_grad=True)
    >>> gk.prod(x).backward()
    >>> x.grad.numpy().tolist()
    [0.0, 6.0, 0.0]
    """
    return xp.prod(x, axis=axis, keepdims=keepdims, dtype=_accumulator(xp, dtype))


def mean_backward_vjp(ctx, gg):
    return (mean(gg, axis=ctx.params["axis"], keepdims=ctx.params["keepdims"]),)


@primitive(vjp=mean_backward_vjp, samples=_backward_samples, family=FAMILY, float_only=True,
           check=_reduction_backward_check("mean_backward"))
def mean_backward(xp, g, *, shape, axis=None, keepdims=False):
    """The VJP of ``mean(x, axis=axis, keepdims=keepdims)`` for an ``x`` of ``shape``:
    ``g`` divided by the number of elements averaged, repeated along the reduced axes.

    >>> import gradkit as gk
    >>> gk.mean_backward(gk.tensor([1.0, 2.0]), shape=(4, 2), axis=0).numpy().tolist()[0]
    [0.25, 0.5]
    """
    count = _reduced_count(tuple(shape), axis)
    g = _as_reduced_with_keepdims(xp, g, shape, axis, keepdims)
    return xp.broadcast_to(g, tuple(shape)) / count


def mean_vjp(ctx, g):
    (x,) = ctx.inputs
    return (mean_backward(g, shape=x.shape, axis=ctx.params["axis"],
                          keepdims=ctx.params["keepdims"]),)


@primitive(vjp=mean_vjp, samples=reduction_samples, family=FAMILY, float_only=True)
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
    out = ctx.out
    if not keepdims:
        out = out.reshape(keepdims_shape(x.shape, axis))
    hits = (x == out).astype(x.dtype)  # a comparison: an op without gradient
    share = hits / sum_(hits, axis=axis, keepdims=True)
    return (expand_reduced(g, x, axis, keepdims) * share,)


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
    out = expand_reduced(ctx.out, x, axis, keepdims)
    return (expand_reduced(g, x, axis, keepdims) * exp(x - out),)


@primitive(vjp=logsumexp_vjp, samples=reduction_samples, family=FAMILY, float_only=True)
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


@composite(samples=_var_samples, family=FAMILY, float_only=True)
def var(x: Tensor, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False,
        ddof: float | None = None) -> Tensor:
    """Variance over ``axis``, dividing by ``N - correction`` (``ddof`` is NumPy's name).

    >>> import gradkit as gk
    >>> gk.var(gk.tensor([1.0, 2.0, 3.0, 4.0])).item()
    1.25
    >>> gk.var(gk.tensor([1.0, 2.0, 3.0, 4.0]), correction=1).item()
    1.6666666269302368
    """
    from gradkit.ops.elementwise import multiply
    if ddof is None:
        ddof = correction
    elif correction != 0.0 and correction != ddof:
        raise ArgumentError(f"var: correction={correction} and ddof={ddof} disagree; pass one "
                            "(ddof is NumPy's name for correction)")
    centered = x - mean(x, axis=axis, keepdims=True)
    count = _reduced_count(x.shape, axis)
    if count - ddof <= 0:
        raise ArgumentError(f"var: correction={ddof} leaves no degrees of freedom for "
                            f"{count} elements")
    return sum_(multiply(centered, centered), axis=axis, keepdims=keepdims) / (count - ddof)


@composite(samples=_var_samples, family=FAMILY, float_only=True)
def std(x: Tensor, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False,
        ddof: float | None = None) -> Tensor:
    """Standard deviation over ``axis``: ``sqrt(var(...))``; its gradient is infinite
    where all the elements of a slice are equal.

    >>> import gradkit as gk
    >>> gk.std(gk.tensor([1.0, 3.0])).item()
    1.0
    """
    return sqrt(var(x, axis=axis, keepdims=keepdims, ddof=ddof, correction=correction))


def _bool_reduction_samples(rng):
    return [Sample(rng.random((2, 3, 4)) > 0.3, **case) for case in AXIS_CASES] + [
        Sample(away_from_zero(rng, (3,)), axis=None, keepdims=False)]


@primitive("any", vjp=None, samples=_bool_reduction_samples, family=FAMILY)
def any_(xp, x, *, axis=None, keepdims=False):
    """Whether any element over ``axis`` is true (nonzero); no gradient.

    >>> import gradkit as gk
    >>> gk.any(gk.tensor([[True, False], [False, False]]), axis=1).numpy().tolist()
    [True, False]
    """
    return xp.any(x, axis=axis, keepdims=keepdims)


@primitive("all", vjp=None, samples=_bool_reduction_samples, family=FAMILY)
def all_(xp, x, *, axis=None, keepdims=False):
    """Whether every element over ``axis`` is true (nonzero); no gradient.

    >>> import gradkit as gk
    >>> gk.all(gk.tensor([[True, False], [True, True]]), axis=1).numpy().tolist()
    [False, True]
    """
    return xp.all(x, axis=axis, keepdims=keepdims)


@primitive(vjp=None, samples=_bool_reduction_samples, family=FAMILY)
def count_nonzero(xp, x, *, axis=None, keepdims=False):
    """How many elements over ``axis`` are nonzero, as the default integer dtype.

    >>> import gradkit as gk
    >>> gk.count_nonzero(gk.tensor([[1.0, 0.0], [2.0, 3.0]]), axis=1).numpy().tolist()
    [1, 2]
    """
    nonzero = x if to_numpy_dtype(x.dtype).kind == "b" else x != 0
    return xp.sum(xp.astype(nonzero, xp.int64), axis=axis, keepdims=keepdims)


def _scan_axis(x_ndim: int, axis: int | None) -> int:
    if axis is None:
        if x_ndim != 1:
            raise ValueError(f"axis must be given for an input with {x_ndim} dimensions "
                             "(None is allowed for 1-D inputs only)")
        return 0
    if not -x_ndim <= axis < x_ndim:
        raise IndexError(f"axis {axis} is out of range for {x_ndim} dimensions")
    return axis % x_ndim


def cumulative_sum_vjp(ctx, g):
    """out_k sums x_j for j <= k (j < k with include_initial), so x_j's gradient sums
    g_k for k >= j: a cumulative sum of g taken from the end."""
    (x,) = ctx.inputs
    axis = _scan_axis(x.ndim, ctx.params["axis"])
    if ctx.params["include_initial"]:
        index = [slice(None)] * g.ndim
        index[axis] = slice(1, None)
        g = getitem(g, index=tuple(index))
    reversed_sum = flip(cumulative_sum(flip(g, axis=axis), axis=axis), axis=axis)
    return (_in_dtype_of(reversed_sum, x),)


def _cumulative_sum_samples(rng):
    return [Sample(away_from_zero(rng, (5,))), Sample(away_from_zero(rng, (3, 4)), axis=1),
            Sample(away_from_zero(rng, (3, 4)), axis=0, include_initial=True),
            Sample(away_from_zero(rng, (2, 3, 2)), axis=-2)]


@primitive(vjp=cumulative_sum_vjp, samples=_cumulative_sum_samples, family=FAMILY)
def cumulative_sum(xp, x, *, axis=None, dtype=None, include_initial=False):
    """Running sums along ``axis`` (optional for 1-D input); ``include_initial`` starts
    with a 0, so the result is one longer along ``axis``.

    >>> import gradkit as gk
    >>> gk.cumulative_sum(gk.tensor([1.0, 2.0, 3.0])).numpy().tolist()
    [1.0, 3.0, 6.0]
    >>> gk.cumulative_sum(gk.tensor([1, 2]), include_initial=True).numpy().tolist()
    [0, 1, 3]
    """
    axis = _scan_axis(x.ndim, axis)
    dtype = _accumulator(xp, dtype)
    if hasattr(xp, "cumulative_sum"):
        return xp.cumulative_sum(x, axis=axis, dtype=dtype, include_initial=include_initial)
    out = xp.cumsum(x, axis=axis, dtype=dtype)  # libraries older than the 2023.12 name
    if include_initial:
        shape = list(out.shape)
        shape[axis] = 1
        out = xp.concat([xp.zeros(tuple(shape), dtype=out.dtype), out], axis=axis)
    return out


def _arg_samples(rng):
    return [Sample(away_from_zero(rng, (3, 4)), axis=None), Sample(away_from_zero(rng, (3, 4)), axis=1),
            Sample(away_from_zero(rng, (3, 4)), axis=0, keepdims=True)]


@primitive(vjp=None, samples=_arg_samples, family=FAMILY)
def argmax(xp, x, *, axis=None, keepdims=False):
    """Index of the (first) largest element (flattened when ``axis`` is None); no gradient.

    >>> import gradkit as gk
    >>> gk.argmax(gk.tensor([[1.0, 5.0], [7.0, 2.0]]), axis=1).numpy().tolist()
    [1, 0]
    """
    return xp.argmax(x, axis=axis, keepdims=keepdims)


@primitive(vjp=None, samples=_arg_samples, family=FAMILY)
def argmin(xp, x, *, axis=None, keepdims=False):
    """Index of the (first) smallest element (flattened when ``axis`` is None); no gradient.

    >>> import gradkit as gk
    >>> gk.argmin(gk.tensor([[1.0, 5.0], [7.0, 2.0]]), axis=1).numpy().tolist()
    [0, 1]
    """
    return xp.argmin(x, axis=axis, keepdims=keepdims)
