"""Linear algebra: matmul (1-D, 2-D, batched), linear(x, W, b), the products dot,
outer, vecdot, tensordot, and the ``gk.linalg`` ops: inv, solve, det, slogdet,
cholesky, norms, trace, diagonal, cross, matrix_power.

Ops NumPy has at the top level (``np.dot``...) are ``gk.dot``...; those it keeps in
``np.linalg`` are registered as ``linalg.<name>`` and reached as ``gk.linalg.<name>``.
The matrix ops work on stacks of matrices (the last two axes) where the standard
allows it.

>>> import gradkit as gk
>>> W = gk.tensor([[1.0], [2.0]], requires_grad=True)
>>> gk.linear(gk.tensor([[3.0, 4.0]]), W).sum().backward()
>>> W.grad.numpy().tolist()
[[3.0], [4.0]]
"""
from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

import numpy as np

from gradkit.errors import ArgumentError, ShapeError, describe
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.elementwise import abs_, astype, multiply, not_equal, power, sqrt
from gradkit.ops.reduce import max_, min_, sum_
from gradkit.ops.samples import away_from_zero
from gradkit.ops.shape import (grid_index, broadcast_arrays, expand_dims,
                               getitem, matrix_transpose, moveaxis, normalize_axis_list, reshape,
                               squeeze, stack, transpose, tril)
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor

FAMILY = "linalg"


def check_matmul(x, y) -> None:
    """Raise a ShapeError that names both operands when x @ y does not align."""
    a, b = x.data, y.data  # raw arrays: shape and ndim without Tensor properties
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got {describe(x)} and "
                         f"{describe(y)}; use * for scalars")
    _check_aligned("matmul", a.shape, b.shape, x, y)


def _check_aligned(name: str, shape_x: tuple, shape_y: tuple, x, y) -> None:
    """``shape_x @ shape_y`` (the shapes as multiplied) must align: inner sizes equal,
    batch dimensions broadcasting."""
    inner_x = shape_x[-1]
    inner_y = shape_y[0] if len(shape_y) == 1 else shape_y[-2]
    if inner_x != inner_y:
        raise ShapeError(f"{name}: shapes {shape_x} and {shape_y} do not align (inner "
                         f"{inner_x} != {inner_y}); operands: {describe(x)}, {describe(y)}")
    if len(shape_x) > 2 or len(shape_y) > 2:
        batch_x, batch_y = shape_x[:-2], shape_y[:-2]
        try:
            np.broadcast_shapes(batch_x, batch_y)
        except ValueError:
            raise ShapeError(f"{name}: batch dimensions {batch_x} and {batch_y} do not "
                             f"broadcast; operands: {describe(x)}, {describe(y)}") from None


def matmul_transposed_vjp(ctx, g):
    """Of ``C = A @ B`` with ``A``, ``B`` the operands as multiplied (transposed or not):
    ``dA = g @ B.mT`` and ``dB = A.mT @ g``, transposed back where an operand was."""
    x1, x2 = ctx.inputs
    t1, t2 = ctx.params["transpose_x1"], ctx.params["transpose_x2"]
    g1 = g2 = None
    if ctx.needs[0]:
        g1 = (matmul_transposed(x2, g, transpose_x1=t2, transpose_x2=True) if t1 else
              matmul_transposed(g, x2, transpose_x2=not t2))
        g1 = unbroadcast(g1, x1)
    if ctx.needs[1]:
        g2 = (matmul_transposed(g, x1, transpose_x1=True, transpose_x2=t1) if t2 else
              matmul_transposed(x1, g, transpose_x1=not t1))
        g2 = unbroadcast(g2, x2)
    return g1, g2


def matmul_transposed_samples(rng):
    shapes = {(False, False): ((2, 3), (3, 4)), (True, False): ((3, 2), (3, 4)),
              (False, True): ((2, 3), (4, 3)), (True, True): ((3, 2), (4, 3))}
    out = [Sample(away_from_zero(rng, a), away_from_zero(rng, b), transpose_x1=t1,
                  transpose_x2=t2) for (t1, t2), (a, b) in shapes.items()]
    return out + [Sample(away_from_zero(rng, (5, 2, 3)), away_from_zero(rng, (4, 3)),
                         transpose_x2=True),
                  Sample(away_from_zero(rng, (5, 3, 2)), away_from_zero(rng, (5, 3, 4)),
                         transpose_x1=True)]


