"""Shape ops: reshape, transpose, broadcast, squeeze, concatenate, stack, split, flip,
roll, tile, repeat, moveaxis, unstack, tril/triu, and indexing (get, set, take).

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
from gradkit.indexing import is_advanced, raw_index
from gradkit.ops.samples import away_from_zero
from gradkit.registry import Sample, as_shape, composite, primitive
from gradkit.tensor import Tensor, tensor

FAMILY = "shape"


def _draw(rng, shape):
    return away_from_zero(rng, shape)


def _as_tuple(shape: Any) -> tuple:
    """A shape param (checked by ``as_shape``: an integer or a sequence) as a tuple."""
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


# -- gradient plumbing shared by every op family (re-exported by ops.broadcasting) ----

def unbroadcast(g: Tensor, like: Tensor) -> Tensor:
    """Sum ``g`` down to ``like``'s shape and cast it to ``like``'s dtype.

    Every VJP of a broadcasting op ends here, so a gradient always has its
    input's shape and dtype.
    """
    if g.data.shape != like.data.shape:
        g = sum_to(g, shape=like.shape)
    if g.data.dtype != like.data.dtype:
        g = g.astype(like.dtype)
    return g


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim if ndim else a for a in axes))


def keepdims_shape(shape: tuple[int, ...], axis: Any) -> tuple[int, ...]:
    """``shape`` with the reduced axes kept as size 1."""
    axes = normalize_axes(axis, len(shape))
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


# -- reshape family ----------------------------------------------------------------

def reshape_vjp(ctx, g):
    (x,) = ctx.inputs
    return (reshape(g, shape=x.shape),)


def reshape_samples(rng):
    return [Sample(_draw(rng, (2, 3)), shape=(3, 2)), Sample(_draw(rng, (2, 3)), shape=(-1,)),
            Sample(_draw(rng, (4,)), shape=(2, 1, 2)), Sample(_draw(rng, ()), shape=(1, 1))]


def check_reshape(x, *, shape, copy=None) -> None:
    as_shape(shape, "reshape", infer=True, operand=x)


@primitive(vjp=reshape_vjp, samples=reshape_samples, family=FAMILY, check=check_reshape,
           positional=("shape",))
def reshape(xp, x, *, shape, copy=None):
    """``x`` with a new shape of the same size (one entry may be -1).

    ``copy``: True always copies, False never does (an error if it must), None
    copies only when needed, as in the standard.

    >>> import gradkit as gk
    >>> gk.reshape(gk.tensor([1.0, 2.0, 3.0, 4.0]), shape=(2, 2)).shape
    (2, 2)
    """
    shape = _as_tuple(shape)
    if copy is None:
        return xp.reshape(x, shape)
    return xp.reshape(x, shape, copy=copy)


def transpose_vjp(ctx, g):
    axes = ctx.params["axes"]
    ndim = g.ndim
    inverse = None if axes is None else tuple(int(i) for i in np.argsort([a % ndim for a in axes]))
    return (transpose(g, axes=inverse),)


def transpose_samples(rng):
    return [Sample(_draw(rng, (2, 3)), axes=None), Sample(_draw(rng, (2, 3, 4)), axes=(1, 2, 0)),
            Sample(_draw(rng, (2, 3, 4)), axes=None)]


@primitive(vjp=transpose_vjp, samples=transpose_samples, family=FAMILY, positional=("axes",))
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


def check_broadcast_to(x, *, shape) -> None:
    as_shape(shape, "broadcast_to", operand=x)


@primitive(vjp=broadcast_to_vjp, samples=broadcast_to_samples, family=FAMILY,
           check=check_broadcast_to, positional=("shape",))
def broadcast_to(xp, x, *, shape):
    """``x`` broadcast to ``shape``; the gradient sums back over the copies.

    >>> import gradkit as gk
    >>> gk.broadcast_to(gk.tensor([1.0, 2.0]), shape=(3, 2)).shape
    (3, 2)
    """
    return xp.broadcast_to(x, _as_tuple(shape))


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
    Sample(_draw(rng, (1, 3, 1)), axis=(0, 2))], family=FAMILY, positional=("axis",))
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
    Sample(_draw(rng, (3,)), axis=(0, 2))], family=FAMILY, positional=("axis",))
def expand_dims(xp, x, *, axis=0):
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
    if axis is None:  # the inputs were flattened and joined
        grads, start = [], 0
        for t, needed in zip(ctx.inputs, ctx.needs):
            piece = getitem(g, index=(slice(start, start + t.size),))
            grads.append(reshape(piece, shape=t.shape) if needed else None)
            start += t.size
        return tuple(grads)
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
    Sample(_draw(rng, (3,)), _draw(rng, (2,)), axis=-1),
    Sample(_draw(rng, (2, 2)), _draw(rng, (3,)), axis=None)], family=FAMILY)
def concatenate(xp, *arrays, axis=0):
    """Join tensors along an existing axis (``axis=None``: flatten them first).

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


