"""What makes the ``gradkit`` module an Array API namespace beyond its ops.

``__array_api_version__``, the inspection object ``__array_namespace_info__()``,
and the two functions whose standard signatures go beyond their registered ops:
``astype`` (``copy=``, ``device=``) and ``clip`` (tensor bounds, or no bounds).
Everything else the namespace offers is an op (``gradkit.ops``), a creation
function (``gradkit.creation``) or a dtype function (``gradkit.dtypes``).

>>> import gradkit as gk
>>> gk.__array_api_version__
'2023.12'
>>> gk.__array_namespace_info__().default_dtypes()["real floating"]
dtype('float32')
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit import backends as _backends
from gradkit.device import Device, devices, resolve_backend
from gradkit.dtypes import SUPPORTED_DTYPES, as_dtype, float16, get_default_dtype, int64, isdtype
from gradkit.ops.elementwise import astype as _astype_op
from gradkit.ops.elementwise import clip as _clip_op
from gradkit.ops.elementwise import where
from gradkit.ops.math import positive
from gradkit.tensor import Tensor

__array_api_version__ = "2023.12"


def astype(x: Tensor, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Tensor:
    """``x`` converted to ``dtype`` (and moved to ``device``); the gradient converts back.

    ``copy=False`` returns ``x`` itself when nothing changes.

    >>> import gradkit as gk
    >>> x = gk.tensor([1.5])
    >>> gk.astype(x, gk.float64).dtype, gk.astype(x, "float32", copy=False) is x
    (dtype('float64'), True)
    """
    if device is not None:
        x = x.to_device(device)
    target = as_dtype(dtype, "astype", operand=x)
    if not copy and x.dtype == target:
        return x
    return _astype_op(x, dtype=target)


def _is_array(value: Any) -> bool:
    return isinstance(value, Tensor) or (hasattr(value, "shape") and hasattr(value, "dtype")
                                         and getattr(value, "ndim", 0) > 0)


def clip(x: Tensor, /, min: Any = None, max: Any = None) -> Tensor:
    """``x`` limited to ``[min, max]``; bounds are numbers, tensors (broadcast to ``x``)
    or None. The gradient flows to ``x`` inside the bounds and to a tensor bound
    where it is the result.

    >>> import gradkit as gk
    >>> gk.clip(gk.tensor([-2.0, 0.5, 3.0]), 0.0, gk.tensor([1.0, 1.0, 2.0])).numpy().tolist()
    [0.0, 0.5, 2.0]
    """
    if min is None and max is None:
        return positive(x)
    if not (_is_array(min) or _is_array(max)):
        return _clip_op(x, min, max)
    from gradkit.creation import asarray
    out = x
    if min is not None:  # min(max(x, lo), hi), as NumPy, with x's dtype kept
        lo = asarray(min, dtype=x.dtype, device=x.array_backend) if _is_array(min) else min
        out = where(out < lo, lo, out)
    if max is not None:
        hi = asarray(max, dtype=x.dtype, device=x.array_backend) if _is_array(max) else max
        out = where(out > hi, hi, out)
    return out


class ArrayNamespaceInfo:
    """The standard's inspection API for gradkit: capabilities, devices, dtypes."""

    def capabilities(self) -> dict[str, Any]:
        """Boolean indexing and data-dependent output shapes (nonzero, unique) work.

        >>> import gradkit as gk
        >>> gk.__array_namespace_info__().capabilities()["boolean indexing"]
        True
        """
        return {"boolean indexing": True, "data-dependent shapes": True, "max dimensions": 64}

    def default_device(self) -> Device:
        """The device (backend) new tensors go to.

        >>> import gradkit as gk
        >>> gk.__array_namespace_info__().default_device() == gk.Device(gk.get_backend())
        True
        """
        return Device(_backends.get_backend())

    def default_dtypes(self, *, device: Any = None) -> dict[str, Any]:
        """The default float, integer and index dtypes; gradkit has no complex dtypes.

        >>> import gradkit as gk
        >>> gk.__array_namespace_info__().default_dtypes()["indexing"]
        dtype('int64')
        """
        resolve_backend(device)
        return {"real floating": get_default_dtype(), "complex floating": None,
                "integral": int64, "indexing": int64}

    def dtypes(self, *, device: Any = None, kind: Any = None) -> dict[str, np.dtype]:
        """The dtypes gradkit supports, by name, optionally only those of ``kind``.

        >>> import gradkit as gk
        >>> sorted(gk.__array_namespace_info__().dtypes(kind="real floating"))
        ['float32', 'float64']

        float16 works in gradkit but is not one of the standard's dtypes, so it is not
        listed.
        """
        resolve_backend(device)
        chosen = [d for d in SUPPORTED_DTYPES if d != float16 and (kind is None or isdtype(d, kind))]
        return {d.name: d for d in sorted(chosen, key=lambda d: (d.kind, d.itemsize))}

    def devices(self) -> list[Device]:
        """Every usable device (backend) here.

        >>> import gradkit as gk
        >>> gk.Device("numpy") in gk.__array_namespace_info__().devices()
        True
        """
        return devices()


def __array_namespace_info__() -> ArrayNamespaceInfo:
    """The inspection object of the standard (2023.12).

    >>> import gradkit as gk
    >>> type(gk.__array_namespace_info__()).__name__
    'ArrayNamespaceInfo'
    """
    return ArrayNamespaceInfo()
