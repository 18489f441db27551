"""Neural-network helpers; ``gk.nn.functional`` holds the layers, activations and losses.

>>> import gradkit as gk
>>> gk.nn.functional.relu(gk.tensor([-1.0, 2.0])).numpy().tolist()
[0.0, 2.0]
"""
from gradkit.nn import functional  # noqa: F401
