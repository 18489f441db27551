"""DataLoader: mini-batches of NumPy data as gradkit tensors, shuffled reproducibly."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from gradkit import backends
from gradkit.tensor import Tensor, tensor


class DataLoader:
    """Iterate ``(X_batch, y_batch)`` tensors on a backend, one pass per ``for`` loop.

    ``shuffle``: each pass (epoch) draws a new permutation from ``(seed, epoch)``,
    so the order differs between epochs yet a new loader with the same seed
    replays it exactly. ``drop_last``: skip a final batch smaller than
    ``batch_size``. ``backend``: where the batches live (default: the current
    backend when iteration starts). ``len(loader)`` is the number of batches.

    >>> import gradkit as gk
    >>> X, y = np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5)
    >>> loader = DataLoader(X, y, batch_size=2, shuffle=False)
    >>> len(loader), [yb.tolist() for _, yb in loader]
    (3, [[0, 1], [2, 3], [4]])
    >>> xb, yb = next(iter(DataLoader(X, y, batch_size=4, drop_last=True)))
    >>> xb.shape, yb.shape
    ((4, 2), (4,))
    """

    def __init__(self, X: Any, y: Any, batch_size: int = 32, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, backend: Any = None) -> None:
        self.X, self.y = _checked_arrays(X, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, "
                             f"got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DataLoader: seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.backend = None if backend is None else backends.get(backend)
        self.epoch = 0  # passes started so far; picks the next permutation

    def __len__(self) -> int:
        full, rest = divmod(len(self.X), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order()
        target = self.backend if self.backend is not None else backends.get_backend()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            rows = order[start:start + self.batch_size]
            yield (tensor(self.X[rows], backend=target), tensor(self.y[rows], backend=target))

    def _order(self) -> np.ndarray:
        """This pass's sample order; advances the epoch counter."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        if not self.shuffle:
            return np.arange(len(self.X))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.X))

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.X)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})")


def _checked_arrays(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError(f"DataLoader: X and y need a sample axis, got shapes {X.shape} "
                         f"and {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"DataLoader: X has {len(X)} samples but y has {len(y)}")
    if len(X) == 0:
        raise ValueError("DataLoader: no samples (X and y are empty)")
    for name, array in (("X", X), ("y", y)):
        if array.dtype.kind not in "biuf":
            raise ValueError(f"DataLoader: {name} must hold numbers, got dtype {array.dtype}")
    return X, y