@composite(samples=_stack_samples, family=FAMILY, variadic=True)
def stack(arrays: Sequence[Any], /, *, axis: int = 0) -> Tensor:
    """Join same-shape tensors (a list or tuple of them) along a new axis.

    >>> import gradkit as gk
    >>> gk.stack([gk.zeros((2,)), gk.ones((2,))], axis=0).shape
    (2, 2)
    """
    if not isinstance(arrays, (list, tuple)):
        raise ArgumentError(f"stack: arrays must be a list or tuple of tensors, got "
                            f"{type(arrays).__name__}")
    tensors = tuple(arrays)
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


# -- reordering, repeating, unstacking --------------------------------------------------

def flip_vjp(ctx, g):
    return (flip(g, axis=ctx.params["axis"]),)


@primitive(vjp=flip_vjp, samples=lambda rng: [
    Sample(_draw(rng, (2, 3)), axis=None), Sample(_draw(rng, (2, 3)), axis=1),
    Sample(_draw(rng, (2, 3, 4)), axis=(0, 2)), Sample(_draw(rng, (4,)), axis=-1)], family=FAMILY)
def flip(xp, x, *, axis=None):
    """``x`` with the order of elements reversed along ``axis`` (all axes for None).

    >>> import gradkit as gk
    >>> gk.flip(gk.tensor([1.0, 2.0, 3.0])).numpy().tolist()
    [3.0, 2.0, 1.0]
    """
    return xp.flip(x, axis=axis)


def roll_vjp(ctx, g):
    shift = ctx.params["shift"]
    back = -shift if isinstance(shift, int) else tuple(-s for s in shift)
    return (roll(g, shift=back, axis=ctx.params["axis"]),)


@primitive(vjp=roll_vjp, samples=lambda rng: [
    Sample(_draw(rng, (5,)), shift=2), Sample(_draw(rng, (2, 3)), shift=-1, axis=None),
    Sample(_draw(rng, (2, 3, 4)), shift=(1, 3), axis=(0, 2))], family=FAMILY,
    positional=("shift",))
def roll(xp, x, *, shift, axis=None):
    """Shift elements along ``axis`` by ``shift``, wrapping around (flattened for None).

    >>> import gradkit as gk
    >>> gk.roll(gk.tensor([1.0, 2.0, 3.0]), 1).numpy().tolist()
    [3.0, 1.0, 2.0]
    """
    return xp.roll(x, shift, axis=axis)


def _tile_shapes(shape: tuple[int, ...], repetitions: Any) -> tuple[tuple, tuple]:
    """``shape`` and ``repetitions`` padded with leading 1s to one length, as tile does."""
    reps = (int(repetitions),) if isinstance(repetitions, int) else tuple(int(r) for r in repetitions)
    n = max(len(reps), len(shape))
    return (1,) * (n - len(shape)) + tuple(shape), (1,) * (n - len(reps)) + reps