def check_matmul_transposed(x, y, *, transpose_x1=False, transpose_x2=False) -> None:
    for name, t in (("transpose_x1", transpose_x1), ("transpose_x2", transpose_x2)):
        if type(t) is not bool:
            raise ArgumentError(f"matmul_transposed: {name} must be True or False, got {t!r}")
    for name, operand in (("x1", x), ("x2", y)):
        if operand.ndim < 2:
            raise ShapeError(f"matmul_transposed: {name} must be at least 2-D (a matrix or a "
                             f"stack of them), got {describe(operand)}; use matmul")
    shape_x, shape_y = x.data.shape, y.data.shape
    if transpose_x1:
        shape_x = shape_x[:-2] + (shape_x[-1], shape_x[-2])
    if transpose_x2:
        shape_y = shape_y[:-2] + (shape_y[-1], shape_y[-2])
    _check_aligned("matmul_transposed", shape_x, shape_y, x, y)


@primitive(vjp=matmul_transposed_vjp, samples=matmul_transposed_samples, family=FAMILY,
           check=check_matmul_transposed)
def matmul_transposed(xp, x1, x2, *, transpose_x1=False, transpose_x2=False):
    """``x1 @ x2`` with either operand's last two axes swapped first: the gradients of a
    matmul (``g @ y.mT``, ``x.mT @ g``) as one op; BLAS reads a transposed operand in
    place, without a copy.

    >>> import gradkit as gk
    >>> x = gk.tensor([[1.0, 2.0]])
    >>> gk.matmul_transposed(x, x, transpose_x1=True).numpy().tolist()
    [[1.0, 2.0], [2.0, 4.0]]
    """
    a = xp.matrix_transpose(x1) if transpose_x1 else x1
    b = xp.matrix_transpose(x2) if transpose_x2 else x2
    return xp.matmul(a, b)


def matmul_vjp(ctx, g):
    x, y = ctx.inputs
    gx = gy = None
    if x.ndim >= 2 and y.ndim >= 2:
        return (unbroadcast(matmul_transposed(g, y, transpose_x2=True), x)
                if ctx.needs[0] else None,
                unbroadcast(matmul_transposed(x, g, transpose_x1=True), y)
                if ctx.needs[1] else None)
    if x.ndim == 1 and y.ndim == 1:
        return (unbroadcast(g * y, x) if ctx.needs[0] else None,
                unbroadcast(g * x, y) if ctx.needs[1] else None)
    if ctx.needs[0]:
        if y.ndim == 1:
            gx = unbroadcast(expand_dims(g, axis=-1) * y, x)
        elif x.ndim == 1:
            row = matmul(expand_dims(g, axis=-2), matrix_transpose(y))
            gx = unbroadcast(squeeze(row, axis=-2), x)
        else:
            gx = unbroadcast(matmul(g, matrix_transpose(y)), x)
    if ctx.needs[1]:
        if x.ndim == 1:
            gy = unbroadcast(expand_dims(x, axis=-1) * expand_dims(g, axis=-2), y)
        elif y.ndim == 1:
            column = matmul(matrix_transpose(x), expand_dims(g, axis=-1))
            gy = unbroadcast(squeeze(column, axis=-1), y)
        else:
            gy = unbroadcast(matmul(matrix_transpose(x), g), y)
    return gx, gy


def matmul_samples(rng):
    shapes = [((3,), (3,)), ((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)),
              ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (4, 3, 2)),
              ((3,), (5, 3, 4)), ((5, 2, 3), (3,))]
    return [Sample(away_from_zero(rng, a), away_from_zero(rng, b)) for a, b in shapes]


@primitive(vjp=matmul_vjp, samples=matmul_samples, family=FAMILY, check=check_matmul)
def matmul(xp, x1, x2):
    """Matrix product ``x1 @ x2`` with NumPy's rules for 1-D and batched operands.

    >>> import gradkit as gk
    >>> (gk.tensor([[1.0, 2.0]]) @ gk.tensor([[3.0], [4.0]])).numpy().tolist()
    [[11.0]]
    """
    return xp.matmul(x1, x2)


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
    if ctx.needs[0]:  # (mixed precision: the engine casts a wider gradient to x's dtype)
        grads[0] = (matmul_transposed(g, weight, transpose_x2=True) if g.ndim >= 2 else
                    matmul(g, matrix_transpose(weight)))
    if ctx.needs[1]:
        rows_x = x if x.ndim == 2 else reshape(x, shape=(-1, x.shape[-1]))
        rows_g = g if g.ndim == 2 else reshape(g, shape=(-1, g.shape[-1]))
        grads[1] = matmul_transposed(rows_x, rows_g, transpose_x1=True)
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


