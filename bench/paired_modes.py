"""More pairs than the suite takes for one size: each captured mode paired with the
NumPy floor, the modes in turn, ``--rounds`` times; prints the median and quartiles of
each mode's per-pair ratios (step time / floor time).

Two ways to pair, which answer different questions:

- warm (the default): a pair is ``--block`` floor steps, then ``--block`` steps of the
  mode, each side after one untimed step of its own. Both sides run with their own
  weights in cache, as in a training loop that repeats one step: the steady state.
- ``--cold``: floor and mode steps alternate with nothing between them, as in the
  suite's paired test (bench/test_mlp_step.py). Each side starts with the other's
  arrays in cache; at the large size (25 MB of weights) each step first reloads its
  own from memory, which adds the same few milliseconds to both sides.

The suite pairs a large step only 5 times (a step is ~0.1 s); the large figures in
bench/results/2026-12-01-cpu-targets.txt were taken with:

    PYTHONPATH=$PWD python bench/paired_modes.py large --rounds 16 --peers
    PYTHONPATH=$PWD python bench/paired_modes.py large --rounds 16 --peers --cold
    PYTHONPATH=$PWD python bench/paired_modes.py large --rounds 16 --parallel-threshold 4194304

and the batch of 262144 through the small size's layers (64 MiB intermediates, which
malloc maps anew on each request; the compiled step keeps them in its arena):

    PYTHONPATH=$PWD python bench/paired_modes.py small --batch 262144 --rounds 8
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from typing import Callable

import gradkit as gk
from gradkit.benchmarks.floor import NumpyMLPFloor
from gradkit.benchmarks.mlp import SIZES, gradkit_step, jax_step, torch_step

PEERS = {"jax-jit": ("jax", jax_step),
         "torch-eager-cpu": ("torch", lambda dims, batch: torch_step(dims, batch, "cpu"))}


def timed(step: Callable[[], object], steps: int, warm: bool) -> float:
    """Seconds ``steps`` calls of ``step`` take, after one untimed call if ``warm``."""
    if warm:
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=None,
                        help="another batch size than the size's")
    parser.add_argument("--dims", default=None,
                        help="other layer widths than the size's, comma-separated: 64,64,10")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--block", type=int, default=1,
                        help="timed steps per side in one pair (default 1)")
    parser.add_argument("--cold", action="store_true",
                        help="no untimed step before each side: each starts after the other's")
    parser.add_argument("--peers", action="store_true",
                        help="pair JAX jit and PyTorch eager too, where installed")
    parser.add_argument("--parallel-threshold", type=int, default=None,
                        help="the Numba backend's parallel_threshold (default: its own)")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the quartiles need two pairs)")
    if args.parallel_threshold is not None:
        gk.backends.get("numba").parallel_threshold = args.parallel_threshold
    batch, dims = SIZES[args.size]
    batch = args.batch or batch
    dims = [int(width) for width in args.dims.split(",")] if args.dims else dims
    label = args.size if (batch, dims) == SIZES[args.size] else f"b{batch}:{args.dims or dims}"
    floor = NumpyMLPFloor(dims, batch).step
    modes = {"numba-compiled": gradkit_step(dims, batch, "numba", captured=True, compiled=True),
             "numba-captured": gradkit_step(dims, batch, "numba", captured=True),
             "numpy-captured": gradkit_step(dims, batch, "numpy", captured=True)}
    if args.peers:
        modes.update({name: make(dims, batch) for name, (module, make) in PEERS.items()
                      if importlib.util.find_spec(module) is not None})
    for step in modes.values():
        step(), step(), step()  # record twice, then the first replay (and compile)
    ratios: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, step in modes.items():
            floor_time = timed(floor, args.block, warm=not args.cold)
            ratios[name].append(timed(step, args.block, warm=not args.cold) / floor_time)
    how = "cold" if args.cold else "warm"
    for name, values in ratios.items():
        low, _, high = statistics.quantiles(values, n=4)
        print(f"{label} {name:16s} {how} median {statistics.median(values):.3f}  "
              f"quartiles {low:.3f}-{high:.3f}  ({len(values)} pairs of {args.block})")


if __name__ == "__main__":
    main()
