"""Creating tensors, dtypes, conversion and the operators."""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk


def test_python_floats_default_to_float32_and_numpy_keeps_its_dtype():
    assert gk.tensor([1.0, 2.0]).dtype == gk.float32
    assert gk.tensor(1.5).dtype == np.float32
    assert gk.tensor(np.array([1.0, 2.0])).dtype == gk.float64
    assert gk.tensor(np.float64(2.0)).dtype == gk.float64
    assert gk.tensor([1, 2]).dtype == gk.int64
    assert gk.tensor([True]).dtype == gk.bool_
    assert gk.tensor([1, 2], dtype=gk.float64).dtype == np.float64
    assert gk.tensor([1, 2], dtype="float32").dtype == np.float32


def test_set_default_dtype():
    try:
        gk.set_default_dtype("float64")
        assert gk.tensor([1.0]).dtype == np.float64
        assert gk.zeros(2).dtype == np.float64
    finally:
        gk.set_default_dtype("float32")
    with pytest.raises(gk.DTypeError, match="float dtype"):
        gk.set_default_dtype("int32")


def test_tensor_copies_its_data():
    data = np.array([1.0, 2.0])
    x = gk.tensor(data)
    data[0] = 99.0
    assert x.numpy()[0] == 1.0
    x.numpy()[1] = 42.0  # numpy() is a copy too
    assert x.numpy()[1] == 2.0


def test_attributes():
    x = gk.tensor(np.zeros((2, 3, 4)), requires_grad=True)
    assert (x.shape, x.ndim, x.size, x.requires_grad, x.grad) == ((2, 3, 4), 3, 24, True, None)
    assert x.is_leaf and not (x * 2).is_leaf
    assert gk.tensor(3.5).item() == 3.5
    assert float(gk.tensor([2.0])) == 2.0
    assert len(x) == 2 and [t.shape for t in x] == [(3, 4), (3, 4)]
    assert gk.tensor([[1, 2]]).tolist() == [[1, 2]]
    assert "requires_grad=True" in repr(x) and "grad_fn=multiply" in repr(x * 2)


def test_scalars_on_either_side_keep_the_tensor_dtype():
    x = gk.tensor(np.array([1.0, 2.0], dtype=np.float32))
    for y in (x + 1, 1 + x, x - 1.5, 2.0 - x, x * 2, 2 * x, x / 2, 2 / x, x ** 2, 2 ** x, -x):
        assert y.dtype == np.float32
    np.testing.assert_allclose((2 - x).numpy(), [1.0, 0.0])
    np.testing.assert_allclose((2 / x).numpy(), [2.0, 1.0])
    np.testing.assert_allclose((2 ** x).numpy(), [2.0, 4.0])
    i = gk.tensor([1, 2])
    assert (i + 1).dtype == np.int64 and (i * 0.5).dtype.kind == "f"  # NumPy promotion


def test_numpy_arrays_mix_with_tensors():
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], dtype=np.float32) * x
    assert isinstance(y, gk.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_mixed_precision_gradients_keep_input_dtypes():
    a = gk.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    b = gk.tensor(np.array([3.0, 4.0], dtype=np.float64), requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_comparisons_give_bool_tensors_without_gradient():
    x = gk.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for mask in (x > 2, x >= 2, x < 2, x <= 2, x == 2, x != 2):
        assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])


def test_methods_match_functions():
    x = gk.tensor(np.arange(6.0).reshape(2, 3) + 1)
    pairs = [(x.sum(axis=0), gk.sum(x, axis=0)), (x.mean(1), gk.mean(x, axis=1)),
             (x.max(), gk.max(x)), (x.T, gk.transpose(x)), (x.reshape(3, 2), gk.reshape(x, (3, 2))),
             (x.exp(), gk.exp(x)), (x.log(), gk.log(x)), (x.sqrt(), gk.sqrt(x)),
             (x.permute(1, 0), gk.permute(x, 1, 0)), (x.var(), gk.var(x)),
             (x.logsumexp(1), gk.logsumexp(x, axis=1)), (x.flatten(), x.reshape(-1)),
             (x.clip(2, 4), gk.clip(x, 2, 4)), (abs(-x), gk.abs(x))]
    for a, b in pairs:
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_max_ties_split_the_gradient_evenly():
    x = gk.tensor([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    y = gk.tensor([1.0, 2.0], requires_grad=True)
    gk.maximum(y, 2.0).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [0.0, 0.5])


def test_indexing_basic_and_advanced_gradients():
    x = gk.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    np.testing.assert_array_equal(x[1].numpy(), [4, 5, 6, 7])
    np.testing.assert_array_equal(x[:, 1:3].numpy(), np.arange(12.0).reshape(3, 4)[:, 1:3])
    picked = x[[0, 0, 2], [1, 1, 3]]
    picked.sum().backward()
    expected = np.zeros((3, 4))
    expected[0, 1] = 2
    expected[2, 3] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    x.zero_grad()
    x[x > 5.0].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (np.arange(12.0).reshape(3, 4) > 5) * 1.0)
    x.zero_grad()
    x[gk.tensor([2, 2])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[2], [2, 2, 2, 2])


