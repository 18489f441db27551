"""Losses: softmax cross-entropy, multiclass SVM (hinge) and mean squared error.

Classification losses take scores ``(N, C)`` and integer labels ``(N,)`` and
average over the batch, as in cs231n.

>>> import gradkit as gk
>>> logits = gk.tensor([[2.0, 1.0, 0.1]], requires_grad=True)
>>> loss = gk.cross_entropy(logits, gk.tensor([0]))
>>> round(loss.item(), 4)
0.417
>>> loss.backward()
>>> [round(v, 4) for v in logits.grad.numpy()[0].tolist()]
[-0.341, 0.2424, 0.0986]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.dtypes import as_dtype, native_dtype
from gradkit.errors import DTypeError, ShapeError, describe, describe_operands
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.activation import relu, softmax
from gradkit.ops.elementwise import multiply, subtract
from gradkit.ops.reduce import mean, sum_
from gradkit.ops.samples import away_from_zero
from gradkit.ops.shape import expand_dims, getitem
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor, tensor

FAMILY = "loss"


def _as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """``value`` as a Tensor (on ``like``'s backend when given)."""
    if isinstance(value, Tensor):
        return value
    return tensor(value, backend=like.array_backend if like is not None else None)


def _arange(n: int, dtype: Any, backend: Any) -> Tensor:
    """``gk.arange(n, dtype=dtype, device=backend)``, made here: ops sit below gradkit.creation."""
    return Tensor(backend.xp.arange(n, dtype=native_dtype(backend.xp, as_dtype(dtype, "arange"))),
                  backend)


def check_classification(op: str, scores_name: str, scores: Tensor, labels: Tensor) -> None:
    """Raise unless ``scores`` is float (N, C) and ``labels`` int (N,) with values in [0, C)."""
    if (scores.dtype.kind == "f" and scores.ndim == 2 and labels.dtype.kind in "iu" and
            labels.shape == (scores.shape[0],) and scores.size > 0):
        low, high = labels.array_backend.value_range(labels.data)
        if 0 <= low and high < scores.shape[1]:
            return  # the common case: no message is built
    operands = describe_operands([scores_name, "labels"], [scores, labels])
    if scores.dtype.kind != "f":
        raise DTypeError(f"{op}: argument {scores_name} must be floating point, got "
                         f"{describe(scores)} (operands: {operands})")
    if scores.ndim != 2:
        raise ShapeError(f"{op}: argument {scores_name} must be 2-D (batch, classes), got "
                         f"{describe(scores)} (operands: {operands})")
    n, c = scores.shape
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"{op}: argument labels must be an integer tensor of class indices, "
                         f"got {describe(labels)}; convert with .astype('int64') "
                         f"(operands: {operands})")
    if labels.shape != (n,):
        raise ShapeError(f"{op}: argument labels must have shape ({n},), one class index per "
                         f"row of {scores_name}, got {describe(labels)} (operands: {operands})")
    if n == 0 or c == 0:
        raise ShapeError(f"{op}: argument {scores_name} is empty, got {describe(scores)} "
                         f"(operands: {operands})")
    low, high = labels.array_backend.value_range(labels.data)
    if low < 0 or high >= c:
        raise ShapeError(f"{op}: argument labels must hold class indices in [0, {c}), got "
                         f"values from {low} to {high} (operands: {operands})")


def _one_hot(xp: Any, labels: Any, classes: int, dtype: np.dtype) -> Any:
    """Raw ``(N, classes)`` one-hot array of ``labels`` (a raw integer array)."""
    return xp.astype(xp.arange(classes)[None, :] == xp.astype(labels, xp.int64)[:, None], dtype)


def _classification_samples(rng):
    out = []
    for n, c in ((4, 3), (1, 5), (6, 2), (3, 4)):
        out.append(Sample(away_from_zero(rng, (n, c)), rng.integers(0, c, size=n)))
    out.append(Sample(away_from_zero(rng, (3, 4)) * 20, np.array([0, 3, 1])))
    return out


# -- cross-entropy --------------------------------------------------------------------

def check_cross_entropy(logits, labels) -> None:
    check_classification("cross_entropy", "logits", logits, labels)


def cross_entropy_backward_vjp(ctx, g):
    grad_out, logits, labels = ctx.inputs
    n = logits.shape[0]
    g_grad_out = g_logits = None
    if ctx.needs[0]:  # linear in grad_out: <g, the gradient for grad_out = 1>
        one = tensor(1.0, dtype=logits.dtype, backend=logits.array_backend)
        g_grad_out = unbroadcast(sum_(g * cross_entropy_backward(one, logits, labels)), grad_out)
    if ctx.needs[1]:  # the softmax VJP applied to g * grad_out / n
        probs = softmax(logits, axis=-1)
        v = g * grad_out / n
        g_logits = probs * (v - sum_(v * probs, axis=1, keepdims=True))
    return g_grad_out, g_logits, None


