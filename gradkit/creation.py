"""Creating tensors: the Array API standard's creation functions.

``asarray``, ``zeros``, ``ones``, ``empty``, ``full``, their ``*_like`` forms,
``arange``, ``linspace``, ``eye`` and ``from_dlpack``, with the standard's
signatures: ``dtype=`` (default: the default float dtype, float32, or what the
fill value or data says) and ``device=`` (a :class:`gradkit.Device`, a backend
name, or None for the current backend; ``*_like`` default to the input's). The
gradkit extras ``requires_grad=`` and ``backend=`` (the older name of ``device=``)
stay. ``tril``, ``triu`` and ``meshgrid`` are ops (they have gradients) in
``gradkit.ops.shape``.

>>> import gradkit as gk
>>> gk.zeros((2, 3)).shape, gk.ones(2).dtype
((2, 3), dtype('float32'))
>>> gk.full(2, 7).dtype, gk.arange(3, device="numpy").device
(dtype('int64'), Device('numpy'))
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit import backends as _backends
from gradkit.device import resolve_backend
from gradkit.dtypes import (as_dtype, get_default_dtype, native_dtype, result_type,
                            to_numpy_dtype)
from gradkit.errors import BackendError, DTypeError
from gradkit.registry import as_shape, as_size
from gradkit.tensor import Tensor, tensor


def _target(device: Any, backend: Any, default: Any, where: str) -> Any:
    """The backend that ``device=`` (or the older ``backend=``) names; both must agree."""
    if device is not None and backend is not None:
        a, b = resolve_backend(device), resolve_backend(backend)
        if a is not b:
            raise BackendError(f"{where}: device={device!r} and backend={backend!r} disagree; "
                               "pass one of them")
        return a
    return resolve_backend(device if device is not None else backend, default)


def _make(build: Any, dtype: Any, requires_grad: bool, backend: Any, where: str,
          device: Any = None, default_backend: Any = None) -> Tensor:
    target = _target(device, backend, default_backend, where)
    resolved = get_default_dtype() if dtype is None else as_dtype(dtype, where)
    t = Tensor(build(target.xp, native_dtype(target.xp, resolved)), target)
    if requires_grad:
        t.requires_grad_(True, where=where)
    return t


def _like(x: Tensor, dtype: Any, device: Any, requires_grad: bool) -> dict[str, Any]:
    """A ``*_like`` function's keyword arguments for its plain form: ``x``'s dtype and
    device unless given."""
    backend = x.array_backend if isinstance(x, Tensor) and device is None else None
    return {"dtype": x.dtype if dtype is None else dtype, "device": device,
            "requires_grad": requires_grad, "backend": backend}


def zeros(shape: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          backend: Any = None) -> Tensor:
    """A tensor of zeros.

    >>> import gradkit as gk
    >>> gk.zeros(2).numpy().tolist()
    [0.0, 0.0]
    """
    shape = as_shape(shape, "zeros")
    return _make(lambda xp, d: xp.zeros(shape, dtype=d), dtype, requires_grad, backend,
                 "zeros", device)


def ones(shape: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
         backend: Any = None) -> Tensor:
    """A tensor of ones.

    >>> import gradkit as gk
    >>> gk.ones((1, 2)).numpy().tolist()
    [[1.0, 1.0]]
    """
    shape = as_shape(shape, "ones")
    return _make(lambda xp, d: xp.ones(shape, dtype=d), dtype, requires_grad, backend,
                 "ones", device)


def empty(shape: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          backend: Any = None) -> Tensor:
    """A tensor whose values are not to be relied on (gradkit fills it with zeros).

    >>> import gradkit as gk
    >>> gk.empty((2, 2)).shape
    (2, 2)
    """
    shape = as_shape(shape, "empty")
    return _make(lambda xp, d: xp.zeros(shape, dtype=d), dtype, requires_grad, backend,
                 "empty", device)


def _fill_dtype(fill_value: Any) -> np.dtype:
    """The standard's dtype for a fill value: bool, the default integer, or the default float."""
    if isinstance(fill_value, (bool, np.bool_)):
        return np.dtype(bool)
    if isinstance(fill_value, (int, np.integer)):
        return np.dtype("int64")
    if isinstance(fill_value, (float, np.floating)):
        return get_default_dtype()
    raise DTypeError(f"full: fill_value must be a bool, int or float, got "
                     f"{type(fill_value).__name__}")


def full(shape: Any, fill_value: bool | int | float, *, dtype: Any = None, device: Any = None,
         requires_grad: bool = False, backend: Any = None) -> Tensor:
    """A tensor filled with ``fill_value``; by default its dtype follows the value
    (bool, int64, or the default float).

    >>> import gradkit as gk
    >>> gk.full(2, 7.0).numpy().tolist(), gk.full(2, True).dtype
    ([7.0, 7.0], dtype('bool'))
    """
    shape = as_shape(shape, "full")
    dtype = _fill_dtype(fill_value) if dtype is None else dtype
    return _make(lambda xp, d: xp.full(shape, fill_value, dtype=d), dtype,
                 requires_grad, backend, "full", device)