# -- products ---------------------------------------------------------------------------

def _contracted_axes(x1: Tensor, x2: Tensor, axes: Any) -> tuple[list[int], list[int]]:
    if isinstance(axes, (int, np.integer)):
        axes = int(axes)
        if axes < 0 or axes > min(x1.ndim, x2.ndim):
            raise ShapeError(f"tensordot: axes={axes} is out of range for {describe(x1)} and "
                             f"{describe(x2)}")
        return list(range(x1.ndim - axes, x1.ndim)), list(range(axes))
    first, second = axes
    first = normalize_axis_list(first, x1.ndim, "tensordot", "axes[0]") if x1.ndim else []
    second = normalize_axis_list(second, x2.ndim, "tensordot", "axes[1]") if x2.ndim else []
    if len(first) != len(second):
        raise ShapeError(f"tensordot: axes {axes} name {len(first)} and {len(second)} axes")
    return first, second


def _tensordot_samples(rng):
    return [Sample(away_from_zero(rng, (2, 3, 4)), away_from_zero(rng, (3, 4, 2))),
            Sample(away_from_zero(rng, (2, 3)), away_from_zero(rng, (4, 2)), axes=([0], [1])),
            Sample(away_from_zero(rng, (2,)), away_from_zero(rng, (3,)), axes=0),
            Sample(away_from_zero(rng, (2, 3, 4)), away_from_zero(rng, (4, 3)),
                   axes=((1, 2), (1, 0)))]


@composite(samples=_tensordot_samples, family=FAMILY)
def tensordot(x1: Tensor, x2: Tensor, /, *, axes: Any = 2) -> Tensor:
    """Sum of products over the axes ``axes`` names: an int n (the last n of ``x1``
    with the first n of ``x2``) or a pair of axis sequences. Free axes of ``x1``
    come first in the result, then those of ``x2``.

    >>> import gradkit as gk
    >>> gk.tensordot(gk.ones((2, 3)), gk.ones((3, 4)), axes=1).shape
    (2, 4)
    """
    first, second = _contracted_axes(x1, x2, axes)
    for a, b in zip(first, second):
        if x1.shape[a] != x2.shape[b]:
            raise ShapeError(f"tensordot: axis {a} of x1 ({x1.shape[a]}) and axis {b} of x2 "
                             f"({x2.shape[b]}) differ; operands: {describe(x1)}, {describe(x2)}")
    free1 = [a for a in range(x1.ndim) if a not in first]
    free2 = [b for b in range(x2.ndim) if b not in second]
    inner = math.prod(x1.shape[a] for a in first)
    left = reshape(transpose(x1, axes=tuple(free1 + first)),
                   shape=(math.prod(x1.shape[a] for a in free1), inner))
    right = reshape(transpose(x2, axes=tuple(second + free2)),
                    shape=(inner, math.prod(x2.shape[b] for b in free2)))
    return reshape(matmul(left, right),
                   shape=tuple(x1.shape[a] for a in free1) + tuple(x2.shape[b] for b in free2))


def _dot_samples(rng):
    shapes = [((3,), (3,)), ((2, 3), (3, 4)), ((2, 3), (3,)), ((), (2, 3)),
              ((2, 2, 3), (4, 3, 2))]
    return [Sample(away_from_zero(rng, a), away_from_zero(rng, b)) for a, b in shapes]


@composite(samples=_dot_samples, family=FAMILY)
def dot(a: Tensor, b: Tensor) -> Tensor:
    """NumPy's ``dot``: a product for 0-d operands, else the sum over the last axis of
    ``a`` and the second-to-last of ``b`` (the only axis of a 1-D ``b``).

    >>> import gradkit as gk
    >>> gk.dot(gk.tensor([1.0, 2.0]), gk.tensor([3.0, 4.0])).item()
    11.0
    """
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([a.ndim - 1], [max(b.ndim - 2, 0)]))


