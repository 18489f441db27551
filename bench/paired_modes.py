"""More pairs than the suite takes for one size: each captured mode paired with the
NumPy floor, the modes in turn, ``--rounds`` times; prints the median and quartiles of
each mode's per-pair ratios (step time / floor time).

The suite pairs a large step only 5 times (a step is ~0.1 s); this is how the large
figures in bench/results/2026-12-01-cpu-targets.txt were taken:

    PYTHONPATH=$PWD python bench/paired_modes.py large --rounds 16
    PYTHONPATH=$PWD python bench/paired_modes.py large --rounds 16 --parallel-threshold 4194304

Each pair runs one untimed floor step first, so the step before (another mode's) does
not share its timed floor step's cores with its threads.
"""
from __future__ import annotations

import argparse
import statistics
import time

import gradkit as gk
from gradkit.benchmarks.floor import NumpyMLPFloor
from gradkit.benchmarks.mlp import SIZES, gradkit_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--parallel-threshold", type=int, default=None,
                        help="the Numba backend's parallel_threshold (default: its own)")
    args = parser.parse_args()
    if args.parallel_threshold is not None:
        gk.backends.get("numba").parallel_threshold = args.parallel_threshold
    batch, dims = SIZES[args.size]
    floor = NumpyMLPFloor(dims, batch).step
    modes = {"numba-compiled": gradkit_step(dims, batch, "numba", captured=True, compiled=True),
             "numba-captured": gradkit_step(dims, batch, "numba", captured=True),
             "numpy-captured": gradkit_step(dims, batch, "numpy", captured=True)}
    for step in modes.values():
        step(), step(), step()  # record twice, then the first replay (and compile)
    ratios: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, step in modes.items():
            floor()
            start = time.perf_counter()
            floor()
            middle = time.perf_counter()
            step()
            ratios[name].append((time.perf_counter() - middle) / (middle - start))
    for name, values in ratios.items():
        low, _, high = statistics.quantiles(values, n=4)
        print(f"{args.size} {name:16s} median {statistics.median(values):.3f}  "
              f"quartiles {low:.3f}-{high:.3f}  ({len(values)} pairs)")


if __name__ == "__main__":
    main()