def _backward_samples(rng):
    return [Sample(away_from_zero(rng, ()), s.args[0], s.args[1])
            for s in _classification_samples(rng)[:3]]


@primitive(vjp=cross_entropy_backward_vjp, samples=_backward_samples, family=FAMILY)
def cross_entropy_backward(xp, g, logits, labels):
    """The VJP of cross_entropy in the logits: ``g * (softmax(logits) - onehot) / N``.

    One pass per row on the Numba and CUDA backends.

    >>> import gradkit as gk
    >>> gk.cross_entropy_backward(gk.tensor(1.0), gk.tensor([[0.0, 0.0]]),
    ...                           gk.tensor([1])).numpy().tolist()
    [[0.5, -0.5]]
    """
    n, c = logits.shape
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(shifted)
    probs = e / xp.sum(e, axis=1, keepdims=True)
    return (probs - _one_hot(xp, labels, c, logits.dtype)) * (g / n)


def cross_entropy_vjp(ctx, g):
    logits, labels = ctx.inputs
    return cross_entropy_backward(g, logits, labels), None


@primitive(vjp=cross_entropy_vjp, samples=_classification_samples, family=FAMILY,
           check=check_cross_entropy, check_values=True)
def cross_entropy(xp, logits, labels):
    """Softmax cross-entropy, averaged over the batch: ``-mean(log_softmax(logits)[i, y_i])``.

    ``logits`` (N, C) float, ``labels`` (N,) integer class indices in [0, C). One
    fused, overflow-free op (log-sum-exp); the gradient is
    ``(softmax(logits) - onehot(labels)) / N``.

    >>> import gradkit as gk
    >>> round(gk.cross_entropy(gk.tensor([[1000.0, 0.0]]), gk.tensor([1])).item(), 1)
    1000.0
    """
    shift = xp.max(logits, axis=1, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0)
    shifted = logits - shift
    log_total = xp.log(xp.sum(xp.exp(shifted), axis=1))
    picked = xp.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]
    return xp.mean(log_total - picked)


# -- multiclass SVM ---------------------------------------------------------------------

def _svm_samples(rng):
    """Scores whose margins ``s_j - s_y + 1`` (j != y) are all at least 0.2 from 0."""
    out = []
    for n, c in ((4, 3), (1, 5), (6, 2), (3, 4)):
        labels = rng.integers(0, c, size=n)
        correct = rng.uniform(-1.0, 1.0, size=(n, 1))
        scores = correct - 1 + away_from_zero(rng, (n, c))
        scores[np.arange(n), labels] = correct[:, 0]
        out.append(Sample(scores, labels))
    return out


@composite(samples=_svm_samples, family=FAMILY)
def svm_loss(scores: Any, labels: Any) -> Tensor:
    """Multiclass SVM (hinge) loss, as in cs231n, averaged over the batch.

    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1)``; ``scores`` (N, C) float,
    ``labels`` (N,) integer class indices.

    >>> import gradkit as gk
    >>> scores = gk.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    >>> round(gk.svm_loss(scores, gk.tensor([0, 1, 2])).item(), 2)
    5.27
    """
    scores = _as_tensor(scores)
    labels = _as_tensor(labels, like=scores)
    check_classification("svm_loss", "scores", scores, labels)
    n, c = scores.shape
    # every step an op on the labels tensor (no raw arrays), so gk.capture replays it
    correct = getitem(scores, index=(_arange(n, "int64", scores.array_backend), labels))
    margins = relu(scores - expand_dims(correct, axis=1) + 1)  # a margin of exactly 0 adds 0
    others = (expand_dims(labels, axis=1) !=
              _arange(c, labels.dtype, scores.array_backend)).astype(scores.dtype)
    return mean(sum_(multiply(margins, others), axis=1))


# -- mean squared error ---------------------------------------------------------------

def _mse_samples(rng):
    return [Sample(away_from_zero(rng, s), away_from_zero(rng, s)) for s in ((3, 4), (5,), ())]


@composite(samples=_mse_samples, family=FAMILY)
def mse_loss(pred: Any, target: Any) -> Tensor:
    """Mean squared error ``mean((pred - target) ** 2)``; both have one shape.

    >>> import gradkit as gk
    >>> gk.mse_loss(gk.tensor([1.0, 2.0]), gk.tensor([0.0, 4.0])).item()
    2.5
    """
    pred_shape = tuple(getattr(pred, "shape", ()))
    target_shape = tuple(getattr(target, "shape", ()))
    if pred_shape != target_shape:
        raise ShapeError(f"mse_loss: argument target must have pred's shape {pred_shape}, got "
                         f"operands pred: {describe(pred)}, target: {describe(target)}")
    error = subtract(pred, target)
    return mean(multiply(error, error))
