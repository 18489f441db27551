"""Dedicated backward ops: each VJP below is one op per input (so it captures,
differentiates again and runs without a chain of small ops); the generated table in
test_ops.py gradchecks the backward ops themselves to second order."""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit import registry


@pytest.fixture
def ops_run(monkeypatch):
    """The names of the ops dispatched while the test runs, in order."""
    names = []
    dispatch = registry.dispatch

    def counting(op, args, params):
        names.append(op.name)
        return dispatch(op, args, params)
    monkeypatch.setattr(registry, "dispatch", counting)
    return names


def _backward_ops(ops_run, f, *xs):
    """The ops the backward pass of ``f(*xs).sum()`` dispatches, less sum's own
    (sum_backward) and the copies that give a leaf's .grad its own array (on
    some backends), and the gradients."""
    xs = [gk.tensor(np.asarray(x, dtype=np.float64), requires_grad=True) for x in xs]
    out = f(*xs).sum()
    del ops_run[:]
    out.backward()
    return [o for o in ops_run if o not in NOT_THE_VJP], [None if x.grad is None else x.grad.numpy().tolist() for x in xs]


NOT_THE_VJP = ("sum_backward", "copy")


def _same_as_eager(step, inputs):
    captured = gk.capture(step)
    for args in inputs:
        expected = step(*[gk.tensor(a) for a in args])
        got = captured(*[gk.tensor(a) for a in args])
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("name,expected", [
    ("maximum", ([0.0, 0.5, 1.0], [1.0, 0.5, 0.0])),
    ("minimum", ([1.0, 0.5, 0.0], [0.0, 0.5, 1.0]))])
def test_maximum_and_minimum_differentiate_with_one_op_per_operand(ops_run, name, expected):
    ops, grads = _backward_ops(ops_run, getattr(gk, name), [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert grads == list(expected)  # the tie splits evenly
    assert ops == [f"{name}_backward"] * 2


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 1), False)])
def test_sum_and_mean_differentiate_with_one_op(ops_run, axis, keepdims):
    x = gk.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    out = gk.sum(x, axis=axis, keepdims=keepdims)
    del ops_run[:]
    out.backward(gk.ones(out.shape, dtype="float64"))
    assert [o for o in ops_run if o != "copy"] == ["sum_backward"]
    assert x.grad.numpy().tolist() == [[1.0] * 3] * 2
    x.grad = None
    out = gk.mean(x, axis=axis, keepdims=keepdims)
    del ops_run[:]
    out.backward(gk.ones(out.shape, dtype="float64"))
    assert [o for o in ops_run if o != "copy"] == ["mean_backward"]
    count = 6 if axis in (None, (0, 1)) else (2, 3)[axis]
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 1 / count))


