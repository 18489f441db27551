"""Searching and sorting: argsort, sort, searchsorted, nonzero, unique_values.

Only ``sort`` has a gradient: it is a permutation, so its gradient goes back
through the same permutation (``take_along_axis`` with the ``argsort`` indices).
The rest return indices or data-dependent sets and have none.

>>> import gradkit as gk
>>> x = gk.tensor([3.0, 1.0, 2.0], requires_grad=True)
>>> (gk.sort(x) * gk.tensor([1.0, 10.0, 100.0])).sum().backward()
>>> x.grad.numpy().tolist()
[100.0, 1.0, 10.0]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.errors import ShapeError, describe
from gradkit.ops.samples import away_from_zero
from gradkit.ops.shape import getitem, take_along_axis
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor

FAMILY = "search"


def _ascending_argsort(xp: Any, x: Any, axis: int) -> Any:
    try:
        return xp.argsort(x, axis=axis, stable=True)
    except TypeError:  # a library without the standard's keyword (sorts stably anyway)
        return xp.argsort(x, axis=axis)


def _sort_samples(rng):
    """Distinct values: at a tie sort is continuous but not differentiable."""
    return [Sample(away_from_zero(rng, (3, 4))), Sample(away_from_zero(rng, (3, 4)), axis=0),
            Sample(away_from_zero(rng, (5,)), descending=True)]


def _argsort_samples(rng):
    ties = np.array([[2.0, 1.0, 2.0, 0.5], [1.0, 1.0, -3.0, 1.0]])
    return _sort_samples(rng) + [Sample(ties), Sample(ties, descending=True)]


@primitive(vjp=None, samples=_argsort_samples, family=FAMILY)
def argsort(xp, x, *, axis=-1, descending=False, stable=True):
    """The indices that sort ``x`` along ``axis``; equal elements keep their order
    (also when ``descending``); no gradient.

    >>> import gradkit as gk
    >>> gk.argsort(gk.tensor([3.0, 1.0, 3.0]), descending=True).numpy().tolist()
    [0, 2, 1]
    """
    if not descending:
        return _ascending_argsort(xp, x, axis)
    # Sort the reversed input ascending and reverse the result: ties then come out in
    # their original order, and n - 1 - i maps positions back to x.
    n = x.shape[axis]
    flipped = xp.flip(_ascending_argsort(xp, xp.flip(x, axis=axis), axis), axis=axis)
    return (n - 1) - flipped


@composite(samples=_sort_samples, family=FAMILY)
def sort(x: Tensor, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Tensor:
    """``x`` sorted along ``axis``; the gradient follows each element to its place.

    >>> import gradkit as gk
    >>> gk.sort(gk.tensor([[3.0, 1.0, 2.0]]), descending=True).numpy().tolist()
    [[3.0, 2.0, 1.0]]
    """
    if x.ndim == 0:
        raise ShapeError(f"sort: needs at least one axis, got {describe(x)}")
    order = argsort(x, axis=axis, descending=descending, stable=stable)
    return take_along_axis(x, order, axis=axis)


def _searchsorted_samples(rng):
    sorted_ = np.sort(away_from_zero(rng, (6,)))
    return [Sample(sorted_, away_from_zero(rng, (2, 3))),
            Sample(sorted_, np.concatenate([sorted_[:3], [9.0]]), side="right"),
            Sample(sorted_, sorted_[::-1].copy())]


@primitive(vjp=None, samples=_searchsorted_samples, family=FAMILY)
def searchsorted(xp, x1, x2, *, side="left", sorter=None):
    """Where each element of ``x2`` would go in the sorted 1-D ``x1`` to keep it sorted
    (``side="right"``: after equal elements); no gradient.

    >>> import gradkit as gk
    >>> gk.searchsorted(gk.tensor([1.0, 2.0, 3.0]), gk.tensor([2.0, 0.0])).numpy().tolist()
    [1, 0]
    """
    if x1.ndim != 1:
        raise ValueError(f"x1 must be 1-D, got shape {tuple(x1.shape)}")
    if sorter is not None:
        sorter = sorter.data if isinstance(sorter, Tensor) else xp.asarray(sorter)
    return xp.searchsorted(x1, x2, side=side, sorter=sorter)


def _set_samples(rng):
    return [Sample(np.array([[2.0, 1.0, 2.0], [0.5, 1.0, -1.0]])),
            Sample(rng.integers(0, 4, size=(7,))), Sample(away_from_zero(rng, (4,)))]


@primitive(vjp=None, samples=_set_samples, family=FAMILY, value_shaped=True)
def unique_values(xp, x):
    """The distinct elements of ``x``, flattened and sorted (the standard leaves the
    order open; NumPy 2.3 stopped sorting); every nan counts as distinct. No gradient.

    >>> import gradkit as gk
    >>> gk.unique_values(gk.tensor([3, 1, 3, 2])).numpy().tolist()
    [1, 2, 3]
    """
    distinct = xp.unique_values(x) if hasattr(xp, "unique_values") else xp.unique(x)
    return xp.sort(distinct)


@primitive(vjp=None, samples=lambda rng: [Sample(np.array([[0.0, 1.5], [-2.0, 0.0]])),
                                          Sample(rng.integers(0, 2, size=(5,))),
                                          Sample(np.zeros((2, 2)))], family=FAMILY,
           value_shaped=True)
def argwhere(xp, x):
    """The indices of the nonzero elements, one row per element: shape (count, x.ndim).

    >>> import gradkit as gk
    >>> gk.argwhere(gk.tensor([[0.0, 1.0], [2.0, 0.0]])).numpy().tolist()
    [[0, 1], [1, 0]]
    """
    if x.ndim == 0:
        raise ValueError("needs at least one axis (the standard leaves 0-d input undefined)")
    return xp.stack(xp.nonzero(x), axis=-1)


@composite(samples=lambda rng: [Sample(np.array([[0.0, 1.5], [-2.0, 0.0]])),
                                Sample(rng.integers(0, 2, size=(5,)))],
           family=FAMILY, differentiable=False)
def nonzero(x: Tensor, /) -> tuple[Tensor, ...]:
    """The indices of the nonzero elements as one int64 tensor per axis.

    >>> import gradkit as gk
    >>> [t.numpy().tolist() for t in gk.nonzero(gk.tensor([[0.0, 1.0], [2.0, 0.0]]))]
    [[0, 1], [1, 0]]
    """
    rows = argwhere(x)
    return tuple(getitem(rows, index=(slice(None), k)) for k in range(x.ndim))
