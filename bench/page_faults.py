"""Page faults and time per MLP training step, for the NumPy floor and gradkit's
captured steps (compiled and Python replay on the Numba backend, Python replay on the
NumPy backend): a step that asks the allocator for blocks above malloc's mmap
threshold gets fresh pages, each faulting in on first write (system time).

    PYTHONPATH=$PWD python bench/page_faults.py 262144 64,64,64,10

Each mode runs 4 untimed steps (two recordings, the first replay and compiling), then
twice 5 timed steps; getrusage gives the minor faults and system time of those.
"""
from __future__ import annotations

import argparse
import resource
import time

from gradkit.benchmarks.floor import NumpyMLPFloor
from gradkit.benchmarks.mlp import gradkit_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", type=int)
    parser.add_argument("dims", help="layer widths, comma-separated: 64,64,64,10")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    dims = [int(width) for width in args.dims.split(",")]
    modes = {"floor": NumpyMLPFloor(dims, args.batch).step,
             "numba-compiled": gradkit_step(dims, args.batch, "numba", captured=True,
                                            compiled=True),
             "numba-captured": gradkit_step(dims, args.batch, "numba", captured=True),
             "numpy-captured": gradkit_step(dims, args.batch, "numpy", captured=True)}
    for step in modes.values():
        for _ in range(4):
            step()
    for _ in range(2):
        for name, step in modes.items():
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(args.steps):
                step()
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            faults = (after.ru_minflt - before.ru_minflt) / args.steps
            system = (after.ru_stime - before.ru_stime) / args.steps
            print(f"{name:15s} {seconds / args.steps * 1e3:7.1f} ms a step  minor page "
                  f"faults {faults:6.0f}  system time {system * 1e3:5.1f} ms", flush=True)


if __name__ == "__main__":
    main()
