"""Optimizer updates as ops, so a backend can run each one as a single fused kernel.

``sgd_update`` and ``adam_update`` take a parameter, its gradient and the
optimizer's state buffers, and RETURN the new parameter array. The state buffers
(``velocity``; ``m`` and ``v``) are owned by the optimizer and are UPDATED IN
PLACE: they must be writable tensors that do not require a gradient
(``gk.zeros_like(param)``). The parameter and gradient are only read. These ops
have no gradient (``vjp=None``); call them inside ``gk.no_grad()``.

The references below are Array-API generic: only ``xp`` functions, Python
scalars and in-place ``buf[...] = ...`` writes. A backend kernel takes the same
arguments minus ``xp`` and must do the same writes.

>>> import gradkit as gk
>>> p = gk.tensor([1.0, 2.0], dtype="float64")
>>> g = gk.tensor([0.5, -0.5], dtype="float64")
>>> velocity = gk.zeros_like(p)
>>> gk.sgd_update(p, g, velocity, lr=0.1, momentum=0.9).numpy().tolist()
[0.95, 2.05]
>>> velocity.numpy().tolist()     # updated in place
[0.5, -0.5]
"""
from __future__ import annotations

import math

import numpy as np

from gradkit.errors import ArgumentError, DTypeError, ShapeError, describe
from gradkit.registry import Sample, primitive

FAMILY = "optim"


def _check_same_layout(op: str, param, **others) -> None:
    """Every array operand has the parameter's shape and dtype, and is floating."""
    if param.dtype.kind != "f":
        raise DTypeError(f"{op}: argument param must be floating, got {describe(param)}")
    for name, value in others.items():
        if value.shape != param.shape:
            raise ShapeError(f"{op}: argument {name} must have param's shape {param.shape}, "
                             f"got {name}: {describe(value)}, param: {describe(param)}")
        if value.dtype != param.dtype:
            raise DTypeError(f"{op}: argument {name} must have param's dtype {param.dtype}, "
                             f"got {name}: {describe(value)}, param: {describe(param)}")


def check_sgd_update(param, grad, velocity=None, *, lr=None, momentum=0.0, nesterov=False,
                     weight_decay=0.0) -> None:
    if lr is None:
        raise ArgumentError("sgd_update: argument lr (the learning rate) is required")
    buffers = {} if velocity is None else {"velocity": velocity}
    _check_same_layout("sgd_update", param, grad=grad, **buffers)
    if momentum != 0 and velocity is None:
        raise ArgumentError(f"sgd_update: momentum={momentum} needs a velocity buffer "
                            "(gk.zeros_like(param)), got None")
    if nesterov and momentum <= 0:
        raise ArgumentError(f"sgd_update: nesterov needs momentum > 0, got {momentum}")


def _sgd_samples(rng):
    def arrays(n: int, shape: tuple = (3, 4)) -> list[np.ndarray]:
        return [rng.standard_normal(shape) for _ in range(n)]

    return [Sample(*arrays(2), lr=0.1),
            Sample(*arrays(2, (5,)), lr=0.05, weight_decay=0.01),
            Sample(*arrays(3), lr=0.1, momentum=0.9, nondiff=(2,)),
            Sample(*arrays(3), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3,
                   nondiff=(2,))]


@primitive(vjp=None, samples=_sgd_samples, family=FAMILY, check=check_sgd_update)
def sgd_update(xp, param, grad, velocity=None, *, lr=None, momentum=0.0, nesterov=False,
               weight_decay=0.0):
    """One SGD step (PyTorch's rule); returns the new parameter, updates ``velocity`` in place.

    ``g = grad + weight_decay * param``; with momentum, ``velocity = momentum *
    velocity + g`` and the step uses ``velocity`` (or ``g + momentum * velocity``
    when ``nesterov``); ``new = param - lr * step``. Without momentum,
    ``velocity`` may be left out (None), so plain SGD keeps no buffer. ``lr`` is
    required (its None default only lets ``velocity`` be optional).

    >>> import gradkit as gk
    >>> gk.sgd_update(gk.tensor([1.0]), gk.tensor([2.0]), lr=0.5).numpy().tolist()
    [0.0]
    """
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if momentum != 0:
        velocity[...] = momentum * velocity + grad
        grad = grad + momentum * velocity if nesterov else velocity
    return param - lr * grad


def check_adam_update(param, grad, m, v, step, *, lr, beta1, beta2, eps, weight_decay,
                      decoupled) -> None:
    _check_same_layout("adam_update", param, grad=grad, m=m, v=v)
    # The count's value is read only where that is free: on a GPU it stays on the
    # device (the optimizer counts it up there), and reading it would sync every update.
    readable = step.array_backend.host_conversion_allowed
    if step.ndim != 0 or step.dtype.kind not in "iu" or (readable and step.item() < 1):
        raise ArgumentError(f"adam_update: argument step must be a 0-d integer tensor >= 1 "
                            f"(the number of this update, counting from 1), got "
                            f"{describe(step)}" + (f" holding {step.item()}"
                                                   if step.size == 1 and readable else ""))


def _adam_samples(rng):
    def arrays(shape: tuple = (3, 4)) -> list[np.ndarray]:
        param, grad, m = (rng.standard_normal(shape) for _ in range(3))
        return [param, grad, 0.1 * m, rng.uniform(0.01, 1.0, size=shape)]

    def params(**changes) -> dict:
        return {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                "decoupled": False, **changes}
    def step(count: int) -> np.ndarray:
        return np.array(count, dtype=np.int64)
    return [Sample(*arrays(), step(1), nondiff=(2, 3), **params()),
            Sample(*arrays((5,)), step(7), nondiff=(2, 3),
                   **params(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6)),
            Sample(*arrays(), step(3), nondiff=(2, 3), **params(weight_decay=0.1)),
            Sample(*arrays(), step(3), nondiff=(2, 3), **params(weight_decay=0.1, decoupled=True))]


@primitive(vjp=None, samples=_adam_samples, family=FAMILY, check=check_adam_update)
def adam_update(xp, param, grad, m, v, step, *, lr, beta1, beta2, eps, weight_decay,
                decoupled):
    """One Adam/AdamW step; returns the new parameter, updates ``m`` and ``v`` in place.

    Every param is required (the optimizer passes them all). ``step``, a 0-d integer
    tensor, counts updates from 1 (for the bias corrections); being a tensor that
    the optimizer increments in place, a step captured by :func:`gradkit.capture`
    counts on as it replays. Weight decay is L2 added to the
    gradient (Adam), or with ``decoupled`` shrinks the parameter by
    ``lr * weight_decay`` (AdamW), as in PyTorch.

    >>> import gradkit as gk
    >>> p = gk.tensor([1.0], dtype="float64")
    >>> m, v = gk.zeros_like(p), gk.zeros_like(p)
    >>> g = gk.tensor([4.0], dtype="float64")
    >>> new = gk.adam_update(p, g, m, v, gk.tensor(1), lr=0.1, beta1=0.9, beta2=0.999,
    ...                      eps=1e-8, weight_decay=0.0, decoupled=False)
    >>> new.numpy().round(6).tolist()
    [0.9]
    """
    step = int(step)
    if weight_decay != 0 and not decoupled:
        grad = grad + weight_decay * param
    m[...] = beta1 * m + (1 - beta1) * grad
    v[...] = beta2 * v + (1 - beta2) * (grad * grad)
    if weight_decay != 0 and decoupled:
        param = param * (1 - lr * weight_decay)
    denominator = xp.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
    return param - (lr / (1 - beta1 ** step)) * (m / denominator)
