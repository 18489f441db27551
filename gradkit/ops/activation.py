"""Activation functions (the cs231n lecture 4 set), each with its VJP beside it.

The pointwise activations differentiate through dedicated backward ops
(``relu_backward``, ``sigmoid_backward``, ...). Those are registered primitives
too, with VJPs of their own, so a backend can register one fused kernel for the
backward pass and gradients of gradients still work.

>>> import gradkit as gk
>>> x = gk.tensor([-1.0, 2.0], requires_grad=True)
>>> gk.relu(x).sum().backward()
>>> x.grad.numpy().tolist()
[0.0, 1.0]
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradkit.errors import ArgumentError, ShapeError, describe
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.elementwise import exp, multiply, where
from gradkit.ops.reduce import max_, sum_
from gradkit.ops.samples import away_from_zero, unary_samples
from gradkit.ops.shape import reshape
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor

FAMILY = "activation"

LEAKY_RELU_SLOPE = 0.01
ELU_ALPHA = 1.0
SOFTMAX_AXIS = -1


def _backward_samples(second_low: float | None = None, second_high: float = 2.0,
                      signed: bool = False, **params: Any):
    """Samples ``(g, second)`` for a backward op: ``second`` is ``x`` or the output ``y``."""
    def samples(rng):
        out = []
        for shape in ((2, 3), (4,), ()):
            g = away_from_zero(rng, shape)
            if second_low is None:
                second = away_from_zero(rng, shape)
            else:
                second = rng.uniform(second_low, second_high, size=shape)
                if signed:
                    second = second * rng.choice([-1.0, 1.0], size=shape)
            out.append(Sample(g, second, **params))
        return out
    return samples


# -- relu and leaky relu -----------------------------------------------------------

def relu_backward_vjp(ctx, g):
    grad_out, x = ctx.inputs
    # x only selects where g passes: its gradient is zero almost everywhere (None).
    return (unbroadcast(relu_backward(g, x), grad_out) if ctx.needs[0] else None), None


@primitive(vjp=relu_backward_vjp, samples=_backward_samples(), family=FAMILY)
def relu_backward(xp, g, x):
    """The VJP of relu: ``g * (x > 0)``; no gradient flows into ``x``.

    >>> import gradkit as gk
    >>> gk.relu_backward(gk.tensor([5.0, 5.0]), gk.tensor([-1.0, 2.0])).numpy().tolist()
    [0.0, 5.0]
    """
    return g * xp.astype(x > 0, g.dtype)


def relu_vjp(ctx, g):
    (x,) = ctx.inputs
    return (relu_backward(g, x),)


@primitive(vjp=relu_vjp, samples=unary_samples(), family=FAMILY)
def relu(xp, x):
    """``max(x, 0)``; the gradient at 0 is 0.

    >>> import gradkit as gk
    >>> gk.relu(gk.tensor([-1.0, 0.0, 2.0])).numpy().tolist()
    [0.0, 0.0, 2.0]
    """
    return xp.maximum(x, 0)


def leaky_relu_backward_vjp(ctx, g):
    grad_out, x = ctx.inputs
    slope = ctx.params["slope"]
    return (unbroadcast(leaky_relu_backward(g, x, slope=slope), grad_out) if ctx.needs[0]
            else None), None


@primitive(vjp=leaky_relu_backward_vjp,
           samples=lambda rng: _backward_samples()(rng)[:2] + _backward_samples(slope=0.2)(rng),
           family=FAMILY)
def leaky_relu_backward(xp, g, x, *, slope=LEAKY_RELU_SLOPE):
    """The VJP of leaky_relu: ``g`` where ``x > 0``, else ``slope * g``.

    >>> import gradkit as gk
    >>> gk.leaky_relu_backward(gk.tensor([5.0, 5.0]), gk.tensor([-1.0, 2.0]),
    ...                        slope=0.5).numpy().tolist()
    [2.5, 5.0]
    """
    return xp.where(x > 0, g, g * slope)


def leaky_relu_vjp(ctx, g):
    (x,) = ctx.inputs
    return (leaky_relu_backward(g, x, slope=ctx.params["slope"]),)


@primitive(vjp=leaky_relu_vjp,
           samples=lambda rng: unary_samples()(rng) + [Sample(away_from_zero(rng, (3, 4)),
                                                              slope=0.2)],
           family=FAMILY, float_only=True)
def leaky_relu(xp, x, *, slope=LEAKY_RELU_SLOPE):
    """``x`` where ``x > 0``, else ``slope * x`` (default slope 0.01).

    >>> import gradkit as gk
    >>> gk.leaky_relu(gk.tensor([-2.0, 3.0]), slope=0.25).numpy().tolist()
    [-0.5, 3.0]
    """
    return xp.where(x > 0, x, x * slope)


# -- elu ------------------------------------------------------------------------------

def elu_backward_vjp(ctx, g):
    grad_out, x = ctx.inputs
    alpha = ctx.params["alpha"]
    gg = unbroadcast(elu_backward(g, x, alpha=alpha), grad_out) if ctx.needs[0] else None
    # elu'' is alpha * exp(x) = elu' where x <= 0, and 0 where x > 0
    gx = unbroadcast(where(x <= 0, elu_backward(g * grad_out, x, alpha=alpha), 0.0), x) \
        if ctx.needs[1] else None
    return gg, gx


@primitive(vjp=elu_backward_vjp,
           samples=lambda rng: _backward_samples()(rng)[:2] + _backward_samples(alpha=0.5)(rng),
           family=FAMILY)
def elu_backward(xp, g, x, *, alpha=ELU_ALPHA):
    """The VJP of elu: ``g`` where ``x > 0``, else ``g * alpha * exp(x)``.

    >>> import gradkit as gk
    >>> gk.elu_backward(gk.tensor([2.0, 2.0]), gk.tensor([0.0, 1.0]), alpha=0.5).numpy().tolist()
    [1.0, 2.0]
    """
    return xp.where(x > 0, g, g * (alpha * xp.exp(xp.minimum(x, 0))))


def elu_vjp(ctx, g):
    (x,) = ctx.inputs
    return (elu_backward(g, x, alpha=ctx.params["alpha"]),)


@primitive(vjp=elu_vjp,
           samples=lambda rng: unary_samples()(rng) + [Sample(away_from_zero(rng, (3, 4)),
                                                              alpha=0.5)],
           family=FAMILY, float_only=True)
def elu(xp, x, *, alpha=ELU_ALPHA):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (default alpha 1).

    >>> import gradkit as gk
    >>> [round(v, 4) for v in gk.elu(gk.tensor([-1.0, 2.0])).numpy().tolist()]
    [-0.6321, 2.0]
    """
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))


