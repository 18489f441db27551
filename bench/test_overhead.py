"""Per-op overhead: a chain of 200 small elementwise ops, forward and backward.

`gradkit bench` reports it in microseconds per op (median time / 200), beside
PyTorch eager's when PyTorch is installed.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

from conftest import BACKENDS, peer_available

CHAIN = 200


def chain_step(x):
    """200 ops on a 16-element tensor and the backward pass; works on gradkit and torch."""
    def run():
        y = x
        for _ in range(CHAIN // 2):
            y = y * 1.0001
            y = y + 0.0001
        y.sum().backward()
        x.grad = None
    return run


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cuda"])
def test_overhead_gradkit(benchmark, backend):
    x = gk.tensor(np.linspace(0.1, 1.0, 16, dtype=np.float32), requires_grad=True,
                  backend=backend)
    benchmark.group = "overhead"
    benchmark.extra_info.update(impl=f"gradkit-{backend}", backend=backend, ops=CHAIN)
    benchmark(chain_step(x))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cuda"])
def test_overhead_gradkit_captured(benchmark, backend):
    """The same chain under gk.capture: what a replay pays per kernel call."""
    x = gk.tensor(np.linspace(0.1, 1.0, 16, dtype=np.float32), requires_grad=True,
                  backend=backend)
    run = chain_step(x)
    captured = gk.capture(lambda: run())
    captured(), captured()  # the two recording calls
    benchmark.group = "overhead"
    benchmark.extra_info.update(impl=f"gradkit-{backend}-captured", backend=backend, ops=CHAIN)
    benchmark(captured)


@pytest.mark.skipif(not peer_available("torch"), reason="PyTorch is not installed")
def test_overhead_torch(benchmark):
    import torch
    benchmark.group = "overhead"
    benchmark.extra_info.update(impl="torch-eager-cpu", backend="cpu", ops=CHAIN)
    benchmark(chain_step(torch.linspace(0.1, 1.0, 16, requires_grad=True)))
