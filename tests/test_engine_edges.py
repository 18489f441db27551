"""The engine at its edges, where the generated op table does not reach: gradient rules
at special points, VJP contract violations, backward's failure handling, gradient
aliasing, messages, the op-registration contract, higher orders, transforms with
several arguments, grad mode, dtypes, 0-d and empty tensors."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import gradkit as gk


def f64(data, requires_grad=False):
    return gk.tensor(np.asarray(data, dtype=np.float64), requires_grad=requires_grad)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar ``f`` (a NumPy function) at ``x``."""
    grad = np.zeros(x.shape)
    for k in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[k] += eps
        down[k] -= eps
        grad[k] = (f(up) - f(down)) / (2 * eps)
    return grad


# =====================================================================================
# Gradient rules and the engine at their edges
# =====================================================================================

# -- transpose / permute with negative axes ------------------------------------------

@pytest.mark.parametrize("axes", [(1, -1, 0), (-1, 0, 1), (2, -3, -2)])
def test_transpose_with_negative_axes_has_the_right_gradient(axes):
    """transpose's VJP inverts ``axes`` with negative entries normalised."""
    x = np.arange(8.0).reshape(2, 2, 2)
    w = np.arange(8.0).reshape(2, 2, 2) * 1.5 + 1
    positive = tuple(a % 3 for a in axes)
    expected = np.transpose(w, np.argsort(positive))
    g = gk.grad(lambda t: (gk.transpose(t, axes=axes) * f64(w)).sum())(f64(x))
    np.testing.assert_allclose(g.numpy(), expected)
    g = gk.grad(lambda t: (t.permute(*axes) * f64(w)).sum())(f64(x))
    np.testing.assert_allclose(g.numpy(), expected)


def test_transpose_with_negative_axes_gradchecks_on_a_non_cube():
    gk.testing.gradcheck(lambda t: gk.transpose(t, axes=(-1, 0, 1)),
                         f64(np.random.default_rng(0).random((2, 3, 4))), order=2)


# -- gradcheck and NaN ---------------------------------------------------------------

def test_gradcheck_rejects_nan_gradients():
    """gradcheck fails on a NaN gradient or a NaN forward (a comparison with NaN is never
    within tolerance)."""
    with np.errstate(all="ignore"):
        with pytest.raises(gk.testing.GradcheckError):
            gk.testing.gradcheck(gk.log, f64([-1.0, -2.0]))


def test_gradcheck_rejects_a_vjp_that_returns_nan():
    op = gk.register_op("core_nan_vjp", lambda xp, x: x * 2,
                        lambda ctx, g: (g * float("nan"),))
    try:
        with pytest.raises(gk.testing.GradcheckError):
            gk.testing.gradcheck(op, f64([1.0, 2.0]))
    finally:
        gk.unregister_op("core_nan_vjp")


# -- np.array(tensor) copies ---------------------------------------------------------

def test_np_array_of_a_tensor_is_a_copy():
    """np.array(t) copies: editing the NumPy array never edits the tensor."""
    t = gk.tensor([1.0, 2.0])
    if not t.array_backend.host_conversion_allowed:  # a device array: the copy is explicit
        with pytest.raises(gk.HostConversionError, match=r"\.numpy\(\)"):
            np.array(t)
        return
    a = np.array(t)
    a[0] = 99.0
    assert t.numpy()[0] == 1.0


def test_np_array_of_a_leaf_does_not_corrupt_its_gradient():
    x = f64([1.0, 2.0], requires_grad=True)
    y = x * x
    snapshot = x.detach().numpy()
    snapshot *= 100.0  # the user scales *their copy*
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


# -- register_op(..., replace=True) on a built-in name ---------------------------------

def test_replacing_a_builtin_op_keeps_functions_methods_and_vjps_working():
    """``register_op(..., replace=True)`` on a built-in name updates the registered op in
    place: gk.exp, Tensor.exp and every VJP that calls exp run the new definition."""
    original = gk.registry.get_op("exp")
    saved = (original.forward, original.vjp)
    gk.register_op("exp", lambda xp, x: xp.exp(x), lambda ctx, g: (g * ctx.out,),
                   samples=original.samples, replace=True)
    try:
        x = f64([0.0, 1.0])
        np.testing.assert_allclose(gk.exp(x).numpy(), np.exp([0.0, 1.0]))
        np.testing.assert_allclose(x.exp().numpy(), np.exp([0.0, 1.0]))
        g = gk.grad(lambda t: gk.logsumexp(t))(x)
        np.testing.assert_allclose(g.numpy(), np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum())
    finally:  # replace=True updated the registered op in place: put its rules back
        original.forward, original.vjp = saved
        for backend in gk.backends.instantiated():
            backend.invalidate("exp")