# -- sigmoid and tanh -----------------------------------------------------------------

def sigmoid_backward_vjp(ctx, g):
    grad_out, y = ctx.inputs
    return (unbroadcast(sigmoid_backward(g, y), grad_out) if ctx.needs[0] else None,
            unbroadcast(g * grad_out * (1 - 2 * y), y) if ctx.needs[1] else None)


@primitive(vjp=sigmoid_backward_vjp, samples=_backward_samples(0.1, 0.9), family=FAMILY)
def sigmoid_backward(xp, g, y):
    """The VJP of sigmoid in terms of its output ``y``: ``g * y * (1 - y)``.

    >>> import gradkit as gk
    >>> gk.sigmoid_backward(gk.tensor([1.0]), gk.tensor([0.5])).numpy().tolist()
    [0.25]
    """
    return g * y * (1 - y)


def sigmoid_vjp(ctx, g):
    return (sigmoid_backward(g, ctx.out),)


@primitive(vjp=sigmoid_vjp, samples=unary_samples(shapes=((2, 3), (4,), (), (3, 4))),
           family=FAMILY, float_only=True)
def sigmoid(xp, x):
    """``1 / (1 + exp(-x))``, without overflow for any ``x``.

    Computed from ``exp(-|x|)``, which never exceeds 1.

    >>> import gradkit as gk
    >>> gk.sigmoid(gk.tensor([-1000.0, 0.0, 1000.0])).numpy().tolist()
    [0.0, 0.5, 1.0]
    """
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh_backward_vjp(ctx, g):
    grad_out, y = ctx.inputs
    return (unbroadcast(tanh_backward(g, y), grad_out) if ctx.needs[0] else None,
            unbroadcast(-2 * g * grad_out * y, y) if ctx.needs[1] else None)


@primitive(vjp=tanh_backward_vjp, samples=_backward_samples(0.1, 0.9, signed=True),
           family=FAMILY)
def tanh_backward(xp, g, y):
    """The VJP of tanh in terms of its output ``y``: ``g * (1 - y * y)``.

    >>> import gradkit as gk
    >>> gk.tanh_backward(gk.tensor([2.0]), gk.tensor([0.5])).numpy().tolist()
    [1.5]
    """
    return g * (1 - y * y)


def tanh_vjp(ctx, g):
    return (tanh_backward(g, ctx.out),)


