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


def _impl(backend: str, mode: str) -> str:
    return f"gradkit-{backend}" + ("" if mode == "eager" else f"-{mode}")


# eager: the engine runs every step; captured: gk.capture replays the recorded kernels;
# compiled: gk.capture(step, compile=True), the replay's kernels as one compiled
# function (the Numba backend compiles steps; on the others it is the captured replay)
MODES = ["eager", "captured", "compiled"]


def _modes_for(backend: str) -> list[str]:
    return MODES if backend == "numba" else MODES[:2]


def _step(dims, batch, backend, mode):
    return gradkit_step(dims, batch, backend, captured=mode != "eager",
                        compiled=mode == "compiled")


@pytest.mark.parametrize("backend, mode", [(b, m) for b in BACKENDS for m in _modes_for(b)])
@pytest.mark.parametrize("size", BENCH_SIZES)
def test_gradkit(benchmark, size, backend, mode):
    """Eager, captured or compiled (see MODES)."""
    batch, dims = SIZES[size]
    step = _step(dims, batch, backend, mode)
    if mode != "eager":
        step()  # the second recording call; from here on the step replays
    if backend == "cuda":  # wait for the GPU inside the timed call
        inner = step
        step = lambda: float(inner())  # noqa: E731  (.item() synchronizes)
    _run(benchmark, step, size, _impl(backend, mode), backend)


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


# Paired measurement for the regression gate: floor and gradkit steps alternate, and the
# median of the per-pair ratios is robust to the machine getting faster or slower during
# the run (separate medians of a 0.2 ms step moved by 2x between runs on a 2-core box).
PAIRS = {"small": 300, "medium": 40, "large": 5}


@pytest.mark.parametrize("backend, mode", [(b, m) for b in BACKENDS if b != "cuda"
                                           for m in _modes_for(b)])
@pytest.mark.parametrize("size", BENCH_SIZES)
def test_paired_ratio_to_floor(benchmark, size, backend, mode):
    import statistics
    import time
    batch, dims = SIZES[size]
    floor = NumpyMLPFloor(dims, batch).step
    step = _step(dims, batch, backend, mode)
    floor(), step(), step()
    ratios = []
    for _ in range(PAIRS[size]):
        start = time.perf_counter()
        floor()
        middle = time.perf_counter()
        step()
        ratios.append((time.perf_counter() - middle) / (middle - start))
    benchmark.group = f"paired-{size}"
    benchmark.extra_info.update(size=size, impl=_impl(backend, mode), backend=backend,
                                paired_ratio=statistics.median(ratios), pairs=len(ratios))
    benchmark.pedantic(step, rounds=1, iterations=1)


# Peers in the same run, paired with the floor the same way but in blocks of steps:
# PyTorch's thread pool and OpenBLAS's disturb each other when they alternate every step
# (each block's first step pays for waking the other pool), so a block of floor steps
# alternates with a block of the peer's steps, and the median of the per-block ratios is
# reported beside gradkit's.
BLOCKS = {"small": (40, 10), "medium": (12, 4), "large": (4, 1)}  # (blocks, steps per block)
PEER_STEPS = {"jax-jit": lambda dims, batch: jax_step(dims, batch),
              "torch-eager-cpu": lambda dims, batch: torch_step(dims, batch, "cpu")}


@pytest.mark.parametrize("peer", list(PEER_STEPS))
@pytest.mark.parametrize("size", BENCH_SIZES)
def test_paired_peer_ratio_to_floor(benchmark, size, peer):
    import statistics
    import time
    module = peer.split("-")[0]
    if not peer_available(module):
        pytest.skip(f"{module} is not installed")
    batch, dims = SIZES[size]
    floor = NumpyMLPFloor(dims, batch).step
    step = PEER_STEPS[peer](dims, batch)
    floor(), step(), step()
    blocks, steps = BLOCKS[size]
    ratios = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            floor()
        middle = time.perf_counter()
        for _ in range(steps):
            step()
        ratios.append((time.perf_counter() - middle) / (middle - start))
    benchmark.group = f"paired-{size}"
    benchmark.extra_info.update(size=size, impl=peer, backend="cpu",
                                paired_ratio=statistics.median(ratios), pairs=len(ratios))
    benchmark.pedantic(step, rounds=1, iterations=1)