# -- how many gradients a VJP returns --------------------------------------------------

def test_vjp_returning_too_few_gradients_is_an_error_naming_the_op():
    """A VJP must return one gradient (or None) per input; fewer is an error naming the op."""
    op = gk.register_op("core_two_inputs", lambda xp, a, b: a * b,
                        lambda ctx, g: (g * ctx.inputs[1],))
    try:
        a, b = f64([1.0, 2.0], True), f64([3.0, 4.0], True)
        with pytest.raises(gk.GradkitError, match="core_two_inputs"):
            op(a, b).sum().backward()
    finally:
        gk.unregister_op("core_two_inputs")


def test_vjp_returning_a_bare_tensor_is_an_error_naming_the_op():
    """A VJP returning ``g`` instead of ``(g,)`` is an error naming the op."""
    op = gk.register_op("core_bare_vjp", lambda xp, x: x * 2, lambda ctx, g: g * 2)
    try:
        with pytest.raises(gk.GradkitError, match="core_bare_vjp"):
            op(f64(1.0, True)).backward()
    finally:
        gk.unregister_op("core_bare_vjp")


# -- an error in the middle of backward -------------------------------------------------

def test_failed_backward_leaves_the_graph_usable_or_says_it_failed():
    """A VJP that raises half-way through backward leaves no .grad touched, and a retry
    says that the earlier backward failed (not that it completed)."""
    calls = {"n": 0}

    def flaky_vjp(ctx, g):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("transient failure")
        return (g * 2,)

    flaky = gk.register_op("core_flaky", lambda xp, x: x * 2, flaky_vjp)
    try:
        x = f64([0.1, 0.2], requires_grad=True)
        z = (gk.exp(flaky(gk.exp(x))) * 3).sum()
        with pytest.raises(Exception, match="transient failure"):
            z.backward()
        assert x.grad is None  # good: no partial gradient reached the leaf
        try:
            z.backward()
        except gk.GraphError as exc:
            message = str(exc)
            assert "fail" in message or "error" in message, message
            return
        xv = np.array([0.1, 0.2])
        np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(2 * np.exp(xv)) * 2 * np.exp(xv))
    finally:
        gk.unregister_op("core_flaky")


# -- gradients are independent of each other and of the cotangent ----------------------

def test_leaf_gradients_are_independent_and_writable():
    """Each leaf's .grad is its own writable array, never another leaf's gradient or the
    user's cotangent."""
    x = gk.tensor(np.array([1.0, 2.0]), requires_grad=True, backend="numpy")
    y = gk.tensor(np.array([3.0, 4.0]), requires_grad=True, backend="numpy")
    (x + y).sum().backward()
    assert x.grad is not y.grad
    x.grad.data[...] = 0.0
    np.testing.assert_array_equal(y.grad.numpy(), [1.0, 1.0])


def test_backward_does_not_alias_the_users_cotangent():
    x = gk.tensor(np.array([1.0, 2.0]), requires_grad=True, backend="numpy")
    cotangent = np.array([5.0, 6.0])
    (x + 0.0).backward(cotangent)
    cotangent[0] = 99.0  # the user reuses their buffer
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 6.0])

    z = gk.tensor(np.array([1.0, 2.0]), requires_grad=True, backend="numpy")
    g = gk.tensor(np.array([5.0, 6.0]), backend="numpy")
    (z + 0.0).backward(g)
    g.data[0] = 99.0
    np.testing.assert_array_equal(z.grad.numpy(), [5.0, 6.0])


# -- x ** 0 at x = 0 ------------------------------------------------------------------

