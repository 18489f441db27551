"""Bad input gets an error naming the op, the argument, and each operand's backend, dtype, shape."""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk


def test_broadcast_mismatch_names_op_and_operands(backend):
    x, y = gk.ones((2, 3)), gk.ones((4,))
    with pytest.raises(gk.ShapeError) as info:
        x + y
    message = str(info.value)
    assert message.startswith("add:")
    assert f"{backend.name} float32 (2, 3)" in message and f"{backend.name} float32 (4,)" in message


def test_matmul_misalignment_message(backend):
    with pytest.raises(gk.ShapeError) as info:
        gk.ones((32, 64)) @ gk.ones((65, 10))
    assert str(info.value) == (
        f"matmul: shapes (32, 64) and (65, 10) do not align (inner 64 != 65); operands: "
        f"{backend.name} float32 (32, 64), {backend.name} float32 (65, 10)")


def test_matmul_of_a_scalar_says_to_use_star():
    with pytest.raises(gk.ShapeError, match=r"matmul: .*at least 1-D.*use \*"):
        gk.tensor(2.0) @ gk.ones((2,))


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(gk.DTypeError, match=r"tensor: only floating.*int64 \(3,\)"):
        gk.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(gk.DTypeError, match=r"requires_grad: .*int64"):
        gk.tensor([1, 2]).requires_grad_()


def test_unknown_dtype_is_named():
    with pytest.raises(gk.DTypeError, match=r"tensor: unknown dtype 'float33'"):
        gk.tensor([1.0], dtype="float33")
    with pytest.raises(gk.DTypeError, match=r"tensor: unsupported dtype 'complex64'"):
        gk.tensor([1.0], dtype="complex64")
    with pytest.raises(gk.DTypeError, match=r"astype: unknown dtype"):
        gk.ones(2).astype("nope")


def test_non_numeric_data_is_refused():
    with pytest.raises(gk.DTypeError, match="not numeric"):
        gk.tensor(["a", "b"])
    with pytest.raises(ValueError, match="tensor: cannot make a tensor"):
        gk.tensor([[1.0], [2.0, 3.0]])


def test_reshape_to_a_wrong_size_names_the_op(backend):
    with pytest.raises(gk.ShapeError, match=rf"reshape: .*{backend.name} float32 \(2, 3\)"):
        gk.ones((2, 3)).reshape(4, 2)


def test_unknown_keyword_names_the_op():
    with pytest.raises(TypeError, match=r"sum: unexpected argument 'axes'"):
        gk.sum(gk.ones(3), axes=0)


def test_linear_checks_its_operands():
    with pytest.raises(gk.ShapeError, match=r"linear: x's last axis must match.*\(4, 5\)"):
        gk.linear(gk.ones((4, 5)), gk.ones((3, 2)), gk.zeros(2))
    with pytest.raises(gk.ShapeError, match=r"linear: bias must have shape \(2,\)"):
        gk.linear(gk.ones((4, 3)), gk.ones((3, 2)), gk.zeros(3))


def test_a_failed_op_leaves_its_inputs_untouched():
    x = gk.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    before = x.numpy()
    with pytest.raises(gk.ShapeError):
        x + gk.ones((2, 2))
    np.testing.assert_array_equal(x.numpy(), before)
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 2.0, 2.0]])


def test_item_of_a_big_tensor():
    with pytest.raises(ValueError, match=r"item: only size-1.*\(2,\)"):
        gk.ones(2).item()


@pytest.mark.parametrize("value", [1j, 2 + 0j, np.complex64(1j), np.array([1j, 2j]),
                                   [1.0, 1j]], ids=repr)
def test_a_complex_operand_is_refused_not_lifted(backend, value):
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(gk.DTypeError, match=r"multiply: argument x2 is complex; gradkit has no "
                                             rf"complex dtypes.*x1: {backend.name} float32 \(2,\)"):
        x * value
    with pytest.raises(gk.DTypeError, match=r"^add: argument x1 is complex"):
        value + x
    with pytest.raises(gk.DTypeError, match=r"^multiply: argument x2 is complex"):
        gk.grad(lambda v: gk.abs(v * value).sum())(x)


def test_a_ragged_list_operand_names_the_op_and_argument(backend):
    with pytest.raises(gk.ShapeError, match=r"^add: argument x2 \(list\) is not a rectangular "
                                            r"array of numbers.*x1: \w+ float32 \(2,\)"):
        gk.tensor([1.0, 2.0]) + [[1], [2, 3]]


SHAPE_TAKERS = {
    "zeros": lambda shape: gk.zeros(shape), "ones": lambda shape: gk.ones(shape),
    "empty": lambda shape: gk.empty(shape), "full": lambda shape: gk.full(shape, 1.0),
    "reshape": lambda shape: gk.reshape(gk.zeros(6), shape),
    "broadcast_to": lambda shape: gk.broadcast_to(gk.zeros(()), shape),
    "random.normal": lambda shape: gk.random.default_rng(0).normal(size=shape),
    "random.integers": lambda shape: gk.random.default_rng(0).integers(0, 2, size=shape),
}


@pytest.mark.parametrize("name", sorted(SHAPE_TAKERS))
@pytest.mark.parametrize("bad", [(2.9, 1.99), ("3",), 2.9, (True, 2), (-2, 3), (2, None)],
                         ids=repr)
def test_a_shape_takes_integers_only(backend, name, bad):
    argument = "size" if name.startswith("random") else "shape"
    with pytest.raises(gk.ArgumentError, match=rf"^{name}: {argument} "):
        SHAPE_TAKERS[name](bad)


@pytest.mark.parametrize("name", sorted(SHAPE_TAKERS))
def test_a_shape_of_numpy_integers_is_a_shape(backend, name):
    assert SHAPE_TAKERS[name]((np.int32(2), np.int64(3))).shape == (2, 3)


def test_reshape_infers_one_size_only():
    assert gk.reshape(gk.zeros(6), (-1, 2)).shape == (3, 2)
    with pytest.raises(gk.ArgumentError, match=r"reshape: shape \(-1, -1\) has a negative size; "
                                               r"one entry may be -1 \(operand: x: \w+ float32"):
        gk.reshape(gk.zeros(6), (-1, -1))


@pytest.mark.parametrize("call", [
    lambda: gk.eye(2.0), lambda: gk.eye(2, 1.5), lambda: gk.linspace(0.0, 1.0, 3.0),
    lambda: gk.random.default_rng(0).permutation(-2),
    lambda: gk.random.default_rng(0).permutation(2.5)],
    ids=["eye n", "eye m", "linspace", "permutation negative", "permutation float"])
def test_sizes_take_integers_only(call):
    with pytest.raises(gk.ArgumentError, match=r"^(eye: n_(rows|cols)|linspace: num|"
                                               r"random.permutation: x) (must be an int|-2 has)"):
        call()


@pytest.mark.parametrize("value", [-1, 256, 2 ** 70], ids=repr)
def test_a_python_int_that_does_not_fit_the_tensors_dtype_names_op_and_argument(backend, value):
    x = gk.asarray(np.array([1, 2], dtype=np.uint8))
    with pytest.raises(gk.DTypeError, match=rf"^add: argument x2 \({value}\) does not fit uint8.*"
                                            rf"x1: {backend.name} uint8 \(2,\)"):
        x + value
