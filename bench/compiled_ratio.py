"""Paired ratio to the NumPy floor of the numba MLP step: captured Python replay vs
compiled (gk.capture(step, compile=True)); best median of 3 runs.
Usage: PYTHONPATH=$PWD python bench/compiled_ratio.py small 300"""
import statistics, time, sys
from gradkit.benchmarks.floor import NumpyMLPFloor
from gradkit.benchmarks.mlp import SIZES, gradkit_step
size = sys.argv[1]; pairs = int(sys.argv[2])
batch, dims = SIZES[size]
floor = NumpyMLPFloor(dims, batch).step
for label, kw in [("captured", dict(captured=True)), ("compiled", dict(captured=True, compiled=True))]:
    best = None
    for rep in range(3):
        step = gradkit_step(dims, batch, "numba", **kw)
        floor(), step(), step(), step()
        ratios, times = [], []
        for _ in range(pairs):
            a = time.perf_counter(); floor(); b = time.perf_counter(); step(); c = time.perf_counter()
            ratios.append((c - b) / (b - a)); times.append(c - b)
        r = statistics.median(ratios); t = statistics.median(times)
        best = (r, t) if best is None or r < best[0] else best
    print(f"{size} numba {label}: ratio to floor {best[0]:.2f}x, step {best[1]*1e6:.0f} us")