def test_power_with_zero_exponent_has_zero_gradient_at_zero():
    """d/dx x ** 0 is 0 at x = 0 (as in PyTorch), so derivatives of polynomials stay finite
    there."""
    with np.errstate(all="ignore"):
        g = gk.grad(lambda t: (t ** 0).sum())(f64([0.0, 2.0]))
        np.testing.assert_array_equal(g.numpy(), [0.0, 0.0])
        third = gk.grad(gk.grad(gk.grad(lambda t: t ** 2)))(f64(0.0))
        assert third.item() == 0.0


# -- expand_dims with a tuple of axes --------------------------------------------------

def test_expand_dims_rejects_duplicate_axes_with_a_clear_error():
    """expand_dims with a repeated axis is a gradkit error naming it."""
    with pytest.raises(gk.GradkitError, match="expand_dims"):
        gk.expand_dims(gk.ones(2), axis=(0, 0))


def test_expand_dims_rejects_out_of_range_axes_in_a_tuple():
    """expand_dims with an axis out of range in a tuple raises, as the int form and NumPy
    do."""
    with pytest.raises(gk.GradkitError, match="expand_dims"):
        gk.expand_dims(gk.ones(2), axis=(0, 7))


# -- hessian(argnums=tuple) -------------------------------------------------------

def test_hessian_with_an_argnums_tuple():
    """hessian takes an argnums tuple, with JAX's layout: H[i][j] has shape args[i].shape +
    args[j].shape."""
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    H = gk.hessian(lambda p, q: (p * q * q).sum(), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(H[0][0].numpy(), np.zeros((2, 2)))
    np.testing.assert_allclose(H[0][1].numpy(), np.diag(2 * b.numpy()))
    np.testing.assert_allclose(H[1][0].numpy(), np.diag(2 * b.numpy()))
    np.testing.assert_allclose(H[1][1].numpy(), np.diag(2 * a.numpy()))


# =====================================================================================
# Names, messages and edge cases
# =====================================================================================

# -- Tensor methods and gk.neg ------------------------------------------------------

def test_gk_neg_exists():
    """gk.neg is negative, as the op list says."""
    x = f64([1.0, -2.0])
    np.testing.assert_array_equal(gk.neg(x).numpy(), [-1.0, 2.0])


@pytest.mark.parametrize("method,call,reference", [
    ("neg", lambda x: x.neg(), lambda x: -x),
    ("square", lambda x: x.square(), lambda x: gk.square(x)),
    ("matmul", lambda x: x.matmul(x.T), lambda x: x @ x.T),
    ("split", lambda x: gk.concatenate(x.split(2, axis=1), axis=0),
     lambda x: gk.concatenate(gk.split(x, 2, axis=1), axis=0)),
])
def test_natural_tensor_methods_exist(method, call, reference):
    x = f64([[1.0, -2.0], [0.5, 3.0]])
    assert hasattr(x, method), f"Tensor.{method} is missing"
    np.testing.assert_allclose(call(x).numpy(), reference(x).numpy())


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "softplus", "gelu"])
def test_activation_methods_exist_like_sigmoid_and_relu(name):
    """Every activation is also a Tensor method."""
    x = f64([[1.0, -2.0], [0.5, 3.0]])
    assert hasattr(x, name), f"Tensor.{name} is missing"
    np.testing.assert_allclose(getattr(x, name)().numpy(), getattr(gk, name)(x).numpy())


# -- errors name the op and the operands -----------------------------------------------

def test_split_with_a_bad_axis_names_the_op():
    """split with an axis out of range is a gradkit error naming the op."""
    with pytest.raises(gk.GradkitError, match="split"):
        gk.split(gk.ones(4), 2, axis=3)


def test_exception_inside_a_vjp_names_the_op():
    def broken(ctx, g):
        raise ValueError("boom")

    op = gk.register_op("core_boom", lambda xp, x: x * 2, broken)
    try:
        with pytest.raises(Exception) as info:
            op(f64([1.0], True)).sum().backward()
        text = str(info.value) + " ".join(getattr(info.value, "__notes__", []))
        assert "core_boom" in text, text
    finally:
        gk.unregister_op("core_boom")


def test_backward_of_non_scalar_describes_the_operand():
    """backward() of a non-scalar without a cotangent names the operand's backend, dtype
    and shape."""
    y = f64(np.ones((3, 4)), requires_grad=True) * 2
    with pytest.raises(gk.GraphError) as info:
        y.backward()
    assert "numpy float64 (3, 4)" in str(info.value) or "float64 (3, 4)" in str(info.value)


