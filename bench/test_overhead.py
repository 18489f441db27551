"""Per-op overhead: chains of small ops on a 16-element float32 tensor, forward and
backward, one chain per op family.

Each family's chain repeats a short block of ops (``FAMILIES``: the block, and how
many ops it holds) until it holds about 200 ops, then runs backward. `gradkit bench`
reports microseconds per op (time / ops), beside PyTorch eager's when PyTorch is
installed. The same block runs on gradkit and on torch (``lib`` is the module).

Where PyTorch is installed, each family is also paired with it: gradkit's chain and
torch's run in turn (each first in every other pair), and the median of the per-pair
time ratios is the family's ratio (``paired_ratio``), which the machine speeding up or
slowing down during the run does not move (separate medians taken seconds apart differ
by 15% here).
"""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

from conftest import BACKENDS, peer_available

CHAIN = 200


def _matmul(y, lib):
    w = _EYE_NEAR[lib.__name__]
    return (y.reshape((4, 4)) @ w).reshape((16,))


def _mixed(y, lib):
    """Research code's usual mix: an activation, maximum, a scale and a shift."""
    y = lib.tanh(y)
    return lib.maximum(y, y * 0.5) * 1.0001 + 0.0001


_EYE_NEAR = {"gradkit": gk.tensor(np.eye(4, dtype=np.float32) * 0.999)}

# family -> (ops in one block, the block)
FAMILIES = {
    "mul": (1, lambda y, lib: y * 1.0001),
    "add": (1, lambda y, lib: y + 0.0001),
    "tanh": (1, lambda y, lib: lib.tanh(y)),
    "exp": (2, lambda y, lib: lib.exp(y * 0.001)),
    "relu": (2, lambda y, lib: lib.relu(y) + 0.001),
    "sigmoid": (1, lambda y, lib: lib.sigmoid(y)),
    "maximum": (2, lambda y, lib: lib.maximum(y, y * 0.5)),
    "clip": (1, lambda y, lib: lib.clip(y, -2.0, 2.0)),
    "abs": (1, lambda y, lib: lib.abs(y)),
    "where": (3, lambda y, lib: lib.where(y > 0.5, y, y * 0.5)),
    "mean": (2, lambda y, lib: y - y.mean() * 0.001),
    "reshape": (2, lambda y, lib: y.reshape((4, 4)).reshape((16,))),
    "matmul": (3, _matmul),
    "mixed": (5, _mixed),
}


def chain_step(x, block, ops_per_block, lib):
    """About CHAIN ops of ``block`` from ``x``, then backward; works on gradkit and torch."""
    repeats = CHAIN // ops_per_block

    def run():
        y = x
        for _ in range(repeats):
            y = block(y, lib)
        y.sum().backward()
        x.grad = None
    return run


def _ops(family: str) -> int:
    ops_per_block = FAMILIES[family][0]
    return CHAIN // ops_per_block * ops_per_block


def _gradkit_input(backend: str):
    return gk.tensor(np.linspace(0.1, 1.0, 16, dtype=np.float32), requires_grad=True,
                     backend=backend)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cuda"])
def test_overhead_gradkit(benchmark, backend, family):
    ops_per_block, block = FAMILIES[family]
    _EYE_NEAR["gradkit"] = _EYE_NEAR["gradkit"].to(backend)
    benchmark.group = "overhead"
    benchmark.extra_info.update(impl=f"gradkit-{backend}", backend=backend, family=family,
                                ops=_ops(family))
    benchmark(chain_step(_gradkit_input(backend), block, ops_per_block, gk))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cuda"])
def test_overhead_gradkit_captured(benchmark, backend):
    """The mul/add chain under gk.capture: what a replay pays per kernel call."""
    x = _gradkit_input(backend)

    def block(y, lib):
        return y * 1.0001 + 0.0001
    run = chain_step(x, block, 2, gk)
    captured = gk.capture(lambda: run())
    captured(), captured()  # the two recording calls
    benchmark.group = "overhead"
    benchmark.extra_info.update(impl=f"gradkit-{backend}-captured", backend=backend,
                                family="mul+add", ops=CHAIN)
    benchmark(captured)


@pytest.mark.skipif(not peer_available("torch"), reason="PyTorch is not installed")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_overhead_torch(benchmark, family):
    import torch
    _EYE_NEAR["torch"] = torch.eye(4) * 0.999
    ops_per_block, block = FAMILIES[family]
    benchmark.group = "overhead"
    benchmark.extra_info.update(impl="torch-eager-cpu", backend="cpu", family=family,
                                ops=_ops(family))
    x = torch.linspace(0.1, 1.0, 16, requires_grad=True)
    benchmark(chain_step(x, block, ops_per_block, torch))


PAIRS = 100


@pytest.mark.skipif(not peer_available("torch"), reason="PyTorch is not installed")
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cuda"])
def test_overhead_paired_ratio_to_torch(benchmark, backend, family):
    import statistics
    import time

    import torch
    _EYE_NEAR["gradkit"] = _EYE_NEAR["gradkit"].to(backend)
    _EYE_NEAR["torch"] = torch.eye(4) * 0.999
    ops_per_block, block = FAMILIES[family]
    ours = chain_step(_gradkit_input(backend), block, ops_per_block, gk)
    theirs = chain_step(torch.linspace(0.1, 1.0, 16, requires_grad=True), block,
                        ops_per_block, torch)
    for _ in range(5):
        ours(), theirs()
    ratios = []
    for pair in range(PAIRS):  # (which goes first alternates)
        first, second = (ours, theirs) if pair % 2 == 0 else (theirs, ours)
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        times = {first: middle - start, second: time.perf_counter() - middle}
        ratios.append(times[ours] / times[theirs])
    benchmark.group = "overhead-paired"
    benchmark.extra_info.update(impl=f"gradkit-{backend}", backend=backend, family=family,
                                paired_ratio=statistics.median(ratios), pairs=len(ratios))
    benchmark.pedantic(ours, rounds=1, iterations=1)
