"""The public API under fuzzing: elementwise and reduction functions of the namespace on
drawn shapes (0-d and empty too), dtypes (bool, integers, floats), special values and
Python scalars of every kind (bool, int, big int, float with inf/nan/-0.0, complex).

Each call ends one of two ways: a gradkit error (a subclass of ``gk.GradkitError``), or
the result array-api-strict gives on the same values under gradkit's documented promotion
rules (README: the standard's; where it leaves promotion undefined, integers with floats,
uint64 with signed integers, bool with numbers, NumPy's; Python scalars are weak: they
take the dtype of the array they meet, a float meeting integers the default float).
The functions the standard defines for floating-point inputs only (``sin``, ``divide``,
``mean``: those array-api-strict refuses an integer array with "Only ... floating-point
dtypes are allowed") compute integer and bool operands in float (README): in the dtype of
the float operands they meet, or the default float dtype when none is a float, so the
reference is array-api-strict on the operands cast that way. Where the standard defines
a function for other dtypes only (``abs`` for numbers, ``logical_and`` for bools) and
array-api-strict refuses the others, gradkit documents NumPy's result (README), so NumPy
is the reference there. Never a raw library exception, never a result that differs.

The profile is derandomized (the same examples on every run and every machine) and small
enough for CI: a few seconds per backend.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

# the test extra's libraries: where one is missing (a GPU machine), this file skips
pytest.importorskip("hypothesis")
pytest.importorskip("array_api_strict")

import array_api_strict as xps  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import gradkit as gk  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

UNARY = """abs acos acosh asin asinh atan atanh bitwise_invert ceil cos cosh exp expm1 floor
isfinite isinf isnan log log1p log2 log10 logical_not negative positive reciprocal round sign
signbit sin sinh sqrt square tan tanh trunc""".split()
BINARY = """add atan2 bitwise_and bitwise_left_shift bitwise_or bitwise_right_shift bitwise_xor
copysign divide equal floor_divide greater greater_equal hypot less less_equal logaddexp
logical_and logical_or logical_xor maximum minimum multiply nextafter not_equal pow remainder
subtract""".split()
REDUCTIONS = """sum prod mean max min var std all any cumulative_sum argmax argmin
count_nonzero""".split()



def _float_only_in_strict(name: str) -> bool:
    """Whether array-api-strict refuses ``name`` an integer array as not floating-point."""
    try:
        getattr(xps, name)(*[xps.asarray([1, 2])] * (2 if name in BINARY else 1))
    except TypeError as exc:
        return "floating-point dtypes are allowed in" in str(exc)
    return False


FLOAT_ONLY = sorted(name for name in UNARY + BINARY + REDUCTIONS if _float_only_in_strict(name))

DTYPES = [np.dtype(name) for name in ("bool", "int8", "int16", "int32", "int64", "uint8",
                                      "uint16", "uint32", "uint64", "float32", "float64")]
SHAPES = [(), (0,), (1,), (3,), (2, 3), (1, 3), (2, 0), (2, 1, 3)]
SPECIAL_FLOATS = [0.0, -0.0, 0.5, -1.5, 1e30, -1e-30, np.inf, -np.inf, np.nan]


def _array(dtype: np.dtype, shape: tuple) -> st.SearchStrategy:
    if dtype.kind == "f":
        elements = st.one_of(st.sampled_from(SPECIAL_FLOATS),
                             hnp.from_dtype(dtype, allow_subnormal=False))
    else:
        elements = hnp.from_dtype(dtype)
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def arrays(draw, shape=None) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    return draw(_array(dtype, draw(st.sampled_from(SHAPES)) if shape is None else shape))


PYTHON_SCALARS = st.one_of(
    st.booleans(), st.integers(-300, 300), st.integers(-2 ** 70, 2 ** 70),
    st.sampled_from(SPECIAL_FLOATS), st.floats(), st.complex_numbers(max_magnitude=10))


@st.composite
def binary_operands(draw) -> tuple:
    first = draw(arrays())
    if draw(st.booleans()):  # a shape that broadcasts with the first (or, rarely, does not)
        shape = draw(st.sampled_from([first.shape, first.shape[1:], (1,) + first.shape,
                                      (4,), ()]))
        second = draw(arrays(shape=shape))
    else:
        second = draw(PYTHON_SCALARS)
    return (first, second) if draw(st.booleans()) else (second, first)


# -- the reference: gradkit's documented promotion, then array-api-strict ----------------

def _promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """The standard's promotion, and NumPy's where the standard defines none."""
    return np.promote_types(a, b)  # (the two agree wherever the standard defines one)


def _scalar_dtype(value, arrays_dtype: np.dtype) -> np.dtype:
    """A weak Python scalar's dtype next to arrays of ``arrays_dtype`` (README)."""
    if isinstance(value, complex):
        raise TypeError("no complex dtypes")
    if isinstance(value, bool):
        return arrays_dtype
    if isinstance(value, int):
        return arrays_dtype if arrays_dtype.kind in "iuf" else np.dtype("int64")
    return arrays_dtype if arrays_dtype.kind == "f" else gk.get_default_dtype()


def _reference_operands(operands: tuple, promote: bool = True) -> list[np.ndarray]:
    """The operands as NumPy arrays (of their promoted dtype unless ``promote`` is False:
    Python scalars only take their weak dtype), or TypeError/OverflowError where gradkit's
    rules give none (a complex scalar; an int that does not fit the dtype)."""
    array_dtypes = [o.dtype for o in operands if isinstance(o, np.ndarray)]
    common = array_dtypes[0]
    for d in array_dtypes[1:]:
        common = _promote(common, d)
    dtypes = [o.dtype if isinstance(o, np.ndarray) else _scalar_dtype(o, common)
              for o in operands]
    target = dtypes[0]
    for d in dtypes[1:]:
        target = _promote(target, d)
    hosts = [np.asarray(o, dtype=d) if not isinstance(o, np.ndarray) else o
             for o, d in zip(operands, dtypes)]
    return [h.astype(target) for h in hosts] if promote else hosts


