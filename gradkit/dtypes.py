"""Dtypes: gradkit uses NumPy's dtype objects, so ``gk.float32 == np.float32``.

Python floats become the default float dtype (float32 unless changed with
:func:`set_default_dtype`); NumPy arrays keep their own dtype.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.errors import DTypeError

bool_ = np.dtype("bool")
int8, int16, int32, int64 = (np.dtype(f"int{b}") for b in (8, 16, 32, 64))
uint8, uint16, uint32, uint64 = (np.dtype(f"uint{b}") for b in (8, 16, 32, 64))
float16, float32, float64 = (np.dtype(f"float{b}") for b in (16, 32, 64))

_SUPPORTED = {bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
              float16, float32, float64}
_default_float = float32


def as_dtype(dtype: Any, op: str = "tensor", operand: Any = None) -> np.dtype:
    """Turn ``"float32"``, ``gk.float32`` or ``np.float32`` into a dtype, or raise.

    ``operand`` (a Tensor being converted) is described in the error.

    >>> as_dtype("float64")
    dtype('float64')
    """
    choices = sorted(str(d) for d in _SUPPORTED)
    suffix = ""
    if operand is not None:
        from gradkit.errors import describe
        suffix = f" (operand: {describe(operand)})"
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"{op}: unknown dtype {dtype!r}; use one of {choices}{suffix}") from exc
    if resolved not in _SUPPORTED:
        raise DTypeError(f"{op}: unsupported dtype {dtype!r}; use one of {choices}{suffix}")
    return resolved


def native_dtype(xp: Any, dtype: Any) -> Any:
    """The array module's own object for ``dtype`` (``xp.float32`` for float32).

    NumPy and CuPy take NumPy dtypes directly; Array API libraries such as
    array-api-strict only take their own.
    """
    return getattr(xp, np.dtype(dtype).name if np.dtype(dtype).name != "bool" else "bool")


def to_numpy_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype for any library's dtype object (``array_api_strict.float32``...)."""
    if isinstance(dtype, np.dtype):
        return dtype
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def is_floating(dtype: np.dtype) -> bool:
    """True for float16/32/64, the dtypes that can carry a gradient."""
    return dtype.kind == "f"


def get_default_dtype() -> np.dtype:
    """The dtype Python floats become (float32 unless set otherwise)."""
    return _default_float


def set_default_dtype(dtype: Any) -> None:
    """Make Python floats become ``dtype`` ("float32" or "float64").

    >>> set_default_dtype("float64"); get_default_dtype()
    dtype('float64')
    >>> set_default_dtype("float32")
    """
    global _default_float
    resolved = as_dtype(dtype, op="set_default_dtype")
    if not is_floating(resolved):
        raise DTypeError(f"set_default_dtype: expected a float dtype, got {resolved}")
    _default_float = resolved