@composite(samples=lambda rng: [Sample(away_from_zero(rng, (3,)), away_from_zero(rng, (2,))),
                                Sample(away_from_zero(rng, (2, 2)), away_from_zero(rng, ()))],
           family=FAMILY)
def outer(x1: Tensor, x2: Tensor, /) -> Tensor:
    """``x1[i] * x2[j]`` for every pair (inputs are flattened, as in NumPy).

    >>> import gradkit as gk
    >>> gk.outer(gk.tensor([1.0, 2.0]), gk.tensor([1.0, 10.0])).numpy().tolist()
    [[1.0, 10.0], [2.0, 20.0]]
    """
    return multiply(reshape(x1, shape=(-1, 1)), reshape(x2, shape=(1, -1)))


@composite(samples=lambda rng: [Sample(away_from_zero(rng, (2, 3)), away_from_zero(rng, (3,))),
                                Sample(away_from_zero(rng, (3, 2)), away_from_zero(rng, (3, 1)),
                                       axis=0)], family=FAMILY)
def vecdot(x1: Tensor, x2: Tensor, /, *, axis: int = -1) -> Tensor:
    """Dot products of vectors along ``axis`` (of the broadcast shape); the other axes
    broadcast.

    >>> import gradkit as gk
    >>> gk.vecdot(gk.ones((2, 3)), gk.tensor([1.0, 2.0, 3.0])).numpy().tolist()
    [6.0, 6.0]
    """
    ndim = max(x1.ndim, x2.ndim)
    if not -ndim <= axis < ndim:
        raise ShapeError(f"vecdot: axis {axis} is out of range for {describe(x1)} and "
                         f"{describe(x2)}")
    rel = axis - ndim if axis >= 0 else axis
    n1 = x1.shape[rel] if -x1.ndim <= rel else 1
    n2 = x2.shape[rel] if -x2.ndim <= rel else 1
    if n1 != n2:
        raise ShapeError(f"vecdot: the vectors along axis {axis} have sizes {n1} and {n2}; "
                         f"operands: {describe(x1)}, {describe(x2)}")
    products = multiply(x1, x2)
    return sum_(products, axis=rel, dtype=products.dtype)  # int8 stays int8, as matmul


# -- gk.linalg: inverse, solve, determinants ---------------------------------------------

def _square_check(op: str):
    """The check of an op on square matrices: it names ``op`` and the operand."""
    def check(x, **params: Any) -> None:
        a = x.data
        if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
            raise ShapeError(f"{op}: needs square matrices in the last two axes, got "
                             f"{describe(x)}")
    return check



def _conditioned(rng, shape):
    """Random matrices kept well conditioned: n * I plus noise."""
    n = shape[-1]
    return np.eye(n) * n + away_from_zero(rng, shape, 0.1, 1.0)


def _square_samples(rng):
    return [Sample(_conditioned(rng, (3, 3))), Sample(_conditioned(rng, (2, 3, 3))),
            Sample(_conditioned(rng, (1, 1)))]


def inv_vjp(ctx, g):
    out_t = matrix_transpose(ctx.out)
    return (-matmul(out_t, matmul(g, out_t)),)


@primitive("linalg.inv", vjp=inv_vjp, samples=_square_samples, family=FAMILY,
           check=_square_check("linalg.inv"), float_only=True)
def inv(xp, x):
    """The inverse of each square matrix (last two axes).

    >>> import gradkit as gk
    >>> gk.linalg.inv(gk.tensor([[2.0, 0.0], [0.0, 4.0]])).numpy().tolist()
    [[0.5, 0.0], [0.0, 0.25]]
    """
    return xp.linalg.inv(x)


def check_solve(x1, x2) -> None:
    _square_check("linalg.solve")(x1)
    a, b = x1.data, x2.data
    rows = b.shape[0] if b.ndim == 1 else (b.shape[-2] if b.ndim >= 2 else None)
    if rows != a.shape[-1]:
        raise ShapeError(f"linalg.solve: x2 must be (M,) or (..., M, K) with M = "
                         f"{a.shape[-1]}, got {describe(x2)} for x1 {describe(x1)}")
    if b.ndim >= 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(f"linalg.solve: batch dimensions {a.shape[:-2]} and "
                             f"{b.shape[:-2]} do not broadcast") from None