def test_where_differentiates_with_one_op_per_operand(ops_run):
    condition = gk.tensor([True, False, True])
    ops, grads = _backward_ops(ops_run, lambda x, y: gk.where(condition, x, y),
                               [1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert ops == ["where_backward"] * 2
    assert grads == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_where_gradient_is_zero_where_masked_even_for_an_infinite_upstream():
    g = gk.tensor([np.inf, np.nan, 2.0])
    condition = gk.tensor([False, False, True])
    assert gk.where_backward(g, condition, branch=1).numpy().tolist() == [0.0, 0.0, 2.0]
    with pytest.raises(gk.ArgumentError, match="where_backward: branch must be 1"):
        gk.where_backward(g, condition, branch=3)


@pytest.mark.parametrize("shapes", [((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4))])
def test_matmul_differentiates_with_one_op_per_operand(ops_run, shapes):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(shape) for shape in shapes)
    ops, grads = _backward_ops(ops_run, gk.matmul, a, b)
    assert [o for o in ops if o != "sum_to"] == ["matmul_transposed"] * 2
    g = np.ones(np.matmul(a, b).shape)  # the upstream gradient of .sum()
    np.testing.assert_allclose(grads[0], g @ np.swapaxes(b, -1, -2))
    expected_b = np.swapaxes(a, -1, -2) @ g
    if expected_b.ndim > b.ndim:  # b was broadcast over the batch
        expected_b = expected_b.sum(axis=0)
    np.testing.assert_allclose(grads[1], expected_b)


def test_matmul_transposed_names_what_does_not_align():
    x, y = gk.ones((2, 3)), gk.ones((2, 3))
    assert gk.matmul_transposed(x, y, transpose_x2=True).shape == (2, 2)
    with pytest.raises(gk.ShapeError, match=r"matmul_transposed: shapes \(2, 3\) and \(2, 3\) "
                                            r"do not align"):
        gk.matmul_transposed(x, y)
    with pytest.raises(gk.ShapeError, match="x1 must be at least 2-D"):
        gk.matmul_transposed(gk.ones(3), y)
    with pytest.raises(gk.ArgumentError, match="transpose_x2 must be True or False"):
        gk.matmul_transposed(x, y, transpose_x2=1)


def test_maximum_with_broadcasting_sums_the_shares():
    x = gk.tensor([[1.0, 2.0], [3.0, 2.0]], requires_grad=True)
    y = gk.tensor(2.0, requires_grad=True)
    gk.maximum(x, y).sum().backward()
    assert x.grad.numpy().tolist() == [[0.0, 0.5], [1.0, 0.5]]
    assert y.grad.item() == 2.0


def test_maximum_gradient_replays_equal_to_eager():
    w = gk.tensor([1.0, 2.0, 3.0], requires_grad=True)

    def step(x):
        w.grad = None
        (gk.maximum(w, x) * gk.minimum(w, x * 2.0)).sum().backward()
        return w.grad * 1.0
    _same_as_eager(step, [([0., 0., 5.],), ([0., 0., 5.],), ([9., 2., 1.5],), ([1., 7., 2.],)])


@pytest.mark.parametrize("f,name,expected", [
    (gk.abs, "abs_backward", [-1.0, 0.0, 1.0]),
    (lambda x: gk.clip(x, min=-0.5, max=0.5), "clip_backward", [0.0, 1.0, 0.0]),
    (lambda x: gk.clip(x, min=-0.5), "clip_backward", [0.0, 1.0, 1.0]),
    (lambda x: gk.clip(x, max=0.0), "clip_backward", [1.0, 1.0, 0.0])])
def test_abs_and_clip_differentiate_with_one_op(ops_run, f, name, expected):
    ops, grads = _backward_ops(ops_run, f, [-2.0, 0.0, 3.0])
    assert grads == [expected] and ops == [name]


def test_second_derivative_through_clip_and_abs_is_zero_but_defined():
    x = gk.tensor([-2.0, 0.3, 3.0], dtype="float64")
    hessian = gk.hessian(lambda t: (gk.clip(t, min=-1.0, max=1.0) * gk.abs(t)).sum())(x)
    assert hessian.numpy().tolist() == np.diag([0.0, 2.0, 0.0]).tolist()


@pytest.mark.parametrize("name", ["remainder", "copysign", "floor_divide"])
def test_gradients_of_division_and_sign_ops_replay_equal_to_eager(name):
    """remainder's and copysign's VJPs once computed masks on raw arrays, which gk.capture
    refused to record; floor_divide's zero gradient (zeros of a shape) always replayed."""
    w = gk.tensor([7.5, -2.0, 3.0], requires_grad=True)
    y = gk.tensor([2.0, 0.75, -1.25], requires_grad=True)
    op = getattr(gk, name)

    def step(x):
        w.grad = y.grad = None
        (op(w * x, y) * x).sum().backward()
        return gk.concatenate([w.grad, gk.zeros(3) if y.grad is None else y.grad])
    _same_as_eager(step, [([1., 1., 1.],), ([1., 1., 1.],), ([-1.5, 2.5, 0.5],),
                          ([3., -1., -2.],)])


@pytest.mark.parametrize("name,ops", [("remainder", ["remainder_backward"]),
                                      ("copysign", ["copysign_backward"])])
def test_remainder_and_copysign_differentiate_with_one_op(ops_run, name, ops):
    got, _ = _backward_ops(ops_run, getattr(gk, name), [7.0, -7.0], [3.0, -3.0])
    assert got == ops  # remainder's gradient in x1 is g itself


def test_prod_gradient_replays_equal_to_eager_with_and_without_zeros():
    """Recorded on slices without zeros, replayed on slices with one and two zeros."""
    w = gk.tensor([[1.5, 2.0, -3.0], [0.5, 4.0, 2.0]], requires_grad=True)

    def step(x):
        w.grad = None
        gk.prod(w * x, axis=1).sum().backward()
        return w.grad * 1.0
    _same_as_eager(step, [([1., 1., 1.],), ([1., 1., 1.],), ([0., 1., 1.],),
                          ([0., 0., 2.],), ([-1., 2., 0.5],)])


def test_prod_second_derivative_is_exact_with_two_zeros_in_a_slice():
    x = gk.tensor([0.0, 0.0, 3.0, 2.0], dtype="float64")
    hessian = gk.hessian(lambda t: gk.prod(t))(x).numpy()
    # d2/dx0 dx1 is the product of the rest (6); every other pair holds a zero
    np.testing.assert_array_equal(hessian, [[0, 6, 0, 0], [6, 0, 0, 0], [0] * 4, [0] * 4])
    gk.testing.gradcheck(lambda t: gk.prod(t, axis=1), gk.tensor(
        [[0.0, 0.0, 3.0], [0.0, 2.0, 0.5], [0.0, 0.0, 0.0]], dtype="float64"), order=2)


def test_prod_differentiates_with_one_backward_op(ops_run):
    ops, grads = _backward_ops(ops_run, lambda t: gk.prod(t, axis=1), [[2.0, 0.0, 3.0]])
    assert grads == [[[0.0, 6.0, 0.0]]] and ops == ["prod_others", "multiply"]


def _gradient_norm(loss_of):
    """The gradient of ``sum(d loss / d t ** 2)``: a second-order step (a gradient penalty)."""
    return gk.grad(lambda t: (gk.grad(loss_of)(t) ** 2).sum())


SECOND_ORDER = {
    "elu": lambda t: gk.elu(t, alpha=0.5).sum(),
    "bias_activation elu": lambda t: gk.bias_activation(
        t, gk.tensor([0.1, -0.2, 0.3], dtype=t.dtype), activation="elu").sum(),
    "cross_entropy": lambda t: gk.cross_entropy(t, gk.tensor([0, 2])) * t.sum(),
    "prod": lambda t: gk.prod(t, axis=1).sum(),
    "maximum": lambda t: gk.maximum(t, t * t).sum(),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_order_steps_replay_equal_to_eager(name):
    """elu's second derivative, bias_activation's and cross_entropy's backward VJPs once
    computed masks or one-hots on raw arrays, which gk.capture refused to record."""
    step = _gradient_norm(SECOND_ORDER[name])
    _same_as_eager(step, [([[0.5, -1.0, 2.0], [-0.3, 0.7, -2.5]],)] * 2 + [
        ([[-0.5, 1.0, -2.0], [0.3, -0.7, 1.5]],), ([[1.5, 0.0, -0.2], [2.0, -1.7, 0.4]],)])


def test_no_built_in_vjp_computes_values_from_raw_arrays():
    """A value computed from the inputs' raw arrays in a VJP is one gk.capture cannot
    replay: every built-in VJP computes with ops (constants of a shape only)."""
    import inspect
    offenders = []
    for name, entry in registry.OPS.items():
        vjp = getattr(entry, "vjp", None)
        if vjp is None or entry.family == "user":
            continue
        source = inspect.getsource(vjp)
        calls = source.count("ctx.constant(")
        if calls != source.count("from_input_values=False") or ".xp" in source and not calls:
            offenders.append(name)
    assert not offenders


@pytest.mark.parametrize("op", [gk.sum_backward, gk.mean_backward])
def test_reduction_backward_ops_name_a_bad_axis_or_gradient(op):
    g = gk.tensor(np.ones(2))
    name = op.op.name
    with pytest.raises(gk.ShapeError, match=rf"{name}: axis 2 is out of range .* operand"):
        op(g, shape=(3, 2), axis=2)
    with pytest.raises(gk.ShapeError, match=rf"{name}: axis \(0, 0\) names one axis twice"):
        op(g, shape=(3, 2), axis=(0, 0))
    with pytest.raises(gk.ShapeError, match=rf"{name}: g must have the shape of the "
                                            r"reduction's result, \(3,\)"):
        op(g, shape=(3, 2), axis=1)
    with pytest.raises(gk.ArgumentError, match=rf"{name}: axis must be None, an int"):
        op(g, shape=(3, 2), axis=0.5)
    assert op(g, shape=(3, 2), axis=-2).shape == (3, 2)
    assert op(gk.tensor(2.0), shape=(), axis=-1).shape == ()  # as NumPy reduces a 0-d array


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_sum_and_mean_of_a_0d_tensor_over_axis_0_or_minus_1_as_numpy(axis):
    x = gk.tensor(np.float32(3.0), requires_grad=True)
    for reduce in (gk.sum, gk.mean):
        y = reduce(x, axis=axis)
        y.backward()
        assert (y.shape, y.item(), x.grad.item()) == ((), 3.0, 1.0)
        x.grad = None
