"""Neural networks: modules (layers that own parameters) and ``gk.nn.functional``.

>>> import gradkit as gk
>>> gk.nn.functional.relu(gk.tensor([-1.0, 2.0])).numpy().tolist()
[0.0, 2.0]
>>> gk.nn.Linear(3, 2, seed=0)(gk.ones((1, 3))).shape
(1, 2)
"""
from gradkit.nn import functional  # noqa: F401
from gradkit.nn.module import (ELU, GELU, MLP, Dropout, Identity, IncompatibleKeys,
                               LeakyReLU, Linear, Maxout, Module, ReLU, Sequential, Sigmoid,
                               Softplus, StateDictError, Tanh)

__all__ = ["functional", "Module", "Linear", "Sequential", "Dropout", "MLP", "Identity",
           "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "GELU", "Maxout",
           "StateDictError", "IncompatibleKeys"]
