"""grad, value_and_grad, vjp, jvp, jacobian, hessian against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk


def f64(data):
    return gk.tensor(np.asarray(data, dtype=np.float64))


def numeric_jacobian(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.asarray(f(x))
    jac = np.zeros(out.shape + x.shape)
    for k in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[k] += eps
        down[k] -= eps
        jac[(...,) + k] = (np.asarray(f(up)) - np.asarray(f(down))) / (2 * eps)
    return jac


def as_numpy_function(f):
    def g(x):
        with gk.no_grad():
            return f(f64(x)).numpy()
    return g


def poly(x):
    return gk.exp(x[0] * x[1]) + x * x * x


def scalar_poly(x):
    return (gk.exp(x[:2] * x[1:]).sum() + (x ** 3).sum()) * x[0]


X = np.array([0.3, -0.7, 0.5])


def test_grad_and_value_and_grad():
    value, g = gk.value_and_grad(scalar_poly)(f64(X))
    expected = numeric_jacobian(as_numpy_function(scalar_poly), X)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-7)
    assert value.item() == pytest.approx(float(as_numpy_function(scalar_poly)(X)))
    np.testing.assert_allclose(gk.grad(scalar_poly)(f64(X)).numpy(), expected, rtol=1e-7)


def test_grad_argnums_tuple_and_numpy_inputs():
    f = lambda a, b: (a * b * b).sum()  # noqa: E731
    ga, gb = gk.grad(f, argnums=(0, 1))(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_allclose(ga.numpy(), [9.0, 16.0])
    np.testing.assert_allclose(gb.numpy(), [6.0, 16.0])


def test_grad_of_function_that_ignores_its_input_is_zero():
    g = gk.grad(lambda x: gk.tensor(3.0, dtype="float64"))(f64([1.0, 2.0]))
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0])


def test_grad_needs_a_scalar_output():
    with pytest.raises(gk.GraphError, match="scalar"):
        gk.grad(lambda x: x * 2)(f64([1.0, 2.0]))


def test_grad_does_not_touch_dot_grad():
    x = f64([1.0, 2.0]).requires_grad_()
    gk.grad(lambda t: (t * t).sum())(x)
    assert x.grad is None


def test_jacobian_matches_finite_differences():
    jac = gk.jacobian(poly)(f64(X))
    assert jac.shape == (3, 3)
    np.testing.assert_allclose(jac.numpy(), numeric_jacobian(as_numpy_function(poly), X), rtol=1e-7)


def test_jacobian_shape_is_out_shape_plus_x_shape():
    x = f64(np.arange(6.0).reshape(2, 3) / 10)
    jac = gk.jacobian(lambda t: gk.exp(t).sum(axis=0))(x)
    assert jac.shape == (3, 2, 3)
    np.testing.assert_allclose(jac.numpy(), numeric_jacobian(
        as_numpy_function(lambda t: gk.exp(t).sum(axis=0)), x.numpy()), rtol=1e-7)


def test_hessian_matches_finite_differences_of_the_gradient():
    hess = gk.hessian(scalar_poly)(f64(X))
    grad_np = as_numpy_function(gk.grad(scalar_poly))
    np.testing.assert_allclose(hess.numpy(), numeric_jacobian(grad_np, X), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hess.numpy(), hess.numpy().T, rtol=1e-12)


def test_vjp_with_several_primals():
    out, vjp_fn = gk.vjp(lambda a, b: a * b + a, f64([1.0, 2.0]), f64([3.0, 4.0]))
    np.testing.assert_allclose(out.numpy(), [4.0, 10.0])
    ga, gb = vjp_fn(f64([1.0, -1.0]))
    np.testing.assert_allclose(ga.numpy(), [4.0, -5.0])
    np.testing.assert_allclose(gb.numpy(), [1.0, -2.0])
    ga2, _ = vjp_fn(f64([2.0, 0.0]))  # vjp_fn can be called again
    np.testing.assert_allclose(ga2.numpy(), [8.0, 0.0])


def test_vjp_cotangent_shape_is_checked():
    _, vjp_fn = gk.vjp(lambda a: a * 2, f64([1.0, 2.0]))
    with pytest.raises(gk.ShapeError, match=r"\(3,\).*\(2,\)"):
        vjp_fn(f64([1.0, 2.0, 3.0]))


def test_jvp_equals_jacobian_times_tangent():
    tangent = np.array([0.2, -1.0, 0.7])
    out, t_out = gk.jvp(poly, (f64(X),), (f64(tangent),))
    jac = numeric_jacobian(as_numpy_function(poly), X)
    np.testing.assert_allclose(t_out.numpy(), jac @ tangent, rtol=1e-7)
    np.testing.assert_allclose(out.numpy(), as_numpy_function(poly)(X))


def test_jvp_checks_tangent_shapes():
    with pytest.raises(gk.ShapeError, match="tangent 0"):
        gk.jvp(poly, (f64(X),), (f64([1.0]),))


def test_grad_of_integer_argument_is_an_error():
    with pytest.raises(gk.DTypeError, match="argument 0.*int64"):
        gk.grad(lambda x: x.sum())(gk.tensor([1, 2]))


LEAVING_THE_GRAPH = {
    "numpy": lambda v: gk.tensor(v.numpy() ** 2).sum(),
    "item": lambda v: v.sum() * v.sum().item(),
    "tolist": lambda v: gk.tensor(v.tolist()).sum(),
    "tensor": lambda v: gk.tensor(v * 2).sum(),
    "__dlpack__": lambda v: gk.tensor(np.from_dlpack(v * 2)).sum(),
}
TRANSFORMS = {
    "grad": lambda f, x: gk.grad(f)(x),
    "value_and_grad": lambda f, x: gk.value_and_grad(f)(x),
    "vjp": lambda f, x: gk.vjp(f, x),
    "jvp": lambda f, x: gk.jvp(f, (x,), (gk.ones_like(x),)),
    "jacobian": lambda f, x: gk.jacobian(f)(x),
    "hessian": lambda f, x: gk.hessian(f)(x),
}


@pytest.mark.parametrize("how", sorted(LEAVING_THE_GRAPH))
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_a_host_copy_of_a_differentiated_tensor_is_refused_inside_a_transform(
        backend, transform, how):
    if how == "__dlpack__" and not backend.host_conversion_allowed:
        pytest.skip("np.from_dlpack reads host memory only")
    x = gk.tensor([1.0, 2.0], dtype="float64")
    with pytest.raises(gk.GraphError, match=rf"^{how}: .*differentiates.*\.detach\(\)"):
        TRANSFORMS[transform](LEAVING_THE_GRAPH[how], x)


def test_values_outside_the_differentiated_graph_still_leave_it(backend):
    x = gk.tensor([1.0, 2.0], dtype="float64")
    w = gk.tensor([3.0, 4.0], dtype="float64", requires_grad=True)  # not differentiated here
    scale = gk.tensor(2.0, dtype="float64")

    def f(v):
        factor = scale.item() + w.numpy()[0] + float(gk.tensor(w).sum())
        return (v * v).sum() * factor + (v * gk.tensor(v.detach().numpy())).sum()

    np.testing.assert_allclose(gk.grad(f)(x).numpy(), [2 * 12 + 1, 4 * 12 + 2])
    assert gk.tensor(w).requires_grad is False and w.numpy().tolist() == [3.0, 4.0]


def test_a_copy_through_asarray_keeps_the_gradient(backend):
    x = gk.tensor([1.0, 2.0], dtype="float64")
    g = gk.grad(lambda v: (gk.asarray(v, copy=True) ** 2).sum())(x)
    np.testing.assert_allclose(g.numpy(), [2.0, 4.0])
