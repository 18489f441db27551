"""Index normalisation: a user's index as the raw index an array library takes.

Part of the core (beside :mod:`gradkit.tensor`): the indexing ops, ``Tensor.__setitem__``
and a backend's indexing kernels (the CUDA backend's bounds check) all read an index the
same way, through :func:`raw_index`.

>>> import numpy as np
>>> import gradkit as gk
>>> raw_index((gk.tensor([0, 2]), [1]), np)
(array([0, 2]), array([1]))
>>> raw_index(1, np), is_advanced(raw_index(1, np))
((1, Ellipsis), False)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.errors import is_tensor


def _raw_item(item: Any, xp: Any) -> Any:
    """One index entry with Tensors, lists and foreign arrays replaced by ``xp`` arrays."""
    if is_tensor(item):  # Tensor is not imported: backends read indices through here too
        return item.data
    if isinstance(item, list):
        return xp.asarray(item) if item else xp.asarray(item, dtype=xp.int64)
    if isinstance(item, np.ndarray) and xp is not np:
        return xp.asarray(item)
    return item


def raw_index(index: Any, xp: Any) -> tuple:
    """The index as a tuple of raw entries (arrays of ``xp``) ending in ``...``.

    NumPy implies the trailing ``...``; the Array API standard wants it spelled out.
    """
    items = tuple(_raw_item(i, xp) for i in (index if isinstance(index, tuple) else (index,)))
    if any(i is Ellipsis for i in items) or is_advanced(items):
        return items
    return items + (Ellipsis,)


def is_advanced(index: Any) -> bool:
    """Whether ``index`` holds an array or list entry (advanced indexing, which may name
    one element twice), not only integers, slices, ``None`` and ``...``."""
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "shape") and getattr(i, "ndim", 0) > 0 or isinstance(i, list)
               for i in items)
