"""Seeded random tensors: ``gk.random.default_rng(seed)``, like NumPy's.

Numbers are drawn on the host by a NumPy ``Generator`` and moved to the backend,
so a seed gives the same values on every backend (NumPy, Numba, CUDA...).

>>> import gradkit as gk
>>> rng = gk.random.default_rng(0)
>>> x = rng.normal(size=(2, 3))
>>> x.shape, x.dtype
((2, 3), dtype('float32'))
>>> bool((gk.random.default_rng(0).normal(size=(2, 3)) == x).all())
True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.device import resolve_backend
from gradkit.dtypes import as_dtype, get_default_dtype
from gradkit.errors import ArgumentError, DTypeError, describe
from gradkit.registry import as_shape, as_size
from gradkit.tensor import Tensor

__all__ = ["Generator", "default_rng"]


def _host(value: Any) -> Any:
    """A parameter (number, array, Tensor) as something NumPy's Generator takes."""
    return value.numpy() if isinstance(value, Tensor) else value


def _size(size: Any, where: str) -> tuple[int, ...] | None:
    """A ``size`` argument: None (one draw, a 0-d tensor) or a shape."""
    return None if size is None else as_shape(size, f"random.{where}", "size")


class Generator:
    """Random tensors from one seeded stream; make one with :func:`default_rng`.

    Every method takes ``size`` (None for a 0-d tensor, an int or a shape),
    ``dtype`` and ``device`` (default: the current backend).
    """

    def __init__(self, bit_generator: np.random.Generator) -> None:
        self.numpy_generator = bit_generator

    def _tensor(self, host: Any, dtype: np.dtype, device: Any) -> Tensor:
        target = resolve_backend(device)
        return Tensor(target.asarray(np.asarray(host).astype(dtype, copy=False)), target)

    def _float_dtype(self, dtype: Any, where: str) -> np.dtype:
        resolved = get_default_dtype() if dtype is None else as_dtype(dtype, where)
        if resolved.kind != "f":
            raise DTypeError(f"{where}: dtype must be a float dtype, got {resolved}")
        return resolved

    def normal(self, loc: Any = 0.0, scale: Any = 1.0, size: Any = None, dtype: Any = None,
               *, device: Any = None) -> Tensor:
        """Samples of the normal distribution with mean ``loc`` and std ``scale``.

        >>> import gradkit as gk
        >>> gk.random.default_rng(1).normal(10.0, 0.1, size=1000).mean().item() > 9.9
        True
        """
        dtype = self._float_dtype(dtype, "normal")
        size = _size(size, "normal")
        return self._tensor(self.numpy_generator.normal(_host(loc), _host(scale), size), dtype,
                            device)

    def standard_normal(self, size: Any = None, dtype: Any = None, *,
                        device: Any = None) -> Tensor:
        """Samples of the normal distribution with mean 0 and std 1.

        >>> import gradkit as gk
        >>> gk.random.default_rng(0).standard_normal((2,), dtype="float64").dtype
        dtype('float64')
        """
        return self.normal(0.0, 1.0, size, dtype, device=device)

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None, dtype: Any = None,
                *, device: Any = None) -> Tensor:
        """Samples uniform in ``[low, high)``.

        >>> import gradkit as gk
        >>> x = gk.random.default_rng(0).uniform(-1.0, 1.0, size=100)
        >>> bool(((x >= -1) & (x < 1)).all())
        True
        """
        dtype = self._float_dtype(dtype, "uniform")
        size = _size(size, "uniform")
        return self._tensor(self.numpy_generator.uniform(_host(low), _host(high), size), dtype,
                            device)

    def random(self, size: Any = None, dtype: Any = None, *, device: Any = None) -> Tensor:
        """Samples uniform in ``[0, 1)``.

        >>> import gradkit as gk
        >>> gk.random.default_rng(0).random((2, 2)).shape
        (2, 2)
        """
        return self.uniform(0.0, 1.0, size, dtype, device=device)

    def integers(self, low: int, high: int | None = None, size: Any = None, dtype: Any = "int64",
                 *, endpoint: bool = False, device: Any = None) -> Tensor:
        """Integers in ``[low, high)`` (``[0, low)`` with one bound; ``endpoint=True``
        includes ``high``).

        >>> import gradkit as gk
        >>> gk.random.default_rng(0).integers(0, 3, size=5).dtype
        dtype('int64')
        """
        resolved = as_dtype(dtype, "integers")
        if resolved.kind not in "iu":
            raise DTypeError(f"integers: dtype must be an integer dtype, got {resolved}")
        size = _size(size, "integers")
        return self._tensor(self.numpy_generator.integers(_host(low), _host(high), size,
                                                          dtype=resolved, endpoint=endpoint),
                            resolved, device)

    def permutation(self, x: int | Tensor, *, device: Any = None) -> Tensor:
        """A random permutation of ``arange(x)`` (an int), or ``x``'s rows (first axis)
        in random order; the gradient of the shuffled rows flows back to ``x``.

        >>> import gradkit as gk
        >>> sorted(gk.random.default_rng(0).permutation(4).numpy().tolist())
        [0, 1, 2, 3]
        >>> gk.random.default_rng(0).permutation(gk.eye(3)).sum(axis=0).numpy().tolist()
        [1.0, 1.0, 1.0]
        """
        if isinstance(x, (int, np.integer)):
            n = as_size(x, "random.permutation", "x")
            return self._tensor(self.numpy_generator.permutation(n), np.dtype("int64"), device)
        from gradkit.creation import asarray
        from gradkit.ops.shape import take
        x = asarray(x, device=device)
        if x.ndim == 0:
            raise ArgumentError(f"random.permutation: x must be an int or have at least one "
                                f"axis, got {describe(x)}")
        order = self.numpy_generator.permutation(x.shape[0])
        return take(x, Tensor(x.array_backend.asarray(order), x.array_backend), axis=0)

    def __repr__(self) -> str:
        return f"gk.random.Generator({type(self.numpy_generator.bit_generator).__name__})"


def default_rng(seed: Any = None) -> Generator:
    """A :class:`Generator` seeded with ``seed`` (an int, a sequence of ints, None for
    fresh entropy, or a NumPy Generator to wrap).

    >>> import gradkit as gk
    >>> gk.random.default_rng(42).integers(0, 10, size=3).tolist() == \\
    ...     gk.random.default_rng(42).integers(0, 10, size=3).tolist()
    True
    """
    if isinstance(seed, Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        return Generator(seed)
    return Generator(np.random.default_rng(seed))