def test_astype_to_an_unknown_dtype_describes_the_operand():
    with pytest.raises(gk.DTypeError) as info:
        gk.ones((2, 3)).astype("float33")
    assert "float32 (2, 3)" in str(info.value)


def test_matmul_batch_mismatch_is_explained_in_gradkit_terms():
    """A batch-shape mismatch in matmul is explained with both operands' shapes."""
    with pytest.raises(gk.ShapeError) as info:
        gk.ones((2, 3, 4)) @ gk.ones((3, 4, 5))
    message = str(info.value)
    assert message.startswith("matmul:") and "batch" in message
    assert "remapped" not in message


def test_index_out_of_bounds_is_an_index_error():
    """An index out of bounds is an IndexingError, which is an IndexError, so ``except
    IndexError`` works."""
    with pytest.raises(IndexError):
        gk.ones(3)[10]


def test_gradcheck_second_order_failure_says_second_order():
    """A second-order gradcheck failure says second order and names the original inputs."""
    op = gk.register_op("core_bad_second", lambda xp, x: x * x,
                        lambda ctx, g: (g * 2 * ctx.constant(ctx.inputs[0].data),))
    try:
        gk.testing.gradcheck(op, f64([0.5, 1.5]))  # first order is right
        with pytest.raises(gk.testing.GradcheckError, match="second order"):
            gk.testing.gradcheck(op, f64([0.5, 1.5]), order=2)
    finally:
        gk.unregister_op("core_bad_second")


# -- edge cases -----------------------------------------------------------------------

def test_getitem_with_an_empty_index_list():
    """x[[]] is an empty tensor, as in NumPy."""
    x = f64([1.0, 2.0], requires_grad=True)
    y = x[[]]
    assert y.shape == (0,)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_logsumexp_of_an_empty_axis_is_minus_infinity():
    """logsumexp over an empty axis is -inf (log of an empty sum)."""
    assert gk.logsumexp(f64(np.zeros((0,)))).item() == -np.inf
    np.testing.assert_array_equal(gk.logsumexp(f64(np.zeros((2, 0))), axis=1).numpy(),
                                  [-np.inf, -np.inf])


def test_clip_with_tensor_bounds_works_or_is_refused_up_front():
    """clip takes tensor bounds, forward and backward."""
    x = f64([0.5, 2.0], requires_grad=True)
    try:
        y = gk.clip(x, f64(0.0), f64(1.0))
    except gk.GradkitError as exc:
        assert "clip" in str(exc)
        return
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0])


def test_svm_loss_gradient_at_zero_margin_matches_cs231n():
    """svm_loss counts a margin only when it is > 0, as cs231n does, so a zero margin has
    zero gradient."""
    scores = f64([[1.0, 0.0, -5.0]], requires_grad=True)  # margin of class 1 is exactly 0
    gk.svm_loss(scores, gk.tensor([0])).backward()
    np.testing.assert_array_equal(scores.grad.numpy(), [[0.0, 0.0, 0.0]])


def test_in_place_mutation_of_saved_data_is_detected_or_harmless():
    """Writing into an array that a node saved never yields a gradient at the new value:
    the write is refused, detected at backward, or lands in a copy."""
    x = gk.tensor(np.array([1.0, 2.0]), requires_grad=True, backend="numpy")
    y = x * x
    try:
        x.data[0] = 100.0
    except (ValueError, gk.GradkitError):
        return
    try:
        y.sum().backward()
    except gk.GradkitError as exc:
        assert "place" in str(exc) or "modified" in str(exc)
        return
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


# =====================================================================================
# The op-registration contract, higher orders, transforms, grad mode
# =====================================================================================

# -- the public op-registration contract, end to end ----------------------------------

def _cube_samples(rng):
    return [gk.registry.Sample(rng.uniform(0.5, 2.0, size=(2, 3))),
            gk.registry.Sample(rng.uniform(0.5, 2.0, size=()))]


