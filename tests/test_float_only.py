"""Functions of real numbers given integer and bool tensors (README, "What is not covered,
and where gradkit differs"): the functions the Array API standard defines for
floating-point inputs only (``exp``, ``sqrt``, ``divide``, ``mean``...) compute their
integer and bool operands in the dtype of the float operands they meet, or in the
default float dtype (float32 unless set) when none is a float, as PyTorch does; never in
NumPy's float16 (``exp`` of int8 ``12`` was inf) or float64. The rule is the op
registry's (``float_only=True``), applied in dispatch; float operands are never cast.

tests/test_api_fuzz.py checks every float-only function of the standard on drawn dtypes
against array-api-strict on the operands cast this way.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

INTEGER_AND_BOOL = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                    "bool"]


def t(values, dtype) -> gk.Tensor:
    return gk.asarray(np.array(values, dtype=dtype))


def test_exp_of_int8_is_float32_and_finite(backend):
    out = gk.exp(t([12, -3, 0], "int8"))
    assert out.dtype == np.float32  # NumPy's choice is float16, where exp(12) is inf
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy(), np.exp(np.float32([12, -3, 0])), rtol=1e-6)


def test_sqrt_of_uint8_and_mean_of_bool(backend):
    root = gk.sqrt(t([4, 9, 255], "uint8"))
    assert root.dtype == np.float32
    np.testing.assert_allclose(root.numpy(), [2.0, 3.0, np.sqrt(np.float32(255))], rtol=1e-6)
    mean = gk.mean(t([True, False, True], "bool"))
    assert mean.dtype == np.float32 and mean.item() == pytest.approx(2 / 3)


UNARY = {"exp": np.exp, "expm1": np.expm1, "log1p": np.log1p, "sqrt": np.sqrt, "sin": np.sin,
         "cos": np.cos, "atan": np.arctan, "tanh": np.tanh, "reciprocal": np.reciprocal,
         "mean": np.mean, "var": np.var, "std": np.std,
         "logsumexp": lambda a: np.log(np.sum(np.exp(a))),
         "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
         "softmax": lambda a: np.exp(a) / np.sum(np.exp(a)),
         "linalg.vector_norm": np.linalg.norm}


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # reciprocal(0)
@pytest.mark.parametrize("dtype", INTEGER_AND_BOOL)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_float_only_functions_compute_integers_and_bools_in_the_default_float(
        backend, name, dtype):
    values = np.array([1, 0, 1, 1], dtype=bool) if dtype == "bool" else \
        np.array([0, 1, 2, 7], dtype=dtype)
    function = gk.linalg.vector_norm if name.startswith("linalg.") else getattr(gk, name)
    out = function(gk.asarray(values))
    assert out.dtype == np.float32, (name, dtype)
    np.testing.assert_allclose(out.numpy(), UNARY[name](values.astype(np.float32)),
                               rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_numpy_integer_array_is_computed_in_float_too(backend):
    assert gk.exp(np.array([1, 2], dtype=np.int16)).dtype == np.float32
    var = gk.var(np.array([1, 2, 3, 4]))  # a composite: its input is cast before it runs
    assert var.dtype == np.float32 and var.item() == pytest.approx(1.25)


def test_true_division_of_integers_is_the_default_float(backend):
    i = t([1, 2, 3], "int64")
    for out in (i / i, 1 / i, i / 2, gk.divide(t([7], "int8"), t([2], "int8"))):
        assert out.dtype == np.float32  # NumPy's is float64
    assert (i / 2).tolist() == [0.5, 1.0, 1.5]
    assert (i // 2).dtype == np.int64  # floor division stays an integer function


def test_the_default_float_dtype_is_the_one_set(backend):
    gk.set_default_dtype("float64")
    try:
        assert gk.exp(t([1], "int8")).dtype == np.float64
        assert gk.mean(t([True, False], "bool")).dtype == np.float64
    finally:
        gk.set_default_dtype("float32")


def test_integers_meeting_floats_take_the_floats_dtype(backend):
    x32, x64 = t([1.0, 2.0], "float32"), t([1.0, 2.0], "float64")
    i64 = t([3, 4], "int64")
    assert gk.atan2(x32, i64).dtype == np.float32  # NumPy's is float64
    assert gk.hypot(t([3], "int8"), x64[:1]).dtype == np.float64
    assert (t([1.0], "float16") / t([3], "int8")).dtype == np.float16
    np.testing.assert_allclose(gk.hypot(x32, i64).numpy(), np.hypot([1, 2], [3, 4]), rtol=1e-6)


def test_python_numbers_meet_the_float_dtype_not_the_integer_one(backend):
    # the integer tensor is computed in float32, so 300 and -1 need not fit int8 / uint8
    np.testing.assert_allclose(gk.atan2(t([1], "int8"), 300).numpy(),
                               np.arctan2(np.float32(1), np.float32(300)), rtol=1e-6)
    assert gk.divide(t([3], "uint8"), -1).tolist() == [-3.0]
    assert gk.exp(2).dtype == np.float32 and gk.exp(True).item() == pytest.approx(np.e)
    assert gk.add(t([1], "uint8"), 1).dtype == np.uint8  # add is no float-only function


def test_a_float_operand_beside_an_integer_one_still_gets_its_gradient(backend):
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    i = t([3, 4], "int64")
    out = gk.hypot(x, i) + gk.atan2(i, x) + x / i + gk.logaddexp(x, i)
    assert out.dtype == np.float32  # (NumPy's promotion of float32 and int64 is float64)
    out.sum().backward()
    xs, ys = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    expected = xs / np.hypot(xs, ys) - ys / (xs ** 2 + ys ** 2) + 1 / ys + \
        np.exp(xs) / (np.exp(xs) + np.exp(ys))
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5)
    assert i.grad is None and not i.requires_grad
    with pytest.raises(gk.DTypeError):
        i.requires_grad = True  # an integer tensor never gets a gradient
    second = gk.grad(lambda v: gk.grad(lambda w: (w / i).sum())(v).sum())(x)
    np.testing.assert_allclose(second.numpy(), [0.0, 0.0])  # d/dx (1 / i) is 0


def test_float_operands_are_never_cast(backend, monkeypatch):
    def refuse(op, tensors):
        raise AssertionError(f"{op.name} cast {[str(getattr(v, 'dtype', v)) for v in tensors]}")
    monkeypatch.setattr(gk.registry, "float_operands", refuse)
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    y = t([3.0, 4.0], "float64")
    outputs = [gk.exp(x), x / x, x / 2.0, 1 / x, gk.atan2(x, y), gk.mean(x), gk.var(x),
               gk.std(y), gk.sqrt(t([4.0], "float16")), gk.linalg.inv(t([[2.0]], "float32")),
               gk.linalg.vector_norm(x)]
    sum(gk.sum(out.astype("float32")) for out in outputs).backward()
    assert x.grad.dtype == np.float32


def test_capture_replays_the_cast_with_the_new_values(backend):
    step = gk.capture(lambda v: gk.sqrt(v) + gk.mean(v))
    for values in ([1, 4], [9, 16], [4, 0], [25, 1]):
        out = step(t(values, "uint8"))
        expected = np.sqrt(np.float32(values)) + np.mean(np.float32(values))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_linalg_functions_of_floats_take_integer_matrices(backend):
    a = t([[2, 1], [1, 3]], "int32")
    assert gk.linalg.inv(a).dtype == np.float32
    assert gk.linalg.det(a).item() == pytest.approx(5.0)
    assert gk.linalg.solve(a, t([3, 4], "int64")).dtype == np.float32
    assert gk.linalg.cholesky(a).dtype == np.float32
    assert gk.linalg.matrix_norm(a, ord=1).item() == pytest.approx(4.0)
    power = gk.linalg.matrix_power(a, gk.asarray(2))  # n, an integer tensor, stays one
    assert power.dtype == np.float32 and power.tolist() == [[5.0, 5.0], [5.0, 10.0]]


def test_the_rule_is_an_op_attribute_that_a_replacement_keeps(backend):
    exp = gk.registry.get_op("exp")
    assert exp.float_only and gk.registry.get_op("linalg.inv").float_only
    assert gk.registry.get_op("var").float_only and not gk.registry.get_op("add").float_only
    saved = (exp.forward, exp.vjp)
    gk.register_op("exp", lambda xp, x: xp.exp(x), lambda ctx, g: (g * ctx.out,),
                   samples=exp.samples, replace=True)
    try:
        assert exp.float_only and gk.exp(t([1], "int8")).dtype == np.float32
    finally:  # the built-in definition back, through the same public path
        gk.register_op("exp", saved[0], saved[1], samples=exp.samples, replace=True)
    halve = gk.register_op("float_only_test_halve", lambda xp, x: x * 0.5,
                           lambda ctx, g: (g * 0.5,), float_only=True)
    try:
        assert halve(t([3], "int16")).tolist() == [1.5]
    finally:
        gk.unregister_op("float_only_test_halve")


def test_number_and_logical_functions_keep_numpys_choices(backend):
    """Documented choices: functions the standard defines for numbers take bools as
    NumPy does (exact, nothing is rounded: a sum counts, abs and max stay bool, negation
    is an error), and logical functions take numbers as truth values."""
    b = t([True, False, True], "bool")
    assert gk.sum(b).dtype == np.int64 and gk.sum(b).item() == 2
    assert gk.abs(b).dtype == np.bool_ and gk.max(b).item() is True
    with pytest.raises(gk.DTypeError):
        gk.negative(b)
    both = gk.logical_and(t([0, 2, 3], "int8"), t([1.0, 1.0, 0.0], "float32"))
    assert both.dtype == np.bool_ and both.tolist() == [False, True, False]
    assert gk.logical_not(t([0, 5], "uint8")).tolist() == [True, False]
