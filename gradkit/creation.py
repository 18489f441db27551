"""Creating tensors: zeros, ones, full, arange, linspace, eye and the ``*_like`` forms.

``dtype`` defaults to the default float dtype (float32); ``backend`` to the
current backend.

>>> import gradkit as gk
>>> gk.zeros((2, 3)).shape, gk.ones(2).dtype
((2, 3), dtype('float32'))
"""
from __future__ import annotations

from typing import Any

from gradkit import backends as _backends
from gradkit.dtypes import as_dtype, get_default_dtype, native_dtype
from gradkit.tensor import Tensor


def _make(build: Any, dtype: Any, requires_grad: bool, backend: Any, where: str) -> Tensor:
    target = _backends.get(backend) if backend is not None else _backends.get_backend()
    resolved = get_default_dtype() if dtype is None else as_dtype(dtype, where)
    t = Tensor(build(target.xp, native_dtype(target.xp, resolved)), target)
    if requires_grad:
        t.requires_grad_(True, where=where)
    return t


def _shape(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)


def zeros(shape: Any, dtype: Any = None, requires_grad: bool = False, backend: Any = None) -> Tensor:
    """A tensor of zeros.

    >>> import gradkit as gk
    >>> gk.zeros(2).numpy().tolist()
    [0.0, 0.0]
    """
    return _make(lambda xp, d: xp.zeros(_shape(shape), dtype=d), dtype, requires_grad, backend, "zeros")


def ones(shape: Any, dtype: Any = None, requires_grad: bool = False, backend: Any = None) -> Tensor:
    """A tensor of ones.

    >>> import gradkit as gk
    >>> gk.ones((1, 2)).numpy().tolist()
    [[1.0, 1.0]]
    """
    return _make(lambda xp, d: xp.ones(_shape(shape), dtype=d), dtype, requires_grad, backend, "ones")


def full(shape: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False,
         backend: Any = None) -> Tensor:
    """A tensor filled with ``fill_value``.

    >>> import gradkit as gk
    >>> gk.full(2, 7.0).numpy().tolist()
    [7.0, 7.0]
    """
    return _make(lambda xp, d: xp.full(_shape(shape), fill_value, dtype=d), dtype,
                 requires_grad, backend, "full")


def zeros_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with ``x``'s shape, dtype and backend.

    >>> import gradkit as gk
    >>> gk.zeros_like(gk.ones((2, 2), dtype="float64")).dtype
    dtype('float64')
    """
    return zeros(x.shape, dtype or x.dtype, requires_grad, x._backend)


def ones_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with ``x``'s shape, dtype and backend."""
    return ones(x.shape, dtype or x.dtype, requires_grad, x._backend)


def full_like(x: Tensor, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` with ``x``'s shape, dtype and backend."""
    return full(x.shape, fill_value, dtype or x.dtype, requires_grad, x._backend)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None,
           backend: Any = None) -> Tensor:
    """Evenly spaced values in ``[start, stop)``; integer inputs give int64.

    >>> import gradkit as gk
    >>> gk.arange(3).numpy().tolist()
    [0, 1, 2]
    """
    if stop is None:
        start, stop = 0, start
    if dtype is None and all(isinstance(v, int) for v in (start, stop, step)):
        dtype = "int64"
    return _make(lambda xp, d: xp.arange(start, stop, step, dtype=d), dtype, False, backend, "arange")


def linspace(start: float, stop: float, num: int, dtype: Any = None, backend: Any = None) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop`` inclusive.

    >>> import gradkit as gk
    >>> gk.linspace(0.0, 1.0, 3).numpy().tolist()
    [0.0, 0.5, 1.0]
    """
    return _make(lambda xp, d: xp.linspace(start, stop, num, dtype=d), dtype, False, backend, "linspace")


def eye(n: int, m: int | None = None, dtype: Any = None, backend: Any = None) -> Tensor:
    """The identity matrix (``n`` by ``m``, default square).

    >>> import gradkit as gk
    >>> gk.eye(2).numpy().tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    return _make(lambda xp, d: xp.eye(n, m, dtype=d), dtype, False, backend, "eye")
