"""The NumPy backend: the reference forwards on NumPy, plus a few NumPy kernels.

The kernels (gradkit/backends/numpy/kernels.py) compute what the reference does
with fewer, cheaper NumPy calls. ``NumpyBackend(kernels=False)`` runs the
reference forwards only: it is what every backend, this one included, is
checked against (``gk.testing.check_backend``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.backends.numpy import kernels as numpy_kernels
from gradkit.backends.base import Backend


class NumpyBackend(Backend):
    """CPU arrays in NumPy; the reference every other backend is checked against."""

    name = "numpy"
    kernel_factories = numpy_kernels.KERNEL_FACTORIES
    donating_kernel_factories = numpy_kernels.DONATING_KERNEL_FACTORIES

    def __init__(self, kernels: bool = True) -> None:
        super().__init__()
        if not kernels:
            self.kernel_factories.clear()
            self.donating_kernel_factories.clear()

    @property
    def xp(self) -> Any:
        return np

    array_type = np.ndarray  # a plain attribute: dispatch reads it on every op

    def asarray(self, data: Any, dtype: np.dtype | None = None) -> Any:
        return np.asarray(data, dtype=dtype)  # NumPy takes NumPy dtypes as they are

    def value_range(self, array: Any) -> tuple[int, int]:
        # the ufuncs' own reductions: np.min/np.max add microseconds of Python layers
        return int(np.minimum.reduce(array, axis=None)), int(np.maximum.reduce(array, axis=None))

    def copy(self, array: Any) -> Any:
        return np.array(array, copy=True)