def solve_vjp(ctx, g):
    """x = A^-1 b: gb = A^-T g, gA = -gb x^T (outer products for a vector b)."""
    a, b = ctx.inputs
    x = ctx.out
    a_t = matrix_transpose(a)
    if b.ndim == 1:  # one vector for every matrix of the stack
        gb = squeeze(solve(a_t, expand_dims(g, axis=-1)), axis=-1)
        ga = -expand_dims(gb, axis=-1) * expand_dims(x, axis=-2)
    else:
        gb = solve(a_t, g)
        ga = -matmul(gb, matrix_transpose(x))
    return (unbroadcast(ga, a) if ctx.needs[0] else None,
            unbroadcast(gb, b) if ctx.needs[1] else None)


def _solve_samples(rng):
    pairs = [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3,)), ((2, 3, 3), (2, 3, 2)),
             ((3, 3), (2, 3, 1)), ((2, 1, 3, 3), (4, 3, 2))]
    return [Sample(_conditioned(rng, a), away_from_zero(rng, b)) for a, b in pairs]


@primitive("linalg.solve", vjp=solve_vjp, samples=_solve_samples, family=FAMILY,
           check=check_solve, float_only=True)
def solve(xp, x1, x2):
    """The ``x`` with ``x1 @ x = x2``: ``x2`` is one vector (M,) or a stack of
    (M, K) matrices; batch axes broadcast.

    >>> import gradkit as gk
    >>> gk.linalg.solve(gk.tensor([[2.0, 0.0], [0.0, 4.0]]), gk.tensor([1.0, 1.0])).numpy().tolist()
    [0.5, 0.25]
    """
    if x2.ndim == 1:
        return xp.linalg.solve(x1, xp.reshape(x2, (x2.shape[0], 1)))[..., 0]
    batch = tuple(np.broadcast_shapes(tuple(x1.shape[:-2]), tuple(x2.shape[:-2])))
    return xp.linalg.solve(xp.broadcast_to(x1, batch + tuple(x1.shape[-2:])),
                           xp.broadcast_to(x2, batch + tuple(x2.shape[-2:])))


def _per_matrix(t: Tensor) -> Tensor:
    """A stack of scalars (one per matrix) with two axes added, to scale the matrices."""
    return expand_dims(t, axis=(-2, -1)) if t.ndim else reshape(t, shape=(1, 1))


def det_vjp(ctx, g):
    (x,) = ctx.inputs
    return (_per_matrix(g * ctx.out) * matrix_transpose(inv(x)),)


@primitive("linalg.det", vjp=det_vjp, samples=_square_samples, family=FAMILY,
           check=_square_check("linalg.det"), float_only=True)
def det(xp, x):
    """The determinant of each square matrix; the gradient ``det * inv(x)^T`` is
    infinite at singular matrices.

    >>> import gradkit as gk
    >>> gk.linalg.det(gk.tensor([[2.0, 1.0], [1.0, 3.0]])).item()
    5.0
    """
    return xp.linalg.det(x)


@primitive("linalg.slogdet_sign", vjp=None, samples=_square_samples, family=FAMILY,
           check=_square_check("linalg.slogdet_sign"), float_only=True)
def slogdet_sign(xp, x):
    """The sign (-1, 0 or 1) of each determinant; no gradient. Part of ``slogdet``.

    >>> import gradkit as gk
    >>> gk.linalg.slogdet_sign(gk.tensor([[0.0, 1.0], [1.0, 0.0]])).item()
    -1.0
    """
    return xp.linalg.slogdet(x)[0]


def logabsdet_vjp(ctx, g):
    (x,) = ctx.inputs
    return (_per_matrix(g) * matrix_transpose(inv(x)),)


@primitive("linalg.logabsdet", vjp=logabsdet_vjp, samples=_square_samples, family=FAMILY,
           check=_square_check("linalg.logabsdet"), float_only=True)
def logabsdet(xp, x):
    """``log|det(x)|`` of each square matrix, without overflow; part of ``slogdet``.

    >>> import gradkit as gk
    >>> round(gk.linalg.logabsdet(gk.tensor([[0.0, 2.0], [2.0, 0.0]])).item(), 4)
    1.3863
    """
    return xp.linalg.slogdet(x)[1]


class SlogdetResult(NamedTuple):
    """``slogdet``'s result: ``det = sign * exp(logabsdet)``."""
    sign: Tensor
    logabsdet: Tensor