def test_register_op_full_contract():
    def cube_forward(xp, x, *, scale=1.0):
        return scale * x ** 3

    def cube_vjp(ctx, g):
        (x,) = ctx.inputs
        return (g * (3 * ctx.params["scale"]) * x * x,)

    cube = gk.register_op("core_cube", cube_forward, cube_vjp, samples=_cube_samples)
    try:
        assert gk.registry.get_op("core_cube").differentiable
        with pytest.raises(ValueError, match="already registered"):
            gk.register_op("core_cube", cube_forward, cube_vjp)
        x = f64([1.0, 2.0])
        np.testing.assert_allclose(gk.grad(lambda t: cube(t, scale=2.0).sum())(x).numpy(),
                                   [6.0, 24.0])
        np.testing.assert_allclose(gk.hessian(lambda t: cube(t).sum())(x).numpy(),
                                   np.diag([6.0, 12.0]))
        np.testing.assert_allclose(gk.jvp(cube, (x,), (f64([1.0, 1.0]),))[1].numpy(),
                                   [3.0, 12.0])
        for sample in _cube_samples(np.random.default_rng(0)):
            gk.testing.gradcheck(cube, f64(sample.args[0]), order=3)
        with gk.no_grad():
            assert cube(f64([1.0], True)).node is None
        assert cube(f64([1.0])).node is None
    finally:
        gk.unregister_op("core_cube")
    assert "core_cube" not in gk.registry.OPS


def test_an_op_registered_without_samples_fails_the_suite():
    import test_ops  # tests/ is on sys.path (rootdir-relative import)
    gk.register_op("core_no_samples", lambda xp, x: x, lambda ctx, g: (g,))
    try:
        with pytest.raises(AssertionError, match="core_no_samples"):
            test_ops.test_every_op_has_samples()
    finally:
        gk.unregister_op("core_no_samples")


# -- "any order" and jvp, over the whole registry ---------------------------------------

def _registry_cases():
    import test_ops
    return test_ops, [p.values for p in test_ops.DIFFERENTIABLE]


def test_third_order_gradients_over_the_registry():
    """grad of grad of grad over the registry: gradients of gradients work to any order."""
    test_ops, cases = _registry_cases()
    failures = []
    for entry, sample in cases:
        xs = test_ops._tensors(sample, np.float64)
        try:
            gk.testing.gradcheck(lambda *a: test_ops._call(entry, sample, a), *xs, order=3,
                                 rtol=1e-6, nondiff=sample.nondiff)
        except gk.GradkitError as exc:
            failures.append(f"{entry.name} {sample}: {exc}")
    assert not failures, "\n".join(failures)


def test_jvp_matches_finite_differences_over_the_registry():
    test_ops, cases = _registry_cases()
    rng = np.random.default_rng(0)
    failures = []
    for entry, sample in cases:
        xs = test_ops._tensors(sample, np.float64)
        diff = [i for i, x in enumerate(xs) if x.dtype.kind == "f" and i not in sample.nondiff]

        def f(*moved, xs=xs, diff=diff, entry=entry, sample=sample):
            args = list(xs)
            for i, v in zip(diff, moved):
                args[i] = v
            return test_ops._call(entry, sample, args)

        primals = [xs[i] for i in diff]
        tangents = [rng.standard_normal(p.shape) for p in primals]
        _, t_out = gk.jvp(f, primals, [f64(t) for t in tangents])
        eps = 1e-6
        with gk.no_grad():
            up = f(*[f64(p.numpy() + eps * t) for p, t in zip(primals, tangents)]).numpy()
            down = f(*[f64(p.numpy() - eps * t) for p, t in zip(primals, tangents)]).numpy()
        if not np.allclose(t_out.numpy(), (up - down) / (2 * eps), rtol=1e-6, atol=1e-8):
            failures.append(f"{entry.name} {sample}")
    assert not failures, failures


# -- gradient situations beyond the op table ----------------------------------------------

X = np.array([0.7, -1.3, 2.1])


