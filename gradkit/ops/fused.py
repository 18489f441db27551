"""Fused ops: where memory traffic, not arithmetic, is the cost.

``bias_activation(x, bias, activation=...)`` is ``act(x + bias)`` in one pass, and
its backward works from the output alone (no pre-activation kept). The Numba and
CUDA backends register single-pass kernels for both; the reference below runs
anywhere.

>>> import gradkit as gk
>>> x = gk.tensor([[-1.0, 2.0]], requires_grad=True)
>>> b = gk.tensor([0.5, 0.5], requires_grad=True)
>>> gk.bias_activation(x, b, activation="relu").sum().backward()
>>> b.grad.numpy().tolist()
[0.0, 1.0]
"""
from __future__ import annotations

import numpy as np

from gradkit.errors import ArgumentError, ShapeError, describe
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.elementwise import where
from gradkit.ops.samples import away_from_zero
from gradkit.ops.shape import sum_to
from gradkit.registry import Sample, get_op, primitive

FAMILY = "fused"

ACTIVATIONS = ("identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh")


def _activate(xp, z, activation, slope, alpha):
    """The activation's forward on raw arrays: the activation op's own reference."""
    if activation == "identity":
        return z
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
    params = {"leaky_relu": {"slope": slope}, "elu": {"alpha": alpha}}.get(activation, {})
    return get_op(activation).forward(xp, z, **params)


def _local_gradient(xp, y, activation, slope, alpha):
    """d act / d z written in terms of the output y = act(z)."""
    if activation == "identity":
        return xp.ones_like(y)
    if activation == "relu":
        return xp.astype(y > 0, y.dtype)
    if activation == "leaky_relu":
        return xp.where(y > 0, xp.ones_like(y), xp.full_like(y, slope))
    if activation == "elu":
        return xp.where(y > 0, xp.ones_like(y), y + alpha)
    if activation == "sigmoid":
        return y * (1 - y)
    return 1 - y * y  # tanh


def check_bias_activation(x, bias, *, activation="relu", slope=0.01, alpha=1.0) -> None:
    if activation not in ACTIVATIONS:
        raise ArgumentError(f"bias_activation: argument activation must be one of {ACTIVATIONS}, "
                         f"got {activation!r}")
    if bias.ndim != 1 or x.ndim == 0 or x.shape[-1] != bias.shape[0]:
        raise ShapeError(f"bias_activation: bias must be 1-D with x's last axis "
                         f"({x.shape[-1] if x.ndim else '?'}), got x: {describe(x)}, "
                         f"bias: {describe(bias)}")
    if activation == "leaky_relu" and slope <= 0:
        raise ArgumentError(f"bias_activation: slope must be > 0 (got {slope}) so the backward "
                         "pass can work from the output")


def bias_activation_backward_vjp(ctx, g):
    grad_out, y = ctx.inputs
    p = ctx.params
    gg = bias_activation_backward(g, y, **p) if ctx.needs[0] else None
    gy = None
    if ctx.needs[1] and p["activation"] in ("elu", "sigmoid", "tanh"):
        if p["activation"] == "elu":       # local gradient y + alpha where y <= 0
            gy = where(y <= 0, g * grad_out, 0.0)  # a comparison: no gradient
        elif p["activation"] == "sigmoid":  # y (1 - y)
            gy = g * grad_out * (1 - 2 * y)
        else:                               # 1 - y^2
            gy = g * grad_out * (-2 * y)
    return (unbroadcast(gg, grad_out) if gg is not None else None,
            unbroadcast(gy, y) if gy is not None else None)


def _backward_samples(rng):
    out = []
    for activation in ACTIVATIONS:
        y = away_from_zero(rng, (3, 4))
        if activation in ("sigmoid", "tanh"):
            y = rng.uniform(0.1, 0.9, size=(3, 4)) * (1 if activation == "sigmoid" else
                                                      rng.choice([-1, 1], size=(3, 4)))
        if activation == "elu":
            y = rng.uniform(-0.9, 2.0, size=(3, 4))
            y[np.abs(y) < 0.1] = 0.5
        out.append(Sample(away_from_zero(rng, (3, 4)), y, activation=activation))
    return out


@primitive(vjp=bias_activation_backward_vjp, samples=_backward_samples, family=FAMILY)
def bias_activation_backward(xp, g, y, *, activation="relu", slope=0.01, alpha=1.0):
    """``g * act'(z)`` from the output ``y = act(z)``: the VJP of bias_activation in z.

    >>> import gradkit as gk
    >>> gk.bias_activation_backward(gk.tensor([1.0, 1.0]), gk.tensor([0.0, 2.0]),
    ...                             activation="relu").numpy().tolist()
    [0.0, 1.0]
    """
    return g * _local_gradient(xp, y, activation, slope, alpha)


def bias_activation_vjp(ctx, g):
    x, bias = ctx.inputs
    gz = bias_activation_backward(g, ctx.out, **ctx.params)
    return (gz if ctx.needs[0] else None,
            sum_to(gz, shape=bias.shape) if ctx.needs[1] else None)


def _samples(rng):
    return [Sample(away_from_zero(rng, (4, 3)), away_from_zero(rng, (3,)) * 0.05,
                   activation=a) for a in ACTIVATIONS] + [
        Sample(away_from_zero(rng, (2, 4, 3)), away_from_zero(rng, (3,)) * 0.05,
               activation="leaky_relu", slope=0.2),
        Sample(away_from_zero(rng, (5,)), away_from_zero(rng, (5,)) * 0.05,
               activation="elu", alpha=0.5)]


@primitive(vjp=bias_activation_vjp, samples=_samples, family=FAMILY,
           check=check_bias_activation)
def bias_activation(xp, x, bias, *, activation="relu", slope=0.01, alpha=1.0):
    """``act(x + bias)`` in one op; ``bias`` matches ``x``'s last axis.

    ``activation``: identity, relu, leaky_relu (``slope``), elu (``alpha``),
    sigmoid or tanh.

    >>> import gradkit as gk
    >>> gk.bias_activation(gk.tensor([[-1.0, 1.0]]), gk.tensor([0.5, 0.5]),
    ...                    activation="relu").numpy().tolist()
    [[0.0, 1.5]]
    """
    return _activate(xp, x + bias, activation, slope, alpha)
