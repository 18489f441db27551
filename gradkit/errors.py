"""The exceptions gradkit raises, and how they describe operands.

Every error that comes from an op names the op, the offending argument, and each
operand's backend, dtype and shape, so the user never has to decode a NumPy
traceback from three frames down.
"""
from __future__ import annotations

from typing import Any


class GradkitError(Exception):
    """Base class of every error gradkit raises on purpose."""


class ShapeError(GradkitError, ValueError):
    """Operands whose shapes do not fit the op."""


class DTypeError(GradkitError, TypeError):
    """An unknown dtype, or a dtype the op or gradient cannot take."""


class ArgumentError(GradkitError, ValueError):
    """A param an op cannot take (clip with min > max, an unknown activation...)."""


class IndexingError(GradkitError, IndexError):
    """An index out of range for the tensor it indexes."""


class GraphError(GradkitError, RuntimeError):
    """Misuse of the tape: backward through a freed graph, a non-scalar root, ..."""


class BackendError(GradkitError, RuntimeError):
    """A backend that is unknown, unavailable, or mixed with another in one op."""


class CaptureError(GradkitError, RuntimeError):
    """A captured function cannot be replayed faithfully (see :func:`gradkit.capture.capture`)."""

    __module__ = "gradkit.capture"  # where users import it from


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a gradkit Tensor, asked without importing the core (this module
    sits below it): Tensor carries the class attribute ``_gradkit_tensor``."""
    return getattr(type(value), "_gradkit_tensor", False) is True


def describe(value: Any) -> str:
    """One operand as ``backend dtype shape``, e.g. ``numpy float32 (32, 64)``."""
    if is_tensor(value):
        return f"{value.backend} {value.dtype} {tuple(value.shape)}"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__module__.split('.')[0]} array {dtype} {tuple(shape)}"
    return f"python {type(value).__name__} {value!r}"


def describe_operands(names: list[str], values: list[Any]) -> str:
    """``x: numpy float32 (3, 4), y: numpy float32 (5,)`` for an error message."""
    return ", ".join(f"{n}: {describe(v)}" for n, v in zip(names, values))