def tile_vjp(ctx, g):
    """Output axis k is repetitions[k] copies of input axis k: split it into
    (copies, size) and sum over the copies."""
    (x,) = ctx.inputs
    shape, reps = _tile_shapes(x.shape, ctx.params["repetitions"])
    interleaved = tuple(n for pair in zip(reps, shape) for n in pair)
    copies = tuple(range(0, 2 * len(shape), 2))
    # Tensor.sum is gk.sum (ops.reduce sits above this family and imports it)
    return (reshape(reshape(g, shape=interleaved).sum(axis=copies), shape=x.shape),)


@primitive(vjp=tile_vjp, samples=lambda rng: [
    Sample(_draw(rng, (2, 3)), repetitions=(2, 1)), Sample(_draw(rng, (3,)), repetitions=(2, 2)),
    Sample(_draw(rng, (2, 1, 2)), repetitions=(3,)), Sample(_draw(rng, ()), repetitions=(2,))],
    family=FAMILY, positional=("repetitions", "/"))
def tile(xp, x, *, repetitions):
    """``x`` repeated ``repetitions[k]`` times along each axis k (shorter of the two
    padded with leading 1s).

    >>> import gradkit as gk
    >>> gk.tile(gk.tensor([1.0, 2.0]), (2,)).numpy().tolist()
    [1.0, 2.0, 1.0, 2.0]
    """
    reps = (repetitions,) if isinstance(repetitions, int) else tuple(repetitions)
    return xp.tile(x, reps)


def _host_ints(values: Any) -> np.ndarray:
    """Integer repeat counts (a Tensor, array, list...) as a NumPy int64 array."""
    if isinstance(values, Tensor):
        values = values.numpy()
    elif hasattr(values, "__dlpack__") and not isinstance(values, np.ndarray):
        values = np.from_dlpack(values)
    values = np.asarray(values)
    if values.dtype.kind not in "iu":  # never a count truncated from a float
        raise ArgumentError(f"repeat: repeats must be integers, got {values.dtype} {values!r}")
    return values.astype(np.int64)


def _repeat_counts(n: int, repeats: Any) -> np.ndarray:
    """How often each of ``n`` elements repeats: ``repeats`` holds one count per element,
    or one count for all (a one-element array broadcasts, as the standard says)."""
    counts = _host_ints(repeats)
    if counts.size == 1:
        counts = np.broadcast_to(counts.reshape(()), (n,))
    if counts.shape != (n,):
        raise ValueError(f"repeats has {counts.size} counts for {n} elements")
    return counts


def _repeat_index(n: int, repeats: Any) -> np.ndarray:
    return np.repeat(np.arange(n), _repeat_counts(n, repeats))


def repeat_vjp(ctx, g):
    (x,) = ctx.inputs
    axis, repeats = ctx.params["axis"], ctx.params["repeats"]
    flat = x if axis is None else None
    if flat is not None:
        axis = 0
    shape = (x.size,) if flat is not None else x.shape
    axis = axis % len(shape)
    if isinstance(repeats, int):  # each element's copies sit side by side: sum them
        split = shape[:axis] + (shape[axis], repeats) + shape[axis + 1:]
        gx = reshape(g, shape=split).sum(axis=axis + 1)  # gk.sum, as in tile_vjp
    else:
        index = (slice(None),) * axis + (_repeat_index(shape[axis], repeats),)
        gx = scatter_add(g, shape=shape, index=index)
    return (reshape(gx, shape=x.shape),)


@primitive(vjp=repeat_vjp, samples=lambda rng: [
    Sample(_draw(rng, (2, 3)), repeats=2, axis=1), Sample(_draw(rng, (2, 3)), repeats=3),
    Sample(_draw(rng, (3, 2)), repeats=[1, 0, 2], axis=0),
    Sample(_draw(rng, (4,)), repeats=[2, 1, 1, 3], axis=-1)], family=FAMILY,
    positional=("repeats", "/"))
