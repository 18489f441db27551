"""A third-party backend built on array-api-strict, the Array API's reference library.

It registers no kernels at all: every op runs its reference forward on
``array_api_strict``, which proves the references are written against the
standard (and not against NumPy's extras). The suite registers it in conftest.py
through the public API; test_backends.py also loads it through an entry point.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.backends.base import Backend


class ArrayApiStrictBackend(Backend):
    """Arrays of ``array_api_strict``; no kernels of its own."""

    name = "strict"

    def unavailable_reason(self) -> str | None:
        try:
            import array_api_strict  # noqa: F401
        except ImportError:
            return "array-api-strict is not installed (pip install array-api-strict)"
        return None

    @property
    def xp(self) -> Any:
        import array_api_strict
        return array_api_strict

    @property
    def array_type(self) -> type:
        return type(self.xp.asarray(0))

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.from_dlpack(array)
