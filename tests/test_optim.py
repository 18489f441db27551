"""Optimizers against hand-written NumPy formulas, their ops, state, validation, training."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.errors import ArgumentError
from gradkit.optim import OptimizerStateError

STEPS = 3


def _problem(seed=0):
    """Two float64 parameters and a gradient per step for each (fixed, not computed)."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(v.shape) for v in values] for _ in range(STEPS)]
    return values, grads


def _run(make_optimizer, values, grads):
    params = [gk.tensor(v, requires_grad=True) for v in values]
    optimizer = make_optimizer(params)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = gk.tensor(g)
        optimizer.step()
    return [p.numpy() for p in params]


def _sgd_reference(values, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    params = [v.copy() for v in values]
    velocity = [np.zeros_like(v) for v in values]
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = g + weight_decay * params[i]
            if momentum:
                velocity[i] = momentum * velocity[i] + g
                g = g + momentum * velocity[i] if nesterov else velocity[i]
            params[i] = params[i] - lr * g
    return params


def _adam_reference(values, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                    decoupled=False):
    b1, b2 = betas
    params = [v.copy() for v in values]
    m = [np.zeros_like(v) for v in values]
    v = [np.zeros_like(x) for x in values]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            if decoupled:
                params[i] = params[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * params[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


SGD_CASES = [dict(lr=0.1), dict(lr=0.05, weight_decay=0.1), dict(lr=0.1, momentum=0.9),
             dict(lr=0.1, momentum=0.9, nesterov=True),
             dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.01)]


@pytest.mark.parametrize("settings", SGD_CASES, ids=lambda s: ",".join(s))
def test_sgd_matches_the_numpy_formula(settings):
    values, grads = _problem()
    got = _run(lambda ps: gk.optim.SGD(ps, **settings), values, grads)
    for g, e in zip(got, _sgd_reference(values, grads, **settings)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


ADAM_CASES = [dict(lr=1e-2), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
              dict(lr=1e-2, weight_decay=0.1)]


@pytest.mark.parametrize("settings", ADAM_CASES, ids=lambda s: ",".join(s))
def test_adam_matches_the_numpy_formula(settings):
    values, grads = _problem()
    got = _run(lambda ps: gk.optim.Adam(ps, **settings), values, grads)
    for g, e in zip(got, _adam_reference(values, grads, **settings)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("settings", [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.3)],
                         ids=lambda s: ",".join(s))
def test_adamw_decays_the_weights_decoupled(settings):
    values, grads = _problem()
    got = _run(lambda ps: gk.optim.AdamW(ps, **settings), values, grads)
    expected = _adam_reference(values, grads, decoupled=True,
                               **{"weight_decay": 1e-2, **settings})
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    assert not np.allclose(got[0], _adam_reference(values, grads, **settings)[0], rtol=1e-9)


def test_float32_parameters_stay_float32_and_read_only():
    p = gk.tensor(np.ones(3, np.float32), requires_grad=True)
    optimizer = gk.optim.Adam([p], lr=0.1)
    (p * p).sum().backward()
    optimizer.step()
    assert p.dtype == np.float32 and p.requires_grad and p.is_leaf
    assert not p.array_backend.is_writeable(p.data)  # parameters' arrays stay read-only
    if hasattr(p.data.flags, "writeable"):  # where the array library enforces it too
        with pytest.raises(ValueError):
            p.data[0] = 5.0
    assert optimizer.state[0]["m"].dtype == np.float32


def test_step_keeps_the_parameter_object_and_bumps_its_version():
    p = gk.tensor([1.0, 2.0], requires_grad=True)
    optimizer = gk.optim.SGD([p], lr=0.5)
    y = (p * p).sum()
    y.backward(retain_graph=True)
    optimizer.step()
    assert p._version == 1
    np.testing.assert_allclose(p.numpy(), [0.0, 0.0])
    with pytest.raises(gk.GraphError, match="modified in place"):  # the graph saw old values
        y.backward()


def test_parameters_without_a_gradient_are_skipped():
    used, frozen = gk.tensor([1.0], requires_grad=True), gk.tensor([1.0], requires_grad=True)
    optimizer = gk.optim.SGD([used, frozen], lr=0.1, momentum=0.9)
    (used * 3).sum().backward()
    optimizer.step()
    assert used.item() == pytest.approx(0.7) and frozen.item() == 1.0
    assert frozen._version == 0 and optimizer.state[1] == {}


def test_plain_sgd_keeps_no_buffer():
    p = gk.tensor([1.0], requires_grad=True)
    optimizer = gk.optim.SGD([p], lr=0.1)
    p.sum().backward()
    optimizer.step()
    assert optimizer.state == [{}]


def test_zero_grad_clears_the_gradients():
    model = gk.nn.Linear(2, 2)
    optimizer = gk.optim.SGD(model.parameters(), lr=0.1)
    model(gk.ones((1, 2))).sum().backward()
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_buffers_live_on_the_parameters_backend(backend):
    p = gk.tensor([1.0, 2.0], requires_grad=True)
    optimizer = gk.optim.SGD([p], lr=0.1, momentum=0.9)
    p.sum().backward()
    optimizer.step()
    velocity = optimizer.state[0]["velocity"]
    assert velocity.backend == backend.name and not velocity.requires_grad
    assert velocity.numpy().tolist() == [1.0, 1.0]


@pytest.mark.parametrize("op_name,make", [
    ("sgd_update", lambda ps: gk.optim.SGD(ps, lr=0.1, momentum=0.9)),
    ("adam_update", lambda ps: gk.optim.Adam(ps, lr=0.1)),
    ("adam_update", lambda ps: gk.optim.AdamW(ps, lr=0.1))])
def test_updates_run_through_the_registered_op(backend, op_name, make):
    """A backend that registers a fused kernel for the update gets every step."""
    calls = []
    reference = backend.resolve(gk.registry.get_op(op_name))
    previous = (backend.kernel_factories.get(op_name),
                backend.donating_kernel_factories.get(op_name))

    def counting_kernel(*arrays, **params):
        calls.append([None if a is None else np.array(backend.to_numpy(a)) for a in arrays])
        return reference(*arrays, **params)

    backend.register_kernel(op_name, counting_kernel)
    try:
        params = [gk.tensor([1.0, 2.0], requires_grad=True), gk.tensor([3.0], requires_grad=True)]
        optimizer = make(params)
        for _ in range(2):
            sum(p.sum() for p in params).backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        if previous[0] is None:
            backend.unregister_kernel(op_name)
        else:
            backend.register_kernel_factory(op_name, *previous)
    assert len(calls) == 4
    if op_name == "adam_update":
        assert [int(arrays[4]) for arrays in calls] == [1, 1, 2, 2]  # the step count


def test_update_ops_write_the_state_buffers_in_place():
    p, g = gk.tensor([1.0, -1.0], dtype="float64"), gk.tensor([0.5, 0.25], dtype="float64")
    m, v = gk.zeros_like(p), gk.zeros_like(p)
    m_array = m.data
    new = gk.adam_update(p, g, m, v, gk.tensor(1), lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                         weight_decay=0.0, decoupled=False)
    assert m.data is m_array
    np.testing.assert_allclose(m.numpy(), [0.05, 0.025])
    np.testing.assert_allclose(v.numpy(), [0.00025, 0.0000625])
    np.testing.assert_allclose(new.numpy(), [0.9, -1.1], rtol=1e-6)
    assert p.numpy().tolist() == [1.0, -1.0]


def test_update_op_errors_name_the_argument():
    p = gk.tensor([1.0, 2.0])
    with pytest.raises(ArgumentError, match="momentum=0.9 needs a velocity buffer"):
        gk.sgd_update(p, p, lr=0.1, momentum=0.9)
    with pytest.raises(ArgumentError, match="lr .* is required"):
        gk.sgd_update(p, p)
    with pytest.raises(gk.ShapeError, match="argument grad must have param's shape"):
        gk.sgd_update(p, gk.tensor([1.0]), lr=0.1)
    # a step count's value is read only on the host (on a GPU it stays on the device)
    readable = p.array_backend.host_conversion_allowed
    for step in (gk.tensor(0),) * readable + (gk.tensor([1, 2]), gk.tensor(1.0)):
        with pytest.raises(ArgumentError, match="step must be a 0-d integer tensor >= 1"):
            gk.adam_update(p, p, gk.zeros_like(p), gk.zeros_like(p), step, lr=0.1, beta1=0.9,
                           beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)


# -- validation --------------------------------------------------------------------------

def _params():
    return [gk.tensor([1.0], requires_grad=True)]


@pytest.mark.parametrize("make,message", [
    (lambda: gk.optim.SGD(_params(), lr=-0.1), "lr must be >= 0.0"),
    (lambda: gk.optim.SGD(_params(), lr=True), "lr must be a finite number"),
    (lambda: gk.optim.SGD(_params(), lr=float("nan")), "lr must be a finite number"),
    (lambda: gk.optim.SGD(_params(), lr=0.1, momentum=-0.5), "momentum must be >= 0.0"),
    (lambda: gk.optim.SGD(_params(), lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: gk.optim.SGD(_params(), lr=0.1, nesterov=1), "nesterov must be True or False"),
    (lambda: gk.optim.SGD(_params(), lr=0.1, weight_decay=-1), "weight_decay must be >= 0.0"),
    (lambda: gk.optim.Adam(_params(), betas=(1.0, 0.999)), r"betas\[0\] must be in \[0.0, 1.0\)"),
    (lambda: gk.optim.Adam(_params(), betas=(0.9, -0.1)), r"betas\[1\] must be in \[0.0, 1.0\)"),
    (lambda: gk.optim.Adam(_params(), betas=0.9), "betas must be a pair"),
    (lambda: gk.optim.Adam(_params(), eps=-1e-8), "eps must be >= 0.0"),
    (lambda: gk.optim.AdamW(_params(), weight_decay=-0.1), "AdamW: weight_decay must be >= 0.0"),
    (lambda: gk.optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda: gk.optim.SGD([_params()[0], 1.0], lr=0.1), r"params\[1\] must be a Tensor"),
    (lambda: gk.optim.SGD(gk.nn.Linear(2, 2), lr=0.1), r"model.parameters\(\)"),
    (lambda: gk.optim.SGD(_params() * 2, lr=0.1), "appears more than once"),
    (lambda: gk.optim.SGD([gk.tensor([1.0], requires_grad=True) * 2], lr=0.1), "leaf"),
    (lambda: gk.optim.SGD([gk.tensor([1, 2])], lr=0.1), "floating leaf tensor"),
])
def test_bad_hyperparameters_and_params_are_named(make, message):
    with pytest.raises((ArgumentError, TypeError), match=message):
        make()


# -- saved state -----------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda ps: gk.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: gk.optim.Adam(ps, lr=0.05, weight_decay=0.01),
                                  lambda ps: gk.optim.AdamW(ps, lr=0.05)])
def test_optimizer_state_round_trips_through_a_file(make, tmp_path):
    values, grads = _problem()
    grads = grads + grads  # six steps: three, save and resume, three more
    first = [gk.tensor(v, requires_grad=True) for v in values]
    optimizer = make(first)

    def steps(params, opt, chunk):
        for step_grads in chunk:
            for p, g in zip(params, step_grads):
                p.grad = gk.tensor(g)
            opt.step()

    steps(first, optimizer, grads[:3])
    gk.save(optimizer.state_dict(), tmp_path / "optimizer.npz")
    resumed_params = [gk.tensor(p.numpy(), requires_grad=True) for p in first]
    resumed = make(resumed_params)
    resumed.load_state_dict(gk.load(tmp_path / "optimizer.npz"))
    steps(first, optimizer, grads[3:])
    steps(resumed_params, resumed, grads[3:])
    for a, b in zip(first, resumed_params):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_loading_restores_the_hyperparameters():
    saved = gk.optim.SGD(_params(), lr=0.3, momentum=0.5, nesterov=True).state_dict()
    optimizer = gk.optim.SGD(_params(), lr=0.1)
    optimizer.load_state_dict(saved)
    assert (optimizer.lr, optimizer.momentum, optimizer.nesterov) == (0.3, 0.5, True)
    assert type(optimizer.nesterov) is bool


def _stepped_adam():
    p = gk.tensor([1.0, 2.0], requires_grad=True)
    optimizer = gk.optim.Adam([p], lr=0.1)
    p.sum().backward()
    optimizer.step()
    return optimizer


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update({"state.0.m": np.zeros(3)}), r"state.0.m: expected float32 \(2,\)"),
    (lambda s: s.update({"state.5.m": np.zeros(2)}), r"unexpected keys: \['state.5.m'\]"),
    (lambda s: s.update({"momentum": np.array(0.9)}), r"unexpected keys: \['momentum'\]"),
    (lambda s: s.pop("hyperparameters.lr"), r"missing keys: \['hyperparameters.lr'\]"),
    (lambda s: s.pop("state.0.v"), r"state.0: expected entries \['m', 'step', 'v'\]"),
    (lambda s: s.update({"hyperparameters.eps": np.array(-1.0)}), "eps must be >= 0.0"),
    (lambda s: s.update({"state.0.step": np.array(1.5)}), "state.0.step: expected a 0-d count")])
