"""gk.capture: a replay does what the eager step did, or refuses with a CaptureError."""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit.errors import GradkitError, ShapeError
from gradkit.nn import functional as F


def _batches(rng, n, batch=8, features=5, classes=3):
    return [(rng.standard_normal((batch, features)).astype(np.float32),
             rng.integers(0, classes, size=batch)) for _ in range(n)]


def _trainer(optimizer_factory, activation="relu", seed=0):
    model = gk.nn.MLP([5, 16, 16, 3], activation=activation, seed=seed)
    optimizer = optimizer_factory(model.parameters())

    def step(x, labels):
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss
    return model, optimizer, step


def _train(step, batches):
    return [step(gk.tensor(x), gk.tensor(y)).item() for x, y in batches]


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("optimizer", [
    lambda ps: gk.optim.SGD(ps, lr=0.1),
    lambda ps: gk.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
])
def test_replayed_training_equals_eager_training(rng, activation, optimizer):
    batches = _batches(rng, 7)
    eager_model, _, eager_step = _trainer(optimizer, activation)
    model, opt, step = _trainer(optimizer, activation)
    captured = gk.capture(step)
    assert _train(captured, batches) == _train(eager_step, batches)  # bit for bit
    assert captured.recordings == 2 and captured.replays == 5
    for (name, p), (_, q) in zip(model.named_parameters(), eager_model.named_parameters()):
        assert np.array_equal(p.numpy(), q.numpy()), name
        assert p.grad is None and p.requires_grad and p.is_leaf
    # optimizer buffers were updated in place by the replays, as eager did
    for state in opt.state:
        for value in state.values():
            assert not isinstance(value, gk.Tensor) or np.isfinite(value.numpy()).all()


def test_parameters_stay_read_only_leaves_with_bumped_versions():
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    opt = gk.optim.SGD([w], lr=0.1)

    @gk.capture
    def step(x):
        opt.zero_grad()  # first, so the step leaves its gradient on w
        loss = (w * x).sum()
        loss.backward()
        opt.step()
        return loss

    versions = []
    for k in range(4):
        step(gk.tensor([1.0, float(k)]))
        versions.append(w._version)
        assert w.grad.numpy().tolist() == [1.0, float(k)]
    assert versions == [1, 2, 3, 4]
    assert not w.data.flags.writeable
    assert w.grad.data.flags.writeable  # the replay's own array, the user's to modify


def test_gradients_accumulating_across_calls_are_refused():
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    step = gk.capture(lambda x: (w * x).sum().backward())
    step(gk.ones(2))
    with pytest.raises(gk.CaptureError, match="zero_grad"):
        step(gk.ones(2))


def test_grads_left_on_parameters_are_replayed():
    w = gk.tensor([1.0, 2.0], requires_grad=True)

    @gk.capture
    def grads_only(x):
        w.grad = None
        (w * w * x).sum().backward()
        return None

    for k in range(4):
        grads_only(gk.tensor([float(k), 1.0]))
        assert w.grad.numpy().tolist() == [2.0 * k, 4.0]
    w.grad.data[0] = 99.0  # the user's own memory: the next replay is unaffected
    grads_only(gk.tensor([1.0, 1.0]))
    assert w.grad.numpy().tolist() == [2.0, 4.0]


def test_gradients_with_respect_to_the_arguments():
    @gk.capture
    def input_gradient(x):
        x = x.detach().requires_grad_()  # a read-only view of the argument's array
        (gk.tanh(x) * 2).sum().backward()
        return x.grad

    for k in range(4):
        x = np.array([0.1 * k, -0.5, 1.0], dtype=np.float32)
        expected = 2 * (1 - np.tanh(x) ** 2)
        np.testing.assert_allclose(input_gradient(gk.tensor(x)).numpy(), expected, rtol=1e-6)
    assert input_gradient.replays == 2


def test_new_shapes_record_again():
    double = gk.capture(lambda x: x * 2)
    for n in (3, 3, 3, 4, 4, 4, 3):
        out = double(gk.ones(n))
        assert out.shape == (n,) and out.numpy().tolist() == [2.0] * n
    assert len(double.plans) == 2 and double.replays == 3


def test_outputs_come_back_detached_in_their_structure():
    w = gk.tensor([3.0], requires_grad=True)

    @gk.capture
    def f(x):
        y = w * x
        return {"y": y, "pair": (y + 1, None), "name": "f"}

    for k in range(3):
        out = f(gk.tensor([float(k)]))
        assert out["y"].numpy().tolist() == [3.0 * k]
        assert out["pair"][0].numpy().tolist() == [3.0 * k + 1] and out["pair"][1] is None
        assert out["name"] == "f" and not out["y"].requires_grad


