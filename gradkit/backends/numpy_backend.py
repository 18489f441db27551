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

    @property
    def array_type(self) -> type:
        return np.ndarray