def repeat(xp, x, *, repeats, axis=None):
    """Each element repeated ``repeats`` times along ``axis`` (flattened for None);
    ``repeats`` is an int or one count per element along the axis.

    >>> import gradkit as gk
    >>> gk.repeat(gk.tensor([1.0, 2.0]), 2).numpy().tolist()
    [1.0, 1.0, 2.0, 2.0]
    >>> gk.repeat(gk.tensor([1.0, 2.0]), [1, 3], axis=0).numpy().tolist()
    [1.0, 2.0, 2.0, 2.0]
    """
    if axis is None:
        x, axis = xp.reshape(x, (-1,)), 0
    if isinstance(repeats, (int, np.integer)):
        return xp.repeat(x, int(repeats), axis=axis)
    index = xp.asarray(_repeat_index(x.shape[axis], repeats), dtype=xp.int64)
    return xp.take(x, index, axis=axis)


@composite(samples=lambda rng: [Sample(_draw(rng, (2, 3, 4)), source=0, destination=-1),
                                Sample(_draw(rng, (2, 3, 4)), source=(0, 1), destination=(2, 0))],
           family=FAMILY)
def moveaxis(x: Tensor, source: int | Sequence[int], destination: int | Sequence[int], /
             ) -> Tensor:
    """``x`` with the axes ``source`` moved to the positions ``destination``.

    >>> import gradkit as gk
    >>> gk.moveaxis(gk.zeros((2, 3, 4)), 0, -1).shape
    (3, 4, 2)
    """
    ndim = x.ndim
    source = normalize_axis_list(source, ndim, "moveaxis", "source")
    destination = normalize_axis_list(destination, ndim, "moveaxis", "destination")
    if len(source) != len(destination):
        raise ArgumentError(f"moveaxis: source {source} and destination {destination} "
                            "name different numbers of axes")
    order = [a for a in range(ndim) if a not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, axes=tuple(order))