def test_state_updated_in_place_and_by_setitem_is_replayed():
    def make():
        running = gk.zeros(3)
        counts = gk.zeros(3)

        def update(x):
            running.__imul__(0.5)
            running.__iadd__(x * 0.5)
            counts[1] = counts[1] + 1.0
            return running.sum()
        return running, counts, update

    eager_running, eager_counts, eager_update = make()
    running, counts, update = make()
    captured = gk.capture(update)
    for k in range(5):
        x = gk.tensor([float(k), 1.0, -float(k)])
        assert captured(x).item() == eager_update(x).item()
    assert np.array_equal(running.numpy(), eager_running.numpy())
    assert counts.numpy().tolist() == [0.0, 5.0, 0.0] == eager_counts.numpy().tolist()


def test_an_index_tensor_in_params_follows_the_arguments():
    @gk.capture
    def picked(scores, labels):
        return scores[gk.arange(labels.shape[0]), labels].sum()

    scores = gk.tensor(np.arange(12.0).reshape(4, 3))
    for labels in ([0, 1, 2, 0], [0, 0, 0, 0], [2, 2, 1, 1], [1, 0, 2, 2]):
        expected = float(np.arange(12.0).reshape(4, 3)[np.arange(4), labels].sum())
        assert picked(scores, gk.tensor(labels)).item() == expected


def test_the_source_lists_every_kernel():
    _, _, step = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    captured = gk.capture(step)
    for x, y in _batches(np.random.default_rng(0), 3):
        captured(gk.tensor(x), gk.tensor(y))
    source = captured.source
    for name in ("bias_activation", "cross_entropy_backward", "sgd_update"):
        assert f" = {name}_" in source
    assert "# reference forward on" in source  # sgd_update has no kernel on any CPU backend
    assert "del " in source  # intermediates are dropped after their last use


def test_a_dying_input_lends_its_memory_only_when_nothing_else_views_it(backend):
    bias = gk.zeros(3)

    @gk.capture
    def f(x):
        a = x * 2.0  # made by this replay, read for the last time below
        view = gk.matrix_transpose(a)  # ...but returned: a must keep its values
        return gk.bias_activation(a, bias, activation="relu"), view

    @gk.capture
    def g(x):
        a = x * 2.0
        return gk.bias_activation(a, bias, activation="relu")

    for k in range(4):
        x = np.full((2, 3), -1.0 - k, np.float32)
        out, view = f(gk.tensor(x))
        assert np.array_equal(view.numpy(), (x * 2).T) and (out.numpy() == 0).all()
        assert (g(gk.tensor(x)).numpy() == 0).all()
    assert "written into" not in f.source
    if backend.name == "numpy":  # a NumPy kernel writes relu(a + bias) into a's memory
        assert "written into" in g.source


# -- what cannot be replayed is refused ------------------------------------------------

def test_a_python_value_that_changes_is_refused():
    state = {"scale": 1.0}

    @gk.capture
    def f(x):
        return x * state["scale"]

    f(gk.ones(2))
    state["scale"] = 2.0
    with pytest.raises(gk.CaptureError, match="different values on the first two calls"):
        f(gk.ones(2))


@pytest.mark.parametrize("optimizer", [
    lambda ps: gk.optim.Adam(ps, lr=1e-2),
    lambda ps: gk.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)])
def test_adam_steps_count_on_as_they_replay(rng, optimizer):
    batches = _batches(rng, 6)
    eager_model, eager_opt, eager_step = _trainer(optimizer)
    model, opt, step = _trainer(optimizer)
    captured = gk.capture(step)
    assert _train(captured, batches) == _train(eager_step, batches)
    for (name, p), (_, q) in zip(model.named_parameters(), eager_model.named_parameters()):
        assert np.array_equal(p.numpy(), q.numpy()), name
    saved, eager_saved = opt.state_dict(), eager_opt.state_dict()
    assert saved.keys() == eager_saved.keys() and int(saved["state.0.step"]) == 6
    for key in saved:
        assert np.array_equal(saved[key], eager_saved[key]), key


def test_a_learning_rate_changed_between_calls_is_refused_by_name():
    _, opt, step = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    captured = gk.capture(step)
    x, y = _batches(np.random.default_rng(0), 1)[0]
    captured(gk.tensor(x), gk.tensor(y))
    opt.lr = 0.05  # a schedule read as a Python float: frozen by a replay
    with pytest.raises(gk.CaptureError, match=r"sgd_update.*param 'lr' was 0.1 on the first "
                                               r"call and 0.05 on the second"):
        captured(gk.tensor(x), gk.tensor(y))


