"""Peak memory of one training step, and first-call (compile) time, apart from
steady-state time.

Peak memory: tracemalloc sees every NumPy allocation (numpy and numba backends);
on CUDA, CuPy's memory pool. First call: a fresh Python process with an empty
Numba cache dir (cold: JIT compile) and again with the filled cache (warm).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import pytest

from gradkit.benchmarks.floor import NumpyMLPFloor
from gradkit.benchmarks.mlp import SIZES, gradkit_step

from conftest import BACKENDS

SIZE = "medium"


def _peak_bytes(step) -> int:
    step(), step()  # a captured step replays from its third call
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("impl", ["numpy-floor"] + [
    f"gradkit-{b}{suffix}" for b in BACKENDS if b != "cuda" for suffix in ("", "-captured")])
def test_peak_memory(benchmark, impl):
    batch, dims = SIZES[SIZE]
    backend, captured = impl.split("-")[1], impl.endswith("-captured")
    step = (NumpyMLPFloor(dims, batch).step if impl == "numpy-floor"
            else gradkit_step(dims, batch, backend, captured=captured))
    peak = _peak_bytes(step)
    benchmark.group = "peak-memory"
    benchmark.extra_info.update(impl=impl, size=SIZE, peak_bytes=peak)
    benchmark.pedantic(step, rounds=3, iterations=1)


FIRST_CALL = """
import time, sys
t0 = time.perf_counter()
from gradkit.benchmarks.mlp import SIZES, gradkit_step
batch, dims = SIZES["small"]
compiled = sys.argv[2] == "compiled"
step = gradkit_step(dims, batch, sys.argv[1], captured=compiled, compiled=compiled)
times = [time.perf_counter()]
for _ in range(4):
    step()
    times.append(time.perf_counter())
print(times[0] - t0, *[b - a for a, b in zip(times, times[1:])])
"""


def _first_call(backend: str, mode: str, env: dict) -> tuple[float, ...]:
    """Setup, then calls 1-4 of the step, in seconds, in a new process. Compiled: calls
    1 and 2 record, the plan (and its compiled function) is made at the end of call 2."""
    out = subprocess.run([sys.executable, "-c", FIRST_CALL, backend, mode], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return tuple(float(v) for v in out)


@pytest.mark.parametrize("backend, mode", [(b, m) for b in BACKENDS if b in ("numba", "cuda")
                                           for m in ("eager", "compiled")
                                           if m == "eager" or b == "numba"])
def test_first_call_time(benchmark, backend, mode):
    """Setup and the first steps in a new process, with cold and warm kernel and plan
    caches; "compiled" is the captured step, whose plan compiles on the second call."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "CUPY_CACHE_DIR": cache,
               "GRADKIT_CACHE_DIR": cache}
        started = time.perf_counter()
        cold = _first_call(backend, mode, env)
        warm = _first_call(backend, mode, env)
        benchmark.group = "first-call"
        benchmark.extra_info.update(
            impl=f"gradkit-{backend}" + ("-compiled" if mode == "compiled" else ""),
            backend=backend, cold_first_step_s=cold[1], cold_second_step_s=cold[2],
            warm_first_step_s=warm[1], warm_second_step_s=warm[2],
            steady_step_s=warm[4], wall_s=time.perf_counter() - started)
        benchmark.pedantic(lambda: None, rounds=1, iterations=1)
