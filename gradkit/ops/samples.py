"""Sample inputs the generated tests draw for each op (float64 NumPy arrays).

Every op names a samples function ``f(rng) -> list[Sample]``; the suite in
tests/test_ops.py runs a gradcheck on each sample, so an op without samples
fails the suite.
"""
from __future__ import annotations

import numpy as np

from gradkit.registry import Sample

# The broadcasting pairs every binary elementwise op is checked on.
BROADCAST_PAIRS = [
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
    ((3,), (2, 3)),
    ((2, 3), ()),
    ((), (2, 3)),
    ((2, 3), (1, 3)),
    ((2, 1), (1, 3)),
    ((), ()),
]


def away_from_zero(rng: np.random.Generator, shape: tuple, low: float = 0.2,
                   high: float = 2.0) -> np.ndarray:
    """Random values with |v| in [low, high]: no kinks of abs/relu/max near them."""
    magnitude = rng.uniform(low, high, size=shape)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


def positive(rng: np.random.Generator, shape: tuple, low: float = 0.5,
             high: float = 2.0) -> np.ndarray:
    return rng.uniform(low, high, size=shape)


def binary_samples(low: float | None = None):
    """Samples over BROADCAST_PAIRS; ``low`` makes both operands >= low (log, pow)."""
    def samples(rng: np.random.Generator) -> list[Sample]:
        draw = (lambda s: positive(rng, s, low)) if low is not None else (
            lambda s: away_from_zero(rng, s))
        return [Sample(draw(a), draw(b)) for a, b in BROADCAST_PAIRS]
    return samples


def unary_samples(low: float | None = None, shapes=((2, 3), (4,), ())):
    """Samples of one operand in a few shapes; ``low`` keeps it >= low."""
    def samples(rng: np.random.Generator) -> list[Sample]:
        if low is not None:
            return [Sample(positive(rng, s, low)) for s in shapes]
        return [Sample(away_from_zero(rng, s)) for s in shapes]
    return samples


def distinct_pairs(rng: np.random.Generator) -> list[Sample]:
    """Broadcasting pairs that never tie: |x| in [0.2, 1], |y| in [1.2, 2]."""
    return [Sample(away_from_zero(rng, a, 0.2, 1.0), away_from_zero(rng, b, 1.2, 2.0))
            for a, b in BROADCAST_PAIRS]