def test_a_branch_on_a_value_is_refused():
    @gk.capture
    def f(x):
        y = x * 2
        if y.sum().item() > 3:
            y = y * 10
        return y

    f(gk.tensor([0.5, 0.5]))
    with pytest.raises(gk.CaptureError, match="launched 2 kernels, the second 3"):
        f(gk.tensor([1.0, 1.0]))


def test_dropout_masks_drawn_on_the_host_are_refused():
    model = gk.nn.MLP([4, 8, 2], dropout=0.5, seed=0)
    captured = gk.capture(lambda x: model(x).sum())
    captured(gk.ones((3, 4)))
    with pytest.raises(gk.CaptureError, match="random numbers drawn on the host"):
        captured(gk.ones((3, 4)))


def test_replacing_data_by_assignment_is_refused():
    w = gk.tensor([1.0, 2.0])

    @gk.capture
    def f(x):
        out = w * x
        w.data = w.data * 2  # invisible to a replay
        return out

    with pytest.raises(gk.CaptureError, match="assigning .data"):
        f(gk.ones(2))


def test_unhashable_arguments_are_refused():
    with pytest.raises(gk.CaptureError, match="argument 1 is a ndarray"):
        gk.capture(lambda x, y: x)(gk.ones(1), np.ones(1))


def test_a_failing_replay_names_the_op_and_changes_nothing(backend):
    model, _, step = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    captured = gk.capture(step)
    x, y = _batches(np.random.default_rng(0), 1)[0]
    for _ in range(3):
        captured(gk.tensor(x), gk.tensor(y))
    before = {name: p.numpy() for name, p in model.named_parameters()}
    with pytest.raises(ShapeError, match=r"cross_entropy: argument labels must hold class "
                                         r"indices in \[0, 3\)"):
        captured(gk.tensor(x), gk.tensor(np.full(8, 7)))
    for name, p in model.named_parameters():
        assert np.array_equal(p.numpy(), before[name]), name


def test_a_kernel_error_during_a_replay_names_the_op():
    def forward(xp, x):
        if float(xp.min(x)) < 0:
            raise ValueError("negative input")
        return x * 1

    positive_only = gk.register_op("positive_only_capture_test", forward,
                                   lambda ctx, g: (g,))
    try:
        captured = gk.capture(lambda x: positive_only(x) + 1)
        for _ in range(3):
            captured(gk.ones(2))
        with pytest.raises(GradkitError, match=r"positive_only_capture_test: negative input "
                                               r"\(operands: x: \w+ float32 \(2,\)\).*replay"):
            captured(-gk.ones(2))
    finally:
        gk.unregister_op("positive_only_capture_test")


def test_a_capture_inside_a_capture_is_part_of_the_outer_recording():
    inner = gk.capture(lambda x: x * 3)
    outer = gk.capture(lambda x: inner(x) + 1)
    for k in range(4):
        assert outer(gk.tensor([float(k)])).item() == 3 * k + 1
    assert outer.replays == 2 and inner.replays == 0


def test_reset_forgets_the_plans():
    f = gk.capture(lambda x: x + 1)
    for _ in range(3):
        f(gk.ones(1))
    f.reset()
    assert not f.plans and f(gk.ones(1)).item() == 2.0 and f.recordings == 3


def test_grad_accepts_only_tensors_or_none():
    x = gk.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="grad: expected a gradkit Tensor or None"):
        x.grad = np.ones(1)
    with pytest.raises(TypeError):
        x.grad = 1.0


def test_the_readme_example_trains_over_a_loader_with_a_short_last_batch(rng):
    X = rng.standard_normal((200, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=200)

    def train(capture):
        loader = gk.data.DataLoader(X, y, batch_size=32, seed=0)  # 6 batches of 32, one of 8
        model = gk.nn.MLP([64, 64, 64, 10])
        optimizer = gk.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def train_step(x, labels):
            loss = gk.nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return loss
        step = gk.capture(train_step) if capture else train_step
        losses = [step(x, labels).item() for _ in range(3) for x, labels in loader]
        return losses, step

    (captured_losses, step), (eager_losses, _) = train(True), train(False)
    assert captured_losses == eager_losses
    assert len(step.plans) == 2 and step.replays == 21 - 4  # two shapes, two recordings each