@pytest.mark.parametrize("f,derivative", [
    (lambda x: x * x, lambda x: 2 * x),
    (lambda x: x / x, lambda x: 0 * x),
    (lambda x: gk.maximum(x, x), lambda x: np.ones_like(x)),  # a tie: 0.5 + 0.5
    (lambda x: gk.minimum(x, x), lambda x: np.ones_like(x)),
    (lambda x: gk.where(x > 0, x, x * 3), lambda x: np.where(x > 0, 1.0, 3.0)),
    (lambda x: gk.concatenate([x, x]) * 2, lambda x: 4 * np.ones_like(x)),
    (lambda x: gk.stack([x, x * x]), lambda x: 1 + 2 * x),
    (lambda x: x @ x, lambda x: 2 * x),
    (lambda x: x[[0, 0, -1]] * x[[-1, 0, 0]], None),
], ids=["mul", "div", "maximum", "minimum", "where", "concat", "stack", "matmul", "getitem"])
def test_same_tensor_on_both_sides(f, derivative):
    g = gk.grad(lambda t: f(t).sum())(f64(X)).numpy()
    expected = derivative(X) if derivative is not None else numeric_grad(
        lambda v: f(f64(v)).numpy().sum(), X)
    np.testing.assert_allclose(g, expected, rtol=1e-7, atol=1e-12)
    gk.testing.gradcheck(f, f64(X), order=2)


def test_same_tensor_as_base_and_exponent():
    x = np.abs(X)
    g = gk.grad(lambda t: (t ** t).sum())(f64(x)).numpy()
    np.testing.assert_allclose(g, x ** x * (np.log(x) + 1), rtol=1e-12)
    gk.testing.gradcheck(lambda t: t ** t, f64(x), order=2)


def test_matmul_of_a_2d_tensor_with_its_transpose():
    a = np.array([[1.0, 2.0], [-0.5, 0.3]])
    g = gk.grad(lambda t: (t @ t.T).sum())(f64(a)).numpy()
    np.testing.assert_allclose(g, numeric_grad(lambda v: (v @ v.T).sum(), a), rtol=1e-7)


@pytest.mark.parametrize("cond_shape,x_shape,y_shape", [
    ((2, 1), (3,), ()), ((2, 3), (1, 3), (2, 1)), ((3,), (2, 3), (3,)), ((), (2,), (2,))])
def test_where_with_a_broadcasting_condition(cond_shape, x_shape, y_shape):
    rng = np.random.default_rng(1)
    cond = gk.tensor(rng.random(cond_shape) > 0.5)
    gk.testing.gradcheck(lambda a, b: gk.where(cond, a, b), f64(rng.standard_normal(x_shape)),
                         f64(rng.standard_normal(y_shape)), order=2)


@pytest.mark.parametrize("index", [
    (-1,), (slice(None, None, -1),), (slice(None, None, -2), slice(1, None)), (Ellipsis, -1),
    (None, 1), (1, slice(None), None), (None, Ellipsis, None), ([-1, -1, 0],),
    (slice(None, None, 2), [0, 0]), (np.array([[0, 1], [1, 2]]),), ([0, 2], slice(None), [1, 1]),
    (Ellipsis,), (np.array([True, False, True]),),
], ids=lambda i: repr(i).replace(" ", ""))
def test_getitem_gradient_scatters_for_every_index_kind(index):
    x = np.arange(24.0).reshape(3, 2, 4) / 10
    if isinstance(index[0], np.ndarray) and index[0].ndim == 2:
        x = np.arange(12.0).reshape(3, 4) / 10
    g = gk.grad(lambda t: (t[index] * 1.0).sum())(f64(x)).numpy()
    expected = np.zeros_like(x)
    np.add.at(expected, index, 1.0)
    np.testing.assert_array_equal(g, expected)
    gk.testing.gradcheck(lambda t: t[index], f64(x), order=2)


def test_getitem_with_integer_tensor_and_repeated_negative_indices():
    x = f64(np.arange(6.0).reshape(3, 2))
    g = gk.grad(lambda t: t[gk.tensor([-1, -1, 2])].sum())(x).numpy()
    np.testing.assert_array_equal(g, [[0, 0], [0, 0], [3, 3]])


@pytest.mark.parametrize("a,b", [((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 5)),
                                 ((2, 3, 4), (4,)), ((1, 3, 4), (2, 1, 4, 2)),
                                 ((0, 3), (3, 2))])
def test_matmul_batch_broadcasting_gradients(a, b):
    rng = np.random.default_rng(2)
    gk.testing.gradcheck(lambda p, q: p @ q, f64(rng.standard_normal(a)),
                         f64(rng.standard_normal(b)), order=2)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp", "var"])