def test_split_concatenate_stack_round_trip():
    x = gk.tensor(np.arange(8.0).reshape(4, 2), requires_grad=True)
    parts = gk.split(x, 2)
    assert [p.shape for p in parts] == [(2, 2), (2, 2)]
    joined = gk.concatenate(parts, axis=0)
    stacked = gk.stack(parts, axis=1)
    assert stacked.shape == (2, 2, 2)
    (joined.sum() + (stacked * 2).sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((4, 2), 3.0))
    assert [p.shape for p in gk.split(x, [1, 3])] == [(1, 2), (2, 2), (1, 2)]
    with pytest.raises(gk.ShapeError, match="split: .*3 equal sections"):
        gk.split(x, 3)


def test_creation_functions():
    assert gk.zeros((2, 3)).shape == (2, 3)
    assert gk.ones(3, dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(gk.full((2,), 5.0).numpy(), [5.0, 5.0])
    np.testing.assert_array_equal(gk.arange(4).numpy(), [0, 1, 2, 3])
    np.testing.assert_allclose(gk.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    np.testing.assert_array_equal(gk.eye(3).numpy(), np.eye(3))
    w = gk.zeros((2,), requires_grad=True)
    assert w.requires_grad and w.is_leaf
    like = gk.ones_like(gk.tensor(np.zeros((2, 2), dtype=np.float64)))
    assert like.dtype == np.float64 and like.shape == (2, 2)


def test_bool_of_a_tensor():
    assert bool(gk.tensor([1.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(gk.ones(2))


def test_vjps_see_default_params():
    """A VJP reads ctx.params complete, defaults included (clip with only max, sum without axis)."""
    x = gk.tensor([0.5, 2.0], requires_grad=True)
    np.testing.assert_array_equal(gk.grad(lambda t: gk.clip(t, max=1.0).sum())(x).numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(gk.grad(lambda t: gk.clip(t, 1.0).sum())(x).numpy(), [0.0, 1.0])


def test_public_namespace_holds_ops_not_module_internals():
    for leaked in ("FAMILY", "np", "add_vjp", "reduction_samples"):
        assert not hasattr(gk, leaked), leaked
    for name in gk.registry.OPS:
        assert callable(getattr(gk, name)), name


def test_implicit_host_conversion_of_a_tensor_that_requires_grad_is_refused(backend):
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    for convert in (np.asarray, np.array, lambda t: np.asarray(t, copy=False),
                    lambda t: np.add(t.detach(), np.asarray(t * 2))):
        with pytest.raises(gk.HostConversionError, match=r"requires a gradient.*x\.detach\(\)") as info:
            convert(x)
        assert isinstance(info.value, TypeError) and isinstance(info.value, gk.GradkitError)
    if backend.host_conversion_allowed:
        assert np.asarray(x.detach()).tolist() == [1.0, 2.0] == x.numpy().tolist()


def test_a_list_holding_a_tensor_that_requires_grad_is_not_copied_silently(backend):
    a = gk.tensor(1.0, requires_grad=True)
    for convert in (lambda: gk.tensor([a, a]), lambda: gk.ones(2) + [a, a]):
        with pytest.raises(gk.HostConversionError, match=r"requires a gradient.*x\.detach\(\)"):
            convert()
    assert gk.asarray([a, a]).requires_grad  # stacked: the gradient reaches each element
    assert gk.tensor([a.detach(), a.detach()]).tolist() == [1.0, 1.0]


def test_a_move_between_backends_of_one_array_type_changes_the_backend():
    """numpy and numba both hold NumPy arrays: the tensor still says where it now lives,
    and the gradient comes back to the original backend."""
    if gk.backends.available()["numba"] is not None:
        pytest.skip("numba is not installed")
    x = gk.tensor([1.0, 2.0], requires_grad=True, backend="numpy")
    y = x.to("numba")
    assert y.backend == "numba" and (y * 2).backend == "numba"
    (y * 3).to("numpy").sum().backward()
    assert x.grad.backend == "numpy" and x.grad.tolist() == [3.0, 3.0]
