"""The tape: accumulation, deep graphs, freeing, memory, higher order, no_grad."""
from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import gradkit as gk


def f64(data, requires_grad=False):
    return gk.tensor(np.asarray(data, dtype=np.float64), requires_grad=requires_grad)


def test_value_used_many_times_accumulates():
    x = f64([1.5, -2.0], requires_grad=True)
    y = x * x + x * 3 + x  # d/dx = 2x + 4
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.5, -2.0]) + 4)


def test_grad_accumulates_across_backward_calls_until_zero_grad():
    x = f64([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])
    x.zero_grad()
    assert x.grad is None


def test_chain_of_100000_ops_backpropagates_iteratively():
    x = f64(0.5, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad.item() == pytest.approx(1.0)


def test_deep_graph_can_be_dropped_without_backward():
    x = f64(0.5, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    del y  # deallocating 100k nested nodes must not overflow the C stack
    gc.collect()


def test_backward_frees_the_graph_and_a_second_backward_says_why():
    x = f64([1.0, 2.0], requires_grad=True)
    y = gk.exp(x).sum()
    y.backward()
    with pytest.raises(gk.GraphError, match="earlier backward freed it.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = f64([1.0, 2.0], requires_grad=True)
    y = gk.exp(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([1.0, 2.0]))


def test_intermediates_are_released_after_backward():
    x = f64(np.ones((50, 50)), requires_grad=True)
    hidden = gk.tanh(x @ x)
    probe = weakref.ref(hidden)
    loss = hidden.sum()
    del hidden
    assert probe() is not None  # the graph keeps it alive before backward
    loss.backward()
    gc.collect()
    assert probe() is None


def _training_step(w, x, target):
    loss = ((gk.tanh(x @ w) - target) ** 2).mean()
    loss.backward()
    with gk.no_grad():
        w.data = (w - 0.01 * w.grad).data
    w.zero_grad()
    return loss


def test_memory_does_not_grow_over_10000_steps():
    """A leak grows the heap in every window; a cache filling up grows it once.

    The traced heap is read after each of five windows of 2,000 steps. Leaking even
    one small object per step (16 bytes at the least) adds 32 KB to every window, so
    the median growth per window must stay below that; a one-time growth (a cache or
    a table that resizes on some machines and not others) moves one window only.
    """
    rng = np.random.default_rng(0)
    w = gk.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    x = gk.tensor(rng.standard_normal((8, 4)))
    target = gk.tensor(rng.standard_normal((8, 3)))
    for _ in range(200):
        _training_step(w, x, target)
    gc.collect()
    window, readings = 2000, []
    tracemalloc.start()
    try:
        readings.append(tracemalloc.get_traced_memory()[0])
        for _ in range(5):
            for _ in range(window):
                _training_step(w, x, target)
            readings.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    growth = np.diff(readings)
    assert np.median(growth) < 16 * window, f"heap grew by {growth.tolist()} bytes per window"


def test_no_node_without_requires_grad_or_inside_no_grad():
    a = f64([1.0, 2.0])
    assert (a * 2).node is None and not (a * 2).requires_grad
    b = f64([1.0, 2.0], requires_grad=True)
    with gk.no_grad():
        c = gk.exp(b) * 2
    assert c.node is None and not c.requires_grad
    with gk.no_grad():
        with gk.enable_grad():
            d = b * 2
    assert d.node is not None and d.requires_grad


def test_no_grad_works_as_a_decorator():
    b = f64([1.0], requires_grad=True)

    @gk.no_grad()
    def double(t):
        return t * 2

    assert not double(b).requires_grad
    assert gk.is_grad_enabled()


def test_create_graph_gives_third_derivatives():
    x = f64(0.3, requires_grad=True)
    y = gk.exp(2 * x)
    (g1,) = [None]
    y.backward(create_graph=True)
    g1 = x.grad
    x.zero_grad()
    g1.backward(create_graph=True)
    g2 = x.grad
    x.zero_grad()
    g2.backward()
    assert x.grad.item() == pytest.approx(8 * np.exp(0.6), rel=1e-12)


def test_grad_of_grad_of_grad_composes():
    f = lambda x: x ** 4  # noqa: E731
    third = gk.grad(gk.grad(gk.grad(f)))
    assert third(f64(1.5)).item() == pytest.approx(24 * 1.5, rel=1e-12)


def test_backward_of_non_scalar_needs_grad():
    y = f64(np.ones((3, 4)), requires_grad=True) * 2
    with pytest.raises(gk.GraphError, match=r"\(3, 4\).*scalar"):
        y.backward()
    y.backward(gk.ones((3, 4), dtype="float64"))


def test_backward_grad_of_wrong_shape():
    y = f64(np.ones((3, 4)), requires_grad=True) * 2
    with pytest.raises(gk.ShapeError, match=r"\(4, 3\).*\(3, 4\)"):
        y.backward(np.ones((4, 3)))


def test_backward_without_requires_grad_says_so():
    with pytest.raises(gk.GraphError, match="does not require a gradient"):
        (f64([1.0]) * 2).sum().backward()


def test_engine_names_the_op_whose_vjp_returns_a_wrong_shape():
    bad = gk.register_op("bad_shape_vjp", lambda xp, x: x * 2,
                         lambda ctx, g: (g.sum(),))
    try:
        x = f64([1.0, 2.0], requires_grad=True)
        with pytest.raises(gk.ShapeError, match=r"bad_shape_vjp.*shape \(\).*input 0"):
            bad(x).sum().backward()
    finally:
        gk.unregister_op("bad_shape_vjp")


def test_engine_names_the_op_whose_vjp_returns_a_wrong_dtype():
    bad = gk.register_op("bad_dtype_vjp", lambda xp, x: x * 2,
                         lambda ctx, g: (g.astype("float32"),))
    try:
        x = f64([1.0, 2.0], requires_grad=True)
        with pytest.raises(gk.DTypeError, match=r"bad_dtype_vjp.*float32.*input 0"):
            bad(x).sum().backward()
    finally:
        gk.unregister_op("bad_dtype_vjp")


def test_detach_cuts_the_graph():
    x = f64([2.0], requires_grad=True)
    y = (x * x).detach() * x
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0])


def test_backward_through_a_leaf_root():
    x = f64(3.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0