@pytest.mark.parametrize("axis", [-1, (-1, 0), (-3, -2), (0, 2)])
@pytest.mark.parametrize("keepdims", [True, False])
def test_reductions_with_negative_axis_tuples(op, axis, keepdims):
    values = np.random.default_rng(3).permutation(24).reshape(2, 3, 4) * 0.25 + 0.01
    gk.testing.gradcheck(lambda t: getattr(gk, op)(t, axis=axis, keepdims=keepdims),
                         f64(values), order=2)
    out = getattr(gk, op)(f64(values), axis=axis, keepdims=keepdims)
    reference = (lambda v, **k: np.log(np.exp(v).sum(**k))) if op == "logsumexp" else \
        getattr(np, op)
    np.testing.assert_allclose(out.numpy(), reference(values, axis=axis, keepdims=keepdims))


def test_max_ties_split_evenly_over_an_axis_tuple():
    x = f64([[[1.0, 3.0], [3.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]]])
    g = gk.grad(lambda t: gk.max(t, axis=(1, 2)).sum())(x).numpy()
    np.testing.assert_allclose(g, [[[0, 0.5], [0.5, 0]], [[0.25, 0.25], [0.25, 0.25]]])
    g = gk.grad(lambda t: gk.min(t, axis=(-1, -2), keepdims=True).sum())(x).numpy()
    np.testing.assert_allclose(g, [[[0, 0], [0, 1]], [[0.25, 0.25], [0.25, 0.25]]])


# -- transforms beyond the single-argument cases ----------------------------------------

def test_jvp_with_several_primals():
    f = lambda a, b: gk.exp(a) * b + a * a  # noqa: E731
    a, b = np.array([0.3, -0.2]), np.array([1.5, 2.0])
    ta, tb = np.array([1.0, -1.0]), np.array([0.5, 2.0])
    out, t_out = gk.jvp(f, (f64(a), f64(b)), (f64(ta), f64(tb)))
    expected = (np.exp(a) * b + 2 * a) * ta + np.exp(a) * tb
    np.testing.assert_allclose(t_out.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(out.numpy(), np.exp(a) * b + a * a)


def test_forward_over_reverse_and_reverse_over_forward_hvp():
    f = lambda x: (x ** 3).sum() * x[0]  # noqa: E731
    x, v = f64([0.5, -1.0, 2.0]), np.array([1.0, 2.0, -1.0])
    H = gk.hessian(f)(x).numpy()
    np.testing.assert_allclose(gk.jvp(gk.grad(f), (x,), (f64(v),))[1].numpy(), H @ v)
    np.testing.assert_allclose(
        gk.grad(lambda t: gk.jvp(f, (t,), (f64(v),))[1])(x).numpy(), H @ v)
    np.testing.assert_allclose(gk.vjp(gk.grad(f), x)[1](f64(v))[0].numpy(), H @ v)


def test_transforms_pass_non_tensor_kwargs_through():
    f = lambda x, power=2, scale=1.0: (scale * x ** power).sum()  # noqa: E731
    x = f64([1.0, 2.0])
    np.testing.assert_allclose(gk.grad(f)(x, power=3, scale=2.0).numpy(), [6.0, 24.0])
    value, g = gk.value_and_grad(f)(x, scale=0.5)
    assert value.item() == 2.5
    np.testing.assert_allclose(g.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(gk.hessian(f)(x, power=3).numpy(), np.diag([6.0, 12.0]))
    np.testing.assert_allclose(
        gk.jacobian(lambda t, k=1.0: t * k)(x, k=3.0).numpy(), 3 * np.eye(2))


def test_hessian_and_jacobian_with_argnums_other_than_zero():
    f = lambda a, b: (a * b * b).sum()  # noqa: E731
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    np.testing.assert_allclose(gk.hessian(f, argnums=1)(a, b).numpy(), np.diag(2 * a.numpy()))
    ja, jb = gk.jacobian(lambda p, q: p * q, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ja.numpy(), np.diag(b.numpy()))
    np.testing.assert_allclose(jb.numpy(), np.diag(a.numpy()))


def test_grad_with_the_same_tensor_in_two_argnums():
    x = f64([0.5, -1.0])
    ga, gb = gk.grad(lambda a, b: (a * b * b).sum(), argnums=(0, 1))(x, x)
    np.testing.assert_allclose(ga.numpy(), x.numpy() ** 2)
    np.testing.assert_allclose(gb.numpy(), 2 * x.numpy() ** 2)


def test_jacobian_of_0d_and_of_empty_outputs():
    assert gk.jacobian(lambda t: t * t)(f64(3.0)).item() == 6.0
    assert gk.jacobian(lambda t: t[:0])(f64([1.0, 2.0])).shape == (0, 2)


# -- grad mode, dtypes, 0-d and empty tensors --------------------------------------------

def test_no_grad_is_per_thread():
    x = f64([1.0], requires_grad=True)
    inside, other = threading.Event(), threading.Event()
    seen = {}

    def quiet():
        with gk.no_grad():
            inside.set()
            other.wait(5)
            seen["quiet"] = (x * 2).requires_grad

    def recording():
        inside.wait(5)
        seen["recording"] = (x * 2).requires_grad
        other.set()

    threads = [threading.Thread(target=quiet), threading.Thread(target=recording)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"quiet": False, "recording": True}
    assert gk.is_grad_enabled()


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with gk.no_grad():
            1 / 0
    assert gk.is_grad_enabled()


@pytest.mark.parametrize("f", [gk.exp, gk.sigmoid, gk.tanh, gk.softplus, gk.gelu,
                               lambda t: gk.softmax(t), lambda t: gk.mean(t),
                               lambda t: gk.var(t), lambda t: t ** 2.0,
                               lambda t: gk.clip(t, 0.0, 0.5)])
def test_float16_gradients_keep_float16(f):
    x = gk.tensor(np.array([0.25, -0.5], dtype=np.float16), requires_grad=True)
    f(x).sum().backward()
    assert x.grad.dtype == np.float16 and x.grad.shape == (2,)


def test_int_and_bool_tensors_mix_with_float_tensors():
    i, b = gk.tensor([1, 2, 3]), gk.tensor([True, False, True])
    assert gk.exp(i).dtype.kind == "f" and (i / i).dtype.kind == "f"
    x = gk.tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32), requires_grad=True)
    ((x * i).sum() + (x * b).sum()).backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 4.0])
    with pytest.raises(gk.DTypeError):
        gk.tensor([True], requires_grad=True)
    with pytest.raises(gk.DTypeError):
        gk.tensor([1, 2]).requires_grad = True


