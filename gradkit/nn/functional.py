"""The functional neural-network API: layers, activations and losses as plain functions.

These are the ops of :mod:`gradkit.ops` under the names PyTorch's
``torch.nn.functional`` and cs231n use.

>>> import gradkit as gk
>>> import gradkit.nn.functional as F
>>> x = gk.tensor([[1.0, -2.0]])
>>> W = gk.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]], requires_grad=True)
>>> loss = F.cross_entropy(F.relu(F.linear(x, W)), gk.tensor([2]))
>>> loss.backward()
>>> W.grad.shape
(2, 3)
"""
from gradkit.ops.activation import (elu, gelu, leaky_relu, log_softmax, maxout, relu,
                                    sigmoid, softmax, softplus, tanh)
from gradkit.ops.linalg import linear
from gradkit.ops.loss import cross_entropy, mse_loss, svm_loss

__all__ = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu",
           "softmax", "log_softmax", "maxout", "cross_entropy", "svm_loss", "mse_loss"]