@primitive(vjp=tanh_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def tanh(xp, x):
    """Hyperbolic tangent.

    >>> import gradkit as gk
    >>> gk.tanh(gk.tensor([0.0, 1000.0])).numpy().tolist()
    [0.0, 1.0]
    """
    return xp.tanh(x)


# -- softplus and gelu ----------------------------------------------------------------

def softplus_vjp(ctx, g):
    (x,) = ctx.inputs
    return (g * sigmoid(x),)


@primitive(vjp=softplus_vjp, samples=unary_samples(), family=FAMILY, float_only=True)
def softplus(xp, x):
    """``log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))`` (no overflow).

    >>> import gradkit as gk
    >>> gk.softplus(gk.tensor([0.0, 1000.0, -1000.0], dtype="float64")).numpy().tolist()
    [0.6931471805599453, 1000.0, 0.0]
    """
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


GELU_C = math.sqrt(2.0 / math.pi)


@composite(samples=unary_samples(), family=FAMILY, float_only=True)
def gelu(x: Any) -> Tensor:
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    This is the approximation of Hendrycks & Gimpel (used by GPT-2 and BERT), not
    the exact ``x * Phi(x)``; the two differ by less than 1e-3. Built from
    gradkit ops, so its gradient (and second derivative) follows from theirs.

    >>> import gradkit as gk
    >>> [round(v, 4) for v in gk.gelu(gk.tensor([-1.0, 0.0, 1.0])).numpy().tolist()]
    [-0.1588, 0.0, 0.8412]
    """
    cube = multiply(multiply(x, x), x)
    return 0.5 * x * (1 + tanh(GELU_C * (x + 0.044715 * cube)))


# -- softmax and log_softmax --------------------------------------------------------

def _shifted(xp, x, axis):
    """``x`` minus its max over ``axis`` (a finite shift, so +-inf rows stay defined)."""
    shift = xp.max(x, axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0)
    return x - shift


def _softmax_samples(rng):
    return [Sample(away_from_zero(rng, (2, 3))), Sample(away_from_zero(rng, (5,))),
            Sample(away_from_zero(rng, (2, 3, 4)), axis=1),
            Sample(away_from_zero(rng, (3, 4)), axis=0),
            Sample(away_from_zero(rng, (2, 3)) * 10, axis=-1)]


def softmax_vjp(ctx, g):
    axis = ctx.params["axis"]
    y = ctx.out
    return (y * (g - sum_(g * y, axis=axis, keepdims=True)),)


@primitive(vjp=softmax_vjp, samples=_softmax_samples, family=FAMILY, float_only=True)
def softmax(xp, x, *, axis=SOFTMAX_AXIS):
    """``exp(x) / sum(exp(x))`` over ``axis``, shifted by the max (no overflow).

    >>> import gradkit as gk
    >>> gk.softmax(gk.tensor([1000.0, 1000.0])).numpy().tolist()
    [0.5, 0.5]
    """
    e = xp.exp(_shifted(xp, x, axis))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax_vjp(ctx, g):
    axis = ctx.params["axis"]
    return (g - exp(ctx.out) * sum_(g, axis=axis, keepdims=True),)


@primitive(vjp=log_softmax_vjp, samples=_softmax_samples, family=FAMILY, float_only=True)
def log_softmax(xp, x, *, axis=SOFTMAX_AXIS):
    """``x - logsumexp(x)`` over ``axis``: the log of softmax, without overflow or log(0).

    >>> import gradkit as gk
    >>> gk.log_softmax(gk.tensor([0.0, 1000.0])).numpy().tolist()
    [-1000.0, 0.0]
    """
    shifted = _shifted(xp, x, axis)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


# -- maxout ---------------------------------------------------------------------------

def _maxout_samples(rng):
    def distinct(shape):
        values = rng.permutation(int(np.prod(shape))) * 0.25 + rng.uniform(0, 0.05)
        return (values - values.mean()).reshape(shape)
    return [Sample(distinct((2, 6)), pieces=2), Sample(distinct((2, 3, 6)), pieces=3),
            Sample(distinct((4,)), pieces=4), Sample(distinct((3, 5)), pieces=1)]


@composite(samples=_maxout_samples, family=FAMILY)
def maxout(x: Any, *, pieces: int) -> Tensor:
    """Maxout (Goodfellow et al.): the max over groups of ``pieces`` consecutive features.

    The last axis (size ``k * pieces``) becomes ``k``: output feature ``i`` is the
    largest of features ``i * pieces .. i * pieces + pieces - 1``.

    >>> import gradkit as gk
    >>> gk.maxout(gk.tensor([[1.0, 5.0, 3.0, 2.0]]), pieces=2).numpy().tolist()
    [[5.0, 3.0]]
    """
    shape = tuple(getattr(x, "shape", ()))
    if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)) or pieces < 1:
        raise ArgumentError(f"maxout: pieces must be a positive int, got {pieces!r}")
    if not shape or shape[-1] % pieces:
        raise ShapeError(f"maxout: argument x needs a last axis divisible by pieces={pieces}, "
                         f"got x: {describe(x)}")
    grouped = reshape(x, shape=shape[:-1] + (shape[-1] // pieces, int(pieces)))
    return max_(grouped, axis=-1)
