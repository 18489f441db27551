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

    ``shard=True`` (data-parallel training, see ``gk.distributed``): ``batch_size``
    is per rank, as in PyTorch DDP. Every rank draws the same permutation from the
    seed and cuts it into global batches of ``world_size * batch_size`` rows, exactly
    the batches of one process with that batch size; each global batch is split into
    ``world_size`` contiguous parts (``np.array_split``: sizes differ by at most one)
    and this rank yields part ``rank``. In a last partial batch a rank may get fewer
    rows, or none (an empty batch, still yielded, so every rank takes part in every
    step). ``rank``/``world_size`` default to ``gk.distributed``'s.

    >>> import gradkit as gk
    >>> X, y = np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5)
    >>> loader = DataLoader(X, y, batch_size=2, shuffle=False)
    >>> len(loader), [yb.tolist() for _, yb in loader]
    (3, [[0, 1], [2, 3], [4]])
    >>> xb, yb = next(iter(DataLoader(X, y, batch_size=4, drop_last=True)))
    >>> xb.shape, yb.shape
    ((4, 2), (4,))
    >>> [yb.tolist() for _, yb in DataLoader(X, y, batch_size=2, shuffle=False,
    ...                                      shard=True, rank=1, world_size=2)]
    [[2, 3], []]
    """

    def __init__(self, X: Any, y: Any, batch_size: int = 32, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, backend: Any = None,
                 shard: bool = False, rank: int | None = None,
                 world_size: int | None = None) -> None:
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
        self.shard = bool(shard)
        self.rank, self.world_size = _shard_of(self.shard, rank, world_size)

    @property
    def global_batch_size(self) -> int:
        """Rows of one step over all ranks: ``batch_size * world_size`` when sharded."""
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        full, rest = divmod(len(self.X), self.global_batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order()
        target = self.backend if self.backend is not None else backends.get_backend()
        step = self.global_batch_size
        for start in range(0, len(self) * step, step):
            rows = order[start:start + step]
            if self.world_size > 1:
                rows = np.array_split(rows, self.world_size)[self.rank]
            yield (tensor(self.X[rows], backend=target), tensor(self.y[rows], backend=target))

    def _order(self) -> np.ndarray:
        """This pass's sample order; advances the epoch counter."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        if not self.shuffle:
            return np.arange(len(self.X))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.X))

    def __repr__(self) -> str:
        shard = f", shard: rank {self.rank} of {self.world_size}" if self.shard else ""
        return (f"DataLoader({len(self.X)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}{shard})")


def _shard_of(shard: bool, rank: Any, world_size: Any) -> tuple[int, int]:
    """(rank, world_size) of a sharded loader; (0, 1) when not sharded."""
    if not shard:
        if rank is not None or world_size is not None:
            raise ValueError("DataLoader: rank= and world_size= need shard=True")
        return 0, 1
    if world_size is None or rank is None:
        from gradkit import distributed
        world_size = distributed.world_size() if world_size is None else world_size
        rank = distributed.rank() if rank is None else rank
    for name, value in (("world_size", world_size), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"DataLoader: {name} must be an integer, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"DataLoader: rank must be in [0, world_size), got rank={rank} "
                         f"world_size={world_size}")
    return int(rank), int(world_size)


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
