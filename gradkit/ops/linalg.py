"""Linear algebra: matmul (1-D, 2-D, batched) and linear(x, W, b).

>>> import gradkit as gk
>>> W = gk.tensor([[1.0], [2.0]], requires_grad=True)
>>> gk.linear(gk.tensor([[3.0, 4.0]]), W).sum().backward()
>>> W.grad.numpy().tolist()
[[3.0], [4.0]]
"""
from __future__ import annotations

import numpy as np

from gradkit.errors import ShapeError, describe
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.samples import away_from_zero
from gradkit.ops.shape import expand_dims, matrix_transpose, reshape, squeeze, sum_to
from gradkit.registry import Sample, primitive

FAMILY = "linalg"


def check_matmul(x, y) -> None:
    """Raise a ShapeError that names both operands when x @ y does not align."""
    a, b = x.data, y.data  # raw arrays: shape and ndim without Tensor properties
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got {describe(x)} and "
                         f"{describe(y)}; use * for scalars")
    inner_x = a.shape[-1]
    inner_y = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if inner_x != inner_y:
        raise ShapeError(f"matmul: shapes {x.shape} and {y.shape} do not align (inner "
                         f"{inner_x} != {inner_y}); operands: {describe(x)}, {describe(y)}")
    if a.ndim > 2 or b.ndim > 2:
        batch_x, batch_y = a.shape[:-2], b.shape[:-2]
        try:
            np.broadcast_shapes(batch_x, batch_y)
        except ValueError:
            raise ShapeError(f"matmul: batch dimensions {batch_x} and {batch_y} do not "
                             f"broadcast; operands: {describe(x)}, {describe(y)}") from None


def matmul_vjp(ctx, g):
    x, y = ctx.inputs
    gx = gy = None
    if x.ndim == 1 and y.ndim == 1:
        return (g * y if ctx.needs[0] else None), (g * x if ctx.needs[1] else None)
    if ctx.needs[0]:
        if y.ndim == 1:
            gx = unbroadcast(expand_dims(g, axis=-1) * y, x)
        elif x.ndim == 1:
            row = matmul(expand_dims(g, axis=-2), matrix_transpose(y))
            gx = sum_to(squeeze(row, axis=-2), shape=x.shape)
        else:
            gx = unbroadcast(matmul(g, matrix_transpose(y)), x)
    if ctx.needs[1]:
        if x.ndim == 1:
            gy = unbroadcast(expand_dims(x, axis=-1) * expand_dims(g, axis=-2), y)
        elif y.ndim == 1:
            column = matmul(matrix_transpose(x), expand_dims(g, axis=-1))
            gy = sum_to(squeeze(column, axis=-1), shape=y.shape)
        else:
            gy = unbroadcast(matmul(matrix_transpose(x), g), y)
    return gx, gy


def matmul_samples(rng):
    shapes = [((3,), (3,)), ((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)),
              ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (4, 3, 2)),
              ((3,), (5, 3, 4)), ((5, 2, 3), (3,))]
    return [Sample(away_from_zero(rng, a), away_from_zero(rng, b)) for a, b in shapes]


@primitive(vjp=matmul_vjp, samples=matmul_samples, family=FAMILY, check=check_matmul)
def matmul(xp, x, y):
    """Matrix product ``x @ y`` with NumPy's rules for 1-D and batched operands.

    >>> import gradkit as gk
    >>> (gk.tensor([[1.0, 2.0]]) @ gk.tensor([[3.0], [4.0]])).numpy().tolist()
    [[11.0]]
    """
    return xp.matmul(x, y)


def check_linear(x, weight, bias=None) -> None:
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (in_features, out_features), got "
                         f"{describe(weight)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ShapeError(f"linear: x's last axis must match weight's in_features "
                         f"({weight.shape[0]}); got x: {describe(x)}, weight: {describe(weight)}")
    if bias is not None and bias.shape not in ((weight.shape[1],), (1, weight.shape[1])):
        raise ShapeError(f"linear: bias must have shape ({weight.shape[1]},), got "
                         f"{describe(bias)}")


def linear_vjp(ctx, g):
    x, weight = ctx.inputs[:2]
    grads = [None] * len(ctx.inputs)
    if ctx.needs[0]:
        grads[0] = matmul(g, matrix_transpose(weight))
    if ctx.needs[1]:
        rows_x = x if x.ndim == 2 else reshape(x, shape=(-1, x.shape[-1]))
        rows_g = g if g.ndim == 2 else reshape(g, shape=(-1, g.shape[-1]))
        grads[1] = matmul(matrix_transpose(rows_x), rows_g)
    if len(ctx.inputs) == 3 and ctx.needs[2]:
        grads[2] = unbroadcast(g, ctx.inputs[2])
    return tuple(grads)


def linear_samples(rng):
    return [Sample(away_from_zero(rng, (4, 3)), away_from_zero(rng, (3, 2)),
                   away_from_zero(rng, (2,))),
            Sample(away_from_zero(rng, (2, 4, 3)), away_from_zero(rng, (3, 2)),
                   away_from_zero(rng, (2,))),
            Sample(away_from_zero(rng, (3,)), away_from_zero(rng, (3, 2)),
                   away_from_zero(rng, (2,))),
            Sample(away_from_zero(rng, (4, 3)), away_from_zero(rng, (3, 2)))]


@primitive(vjp=linear_vjp, samples=linear_samples, family=FAMILY, check=check_linear)
def linear(xp, x, weight, bias=None):
    """``x @ weight + bias``, the affine layer; ``weight`` is (in_features, out_features).

    As in cs231n (``X.dot(W) + b``): x is (..., in_features), bias (out_features,).

    >>> import gradkit as gk
    >>> gk.linear(gk.ones((2, 3)), gk.ones((3, 4)), gk.zeros((4,))).shape
    (2, 4)
    """
    out = xp.matmul(x, weight)
    if bias is not None:
        out += bias
    return out