@composite("linalg.slogdet", samples=_square_samples, family=FAMILY)
def slogdet(x: Tensor, /) -> SlogdetResult:
    """The sign and ``log|det|`` of each square matrix (the gradient flows through
    ``logabsdet``, the sign has none).

    >>> import gradkit as gk
    >>> sign, logabsdet = gk.linalg.slogdet(gk.tensor([[0.0, 1.0], [1.0, 0.0]]))
    >>> sign.item(), logabsdet.item()
    (-1.0, 0.0)
    """
    return SlogdetResult(slogdet_sign(x), logabsdet(x))


def cholesky_vjp(ctx, g):
    """With L = chol(A_sym): S = L^-T Phi(L^T gL) L^-1 and gA = (S + S^T) / 2, where Phi
    keeps the lower triangle and halves the diagonal (Murray 2016, arXiv:1602.07527)."""
    (x,) = ctx.inputs
    xp = ctx.backend.xp
    lower = ctx.out
    if ctx.params["upper"]:
        lower, g = matrix_transpose(lower), matrix_transpose(g)
    n = x.shape[-1]
    half_diagonal = ctx.constant(xp.asarray(np.eye(n) * 0.5 + np.tril(np.ones((n, n)), -1),
                                            dtype=x.data.dtype), from_input_values=False)
    phi = tril(matmul(matrix_transpose(lower), g)) * half_diagonal
    lower_t = matrix_transpose(lower)
    s = matrix_transpose(solve(lower_t, matrix_transpose(solve(lower_t, phi))))
    return ((s + matrix_transpose(s)) * 0.5,)


def _spd_samples(rng):
    def spd(shape):
        b = rng.standard_normal(shape)
        return b @ np.swapaxes(b, -1, -2) + np.eye(shape[-1]) * shape[-1]
    return [Sample(spd((3, 3))), Sample(spd((2, 3, 3))), Sample(spd((3, 3)), upper=True)]


@primitive("linalg.cholesky", vjp=cholesky_vjp, samples=_spd_samples, family=FAMILY,
           check=_square_check("linalg.cholesky"), float_only=True)
def cholesky(xp, x, *, upper=False):
    """The Cholesky factor of each symmetric positive-definite matrix: lower ``L`` with
    ``x = L @ L.mT`` (or upper ``U = L.mT``). ``x`` is symmetrized first,
    ``(x + x.mT) / 2``, so the gradient is symmetric.

    >>> import gradkit as gk
    >>> gk.linalg.cholesky(gk.tensor([[4.0, 2.0], [2.0, 2.0]])).numpy().tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    """
    lower = xp.linalg.cholesky((x + xp.matrix_transpose(x)) / 2)
    return xp.matrix_transpose(lower) if upper else lower


# -- gk.linalg: norms, diagonal, trace, cross, matrix_power ------------------------------

def _vector_norm_samples(rng):
    x = away_from_zero(rng, (3, 4))
    return [Sample(x), Sample(x, axis=1, ord=1), Sample(x, axis=0, keepdims=True, ord=math.inf),
            Sample(x, axis=(0, 1), ord=-math.inf), Sample(x, ord=3), Sample(x, ord=0.5, axis=-1)]