def normalize_axis_list(axis: int | Sequence[int], ndim: int, op: str, name: str) -> list[int]:
    """``axis`` (an int or a sequence) as distinct non-negative axes, or a ShapeError."""
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    if any(not -ndim <= int(a) < ndim for a in axes):
        raise ShapeError(f"{op}: {name} {axis} is out of range for {ndim} dimensions")
    out = [int(a) % ndim for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: {name} {axis} names one axis twice")
    return out


@composite(samples=lambda rng: [Sample(_draw(rng, (3, 2))), Sample(_draw(rng, (2, 3, 2)), axis=1)],
           family=FAMILY)
def unstack(x: Tensor, /, *, axis: int = 0) -> tuple[Tensor, ...]:
    """The slices of ``x`` along ``axis``, as a tuple (the inverse of ``stack``).

    >>> import gradkit as gk
    >>> [t.shape for t in gk.unstack(gk.zeros((2, 3)), axis=1)]
    [(2,), (2,), (2,)]
    """
    (axis,) = normalize_axis_list(axis, x.ndim, "unstack", "axis")
    return tuple(getitem(x, index=(slice(None),) * axis + (i,)) for i in range(x.shape[axis]))


@composite(samples=lambda rng: [Sample(_draw(rng, (2, 1)), _draw(rng, (3,))),
                                Sample(_draw(rng, (3,)), _draw(rng, ()), _draw(rng, (2, 3)))],
           family=FAMILY)
def broadcast_arrays(*arrays: Tensor) -> list[Tensor]:
    """The tensors broadcast against each other to one shape.

    >>> import gradkit as gk
    >>> [t.shape for t in gk.broadcast_arrays(gk.zeros((2, 1)), gk.zeros(3))]
    [(2, 3), (2, 3)]
    """
    try:
        shape = np.broadcast_shapes(*(tuple(a.shape) for a in arrays))
    except ValueError:
        raise ShapeError(f"broadcast_arrays: shapes do not broadcast: "
                         f"{[describe(a) for a in arrays]}") from None
    return [broadcast_to(a, shape=shape) for a in arrays]


@composite(samples=lambda rng: [Sample(_draw(rng, (3,)), _draw(rng, (2,))),
                                Sample(_draw(rng, (2,)), _draw(rng, (3,)), _draw(rng, (4,)),
                                       indexing="ij")], family=FAMILY)
def meshgrid(*arrays: Tensor, indexing: str = "xy") -> list[Tensor]:
    """Coordinate grids from 1-D tensors: ``"xy"`` (Cartesian, the first two axes
    swapped) or ``"ij"`` (matrix) indexing.

    >>> import gradkit as gk
    >>> [t.shape for t in gk.meshgrid(gk.zeros(3), gk.zeros(2))]
    [(2, 3), (2, 3)]
    """
    if indexing not in ("xy", "ij"):
        raise ArgumentError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    if any(a.ndim != 1 for a in arrays):
        raise ShapeError(f"meshgrid: every input must be 1-D, got {[describe(a) for a in arrays]}")
    sizes = [a.shape[0] for a in arrays]
    positions = list(range(len(arrays)))
    if indexing == "xy" and len(arrays) >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
        positions[0], positions[1] = 1, 0
    grids = []
    for a, position in zip(arrays, positions):
        along = [1] * len(arrays)
        along[position] = a.shape[0]
        grids.append(broadcast_to(reshape(a, shape=tuple(along)), shape=tuple(sizes)))
    return grids


def _diff_samples(rng):
    return [Sample(_draw(rng, (5,))), Sample(_draw(rng, (3, 4)), axis=0, n=2),
            Sample(_draw(rng, (3, 4)), prepend=_draw(rng, (3, 1)), append=_draw(rng, (3, 2)))]


def _operand_like(value: Any, x: Tensor) -> Tensor:
    """``gk.asarray(value, dtype=x.dtype, device=x.device)`` for diff's prepend and append,
    made here (ops sit below gradkit.creation); a Tensor keeps its gradient."""
    if isinstance(value, Tensor):
        if value.array_backend is not x.array_backend:
            value = value.to(x.array_backend)
        return value if value.dtype == x.dtype else value.astype(x.dtype)
    return tensor(value, dtype=x.dtype, backend=x.array_backend)


@composite(samples=_diff_samples, family=FAMILY)
def diff(x: Tensor, /, *, axis: int = -1, n: int = 1, prepend: Any = None,
         append: Any = None) -> Tensor:
    """The ``n``-th forward difference along ``axis`` (after joining ``prepend`` and
    ``append``, converted to ``x``'s dtype, to ``x`` along it).

    >>> import gradkit as gk
    >>> gk.diff(gk.tensor([1.0, 4.0, 9.0])).numpy().tolist()
    [3.0, 5.0]
    """
    (axis,) = normalize_axis_list(axis, x.ndim, "diff", "axis")
    parts = [p if p is x else _operand_like(p, x)
             for p in (prepend, x, append) if p is not None]
    if len(parts) > 1:
        x = concatenate(parts, axis=axis)
    head = (slice(None),) * axis
    for _ in range(n):
        x = getitem(x, index=head + (slice(1, None),)) - getitem(x, index=head + (slice(None, -1),))
    return x


def _triangle_samples(rng):
    return [Sample(_draw(rng, (3, 4))), Sample(_draw(rng, (2, 3, 3)), k=1),
            Sample(_draw(rng, (4, 3)), k=-1)]


def tril_vjp(ctx, g):
    return (tril(g, k=ctx.params["k"]),)


@primitive(vjp=tril_vjp, samples=_triangle_samples, family=FAMILY)
def tril(xp, x, *, k=0):
    """The lower triangle of the last two axes (below diagonal ``k``); the rest 0.

    >>> import gradkit as gk
    >>> gk.tril(gk.ones((2, 2))).numpy().tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    return xp.tril(x, k=k)


def triu_vjp(ctx, g):
    return (triu(g, k=ctx.params["k"]),)


@primitive(vjp=triu_vjp, samples=_triangle_samples, family=FAMILY)
def triu(xp, x, *, k=0):
    """The upper triangle of the last two axes (above diagonal ``k``); the rest 0.

    >>> import gradkit as gk
    >>> gk.triu(gk.ones((2, 2))).numpy().tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    return xp.triu(x, k=k)


# -- indexing -------------------------------------------------------------------------

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


@primitive(vjp=getitem_vjp, samples=getitem_samples, family="indexing",
           index_param="index")
def getitem(xp, x, *, index):
    """``x[index]``, basic and advanced; the gradient scatter-adds repeated indices.

    >>> import gradkit as gk
    >>> gk.getitem(gk.tensor([1.0, 2.0, 3.0]), index=[2, 0]).numpy().tolist()
    [3.0, 1.0]
    """
    raw = raw_index(index, xp)
    if len(raw) == 1 and x.ndim > 1 and getattr(raw[0], "ndim", 0) == 1 and \
            to_numpy_dtype(raw[0].dtype).kind in "iu":
        return xp.take(x, raw[0], axis=0)  # rows by index: the standard's spelling
    return x[raw]


def scatter_add_vjp(ctx, g):
    return (getitem(g, index=ctx.params["index"]),)


def scatter_add_samples(rng):
    return [Sample(_draw(rng, (4,)), shape=(3, 2), index=(np.array([0, 2, 2, 1]), 1)),
            Sample(_draw(rng, (2, 2)), shape=(3, 2), index=(slice(0, 2),))]


@primitive(vjp=scatter_add_vjp, samples=scatter_add_samples, family="indexing",
           index_param="index")
def scatter_add(xp, values, *, shape, index):
    """Zeros of ``shape`` with ``values`` added at ``index`` (repeats accumulate).

    The VJP of getitem.

    >>> import gradkit as gk
    >>> gk.scatter_add(gk.ones((3,)), shape=(2,), index=[0, 0, 1]).numpy().tolist()
    [2.0, 1.0]
    """
    out = xp.zeros(shape, dtype=values.dtype)
    raw = raw_index(index, xp)
    if not is_advanced(raw):  # basic indices never repeat an element
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


def setitem_vjp(ctx, g):
    x, value = ctx.inputs
    index = ctx.params["index"]
    return (setitem(g, 0.0, index=index) if ctx.needs[0] else None,
            unbroadcast(getitem(g, index=index), value) if ctx.needs[1] else None)


def setitem_samples(rng):
    x = _draw(rng, (4, 3))
    return [Sample(x, _draw(rng, ()), index=(1,)),
            Sample(x, _draw(rng, (3,)), index=(slice(1, 3),)),
            Sample(x, _draw(rng, (2, 1)), index=(slice(None, None, 2), slice(0, 2))),
            Sample(x, _draw(rng, (3,)), index=(np.array([0, 2, 3]), np.array([2, 0, 1]))),
            Sample(x, _draw(rng, ()), index=(x > 0,))]


@primitive(vjp=setitem_vjp, samples=setitem_samples, family="indexing")
def setitem(xp, x, value, *, index):
    """A copy of ``x`` with ``value`` written at ``index`` (``value`` broadcasts and
    takes ``x``'s dtype); the op behind ``x[index] = value`` on a tensor in a graph.

    The gradient flows to ``x`` outside ``index`` and to ``value`` from inside it.
    With an advanced index naming one element twice, which write lands is up to the
    array library (the standard leaves it unspecified), and ``value``'s gradient
    counts each of them.

    >>> import gradkit as gk
    >>> gk.setitem(gk.zeros(3), 5.0, index=1).numpy().tolist()
    [0.0, 5.0, 0.0]
    """
    out = xp.astype(x, x.dtype, copy=True)
    if value.dtype != x.dtype:
        value = xp.astype(value, x.dtype)
    raw = raw_index(index, xp)
    try:
        out[raw] = value
    except (IndexError, TypeError):
        if not is_advanced(raw):
            raise
        # The standard has no integer-array __setitem__ (array-api-strict refuses it):
        # write on the host, once.
        host = np.array(np.asarray(out), copy=True)
        host[tuple(np.asarray(i) if hasattr(i, "shape") else i for i in raw)] = np.asarray(value)
        out = xp.asarray(host)
    return out


def grid_index(indices: Any, axis: int, shape: tuple[int, ...]) -> tuple:
    """The advanced index that ``take_along_axis`` is: ``indices`` on ``axis``, an
    open grid (``arange`` shaped to broadcast) on every other axis."""
    index = []
    for k, n in enumerate(shape):
        if k == axis:
            index.append(indices)
        else:
            along = [1] * len(shape)
            along[k] = n
            index.append(np.arange(n).reshape(along))
    return tuple(index)


def _take_along_axis_samples(rng):
    x = _draw(rng, (3, 4))
    return [Sample(x, np.array([[0, 3], [1, 1], [2, 0]]), axis=1),
            Sample(x, np.array([[2, 0, 1, 1]]), axis=0),
            Sample(_draw(rng, (5,)), np.array([4, 0, 0, 2]), axis=-1)]


@composite(samples=_take_along_axis_samples, family="indexing")
def take_along_axis(x: Tensor, indices: Any, /, *, axis: int = -1) -> Tensor:
    """Elements of ``x`` picked along ``axis`` by ``indices`` (same number of axes as
    ``x``; the others broadcast); repeated indices add up in the gradient.

    >>> import gradkit as gk
    >>> x = gk.tensor([[10.0, 30.0, 20.0], [60.0, 40.0, 50.0]])
    >>> gk.take_along_axis(x, gk.argsort(x, axis=1), axis=1).numpy().tolist()
    [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]
    """
    if getattr(indices, "ndim", None) != x.ndim:
        raise ShapeError(f"take_along_axis: indices must have as many axes as x "
                         f"({x.ndim}), got {describe(indices)}")
    (axis,) = normalize_axis_list(axis, x.ndim, "take_along_axis", "axis")
    return getitem(x, index=grid_index(indices, axis, x.shape))


def _take_samples(rng):
    return [Sample(_draw(rng, (5,)), np.array([4, 0, 0, 2])),
            Sample(_draw(rng, (3, 4)), np.array([2, 0]), axis=0),
            Sample(_draw(rng, (3, 4)), np.array([1, 1, 3]), axis=-1)]


@composite(samples=_take_samples, family="indexing")
def take(x: Tensor, indices: Any, /, *, axis: int | None = None) -> Tensor:
    """Elements of ``x`` at the 1-D integer ``indices`` along ``axis`` (optional for
    1-D ``x``); repeated indices add up in the gradient.

    >>> import gradkit as gk
    >>> gk.take(gk.tensor([[1.0, 2.0], [3.0, 4.0]]), gk.tensor([1, 1]), axis=1).numpy().tolist()
    [[2.0, 2.0], [4.0, 4.0]]
    """
    if axis is None:
        if x.ndim != 1:
            raise ShapeError(f"take: axis must be given for {describe(x)} (None is for "
                             "1-D input only)")
        axis = 0
    (axis,) = normalize_axis_list(axis, x.ndim, "take", "axis")
    if getattr(indices, "ndim", np.ndim(indices)) != 1:
        raise ShapeError(f"take: indices must be 1-D, got {describe(indices)}")
    along = [1] * x.ndim
    along[axis] = -1
    if isinstance(indices, Tensor):
        indices = reshape(indices, shape=tuple(along))
    else:
        indices = np.asarray(indices).reshape(along)
    # One integer array per axis (no slices): the form every Array API library indexes.
    return getitem(x, index=grid_index(indices, axis, x.shape))
