"""Dtypes: gradkit uses NumPy's dtype objects, so ``gk.float32 == np.float32``.

Python floats become the default float dtype (float32 unless changed with
:func:`set_default_dtype`); NumPy arrays keep their own dtype.

The Array API standard's data type functions live here too: :func:`isdtype`,
:func:`result_type`, :func:`can_cast`, :func:`finfo`, :func:`iinfo`.

>>> import gradkit as gk
>>> gk.result_type(gk.int8, gk.int16), gk.isdtype(gk.float32, "real floating")
(dtype('int16'), True)
"""
from __future__ import annotations

from typing import Any, NamedTuple, Union

import numpy as np

from gradkit.errors import DTypeError

bool_ = np.dtype("bool")
int8, int16, int32, int64 = (np.dtype(f"int{b}") for b in (8, 16, 32, 64))
uint8, uint16, uint32, uint64 = (np.dtype(f"uint{b}") for b in (8, 16, 32, 64))
float16, float32, float64 = (np.dtype(f"float{b}") for b in (16, 32, 64))

SUPPORTED_DTYPES = {bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
              float16, float32, float64}
_default_float = float32


def as_dtype(dtype: Any, op: str = "tensor", operand: Any = None) -> np.dtype:
    """Turn ``"float32"``, ``gk.float32`` or ``np.float32`` into a dtype, or raise.

    ``operand`` (a Tensor being converted) is described in the error.

    >>> as_dtype("float64")
    dtype('float64')
    """
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise _dtype_error(op, f"unknown dtype {dtype!r}", operand) from exc
    if resolved not in SUPPORTED_DTYPES:
        raise _dtype_error(op, f"unsupported dtype {dtype!r}", operand)
    return resolved


def _dtype_error(op: str, what: str, operand: Any) -> DTypeError:
    """``op``: ``what``, with the supported dtypes and the operand being converted."""
    choices = sorted(str(d) for d in SUPPORTED_DTYPES)
    suffix = ""
    if operand is not None:
        from gradkit.errors import describe
        suffix = f" (operand: {describe(operand)})"
    return DTypeError(f"{op}: {what}; use one of {choices}{suffix}")


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


# -- the Array API standard's data type functions -------------------------------------

_KINDS = {
    "bool": lambda d: d.kind == "b",
    "signed integer": lambda d: d.kind == "i",
    "unsigned integer": lambda d: d.kind == "u",
    "integral": lambda d: d.kind in "iu",
    "real floating": lambda d: d.kind == "f",
    "complex floating": lambda d: d.kind == "c",
    "numeric": lambda d: d.kind in "iufc",
}

DTypeKind = Union[str, np.dtype, tuple]