@composite("linalg.vector_norm", samples=_vector_norm_samples, family=FAMILY, float_only=True)
def vector_norm(x: Tensor, /, *, axis: Any = None, keepdims: bool = False,
                ord: float = 2) -> Tensor:
    """The ``ord``-norm of vectors along ``axis`` (all elements for None): 2
    (Euclidean), 1, inf (largest magnitude), -inf, 0 (count of nonzeros, no gradient)
    or any other p, ``sum(|x|**p)**(1/p)``. The 2-norm's gradient ``x / norm`` is nan
    at a zero vector.

    >>> import gradkit as gk
    >>> gk.linalg.vector_norm(gk.tensor([3.0, -4.0])).item()
    5.0
    >>> gk.linalg.vector_norm(gk.tensor([3.0, -4.0]), ord=float("inf")).item()
    4.0
    """
    if ord == 2:
        return sqrt(sum_(multiply(x, x), axis=axis, keepdims=keepdims))
    if ord == 1:
        return sum_(abs_(x), axis=axis, keepdims=keepdims)
    if ord == math.inf:
        return max_(abs_(x), axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return min_(abs_(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return sum_(astype(not_equal(x, 0), dtype=x.dtype if x.dtype.kind == "f" else "float64"),
                    axis=axis, keepdims=keepdims)
    return power(sum_(power(abs_(x), ord), axis=axis, keepdims=keepdims), 1.0 / ord)


def _matrix_norm_samples(rng):
    x = away_from_zero(rng, (2, 3, 4))
    return [Sample(x), Sample(x, ord=1), Sample(x, ord=-1, keepdims=True),
            Sample(x, ord=math.inf), Sample(x[0], ord=-math.inf)]


@composite("linalg.matrix_norm", samples=_matrix_norm_samples, family=FAMILY, float_only=True)
def matrix_norm(x: Tensor, /, *, keepdims: bool = False, ord: Any = "fro") -> Tensor:
    """The norm of each matrix (last two axes): ``"fro"`` (Frobenius), 1 / -1
    (largest / smallest column sum of magnitudes), inf / -inf (row sums). The 2-norm
    and nuclear norm need singular values, which gradkit does not compute.

    >>> import gradkit as gk
    >>> gk.linalg.matrix_norm(gk.tensor([[1.0, -2.0], [3.0, 4.0]]), ord=1).item()
    6.0
    """
    if x.ndim < 2:
        raise ShapeError(f"linalg.matrix_norm: needs at least 2 axes, got {describe(x)}")
    if ord == "fro":
        return sqrt(sum_(multiply(x, x), axis=(-2, -1), keepdims=keepdims))
    if ord in (1, -1, math.inf, -math.inf):
        summed, across = (-2, -1) if ord in (1, -1) else (-1, -2)
        sums = sum_(abs_(x), axis=summed, keepdims=True)
        pick = max_ if ord in (1, math.inf) else min_
        out = pick(sums, axis=across, keepdims=True)
        return out if keepdims else reshape(out, shape=x.shape[:-2])
    if ord in (2, -2, "nuc"):
        raise ArgumentError(f"linalg.matrix_norm: ord={ord!r} needs singular values (an SVD), "
                            "which gradkit does not compute; use 'fro', 1, -1, inf or -inf")
    raise ArgumentError(f"linalg.matrix_norm: unknown ord {ord!r}; use 'fro', 1, -1, inf, -inf")


def _norm_samples(rng):
    x = away_from_zero(rng, (3, 4))
    return [Sample(x), Sample(x, ord=1, axis=0), Sample(x, ord="fro"), Sample(x, ord=math.inf),
            Sample(away_from_zero(rng, (2, 3, 2)), ord=1, axis=(2, 0), keepdims=True)]


@composite("linalg.norm", samples=_norm_samples, family=FAMILY, float_only=True)
def norm(x: Tensor, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Tensor:
    """NumPy's ``linalg.norm``: a vector norm over one axis (or of the flattened input
    when ``ord`` and ``axis`` are None), a matrix norm over two axes (or of a 2-D
    input with ``ord`` given).

    >>> import gradkit as gk
    >>> gk.linalg.norm(gk.tensor([[3.0, 0.0], [0.0, 4.0]])).item()
    5.0
    """
    if axis is None and ord is None:
        return vector_norm(x, axis=None, keepdims=keepdims)
    if axis is None:
        axis = tuple(range(x.ndim))
    axes = normalize_axis_list(axis, x.ndim, "linalg.norm", "axis")
    if len(axes) == 1:
        return vector_norm(x, axis=axes[0], keepdims=keepdims, ord=2 if ord is None else ord)
    if len(axes) != 2:
        raise ArgumentError(f"linalg.norm: axis {axis} names {len(axes)} axes; vector norms "
                            "take 1, matrix norms 2")
    out = matrix_norm(moveaxis(x, axes, (-2, -1)), ord="fro" if ord is None else ord)
    return expand_dims(out, axis=tuple(sorted(axes))) if keepdims else out


def _diagonal_index(shape: tuple[int, ...], offset: int) -> tuple:
    """An all-integer-array index picking diagonal ``offset`` of the last two axes."""
    n, m = shape[-2:]
    length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    rows = np.arange(length) + max(0, -offset)
    grid = grid_index(rows, len(shape) - 2, shape[:-2] + (length,))[:-1]
    return grid + (rows, rows + offset)


@composite("linalg.diagonal", samples=lambda rng: [
    Sample(away_from_zero(rng, (3, 4))), Sample(away_from_zero(rng, (2, 3, 3)), offset=1),
    Sample(away_from_zero(rng, (4, 3)), offset=-2)], family=FAMILY)
def diagonal(x: Tensor, /, *, offset: int = 0) -> Tensor:
    """Diagonal ``offset`` (above the main one when positive) of each matrix.

    >>> import gradkit as gk
    >>> gk.linalg.diagonal(gk.tensor([[1.0, 2.0], [3.0, 4.0]])).numpy().tolist()
    [1.0, 4.0]
    """
    if x.ndim < 2:
        raise ShapeError(f"linalg.diagonal: needs at least 2 axes, got {describe(x)}")
    return getitem(x, index=_diagonal_index(x.shape, offset))


@composite("linalg.trace", samples=lambda rng: [
    Sample(away_from_zero(rng, (3, 3))), Sample(away_from_zero(rng, (2, 3, 4)), offset=1)],
    family=FAMILY)
def trace(x: Tensor, /, *, offset: int = 0, dtype: Any = None) -> Tensor:
    """The sum of diagonal ``offset`` of each matrix (last two axes).

    >>> import gradkit as gk
    >>> gk.linalg.trace(gk.tensor([[1.0, 2.0], [3.0, 4.0]])).item()
    5.0
    """
    return sum_(diagonal(x, offset=offset), axis=-1, dtype=dtype)


@composite("linalg.cross", samples=lambda rng: [
    Sample(away_from_zero(rng, (3,)), away_from_zero(rng, (3,))),
    Sample(away_from_zero(rng, (2, 3)), away_from_zero(rng, (3,))),
    Sample(away_from_zero(rng, (3, 2)), away_from_zero(rng, (3, 2)), axis=0)], family=FAMILY)
def cross(x1: Tensor, x2: Tensor, /, *, axis: int = -1) -> Tensor:
    """Cross products of 3-vectors along ``axis``; the other axes broadcast.

    >>> import gradkit as gk
    >>> gk.linalg.cross(gk.tensor([1.0, 0.0, 0.0]), gk.tensor([0.0, 1.0, 0.0])).numpy().tolist()
    [0.0, 0.0, 1.0]
    """
    a, b = broadcast_arrays(x1, x2)
    (axis,) = normalize_axis_list(axis, a.ndim, "linalg.cross", "axis")
    if a.shape[axis] != 3:
        raise ShapeError(f"linalg.cross: axis {axis} must have size 3; operands: "
                         f"{describe(x1)}, {describe(x2)}")
    head = (slice(None),) * axis
    a0, a1, a2 = (getitem(a, index=head + (i,)) for i in range(3))
    b0, b1, b2 = (getitem(b, index=head + (i,)) for i in range(3))
    return stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=axis)


@composite("linalg.matrix_power", samples=lambda rng: [
    Sample(_conditioned(rng, (3, 3)) / 3, 3), Sample(_conditioned(rng, (2, 2, 2)) / 2, -2),
    Sample(_conditioned(rng, (2, 2)), 1)], family=FAMILY, float_only=True)
def matrix_power(x: Tensor, n: int, /) -> Tensor:
    """``x`` multiplied by itself ``n`` times (``n < 0``: of its inverse; ``n = 0``: the
    identity), for each square matrix.

    >>> import gradkit as gk
    >>> gk.linalg.matrix_power(gk.tensor([[1.0, 1.0], [0.0, 1.0]]), 3).numpy().tolist()
    [[1.0, 3.0], [0.0, 1.0]]
    """
    _square_check("linalg.matrix_power")(x)
    try:
        n = operator.index(n)  # a Python or NumPy int, or an integer 0-d tensor
    except TypeError:
        raise ArgumentError(f"linalg.matrix_power: n must be an integer, got {n!r}") from None
    if n < 0:
        x, n = inv(x), -n
    if n == 0:
        xp = x.array_backend.xp
        eye = xp.eye(x.shape[-1], dtype=x.data.dtype)
        return Tensor(xp.broadcast_to(eye, tuple(x.shape)), x.array_backend)  # a constant
    result = None
    power_of_x = x
    while n:
        if n & 1:
            result = power_of_x if result is None else matmul(result, power_of_x)
        n >>= 1
        if n:
            power_of_x = matmul(power_of_x, power_of_x)
    return result
