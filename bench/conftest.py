"""Benchmark suite settings.

GRADKIT_BENCH_QUICK=1 runs the short version CI uses for its regression gate
(small and medium sizes, fewer rounds). Peers (PyTorch, JAX) are measured when
installed; backends when available here.
"""
from __future__ import annotations

import os

import pytest

from gradkit import backends
from gradkit.benchmarks.mlp import SIZES

QUICK = os.environ.get("GRADKIT_BENCH_QUICK") == "1"
BENCH_SIZES = ["small", "medium"] if QUICK else list(SIZES)
BACKENDS = [name for name, reason in backends.available().items() if reason is None
            and name != "strict"]


def peer_available(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


@pytest.fixture
def quick() -> bool:
    return QUICK


def pytest_benchmark_update_machine_info(config, machine_info):
    """The BLAS (library, kernels, threads) and the CPU's AVX-512 go into the JSON."""
    from gradkit.benchmarks.blas import record
    machine_info["gradkit_blas"] = record()
