"""array-api-strict as the reference: run a function of the standard on the same inputs
as gradkit and compare dtypes, shapes and values (bit for bit on CPU backends)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

# the test extra's libraries: where one is missing (a GPU machine), its users skip
pytest.importorskip("hypothesis")
pytest.importorskip("array_api_strict")

import array_api_strict as xps  # noqa: E402
from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import gradkit as gk  # noqa: E402

# Quick hypothesis runs: the suite reruns per backend and must stay fast.
QUICK = settings(max_examples=25, deadline=None)

FLOATS = [np.dtype("float32"), np.dtype("float64")]
INTS = [np.dtype(n) for n in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")]
SPECIAL = np.array([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -3.5, 1e-30, -1e-30, 1e30, -1e30,
                    np.inf, -np.inf, np.nan])


def to_strict(a: Any) -> Any:
    return xps.asarray(np.asarray(a))


def host(value: Any) -> np.ndarray:
    """A gradkit tensor, strict array or NumPy array as a NumPy array."""
    if isinstance(value, gk.Tensor):
        return value.numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    return np.from_dlpack(value)


def exact_backend() -> bool:
    """The NumPy backend computes with NumPy, as array-api-strict does: identical results.
    Other backends run their own kernels for some ops (Numba's tanh, CuPy's everything)."""
    return gk.get_backend().name == "numpy"


def assert_same(actual: Any, expected: Any, rtol: float | None = None) -> None:
    """Same dtype and shape; same values (nan where nan, the sign of zeros too): bit for
    bit on the NumPy backend, to a few ulps elsewhere, or to ``rtol`` when given."""
    got, want = host(actual), host(expected)
    assert got.dtype == want.dtype, f"dtype {got.dtype} != reference {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != reference {want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    if rtol is None and exact_backend():
        np.testing.assert_array_equal(got, want)
    else:
        tol = rtol or (4e-7 if want.dtype == np.float32 else 1e-14)
        np.testing.assert_allclose(got, want, rtol=tol, atol=0 if rtol is None else tol,
                                   equal_nan=True)
    both_zero = (got == 0) & (want == 0)
    if rtol is None:
        np.testing.assert_array_equal(np.signbit(got[both_zero]), np.signbit(want[both_zero]))


def arrays(draw: Any, dtype: np.dtype, shape: tuple, special: bool = True,
           low: float | None = None, high: float | None = None) -> np.ndarray:
    """An array from hypothesis: floats with inf/nan/-0.0 unless ``special`` is False."""
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=special, allow_infinity=special,
                                  allow_subnormal=False, min_value=low, max_value=high)
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -1000 if low is None else int(low)),
                               min(info.max, 1000 if high is None else int(high)))
    return draw(hnp.arrays(dtype, shape, elements=elements))
