"""Activations and losses: exact values, stability, gradients and error messages.

The op table (tests/test_ops.py) gradchecks every op on its samples; these tests
pin the values against NumPy formulas and the cs231n worked examples, and check
the cases samples avoid on purpose (huge logits, bad labels).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import gradkit as gk
import gradkit.nn.functional as F

X = np.array([[-3.0, -0.5, 0.0, 0.7], [2.0, -1.2, 4.0, -0.1]])


def t64(values, requires_grad=False):
    return gk.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def grad_of(f, x):
    """d sum(f(x)) / dx as a NumPy array."""
    return gk.grad(lambda t: f(t).sum())(x).numpy()


# -- pointwise activations: values and derivatives ---------------------------------------

def test_sigmoid_values_and_gradient():
    x = t64(X)
    s = np_sigmoid(X)
    np.testing.assert_allclose(gk.sigmoid(x).numpy(), s, rtol=1e-14)
    np.testing.assert_allclose(grad_of(gk.sigmoid, x), s * (1 - s), rtol=1e-13)
    assert gk.sigmoid(t64(0.0)).item() == 0.5


def test_tanh_values_and_gradient():
    x = t64(X)
    np.testing.assert_allclose(gk.tanh(x).numpy(), np.tanh(X), rtol=1e-14)
    np.testing.assert_allclose(grad_of(gk.tanh, x), 1 - np.tanh(X) ** 2, rtol=1e-13)


def test_relu_values_and_gradient():
    x = t64(X)
    np.testing.assert_array_equal(gk.relu(x).numpy(), np.maximum(X, 0))
    np.testing.assert_array_equal(grad_of(gk.relu, x), (X > 0).astype(float))
    assert grad_of(gk.relu, t64([0.0]))[0] == 0.0  # the subgradient at the kink is 0


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu_values_and_gradient(slope):
    x = t64(X)
    out = gk.leaky_relu(x, slope=slope) if slope != 0.01 else gk.leaky_relu(x)
    np.testing.assert_allclose(out.numpy(), np.where(X > 0, X, slope * X), rtol=1e-15)
    g = grad_of(lambda t: gk.leaky_relu(t, slope=slope), x)
    np.testing.assert_allclose(g, np.where(X > 0, 1.0, slope), rtol=1e-15)


def test_leaky_relu_default_slope_reaches_the_vjp():
    g = grad_of(gk.leaky_relu, t64([-2.0, 3.0]))
    np.testing.assert_allclose(g, [0.01, 1.0], rtol=1e-15)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_values_and_gradient(alpha):
    x = t64(X)
    expected = np.where(X > 0, X, alpha * (np.exp(X) - 1))
    np.testing.assert_allclose(gk.elu(x, alpha=alpha).numpy(), expected, rtol=1e-13, atol=1e-16)
    g = grad_of(lambda t: gk.elu(t, alpha=alpha), x)
    np.testing.assert_allclose(g, np.where(X > 0, 1.0, alpha * np.exp(X)), rtol=1e-13)


def test_softplus_values_and_gradient():
    x = t64(X)
    np.testing.assert_allclose(gk.softplus(x).numpy(), np.log1p(np.exp(X)), rtol=1e-14)
    np.testing.assert_allclose(grad_of(gk.softplus, x), np_sigmoid(X), rtol=1e-13)


def test_gelu_is_the_tanh_approximation():
    x = t64(X)
    c = math.sqrt(2 / math.pi)
    expected = 0.5 * X * (1 + np.tanh(c * (X + 0.044715 * X ** 3)))
    np.testing.assert_allclose(gk.gelu(x).numpy(), expected, rtol=1e-14, atol=1e-16)
    exact = np.array([[0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in row] for row in X])
    np.testing.assert_allclose(gk.gelu(x).numpy(), exact, atol=1e-3)
    inner = c * (X + 0.044715 * X ** 3)
    derivative = (0.5 * (1 + np.tanh(inner))
                  + 0.5 * X * (1 - np.tanh(inner) ** 2) * c * (1 + 3 * 0.044715 * X ** 2))
    np.testing.assert_allclose(grad_of(gk.gelu, x), derivative, rtol=1e-12, atol=1e-15)


def test_second_derivatives_by_hand():
    xs = np.array([-2.0, -0.3, 0.4, 1.7])
    s, th = np_sigmoid(xs), np.tanh(xs)
    cases = [(gk.sigmoid, s * (1 - s) * (1 - 2 * s)),
             (gk.tanh, -2 * th * (1 - th ** 2)),
             (gk.softplus, s * (1 - s)),
             (gk.elu, np.where(xs > 0, 0.0, np.exp(xs))),
             (gk.relu, np.zeros(4)),
             (gk.leaky_relu, np.zeros(4))]
    for f, expected in cases:
        second = gk.grad(lambda t: gk.grad(lambda u: f(u).sum())(t).sum())(t64(xs))
        np.testing.assert_allclose(second.numpy(), expected, rtol=1e-12, atol=1e-15,
                                   err_msg=f.__name__)


def test_vjps_run_through_the_registered_backward_ops():
    for f, name in [(gk.relu, "relu_backward"), (gk.leaky_relu, "leaky_relu_backward"),
                    (gk.elu, "elu_backward"), (gk.sigmoid, "sigmoid_backward"),
                    (gk.tanh, "tanh_backward")]:
        x = t64([-1.0, 2.0], requires_grad=True)
        f(x).sum().backward(create_graph=True)
        assert x.grad.node is not None and x.grad.node.op.name == name
        entry = gk.registry.get_op(name)
        assert entry.family == "activation" and entry.differentiable


def test_backward_ops_direct_values():
    g, x = t64([2.0, 3.0, 4.0]), t64([-1.0, 0.0, 5.0])
    np.testing.assert_array_equal(gk.relu_backward(g, x).numpy(), [0.0, 0.0, 4.0])
    np.testing.assert_allclose(gk.leaky_relu_backward(g, x, slope=0.1).numpy(),
                               [0.2, 0.3, 4.0], rtol=1e-15)
    np.testing.assert_allclose(gk.elu_backward(g, x, alpha=2.0).numpy(),
                               [2.0 * 2.0 * np.exp(-1.0), 3.0 * 2.0, 4.0], rtol=1e-15)
    y = t64([0.25, 0.5, 0.9])
    np.testing.assert_allclose(gk.sigmoid_backward(g, y).numpy(),
                               [2 * 0.25 * 0.75, 3 * 0.25, 4 * 0.9 * 0.1], rtol=1e-14)
    np.testing.assert_allclose(gk.tanh_backward(g, y).numpy(),
                               [2 * (1 - 0.0625), 3 * 0.75, 4 * (1 - 0.81)], rtol=1e-14)


# -- stability ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_softplus_stable_for_huge_inputs(dtype):
    values = [-1000.0, -50.0, 0.0, 50.0, 1000.0]
    x = gk.tensor(values, dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            s = gk.sigmoid(x)
            sp = gk.softplus(x)
            (s.sum() + sp.sum()).backward()
    assert s.dtype == np.dtype(dtype) and sp.dtype == np.dtype(dtype)
    np.testing.assert_allclose(s.numpy(), [0.0, np_sigmoid(-50.0), 0.5, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(sp.numpy(), [0.0, np.log1p(np.exp(-50.0)), math.log(2), 50.0,
                                            1000.0], rtol=1e-6)
    grad = x.grad.numpy()
    assert np.all(np.isfinite(grad))
    # d/dx (sigmoid + softplus) = s(1 - s) + s
    tiny = np_sigmoid(-50.0)
    np.testing.assert_allclose(grad, [0.0, tiny * (1 - tiny) + tiny, 0.75, 1.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_and_log_softmax_stable_for_huge_logits(dtype):
    logits = np.array([[1000.0, 0.0, -1000.0], [5000.0, 5000.0, 4999.0]])
    x = gk.tensor(logits, dtype=dtype, requires_grad=True)
    with np.errstate(all="raise", under="ignore"):
        p = gk.softmax(x)
        lp = gk.log_softmax(x)
    expected_lp = logits - logits.max(1, keepdims=True)
    expected_lp -= np.log(np.exp(expected_lp).sum(1, keepdims=True))
    np.testing.assert_allclose(lp.numpy(), expected_lp, rtol=1e-6)
    np.testing.assert_allclose(p.numpy(), np.exp(expected_lp), rtol=1e-6, atol=1e-30)
    cot = np.array([[1.0, -2.0, 0.5], [0.3, 0.0, -1.0]])
    _, vjp_fn = gk.vjp(gk.softmax, x)
    probs = np.exp(expected_lp)
    np.testing.assert_allclose(vjp_fn(cot)[0].numpy(),
                               probs * (cot - (cot * probs).sum(1, keepdims=True)),
                               rtol=1e-5, atol=1e-30)
    _, vjp_fn = gk.vjp(gk.log_softmax, x)
    np.testing.assert_allclose(vjp_fn(cot)[0].numpy(),
                               cot - probs * cot.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    labels = gk.tensor([2, 1])
    x = gk.tensor(logits, dtype=dtype, requires_grad=True)
    loss = gk.cross_entropy(x, labels)
    assert loss.dtype == np.dtype(dtype) and loss.shape == ()
    np.testing.assert_allclose(loss.item(), (2e4 + math.log(2)) / 2, rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0.0, -0.5], [0.0, -0.25, 0.25]],
                               atol=1e-7)


# -- softmax family: values -----------------------------------------------------------------

def test_softmax_cs231n_cat_example():
    # cs231n lecture: cat scores 3.2, 5.1, -1.7 -> probabilities 0.13, 0.87, 0.00, loss 2.04
    scores = t64([[3.2, 5.1, -1.7]])
    np.testing.assert_allclose(gk.softmax(scores).numpy(), [[0.13, 0.87, 0.0]], atol=0.005)
    assert round(gk.cross_entropy(scores, gk.tensor([0])).item(), 2) == 2.04


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_log_softmax_axis(axis):
    x = np.random.default_rng(0).normal(size=(3, 4)) * 3
    p = gk.softmax(t64(x), axis=axis).numpy()
    np.testing.assert_allclose(p, np_softmax(x, axis=axis), rtol=1e-13)
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-14)
    np.testing.assert_allclose(gk.log_softmax(t64(x), axis=axis).numpy(),
                               np.log(np_softmax(x, axis=axis)), rtol=1e-12)


def test_softmax_default_axis_reaches_the_vjp():
    x = np.array([[0.1, 0.7, -0.4], [1.0, 0.0, 2.0]])
    cot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    _, vjp_fn = gk.vjp(gk.softmax, t64(x))
    p = np_softmax(x)
    np.testing.assert_allclose(vjp_fn(cot)[0].numpy(),
                               p * (cot - (cot * p).sum(-1, keepdims=True)), rtol=1e-13)


def test_tensor_methods_use_the_activation_ops():
    x = t64(X)
    np.testing.assert_allclose(x.sigmoid().numpy(), np_sigmoid(X), rtol=1e-14)
    np.testing.assert_allclose(x.softmax(axis=0).numpy(), np_softmax(X, axis=0), rtol=1e-13)
    np.testing.assert_allclose(x.log_softmax().numpy(), np.log(np_softmax(X)), rtol=1e-12)
    np.testing.assert_array_equal(x.relu().numpy(), np.maximum(X, 0))


# -- maxout -----------------------------------------------------------------------------------

def test_maxout_shape_values_and_gradient():
    x = t64([[1.0, 5.0, 3.0, 2.0, -1.0, -4.0], [0.0, 1.0, 2.0, 9.0, 8.0, 7.0]],
            requires_grad=True)
    out = gk.maxout(x, pieces=3)
    assert out.shape == (2, 2)
    np.testing.assert_array_equal(out.numpy(), [[5.0, 2.0], [2.0, 9.0]])
    assert gk.maxout(x, pieces=2).shape == (2, 3)
    assert gk.maxout(gk.zeros((4, 2, 8)), pieces=4).shape == (4, 2, 2)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0, 1, 0, 0], [0, 0, 1, 1, 0, 0]])


def test_maxout_rejects_indivisible_features():
    with pytest.raises(gk.ShapeError) as info:
        gk.maxout(gk.zeros((3, 5)), pieces=2)
    message = str(info.value)
    assert "maxout" in message and "x" in message and "pieces=2" in message
    assert "float32 (3, 5)" in message
    with pytest.raises(ValueError, match="maxout: pieces"):
        gk.maxout(gk.zeros((3, 4)), pieces=0)


# -- cross-entropy -----------------------------------------------------------------------------

def test_cross_entropy_equals_mean_negative_log_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2])
    loss = gk.cross_entropy(t64(logits), gk.tensor(labels))
    picked = gk.log_softmax(t64(logits))[np.arange(5), labels]
    np.testing.assert_allclose(loss.item(), -picked.mean().item(), rtol=1e-14)
    np.testing.assert_allclose(loss.item(),
                               -np.mean(np.log(np_softmax(logits))[np.arange(5), labels]),
                               rtol=1e-13)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 4))
    labels = np.array([2, 0, 3])
    x = t64(logits, requires_grad=True)
    gk.cross_entropy(x, gk.tensor(labels)).backward()
    expected = np_softmax(logits)
    expected[np.arange(3), labels] -= 1
    np.testing.assert_allclose(x.grad.numpy(), expected / 3, rtol=1e-13)


def test_cross_entropy_second_order_matches_composite():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 4))
    labels = gk.tensor([1, 0, 2])

    def composite(t):
        return -(gk.log_softmax(t)[np.arange(3), labels.numpy()]).mean()

    def fused(t):
        return gk.cross_entropy(t, labels)

    h_fused = gk.hessian(fused)(t64(logits)).numpy()
    h_composite = gk.hessian(composite)(t64(logits)).numpy()
    np.testing.assert_allclose(h_fused, h_composite, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("label_dtype", ["int32", "int64", "uint8"])
def test_cross_entropy_accepts_integer_label_dtypes(label_dtype):
    logits = t64([[1.0, 2.0], [0.5, -0.5]])
    loss = gk.cross_entropy(logits, gk.tensor([1, 0], dtype=label_dtype))
    expected = -np.mean([np.log(np_softmax(np.array([1.0, 2.0]))[1]),
                         np.log(np_softmax(np.array([0.5, -0.5]))[0])])
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-14)
    assert gk.cross_entropy(logits, [1, 0]).item() == loss.item()


def test_cross_entropy_rejects_float_labels(backend):
    with pytest.raises(gk.DTypeError) as info:
        gk.cross_entropy(gk.zeros((2, 3)), gk.tensor([0.0, 1.0]))
    message = str(info.value)
    assert message.startswith("cross_entropy:") and "labels" in message
    assert f"{backend.name} float32 (2,)" in message
    assert f"logits: {backend.name} float32 (2, 3)" in message


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]])
def test_cross_entropy_rejects_out_of_range_labels(bad, backend):
    with pytest.raises(gk.ShapeError) as info:
        gk.cross_entropy(gk.zeros((2, 3)), gk.tensor(bad))
    message = str(info.value)
    assert message.startswith("cross_entropy:") and "labels" in message
    assert "[0, 3)" in message and f"{backend.name} int64 (2,)" in message


@pytest.mark.parametrize("bad", [[0, 1, 2], [0], [[0, 1]]])
def test_cross_entropy_rejects_wrong_label_shape(bad, backend):
    with pytest.raises(gk.ShapeError) as info:
        gk.cross_entropy(gk.zeros((2, 3)), gk.tensor(bad))
    message = str(info.value)
    assert message.startswith("cross_entropy:") and "labels" in message
    assert "shape (2,)" in message and f"logits: {backend.name} float32 (2, 3)" in message


def test_cross_entropy_rejects_non_matrix_or_integer_logits():
    with pytest.raises(gk.ShapeError, match=r"cross_entropy: argument logits must be 2-D"):
        gk.cross_entropy(gk.zeros((3,)), gk.tensor([0, 1, 2]))
    with pytest.raises(gk.DTypeError, match=r"cross_entropy: argument logits must be floating"):
        gk.cross_entropy(gk.tensor([[1, 2]]), gk.tensor([0]))


# -- SVM loss ------------------------------------------------------------------------------------

CS231N_SCORES = np.array([[3.2, 5.1, -1.7],   # cat image
                          [1.3, 4.9, 2.0],    # car image
                          [2.2, 2.5, -3.1]])  # frog image
CS231N_LABELS = np.array([0, 1, 2])


def np_svm(scores, labels):
    n = scores.shape[0]
    margins = np.maximum(0, scores - scores[np.arange(n), labels][:, None] + 1)
    margins[np.arange(n), labels] = 0
    loss = margins.sum() / n
    positive = (margins > 0).astype(float)
    positive[np.arange(n), labels] = -positive.sum(axis=1)
    return loss, positive / n


def test_svm_loss_cs231n_example():
    # cs231n lecture: per-example losses 2.9, 0 and 12.9, mean 5.27
    loss = gk.svm_loss(t64(CS231N_SCORES), gk.tensor(CS231N_LABELS))
    np.testing.assert_allclose(loss.item(), (2.9 + 0.0 + 12.9) / 3, rtol=1e-13)


def test_svm_loss_value_and_gradient_match_numpy():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(6, 5))
    labels = rng.integers(0, 5, size=6)
    x = t64(scores, requires_grad=True)
    loss = gk.svm_loss(x, gk.tensor(labels))
    expected_loss, expected_grad = np_svm(scores, labels)
    np.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-13)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=1e-13)


def test_svm_loss_validates_labels():
    with pytest.raises(gk.DTypeError, match=r"svm_loss: argument labels"):
        gk.svm_loss(gk.zeros((2, 3)), gk.tensor([0.0, 1.0]))
    with pytest.raises(gk.ShapeError, match=r"svm_loss: argument labels.*\[0, 3\)"):
        gk.svm_loss(gk.zeros((2, 3)), gk.tensor([0, 7]))
    with pytest.raises(gk.ShapeError, match=r"svm_loss: argument labels must have shape"):
        gk.svm_loss(gk.zeros((2, 3)), [0])


# -- MSE ----------------------------------------------------------------------------------------

def test_mse_loss_value_and_gradient():
    pred = t64([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    target = t64([[0.0, 2.5], [3.0, 1.0]], requires_grad=True)
    loss = gk.mse_loss(pred, target)
    assert loss.item() == (1.0 + 0.25 + 0.0 + 4.0) / 4
    loss.backward()
    diff = pred.numpy() - target.numpy()
    np.testing.assert_allclose(pred.grad.numpy(), 2 * diff / 4, rtol=1e-15)
    np.testing.assert_allclose(target.grad.numpy(), -2 * diff / 4, rtol=1e-15)


def test_mse_loss_rejects_mismatched_shapes():
    with pytest.raises(gk.ShapeError) as info:
        gk.mse_loss(gk.zeros((2, 3)), gk.zeros((3,)))
    message = str(info.value)
    assert "mse_loss" in message and "target" in message
    assert "float32 (2, 3)" in message and "float32 (3,)" in message


# -- gk.nn.functional ------------------------------------------------------------------------------

def test_nn_functional_exports():
    for name in ["cross_entropy", "svm_loss", "mse_loss", "linear", "sigmoid", "tanh", "relu",
                 "leaky_relu", "elu", "softplus", "gelu", "softmax", "log_softmax", "maxout"]:
        assert getattr(gk.nn.functional, name) is getattr(gk, name)
    assert F is gk.nn.functional


def test_two_layer_net_trains_with_functional_api():
    rng = np.random.default_rng(5)
    x = gk.tensor(rng.normal(size=(20, 4)))
    labels = gk.tensor((x.numpy()[:, 0] > 0).astype(np.int64))
    w1 = gk.tensor(rng.normal(size=(4, 8)) * 0.5, requires_grad=True)
    w2 = gk.tensor(rng.normal(size=(8, 2)) * 0.5, requires_grad=True)

    def loss_fn(a, b):
        return F.cross_entropy(F.linear(F.relu(F.linear(x, a)), b), labels)

    first = loss_fn(w1, w2).item()
    for _ in range(50):
        g1, g2 = gk.grad(loss_fn, argnums=(0, 1))(w1, w2)
        w1 = (w1 - 0.5 * g1).detach()
        w2 = (w2 - 0.5 * g2).detach()
    assert loss_fn(w1, w2).item() < 0.5 * first


@pytest.mark.parametrize("call", [
    lambda x: gk.leaky_relu(x, slope=np.float64(0.25)),
    lambda x: gk.elu(x, alpha=np.float64(0.5)),
    lambda x: gk.bias_activation(x, gk.zeros(2), activation="leaky_relu", slope=np.float64(0.25)),
], ids=["leaky_relu", "elu", "bias_activation"])
def test_numpy_scalar_params_take_the_tensors_dtype(call):
    """A NumPy scalar param is a number like a Python float: float32 stays float32."""
    x = gk.tensor(np.array([-2.0, 3.0], np.float32), requires_grad=True)
    y = call(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.numpy()[1] == 1.0
