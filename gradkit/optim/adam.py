"""Adam (with L2 weight decay) and AdamW (with decoupled weight decay).

>>> import gradkit as gk
>>> w = gk.tensor([1.0, -1.0], requires_grad=True)
>>> opt = gk.optim.Adam([w], lr=0.1)
>>> (w * w).sum().backward()
>>> opt.step()                       # the first Adam step moves each weight by about lr
>>> [round(v, 4) for v in w.numpy().tolist()]
[0.9, -0.9]
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from gradkit.errors import ArgumentError
from gradkit.ops.optim_update import adam_update
from gradkit.optim.optimizer import Optimizer, check_number
from gradkit.tensor import Tensor


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's semantics; ``weight_decay`` is L2 added to the gradient.

    Keeps ``m`` and ``v`` (first and second moment estimates) and a step count per
    parameter; ``betas`` is ``(beta1, beta2)``.

    >>> import gradkit as gk
    >>> opt = gk.optim.Adam([gk.tensor([1.0], requires_grad=True)], lr=1e-3, betas=(0.8, 0.99))
    >>> opt.betas, opt.eps
    ((0.8, 0.99), 1e-08)
    """

    hyperparameter_names = ("lr", "beta1", "beta2", "eps", "weight_decay")
    uses_step = True
    decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        name = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ArgumentError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        super().__init__(params, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps,
                         weight_decay=weight_decay)

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def check_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        name = type(self).__name__
        return {"lr": check_number(name, "lr", values["lr"]),
                "beta1": check_number(name, "betas[0]", values["beta1"], below=1.0),
                "beta2": check_number(name, "betas[1]", values["beta2"], below=1.0),
                "eps": check_number(name, "eps", values["eps"]),
                "weight_decay": check_number(name, "weight_decay", values["weight_decay"])}

    def buffer_names(self, hyperparameters: Mapping[str, Any]) -> tuple[str, ...]:
        return ("m", "v")

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> Tensor:
        return adam_update(param, grad, state["m"], state["v"], state["step"], lr=self.lr,
                           beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                           weight_decay=self.weight_decay, decoupled=self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): each step first
    shrinks the parameter by ``lr * weight_decay``, then takes the Adam step.

    >>> import gradkit as gk
    >>> gk.optim.AdamW([gk.tensor([1.0], requires_grad=True)]).weight_decay
    0.01
    """

    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