def _outcome(call):
    """("value", NumPy array) or ("error", exception)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "value", call()
        except Exception as exc:  # the reference refusing is an outcome, not a failure
            return "error", exc


def _as_host(value) -> np.ndarray:
    if isinstance(value, gk.Tensor):
        return value.numpy()
    return np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else \
        np.from_dlpack(value)


def _gradkit_operand(value):
    return gk.asarray(value) if isinstance(value, np.ndarray) else value


def _check(name: str, ours, reference) -> None:
    kind, got = ours
    if kind == "error":
        assert isinstance(got, gk.GradkitError), \
            f"{name}: raw {type(got).__name__}: {got}"
        return
    ref_kind, want = reference
    assert ref_kind == "value", \
        f"{name}: gradkit returned {_as_host(got)!r} where array-api-strict refuses " \
        f"({type(want).__name__}: {want})"
    got, want = _as_host(got), _as_host(want)
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, reference {want.dtype}"
    assert got.shape == want.shape, f"{name}: shape {got.shape}, reference {want.shape}"
    if want.dtype.kind == "f":
        tol = 2e-6 if want.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True,
                                   err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


# array-api-strict's refusals of a dtype the standard does not define the function for,
# and of a negative shift: gradkit gives NumPy's result there (README), computed by the
# definition its docstring gives where that is not NumPy's function of the same name.
NUMPY_BEYOND_THE_STANDARD = ("dtypes are allowed in", "is only defined for x2 >= 0")
NUMPY_DEFINITIONS = {"square": lambda x: np.multiply(x, x),
                     "reciprocal": lambda x: np.divide(np.ones_like(x), x)}


def _in_float(operands: tuple) -> tuple:
    """gradkit's rule for a float-only function: integer and bool arrays cast to the
    promotion of the float arrays among the operands, or to the default float dtype
    when there is none (Python scalars stay: they are weak and take that dtype)."""
    floats = [o.dtype for o in operands if isinstance(o, np.ndarray) and o.dtype.kind == "f"]
    target = functools.reduce(np.promote_types, floats) if floats else gk.get_default_dtype()
    return tuple(o.astype(target) if isinstance(o, np.ndarray) and o.dtype.kind != "f" else o
                 for o in operands)


def _reference(name: str, operands: tuple, params: dict):
    if name in FLOAT_ONLY:
        operands = _in_float(operands)
    kind, result = _outcome(lambda: getattr(xps, name)(
        *map(xps.asarray, _reference_operands(operands)), **params))
    if kind == "error" and any(text in str(result) for text in NUMPY_BEYOND_THE_STANDARD):
        numpy_function = NUMPY_DEFINITIONS.get(name, getattr(np, name))
        return _outcome(lambda: numpy_function(*_reference_operands(operands, promote=False),
                                               **params))
    return kind, result


# -- the fuzz tests ------------------------------------------------------------------

def test_gradkit_marks_float_only_what_array_api_strict_refuses_integers_for():
    assert FLOAT_ONLY  # (the probe found them: a message change in strict would empty it)
    marked = sorted(name for name in UNARY + BINARY + REDUCTIONS
                    if getattr(gk, name).op.float_only)
    assert marked == FLOAT_ONLY


@FUZZ
@given(name=st.sampled_from(UNARY), x=arrays())
def test_unary_functions_give_a_gradkit_error_or_the_reference(backend, name, x):
    ours = _outcome(lambda: getattr(gk, name)(gk.asarray(x)))
    _check(name, ours, _reference(name, (x,), {}))


@FUZZ
@given(name=st.sampled_from(BINARY), operands=binary_operands())
def test_binary_functions_give_a_gradkit_error_or_the_reference(backend, name, operands):
    ours = _outcome(lambda: getattr(gk, name)(*[_gradkit_operand(o) for o in operands]))
    _check(name, ours, _reference(name, operands, {}))


@st.composite
def reduction_params(draw, name: str, ndim: int) -> dict:
    axes = st.integers(-ndim - 1, ndim)
    if name == "cumulative_sum":
        params = {"axis": draw(st.one_of(st.none(), axes)),
                  "include_initial": draw(st.booleans())}
    elif name in ("argmax", "argmin"):
        params = {"axis": draw(st.one_of(st.none(), axes)), "keepdims": draw(st.booleans())}
    else:
        params = {"axis": draw(st.one_of(st.none(), axes, st.tuples(axes))),
                  "keepdims": draw(st.booleans())}
    if name in ("var", "std"):
        params["correction"] = draw(st.sampled_from([0, 1]))
    return params


@FUZZ
@given(data=st.data(), name=st.sampled_from(REDUCTIONS), x=arrays())
def test_reductions_give_a_gradkit_error_or_the_reference(backend, data, name, x):
    params = data.draw(reduction_params(name, x.ndim), label="params")
    ours = _outcome(lambda: getattr(gk, name)(gk.asarray(x), **params))
    _check(name, ours, _reference(name, (x,), params))


@pytest.mark.parametrize("scalar", [1j, 2 ** 70, -1, 1000, float("nan")], ids=repr)
def test_a_python_scalar_gives_a_gradkit_error_or_the_reference(backend, scalar):
    x = np.array([1, 2, 3], dtype=np.uint8)
    ours = _outcome(lambda: gk.add(gk.asarray(x), scalar))
    _check("add", ours, _reference("add", (x, scalar), {}))
