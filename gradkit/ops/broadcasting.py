"""Gradient plumbing shared by every op family: undo broadcasting, restore reduced axes."""
from __future__ import annotations

from typing import Any

from gradkit.tensor import Tensor


def unbroadcast(g: Tensor, like: Tensor) -> Tensor:
    """Sum ``g`` down to ``like``'s shape and cast it to ``like``'s dtype.

    Every VJP of a broadcasting op ends here, so a gradient always has its
    input's shape and dtype.
    """
    from gradkit.ops.shape import sum_to
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


def expand_reduced(g: Tensor, shape: tuple[int, ...], axis: Any, keepdims: bool) -> Tensor:
    """Broadcast the gradient of a reduction back to the reduced input's ``shape``."""
    from gradkit.ops.shape import broadcast_to, reshape
    if not keepdims:
        g = reshape(g, shape=keepdims_shape(shape, axis))
    return broadcast_to(g, shape=shape)
