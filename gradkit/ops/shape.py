"""Shape ops: reshape, transpose, broadcast, squeeze, concatenate, stack, split, indexing.

>>> import gradkit as gk
>>> x = gk.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
>>> x[0, [0, 0, 2]].sum().backward()   # repeated indices add up
>>> x.grad.numpy().tolist()
[[2.0, 0.0, 1.0]]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gradkit.dtypes import to_numpy_dtype
from gradkit.errors import ArgumentError, ShapeError, describe
from gradkit.ops.broadcasting import normalize_axes
from gradkit.ops.samples import away_from_zero
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor

FAMILY = "shape"


def _draw(rng, shape):
    return away_from_zero(rng, shape)


# -- reshape family ----------------------------------------------------------------

def reshape_vjp(ctx, g):
    (x,) = ctx.inputs
    return (reshape(g, shape=x.shape),)


def reshape_samples(rng):
    return [Sample(_draw(rng, (2, 3)), shape=(3, 2)), Sample(_draw(rng, (2, 3)), shape=(-1,)),
            Sample(_draw(rng, (4,)), shape=(2, 1, 2)), Sample(_draw(rng, ()), shape=(1, 1))]


@primitive(vjp=reshape_vjp, samples=reshape_samples, family=FAMILY)
def reshape(xp, x, *, shape):
    """``x`` with a new shape of the same size (one entry may be -1).

    >>> import gradkit as gk
    >>> gk.reshape(gk.tensor([1.0, 2.0, 3.0, 4.0]), shape=(2, 2)).shape
    (2, 2)
    """
    return xp.reshape(x, tuple(shape))


def transpose_vjp(ctx, g):
    axes = ctx.params["axes"]
    ndim = g.ndim
    inverse = None if axes is None else tuple(int(i) for i in np.argsort([a % ndim for a in axes]))
    return (transpose(g, axes=inverse),)


def transpose_samples(rng):
    return [Sample(_draw(rng, (2, 3)), axes=None), Sample(_draw(rng, (2, 3, 4)), axes=(1, 2, 0)),
            Sample(_draw(rng, (2, 3, 4)), axes=None)]


@primitive(vjp=transpose_vjp, samples=transpose_samples, family=FAMILY)
def transpose(xp, x, *, axes=None):
    """Permute the axes (reverse them when ``axes`` is None), like ``np.transpose``.

    >>> import gradkit as gk
    >>> gk.transpose(gk.tensor([[1.0, 2.0]])).shape
    (2, 1)
    """
    return xp.permute_dims(x, tuple(range(x.ndim - 1, -1, -1)) if axes is None else tuple(axes))


def permute(x: Tensor, *axes: int) -> Tensor:
    """``x`` with its axes in the order ``axes`` (PyTorch's spelling of transpose).

    >>> import gradkit as gk
    >>> gk.permute(gk.tensor([[[1.0, 2.0]]]), 2, 0, 1).shape
    (2, 1, 1)
    """
    return transpose(x, axes=tuple(axes))


def matrix_transpose_vjp(ctx, g):
    return (matrix_transpose(g),)


@primitive(vjp=matrix_transpose_vjp, samples=lambda rng: [
    Sample(_draw(rng, (2, 3))), Sample(_draw(rng, (4, 2, 3)))], family=FAMILY)
def matrix_transpose(xp, x):
    """Swap the last two axes (``x.mT``).

    >>> import gradkit as gk
    >>> gk.matrix_transpose(gk.tensor([[[1.0, 2.0]]])).shape
    (1, 2, 1)
    """
    if x.ndim < 2:
        raise ValueError(f"needs at least 2 dimensions, got shape {x.shape}")
    return xp.matrix_transpose(x)


def broadcast_to_vjp(ctx, g):
    (x,) = ctx.inputs
    return (sum_to(g, shape=x.shape),)


def broadcast_to_samples(rng):
    return [Sample(_draw(rng, (3,)), shape=(2, 3)), Sample(_draw(rng, (2, 1)), shape=(2, 4)),
            Sample(_draw(rng, ()), shape=(2, 2)), Sample(_draw(rng, (1, 3)), shape=(2, 2, 3))]


@primitive(vjp=broadcast_to_vjp, samples=broadcast_to_samples, family=FAMILY)
def broadcast_to(xp, x, *, shape):
    """``x`` broadcast to ``shape``; the gradient sums back over the copies.

    >>> import gradkit as gk
    >>> gk.broadcast_to(gk.tensor([1.0, 2.0]), shape=(3, 2)).shape
    (3, 2)
    """
    return xp.broadcast_to(x, tuple(shape))


def sum_to_vjp(ctx, g):
    (x,) = ctx.inputs
    return (broadcast_to(g, shape=x.shape),)


def sum_to_samples(rng):
    return [Sample(_draw(rng, (2, 3)), shape=(3,)), Sample(_draw(rng, (2, 4)), shape=(2, 1)),
            Sample(_draw(rng, (2, 2)), shape=()), Sample(_draw(rng, (2, 2, 3)), shape=(1, 3))]


@primitive(vjp=sum_to_vjp, samples=sum_to_samples, family=FAMILY)
def sum_to(xp, x, *, shape):
    """Sum ``x`` down to ``shape``, the inverse of broadcasting (``unbroadcast``).

    >>> import gradkit as gk
    >>> gk.sum_to(gk.ones((3, 2)), shape=(2,)).numpy().tolist()
    [3.0, 3.0]
    """
    shape = tuple(shape)
    lead = x.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cannot sum shape {x.shape} to the larger shape {shape}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    out = xp.sum(x, axis=axes, keepdims=True) if axes else x
    return xp.reshape(out, shape)


def squeeze_vjp(ctx, g):
    (x,) = ctx.inputs
    return (reshape(g, shape=x.shape),)


@primitive(vjp=squeeze_vjp, samples=lambda rng: [
    Sample(_draw(rng, (2, 1, 3)), axis=None), Sample(_draw(rng, (1, 3, 1)), axis=0),
    Sample(_draw(rng, (1, 3, 1)), axis=(0, 2))], family=FAMILY)
def squeeze(xp, x, *, axis=None):
    """Drop size-1 axes (all of them, or those named by ``axis``).

    >>> import gradkit as gk
    >>> gk.squeeze(gk.zeros((1, 3, 1))).shape
    (3,)
    """
    if axis is None:
        axis = tuple(i for i, n in enumerate(x.shape) if n == 1)
    return xp.squeeze(x, axis=axis)


def expand_dims_vjp(ctx, g):
    (x,) = ctx.inputs
    return (reshape(g, shape=x.shape),)


@primitive(vjp=expand_dims_vjp, samples=lambda rng: [
    Sample(_draw(rng, (2, 3)), axis=0), Sample(_draw(rng, (2, 3)), axis=-1),
    Sample(_draw(rng, (3,)), axis=(0, 2))], family=FAMILY)
def expand_dims(xp, x, *, axis):
    """Insert size-1 axes at ``axis`` (an int or a tuple).

    >>> import gradkit as gk
    >>> gk.expand_dims(gk.zeros((3,)), axis=0).shape
    (1, 3)
    """
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = x.ndim + len(axes)
    if any(not -ndim <= a < ndim for a in axes):
        raise IndexError(f"axis {axis} is out of range for a result with {ndim} dimensions")
    inserted = {a % ndim for a in axes}
    if len(inserted) != len(axes):
        raise ValueError(f"axis {axis} names one position twice")
    if len(axes) == 1:
        return xp.expand_dims(x, axis=axes[0])
    dims = iter(x.shape)
    return xp.reshape(x, tuple(1 if i in inserted else next(dims) for i in range(ndim)))


# -- joining and splitting -----------------------------------------------------------

def concatenate_vjp(ctx, g):
    axis = ctx.params["axis"]
    grads, start = [], 0
    for t, needed in zip(ctx.inputs, ctx.needs):
        n = t.shape[axis]
        if needed:
            index = [slice(None)] * g.ndim
            index[axis] = slice(start, start + n)
            grads.append(getitem(g, tuple(index)))
        else:
            grads.append(None)
        start += n
    return tuple(grads)


@primitive(vjp=concatenate_vjp, variadic=True, samples=lambda rng: [
    Sample(_draw(rng, (2, 3)), _draw(rng, (1, 3)), axis=0),
    Sample(_draw(rng, (2, 3)), _draw(rng, (2, 1)), _draw(rng, (2, 2)), axis=1),
    Sample(_draw(rng, (3,)), _draw(rng, (2,)), axis=-1)], family=FAMILY)
def concatenate(xp, *arrays, axis=0):
    """Join tensors along an existing axis.

    >>> import gradkit as gk
    >>> gk.concatenate([gk.zeros((2, 3)), gk.ones((1, 3))], axis=0).shape
    (3, 3)
    """
    if not arrays:
        raise ValueError("needs at least one tensor")
    return xp.concat(arrays, axis=axis)


def _stack_samples(rng):
    return [Sample(_draw(rng, (2, 3)), _draw(rng, (2, 3)), axis=0),
            Sample(_draw(rng, (3,)), _draw(rng, (3,)), _draw(rng, (3,)), axis=-1)]


@composite(samples=_stack_samples, family=FAMILY)
def stack(*tensors: Any, axis: int = 0) -> Tensor:
    """Join same-shape tensors along a new axis.

    Takes a sequence (``gk.stack([a, b])``) or the tensors themselves.

    >>> import gradkit as gk
    >>> gk.stack([gk.zeros((2,)), gk.ones((2,))], axis=0).shape
    (2, 2)
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors:
        raise ArgumentError("stack: needs at least one tensor")
    shapes = {tuple(getattr(t, "shape", ())) for t in tensors}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors need one shape, got "
                         f"{[describe(t) for t in tensors]}")
    return concatenate([expand_dims(t, axis=axis) for t in tensors], axis=axis)


