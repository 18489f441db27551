"""Optimizers: SGD (momentum, Nesterov), Adam and AdamW.

Each update runs through a registered op (``gk.sgd_update``, ``gk.adam_update``),
so a backend can replace it with one fused kernel.

>>> import gradkit as gk
>>> model = gk.nn.Linear(2, 1, seed=0)
>>> opt = gk.optim.AdamW(model.parameters(), lr=1e-2)
>>> gk.mse_loss(model(gk.ones((4, 2))), gk.zeros((4, 1))).backward()
>>> opt.step()
>>> opt.zero_grad()
"""
from gradkit.optim.adam import Adam, AdamW
from gradkit.optim.optimizer import Optimizer, OptimizerStateError
from gradkit.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OptimizerStateError"]