def test_a_bad_optimizer_state_is_refused_and_changes_nothing(change, message):
    optimizer = _stepped_adam()
    before = {k: v.copy() for k, v in optimizer.state_dict().items()}
    state = optimizer.state_dict()
    state["hyperparameters.lr"] = np.array(0.7)
    state["state.0.m"] = np.ones(2, np.float32)
    change(state)
    with pytest.raises(OptimizerStateError, match=message):
        optimizer.load_state_dict(state)
    after = optimizer.state_dict()
    assert list(after) == list(before)
    assert all(np.array_equal(after[k], before[k]) for k in before)


# -- training ----------------------------------------------------------------------------

def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    points = centers[labels] + 0.5 * rng.standard_normal((n, 2))
    return gk.tensor(points.astype(np.float32)), gk.tensor(labels)


@pytest.mark.parametrize("make", [lambda ps: gk.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: gk.optim.Adam(ps, lr=0.01),
                                  lambda ps: gk.optim.AdamW(ps, lr=0.01)])
def test_a_small_mlp_learns(make):
    x, labels = _blobs()
    model = gk.nn.MLP([2, 32, 3], seed=0)
    optimizer = make(model.parameters())
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = gk.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    assert losses[0] > 0.5 and math.isfinite(losses[-1])
    accuracy = (model(x).numpy().argmax(axis=1) == labels.numpy()).mean()
    assert accuracy > 0.95