def zeros_like(x: Tensor, /, *, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    """Zeros with ``x``'s shape, dtype and device (unless given).

    >>> import gradkit as gk
    >>> gk.zeros_like(gk.ones((2, 2), dtype="float64")).dtype
    dtype('float64')
    """
    return zeros(x.shape, **_like(x, dtype, device, requires_grad))


def ones_like(x: Tensor, /, *, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    """Ones with ``x``'s shape, dtype and device (unless given).

    >>> import gradkit as gk
    >>> gk.ones_like(gk.zeros(2)).numpy().tolist()
    [1.0, 1.0]
    """
    return ones(x.shape, **_like(x, dtype, device, requires_grad))


def empty_like(x: Tensor, /, *, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    """An uninitialized-by-contract tensor like ``x`` (gradkit fills it with zeros).

    >>> import gradkit as gk
    >>> gk.empty_like(gk.zeros((2, 3), dtype="int32")).dtype
    dtype('int32')
    """
    return empty(x.shape, **_like(x, dtype, device, requires_grad))


def full_like(x: Tensor, /, fill_value: bool | int | float, *, dtype: Any = None,
              device: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` with ``x``'s shape, dtype and device (unless given).

    >>> import gradkit as gk
    >>> gk.full_like(gk.zeros(2), 3).numpy().tolist()
    [3.0, 3.0]
    """
    return full(x.shape, fill_value, **_like(x, dtype, device, requires_grad))


def arange(start: float, /, stop: float | None = None, step: float = 1, *, dtype: Any = None,
           device: Any = None, backend: Any = None) -> Tensor:
    """Evenly spaced values in ``[start, stop)``; integer inputs give int64.

    >>> import gradkit as gk
    >>> gk.arange(3).numpy().tolist(), gk.arange(0, 1, 0.5).numpy().tolist()
    ([0, 1, 2], [0.0, 0.5])
    """
    if stop is None:
        start, stop = 0, start
    if dtype is None and all(isinstance(v, (int, np.integer)) for v in (start, stop, step)):
        dtype = "int64"
    return _make(lambda xp, d: xp.arange(start, stop, step, dtype=d), dtype, False, backend,
                 "arange", device)


def linspace(start: float, stop: float, /, num: int, *, dtype: Any = None, device: Any = None,
             endpoint: bool = True, backend: Any = None) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop`` (inclusive unless
    ``endpoint=False``).

    >>> import gradkit as gk
    >>> gk.linspace(0.0, 1.0, 3).numpy().tolist(), gk.linspace(0, 1, 2, endpoint=False).numpy().tolist()
    ([0.0, 0.5, 1.0], [0.0, 0.5])
    """
    num = as_size(num, "linspace", "num")
    return _make(lambda xp, d: xp.linspace(start, stop, num, dtype=d, endpoint=endpoint), dtype,
                 False, backend, "linspace", device)


def eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None,
        device: Any = None, backend: Any = None) -> Tensor:
    """The ``n`` by ``m`` (default square) matrix with ones on diagonal ``k``.

    >>> import gradkit as gk
    >>> gk.eye(2).numpy().tolist(), gk.eye(2, 3, k=1).numpy().tolist()
    ([[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    """
    n = as_size(n_rows, "eye", "n_rows")
    m = None if n_cols is None else as_size(n_cols, "eye", "n_cols")
    return _make(lambda xp, d: xp.eye(n, m, k=k, dtype=d), dtype, False, backend, "eye", device)


# -- asarray and from_dlpack ----------------------------------------------------------

def _dlpack_device_type(obj: Any) -> int | None:
    try:
        return int(obj.__dlpack_device__()[0])
    except Exception:  # no DLPack, or a library that cannot say
        return None


def _backend_for_dlpack(device_type: int | None) -> Any:
    """The backend that holds arrays of a DLPack device: the current one if it is
    of that kind, else the first registered one that is (numpy for the CPU)."""
    current = _backends.get_backend()
    if device_type is None or current.dlpack_device_type == device_type:
        return current
    if device_type == 1:
        return _backends.get("numpy")
    if device_type in (2, 13):  # CUDA, CUDA managed memory
        return _backends.get("cuda")
    raise BackendError(f"from_dlpack: no gradkit backend holds arrays of DLPack device "
                       f"type {device_type}")


def _checked(array: Any, target: Any, where: str) -> Tensor:
    as_dtype(to_numpy_dtype(array.dtype), where)  # complex, strings...: a DTypeError
    return Tensor(array, target)


def from_dlpack(x: Any, /, *, device: Any = None, copy: bool | None = None) -> Tensor:
    """A tensor sharing the memory of ``x``, any array with ``__dlpack__`` (NumPy,
    CuPy, PyTorch, JAX...), without a copy where the devices match.

    The backend is ``device`` if given, else the current backend when it holds
    arrays where ``x`` lives, else numpy for host arrays and cuda for GPU arrays.
    ``copy=True`` copies; ``copy=False`` refuses to.

    >>> import numpy as np, gradkit as gk
    >>> a = np.arange(3.0)
    >>> t = gk.from_dlpack(a)
    >>> a[0] = 7.0
    >>> t.numpy().tolist()
    [7.0, 1.0, 2.0]
    """
    target = resolve_backend(device) if device is not None else \
        _backend_for_dlpack(_dlpack_device_type(x))
    kwargs = {} if copy is None else {"copy": copy}
    return _checked(target.xp.from_dlpack(x, **kwargs), target, "from_dlpack")


def _python_data(obj: Any) -> bool:
    return isinstance(obj, (bool, int, float, list, tuple, np.generic))


def _holds_tensors(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) and any(
        isinstance(e, Tensor) or _holds_tensors(e) for e in obj)


def _stack_nested(obj: Any, dtype: Any, target: Any) -> Tensor:
    """A (nested) list mixing Tensors and numbers, stacked: the gradient reaches each."""
    from gradkit.ops.shape import stack
    parts = [_stack_nested(e, dtype, target) if isinstance(e, (list, tuple)) else e for e in obj]
    common = as_dtype(dtype, "asarray") if dtype is not None else result_type(*parts)
    return stack([asarray(p, dtype=common, device=target) for p in parts], axis=0)


def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None,
            requires_grad: bool = False) -> Tensor:
    """``obj`` as a tensor: a Tensor (returned as it is where nothing must change, so
    gradients flow through), Python data, or another library's array.

    ``copy=None`` shares memory where it can (a NumPy array on a CPU backend, any
    array through DLPack on its own device); ``True`` always copies; ``False``
    raises ValueError where a copy is needed. Python floats become the default float
    dtype, Python ints int64; arrays keep their dtype. A list holding Tensors is
    stacked, differentiably.

    >>> import numpy as np, gradkit as gk
    >>> gk.asarray([1.0, 2.0]).dtype, gk.asarray(np.ones(2, dtype=np.int32)).dtype
    (dtype('float32'), dtype('int32'))
    >>> x = gk.tensor([1.0])
    >>> gk.asarray(x) is x, gk.asarray(x, copy=True) is x
    (True, False)
    """
    from gradkit.ops.elementwise import astype
    wanted = None if dtype is None else as_dtype(dtype, "asarray")
    if isinstance(obj, Tensor):
        out = obj
        target = resolve_backend(device, obj.array_backend)
        if target is not out.array_backend:
            if copy is False:
                raise ValueError(f"asarray: copy=False, but moving from {out.backend} to "
                                 f"{target.name} copies")
            out = out.to(target)
        if wanted is not None and out.dtype != wanted:
            if copy is False:
                raise ValueError(f"asarray: copy=False, but converting {out.dtype} to "
                                 f"{wanted} copies")
            out = astype(out, dtype=wanted)
        elif copy and out is obj:
            out = astype(out, dtype=out.dtype)  # a new array; the gradient flows through
        if requires_grad:
            out.requires_grad_(True, where="asarray")
        return out
    target = resolve_backend(device)
    if _holds_tensors(obj):
        return _stack_nested(obj, wanted, target)
    if copy is True or _python_data(obj):
        if copy is False:
            raise ValueError(f"asarray: copy=False, but a {type(obj).__name__} must be copied "
                             "into an array")
        return tensor(obj, dtype=wanted, requires_grad=requires_grad, backend=target)
    array, shared = None, False
    if hasattr(obj, "__dlpack__") and _dlpack_device_type(obj) == target.dlpack_device_type \
            and not isinstance(obj, np.ndarray):
        try:
            array, shared = target.xp.from_dlpack(obj), True
        except Exception:  # e.g. a PyTorch tensor that requires grad: fall back to asarray
            array = None
    if array is None:
        try:
            array = target.asarray(obj)
        except Exception as exc:
            raise BackendError(f"asarray: cannot make a {target.name} array from "
                               f"{type(obj).__name__}: {exc}") from exc
        shared = isinstance(obj, np.ndarray) and isinstance(array, np.ndarray) and \
            np.shares_memory(obj, array)
    if wanted is not None and to_numpy_dtype(array.dtype) != wanted:
        array, shared = target.xp.astype(array, native_dtype(target.xp, wanted)), False
    if copy is False and not shared:
        raise ValueError(f"asarray: copy=False, but {type(obj).__name__} cannot become a "
                         f"{target.name} array without a copy")
    out = _checked(array, target, "asarray")
    if requires_grad:
        out.requires_grad_(True, where="asarray")
    return out