def test_zero_dimensional_tensors_through_the_ops():
    x = f64(0.7)
    for f in (gk.exp, gk.sigmoid, lambda t: t.max(), lambda t: t.sum(), gk.softmax,
              lambda t: gk.reshape(t, (1, 1)), lambda t: t[None], lambda t: t * t):
        gk.testing.gradcheck(f, x, order=2)


def test_empty_tensors_have_empty_gradients():
    x = f64(np.zeros((0, 3)), requires_grad=True)
    w = f64(np.ones((3, 2)), requires_grad=True)
    ((x @ w).sum() + x.sum() + gk.mean(x, axis=0).sum()).backward()
    assert x.grad.shape == (0, 3)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((3, 2)))


def test_a_backward_that_fails_partway_says_so_on_the_nodes_it_freed():
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2.0
    w = gk.tensor([3.0], requires_grad=True)
    loss = (h * w).sum()

    def fail(leaf):
        if leaf is w:
            raise RuntimeError("listener failed")
    remove = gk.autodiff.on_gradient_ready(fail)
    try:
        with pytest.raises(RuntimeError, match="listener failed"):
            loss.backward()
    finally:
        remove()
    freed = loss.node
    assert freed.inputs is None and "failed partway (RuntimeError: listener failed)" in \
        freed.freed_by
    with pytest.raises(gk.GraphError, match="failed partway"):
        loss.backward()


def test_a_node_freed_during_a_backward_by_a_listeners_backward_is_named():
    x, w = gk.tensor([1.0, 2.0], requires_grad=True), gk.tensor([3.0], requires_grad=True)
    s = x * 2.0
    other = (s * 4.0).sum()
    outer = (s.sum() * w).sum()
    remove = gk.autodiff.on_gradient_ready(lambda leaf: other.backward() if leaf is w else None)
    try:
        with pytest.raises(gk.GraphError, match="graph through op 'multiply' is gone: an earlier "
                                             "backward freed it"):
            outer.backward()
    finally:
        remove()
    assert s.node.freed_by.startswith("an earlier backward freed it")  # (its own message)
