"""The NumPy backend: every op runs its reference forward on NumPy."""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.backends.base import Backend


class NumpyBackend(Backend):
    """CPU arrays in NumPy; the reference every other backend is checked against."""

    name = "numpy"

    @property
    def xp(self) -> Any:
        return np

    array_type = np.ndarray  # a plain attribute: dispatch reads it on every op

    def asarray(self, data: Any, dtype: np.dtype | None = None) -> Any:
        return np.asarray(data, dtype=dtype)  # NumPy takes NumPy dtypes as they are

    def copy(self, array: Any) -> Any:
        return np.array(array, copy=True)