def _split_samples(rng):
    return [Sample(_draw(rng, (4, 3)), indices_or_sections=2, axis=0),
            Sample(_draw(rng, (2, 5)), indices_or_sections=[1, 3], axis=1)]


@composite(samples=_split_samples, family=FAMILY)
def split(x: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split into equal sections (an int) or at the given indices, like ``np.split``.

    >>> import gradkit as gk
    >>> [p.shape for p in gk.split(gk.zeros((4, 2)), 2)]
    [(2, 2), (2, 2)]
    """
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"split: axis {axis} is out of range for {describe(x)}")
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if indices_or_sections <= 0 or n % indices_or_sections:
            raise ShapeError(f"split: axis {axis} of {describe(x)} does not divide into "
                             f"{indices_or_sections} equal sections")
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, stop)
        pieces.append(getitem(x, tuple(index)))
    return pieces


# -- indexing -------------------------------------------------------------------------

def _raw_item(item: Any, xp: Any) -> Any:
    """One index entry with Tensors, lists and foreign arrays replaced by ``xp`` arrays."""
    if isinstance(item, Tensor):
        return item.data
    if isinstance(item, list):
        return xp.asarray(item) if item else xp.asarray(item, dtype=xp.int64)
    if isinstance(item, np.ndarray) and xp is not np:
        return xp.asarray(item)
    return item


def _raw_index(index: Any, xp: Any) -> tuple:
    """The index as a tuple of raw entries ending in ``...``.

    NumPy implies the trailing ``...``; the Array API standard wants it spelled out.
    """
    items = tuple(_raw_item(i, xp) for i in (index if isinstance(index, tuple) else (index,)))
    if any(i is Ellipsis for i in items) or _is_advanced(items):
        return items
    return items + (Ellipsis,)


def _is_advanced(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "shape") and getattr(i, "ndim", 0) > 0 or isinstance(i, list)
               for i in items)


def getitem_vjp(ctx, g):
    (x,) = ctx.inputs
    return (scatter_add(g, shape=x.shape, index=ctx.params["index"]),)


def getitem_samples(rng):
    x = _draw(rng, (4, 3))
    return [Sample(x, index=(1,)), Sample(x, index=(slice(1, 3), slice(None, None, 2))),
            Sample(x, index=(np.array([0, 2, 2, 3]),)),
            Sample(x, index=(np.array([0, 1, 1]), np.array([2, 0, 0]))),
            Sample(x, index=(Ellipsis, None, 1)),
            Sample(x, index=(x > 0,))]


@primitive(vjp=getitem_vjp, samples=getitem_samples, family="indexing")
def getitem(xp, x, *, index):
    """``x[index]``, basic and advanced; the gradient scatter-adds repeated indices.

    >>> import gradkit as gk
    >>> gk.getitem(gk.tensor([1.0, 2.0, 3.0]), index=[2, 0]).numpy().tolist()
    [3.0, 1.0]
    """
    raw = _raw_index(index, xp)
    if len(raw) == 1 and x.ndim > 1 and getattr(raw[0], "ndim", 0) == 1 and \
            to_numpy_dtype(raw[0].dtype).kind in "iu":
        return xp.take(x, raw[0], axis=0)  # rows by index: the standard's spelling
    return x[raw]


def scatter_add_vjp(ctx, g):
    return (getitem(g, index=ctx.params["index"]),)


def scatter_add_samples(rng):
    return [Sample(_draw(rng, (4,)), shape=(3, 2), index=(np.array([0, 2, 2, 1]), 1)),
            Sample(_draw(rng, (2, 2)), shape=(3, 2), index=(slice(0, 2),))]


@primitive(vjp=scatter_add_vjp, samples=scatter_add_samples, family="indexing")
def scatter_add(xp, values, *, shape, index):
    """Zeros of ``shape`` with ``values`` added at ``index`` (repeats accumulate).

    The VJP of getitem.

    >>> import gradkit as gk
    >>> gk.scatter_add(gk.ones((3,)), shape=(2,), index=[0, 0, 1]).numpy().tolist()
    [2.0, 1.0]
    """
    out = xp.zeros(shape, dtype=values.dtype)
    raw = _raw_index(index, xp)
    if not _is_advanced(raw):  # basic indices never repeat an element
        without_new_axes = tuple(i for i in raw if i is not None)
        out[without_new_axes] = xp.reshape(values, out[without_new_axes].shape)
    elif hasattr(getattr(xp, "add", None), "at"):
        xp.add.at(out, raw, values)
    else:  # the Array API has no scatter-add: do it on the host, once
        host = np.zeros(shape, dtype=np.asarray(values).dtype)
        np.add.at(host, tuple(np.asarray(i) if hasattr(i, "shape") else i for i in raw),
                  np.asarray(values))
        out = xp.asarray(host)
    return out
