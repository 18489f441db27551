"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

>>> import gradkit as gk
>>> w = gk.tensor([1.0], requires_grad=True)
>>> opt = gk.optim.SGD([w], lr=0.1, momentum=0.9)
>>> for _ in range(2):
...     opt.zero_grad()
...     (w * w).sum().backward()
...     opt.step()
>>> round(w.item(), 4)
0.46
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from gradkit.errors import ArgumentError
from gradkit.ops.optim_update import sgd_update
from gradkit.optim.optimizer import Optimizer, check_number
from gradkit.tensor import Tensor


class SGD(Optimizer):
    """SGD with PyTorch's semantics (no dampening).

    ``g = grad + weight_decay * param``; with ``momentum``, ``velocity = momentum *
    velocity + g`` (a buffer per parameter) and the step is ``velocity``, or
    ``g + momentum * velocity`` with ``nesterov``; ``param -= lr * step``.

    >>> import gradkit as gk
    >>> w = gk.tensor([2.0], requires_grad=True)
    >>> opt = gk.optim.SGD([w], lr=0.25, weight_decay=0.5)
    >>> (w * w).sum().backward()         # grad 4, plus weight decay 0.5 * 2
    >>> opt.step()
    >>> w.item()
    0.75
    """

    hyperparameter_names = ("lr", "momentum", "nesterov", "weight_decay")

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)

    def check_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        checked = {name: check_number("SGD", name, values[name])
                   for name in ("lr", "momentum", "weight_decay")}
        nesterov = values["nesterov"]
        if not isinstance(nesterov, bool):
            raise ArgumentError(f"SGD: nesterov must be True or False, got {nesterov!r}")
        if nesterov and checked["momentum"] <= 0:
            raise ArgumentError(f"SGD: nesterov=True needs momentum > 0, got momentum="
                                f"{checked['momentum']}")
        return {**checked, "nesterov": nesterov}

    def buffer_names(self, hyperparameters: Mapping[str, Any]) -> tuple[str, ...]:
        return ("velocity",) if hyperparameters["momentum"] != 0 else ()

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> Tensor:
        return sgd_update(param, grad, state.get("velocity"), lr=self.lr,
                          momentum=self.momentum, nesterov=self.nesterov,
                          weight_decay=self.weight_decay)
