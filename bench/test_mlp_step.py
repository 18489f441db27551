"""MLP training step (forward, cross-entropy, backward, SGD), float32, three sizes.

Each size is one pytest-benchmark group holding the hand-written NumPy floor,
gradkit on every available backend, and PyTorch eager / JAX jit when installed.
`gradkit bench report` turns the JSON into ratios to the floor.
"""
from __future__ import annotations

import pytest

from gradkit.benchmarks.floor import NumpyMLPFloor
from gradkit.benchmarks.mlp import SIZES, gradkit_step, jax_step, step_flops, torch_step

from conftest import BACKENDS, BENCH_SIZES, peer_available


def _run(benchmark, step, size, impl, backend):
    batch, dims = SIZES[size]
    benchmark.group = f"mlp-{size}"
    benchmark.extra_info.update(size=size, impl=impl, backend=backend, batch=batch,
                                dims=dims, flops=step_flops(batch, dims))
    step()  # warm-up: first-call costs (JIT compile, kernel load) are measured apart
    if size == "large":  # ~0.1-1 s a step on a laptop CPU: a few rounds suffice
        benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    else:
        benchmark(step)


@pytest.mark.parametrize("size", BENCH_SIZES)
def test_floor(benchmark, size):
    batch, dims = SIZES[size]
    _run(benchmark, NumpyMLPFloor(dims, batch).step, size, "numpy-floor", "numpy")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", BENCH_SIZES)
def test_gradkit(benchmark, size, backend):
    batch, dims = SIZES[size]
    step = gradkit_step(dims, batch, backend)
    if backend == "cuda":  # wait for the GPU inside the timed call
        inner = step
        step = lambda: float(inner())  # noqa: E731  (.item() synchronizes)
    _run(benchmark, step, size, f"gradkit-{backend}", backend)


@pytest.mark.skipif(not peer_available("torch"), reason="PyTorch is not installed")
@pytest.mark.parametrize("size", BENCH_SIZES)
def test_torch_eager(benchmark, size):
    import torch
    batch, dims = SIZES[size]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    step = torch_step(dims, batch, device)
    if device == "cuda":
        inner = step
        step = lambda: float(inner())  # noqa: E731
    _run(benchmark, step, size, f"torch-eager-{device}", device)


@pytest.mark.skipif(not peer_available("jax"), reason="JAX is not installed")
@pytest.mark.parametrize("size", BENCH_SIZES)
def test_jax_jit(benchmark, size):
    batch, dims = SIZES[size]
    _run(benchmark, jax_step(dims, batch), size, "jax-jit", "cpu")