def _dtype_of(value: Any, where: str) -> np.dtype:
    """The dtype of a Tensor, array or dtype-like ``value``."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and not isinstance(value, (np.dtype, type)):
        return to_numpy_dtype(dtype)
    return as_dtype(value, where)


def isdtype(dtype: Any, kind: DTypeKind) -> bool:
    """Whether ``dtype`` is of ``kind``: a dtype, a kind name, or a tuple of either.

    Kind names: ``"bool"``, ``"signed integer"``, ``"unsigned integer"``,
    ``"integral"``, ``"real floating"``, ``"complex floating"``, ``"numeric"``.

    >>> import gradkit as gk
    >>> gk.isdtype(gk.int32, "integral"), gk.isdtype(gk.int32, ("bool", gk.float64))
    (True, False)
    """
    resolved = as_dtype(dtype, "isdtype")
    if isinstance(kind, tuple):
        return any(isdtype(resolved, k) for k in kind)
    if isinstance(kind, str) and kind in _KINDS:
        return _KINDS[kind](resolved)
    if isinstance(kind, str):
        try:
            return resolved == as_dtype(kind, "isdtype")
        except DTypeError:
            raise ValueError(f"isdtype: unknown kind {kind!r}; use a dtype or one of "
                             f"{sorted(_KINDS)}") from None
    return resolved == as_dtype(kind, "isdtype")


def _scalar_dtype(value: Any, others: np.dtype | None) -> np.dtype:
    """The dtype a Python scalar takes next to arrays of dtype ``others`` (weak scalars).

    The same rule ops apply when they lift a scalar operand (see ``registry._lift``).
    """
    if isinstance(value, bool):
        return np.dtype(bool) if others is None or others.kind == "b" else others
    if isinstance(value, int):
        return others if others is not None and others.kind in "iuf" else int64
    if others is not None and others.kind == "f":
        return others
    return get_default_dtype()


def result_type(*arrays_and_dtypes: Any) -> np.dtype:
    """The dtype an op on these operands returns, by the standard's promotion rules.

    Operands are Tensors, arrays, dtypes or Python scalars; scalars are weak (they
    take the dtype of the arrays they meet), as in every gradkit op. Where the
    standard leaves a promotion undefined (integers with floats, int64 with uint64),
    NumPy's answer is given.

    >>> import gradkit as gk
    >>> gk.result_type(gk.float32, 1.0), gk.result_type(gk.uint8, gk.int8)
    (dtype('float32'), dtype('int16'))
    """
    if not arrays_and_dtypes:
        raise ValueError("result_type: needs at least one array or dtype")
    scalars = [v for v in arrays_and_dtypes if isinstance(v, (bool, int, float))]
    dtypes = [_dtype_of(v, "result_type") for v in arrays_and_dtypes
              if not isinstance(v, (bool, int, float))]
    result = np.result_type(*dtypes) if dtypes else None
    for scalar in scalars:
        scalar_dtype = _scalar_dtype(scalar, result)
        result = scalar_dtype if result is None else np.promote_types(result, scalar_dtype)
    return as_dtype(result, "result_type")


def _standard_promotion(a: np.dtype, b: np.dtype) -> np.dtype | None:
    """The standard's promotion table: None where it defines no promotion."""
    if a == b:
        return a
    if a.kind == "b" or b.kind == "b":
        return None
    if a.kind == "f" and b.kind == "f":
        return np.promote_types(a, b)
    if a.kind in "iu" and b.kind in "iu":
        if (a.kind == "u" and a.itemsize == 8 and b.kind == "i") or \
                (b.kind == "u" and b.itemsize == 8 and a.kind == "i"):
            return None  # uint64 with a signed integer: no integer holds both
        return np.promote_types(a, b)
    return None  # integers with floats: mixed-kind promotion is not defined


def can_cast(from_: Any, to: Any, /) -> bool:
    """Whether ``from_`` (a dtype or Tensor) promotes to ``to`` by the standard's rules.

    Casting across kinds (integer to float, bool to integer) is False, as in the
    standard's promotion table; use ``astype`` for explicit conversions.

    >>> import gradkit as gk
    >>> gk.can_cast(gk.int8, gk.int32), gk.can_cast(gk.int32, gk.float64)
    (True, False)
    """
    source = _dtype_of(from_, "can_cast")
    target = as_dtype(to, "can_cast")
    promoted = _standard_promotion(source, target)
    return promoted is not None and promoted == target  # (np.dtype == None compares to float64)


class FInfo(NamedTuple):
    """Machine limits of a float dtype, as the standard gives them: Python numbers."""
    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: np.dtype


def finfo(type: Any, /) -> FInfo:
    """Machine limits of a float dtype (or of a Tensor's dtype): ``bits`` (an int),
    ``eps``, ``max``, ``min``, ``smallest_normal`` (Python floats), ``dtype``.

    >>> import gradkit as gk
    >>> gk.finfo(gk.float32).bits, gk.finfo(gk.float64).eps
    (32, 2.220446049250313e-16)
    """
    dtype = _dtype_of(type, "finfo")
    if dtype.kind != "f":
        raise DTypeError(f"finfo: expected a floating dtype, got {dtype}; use iinfo for integers")
    info = np.finfo(dtype)
    return FInfo(int(info.bits), float(info.eps), float(info.max), float(info.min),
                 float(info.smallest_normal), dtype)


def iinfo(type: Any, /) -> np.iinfo:
    """Machine limits of an integer dtype (or of a Tensor's dtype): ``bits``, ``max``,
    ``min``, ``dtype``.

    >>> import gradkit as gk
    >>> gk.iinfo(gk.int8).min, gk.iinfo(gk.uint8).max
    (-128, 255)
    """
    dtype = _dtype_of(type, "iinfo")
    if dtype.kind not in "iu":
        raise DTypeError(f"iinfo: expected an integer dtype, got {dtype}; use finfo for floats")
    return np.iinfo(dtype)
