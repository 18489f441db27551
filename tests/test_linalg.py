"""gk.linalg and the products: values against NumPy / array-api-strict, the VJP rules
(inv, solve, det, slogdet, cholesky) against their closed forms, batching, errors.

tests/test_ops.py gradchecks each op's samples to second order; here the cases that
need more set-up (broadcast batches, vector right-hand sides, symmetric inputs).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

# the test extra's libraries: where one is missing (a GPU machine), this file skips
pytest.importorskip("hypothesis")
pytest.importorskip("array_api_strict")

import array_api_strict as xps  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from strict_reference import QUICK, arrays, assert_same, to_strict  # noqa: E402

import gradkit as gk  # noqa: E402


def f64(data, requires_grad=False):
    return gk.tensor(np.asarray(data, dtype=np.float64), requires_grad=requires_grad)


def well_conditioned(rng, shape):
    return np.eye(shape[-1]) * shape[-1] + rng.uniform(-1, 1, size=shape)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_linalg_namespace_and_top_level_names():
    for name in ("inv", "solve", "det", "slogdet", "cholesky", "norm", "vector_norm",
                 "matrix_norm", "trace", "diagonal", "cross", "matrix_power", "matmul",
                 "matrix_transpose", "outer", "tensordot", "vecdot"):
        assert callable(getattr(gk.linalg, name)), name
    for name in ("matmul", "dot", "outer", "vecdot", "tensordot"):
        assert callable(getattr(gk, name)), name
    for name in ("inv", "solve", "det", "norm"):  # np.linalg only, as in NumPy
        assert not hasattr(gk, name), name
    assert gk.registry.get_op("linalg.inv").function is gk.linalg.inv


# -- inverse, solve, determinants ----------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (2, 1, 2, 2)])
def test_inv_det_slogdet_match_numpy_on_stacks(rng, shape):
    a = well_conditioned(rng, shape)
    np.testing.assert_allclose(gk.linalg.inv(f64(a)).numpy(), np.linalg.inv(a), rtol=1e-12)
    np.testing.assert_allclose(gk.linalg.det(f64(a)).numpy(), np.linalg.det(a), rtol=1e-12)
    sign, logabsdet = gk.linalg.slogdet(f64(-a))
    expected = np.linalg.slogdet(-a)
    np.testing.assert_array_equal(sign.numpy(), expected.sign)
    np.testing.assert_allclose(logabsdet.numpy(), expected.logabsdet, rtol=1e-12)


def test_inv_and_det_vjps_are_the_closed_forms(rng):
    a = well_conditioned(rng, (3, 3))
    g = rng.standard_normal((3, 3))
    inv_a = np.linalg.inv(a)
    got = gk.grad(lambda t: (gk.linalg.inv(t) * f64(g)).sum())(f64(a))
    np.testing.assert_allclose(got.numpy(), -inv_a.T @ g @ inv_a.T, rtol=1e-10)
    got = gk.grad(lambda t: gk.linalg.det(t))(f64(a))
    np.testing.assert_allclose(got.numpy(), np.linalg.det(a) * inv_a.T, rtol=1e-10)
    got = gk.grad(lambda t: gk.linalg.slogdet(t).logabsdet)(f64(a))
    np.testing.assert_allclose(got.numpy(), inv_a.T, rtol=1e-10)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 3), (3,)), ((3, 3), (3, 2)),
                                             ((2, 3, 3), (3,)), ((3, 3), (4, 3, 2)),
                                             ((4, 1, 3, 3), (2, 3, 1))])
def test_solve_matches_numpy_and_broadcasts_batches(rng, a_shape, b_shape):
    a, b = well_conditioned(rng, a_shape), rng.standard_normal(b_shape)
    out = gk.linalg.solve(f64(a), f64(b))
    np.testing.assert_allclose(out.numpy(), np.linalg.solve(a, b), rtol=1e-10)
    assert_same(out, xps.linalg.solve(to_strict(a), to_strict(b)), rtol=1e-10)
    gk.testing.gradcheck(gk.linalg.solve, f64(a), f64(b), order=2)


def test_solve_vjp_is_the_closed_form(rng):
    a, b = well_conditioned(rng, (3, 3)), rng.standard_normal((3, 2))
    g = rng.standard_normal((3, 2))
    ga, gb = gk.grad(lambda s, t: (gk.linalg.solve(s, t) * f64(g)).sum(), argnums=(0, 1))(
        f64(a), f64(b))
    x = np.linalg.solve(a, b)
    expected_gb = np.linalg.solve(a.T, g)
    np.testing.assert_allclose(gb.numpy(), expected_gb, rtol=1e-10)
    np.testing.assert_allclose(ga.numpy(), -expected_gb @ x.T, rtol=1e-10)


def test_cholesky_matches_numpy_and_has_a_symmetric_gradient(rng):
    b = rng.standard_normal((2, 3, 3))
    a = b @ np.swapaxes(b, -1, -2) + 3 * np.eye(3)
    np.testing.assert_allclose(gk.linalg.cholesky(f64(a)).numpy(), np.linalg.cholesky(a),
                               rtol=1e-12)
    np.testing.assert_allclose(gk.linalg.cholesky(f64(a), upper=True).numpy(),
                               np.linalg.cholesky(a, upper=True), rtol=1e-12)
    g = gk.grad(lambda t: gk.sum(gk.linalg.cholesky(t) ** 2))(f64(a))
    np.testing.assert_allclose(g.numpy(), np.swapaxes(g.numpy(), -1, -2), rtol=1e-12)
    # log det A = 2 sum log diag(L): its gradient is inv(A)
    logdet = lambda t: 2 * gk.sum(gk.log(gk.linalg.diagonal(gk.linalg.cholesky(t))))
    np.testing.assert_allclose(gk.grad(logdet)(f64(a[0])).numpy(), np.linalg.inv(a[0]), rtol=1e-10)


def test_matrix_errors_name_the_op_and_operands():
    with pytest.raises(gk.ShapeError, match=r"linalg.inv: .*square.*\w+ float64 \(2, 3\)"):
        gk.linalg.inv(f64(np.ones((2, 3))))
    with pytest.raises(gk.ShapeError, match=r"linalg.solve: x2 must be"):
        gk.linalg.solve(f64(np.eye(3)), f64(np.ones(2)))
    with pytest.raises(gk.errors.ArgumentError, match=r"linalg.inv: Singular matrix"):
        gk.linalg.inv(f64(np.zeros((2, 2))))
    with pytest.raises(gk.ArgumentError, match="SVD"):
        gk.linalg.matrix_norm(f64(np.eye(2)), ord=2)


# -- norms ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ord", [2, 1, math.inf, -math.inf, 0, 3, 0.5])
def test_vector_norm_matches_the_standard(rng, ord):
    x = rng.standard_normal((3, 4))
    x[0, 0] = 0.0
    for axis, keepdims in ((None, False), (1, False), (0, True), ((0, 1), False)):
        assert_same(gk.linalg.vector_norm(f64(x), axis=axis, keepdims=keepdims, ord=ord),
                    xps.linalg.vector_norm(to_strict(x), axis=axis, keepdims=keepdims, ord=ord),
                    rtol=1e-12)


@pytest.mark.parametrize("ord", ["fro", 1, -1, math.inf, -math.inf])
def test_matrix_norm_matches_the_standard(rng, ord):
    x = rng.standard_normal((2, 3, 4))
    for keepdims in (False, True):
        assert_same(gk.linalg.matrix_norm(f64(x), keepdims=keepdims, ord=ord),
                    xps.linalg.matrix_norm(to_strict(x), keepdims=keepdims, ord=ord), rtol=1e-12)


def test_numpy_style_norm(rng):
    x = rng.standard_normal((3, 4))
    for kwargs in (dict(), dict(ord=1), dict(ord="fro"), dict(ord=math.inf), dict(axis=1),
                   dict(axis=0, ord=1, keepdims=True), dict(axis=(1, 0), ord=1)):
        np.testing.assert_allclose(gk.linalg.norm(f64(x), **kwargs).numpy(),
                                   np.linalg.norm(x, **kwargs), rtol=1e-12)
    y = rng.standard_normal((2, 3, 2))
    np.testing.assert_allclose(gk.linalg.norm(f64(y), ord=1, axis=(2, 0), keepdims=True).numpy(),
                               np.linalg.norm(y, ord=1, axis=(2, 0), keepdims=True), rtol=1e-12)


def test_norm_gradients(rng):
    x = rng.standard_normal(5)
    g = gk.grad(lambda t: gk.linalg.vector_norm(t))(f64(x))
    np.testing.assert_allclose(g.numpy(), x / np.linalg.norm(x), rtol=1e-12)
    g = gk.grad(lambda t: gk.linalg.vector_norm(t, ord=1))(f64(x))
    np.testing.assert_allclose(g.numpy(), np.sign(x))


# -- products, diagonal, trace, cross, matrix_power ------------------------------------------

@QUICK
@given(data=st.data())
def test_products_match_the_standard(data):
    dtype = data.draw(st.sampled_from([np.dtype("float32"), np.dtype("float64")]))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3,
                                                         max_side=3))
    n = data.draw(st.integers(1, 3))
    a = arrays(data.draw, dtype, shapes.input_shapes[0] + (n,), special=False, low=-5, high=5)
    b = arrays(data.draw, dtype, shapes.input_shapes[1] + (n,), special=False, low=-5, high=5)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_same(gk.vecdot(gk.asarray(a), gk.asarray(b)), xps.vecdot(to_strict(a), to_strict(b)),
                rtol=tol)
    assert_same(gk.tensordot(gk.asarray(a), gk.asarray(b.T), axes=1),
                xps.tensordot(to_strict(a), to_strict(b.T), axes=1), rtol=tol)
    assert_same(gk.linalg.outer(gk.asarray(a[..., 0].reshape(-1)), gk.asarray(b.reshape(-1))),
                xps.linalg.outer(to_strict(a[..., 0].reshape(-1)), to_strict(b.reshape(-1))),
                rtol=tol)


def test_dot_follows_numpy(rng):
    for a_shape, b_shape in (((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                             ((2, 2, 3), (4, 3, 2)), ((), (2, 2))):
        a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
        np.testing.assert_allclose(gk.dot(f64(a), f64(b)).numpy(), np.dot(a, b), rtol=1e-12)


def test_diagonal_trace_cross_matrix_power(rng):
    x = rng.standard_normal((2, 3, 4))
    for offset in (-2, 0, 1, 3):
        assert_same(gk.linalg.diagonal(f64(x), offset=offset),
                    xps.linalg.diagonal(to_strict(x), offset=offset))
        assert_same(gk.linalg.trace(f64(x), offset=offset),
                    xps.linalg.trace(to_strict(x), offset=offset), rtol=1e-12)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal(3)
    assert_same(gk.linalg.cross(f64(a), f64(b)), xps.linalg.cross(to_strict(a), to_strict(b)),
                rtol=1e-12)
    m = well_conditioned(rng, (2, 3, 3)) / 3
    for n in (0, 1, 2, 5, -1, -3):
        np.testing.assert_allclose(gk.linalg.matrix_power(f64(m), n).numpy(),
                                   np.linalg.matrix_power(m, n), rtol=1e-10)
    g = gk.grad(lambda t: gk.linalg.trace(t))(f64(np.ones((3, 3))))
    np.testing.assert_array_equal(g.numpy(), np.eye(3))


@pytest.mark.parametrize("shapes", [((4, 3), (3, 2)), ((3,), (3,)), ((3,), (3, 2)),
                                    ((4, 3), (3,)), ((2, 4, 3), (3, 2))])
@pytest.mark.parametrize("fn", ["matmul", "linear"])
def test_mixed_precision_gradients_have_their_inputs_dtypes(fn, shapes):
    if fn == "linear" and len(shapes[1]) != 2:
        return
    rng = np.random.default_rng(0)
    x = gk.tensor(rng.standard_normal(shapes[0]), requires_grad=True)  # float64
    w = gk.tensor(rng.standard_normal(shapes[1]).astype(np.float32), requires_grad=True)
    out = gk.matmul(x, w) if fn == "matmul" else gk.linear(x, w, gk.zeros(shapes[1][1]))
    out.sum().backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float32
    expected = gk.grad(lambda a: (gk.matmul(a, w.detach().astype("float64"))).sum())(x.detach())
    np.testing.assert_allclose(x.grad.numpy(), expected.numpy(), rtol=1e-6)
