"""gk.capture: a replay does what the eager step did, or refuses with a CaptureError."""
from __future__ import annotations

import importlib.util
import re
import warnings

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
    assert not w.array_backend.is_writeable(w.data)
    assert w.array_backend.is_writeable(w.grad.data)  # the replay's own array, the user's to modify


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


def test_the_python_replay_source_lists_every_kernel():
    _, _, step = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    captured = gk.capture(step, compile=False)
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


@pytest.mark.parametrize("optimizer", [
    lambda ps: gk.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda ps: gk.optim.AdamW(ps, lr=1e-2)])
def test_a_learning_rate_schedule_is_read_by_each_replay(optimizer):
    batches = _batches(np.random.default_rng(0), 8)
    eager_model, eager_opt, eager_step = _trainer(optimizer)
    model, opt, step = _trainer(optimizer)
    captured = gk.capture(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "keeps recording anew" warning
        for k, (x, y) in enumerate(batches):
            for o in (opt, eager_opt):
                o.lr = 0.1 / (1 + k)  # changes every step
                o.weight_decay = 1e-3 * k
            assert captured(gk.tensor(x), gk.tensor(y)).item() == \
                eager_step(gk.tensor(x), gk.tensor(y)).item()
    assert captured.recordings == 2 and captured.replays == 6
    for p, q in zip(model.parameters(), eager_model.parameters()):
        assert np.array_equal(p.numpy(), q.numpy())
    assert re.search(r"\bo\d+\.lr\b", captured.source)  # the hyperparameter: a replay input


def test_hyperparameters_are_checked_when_set():
    _, opt, _ = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    with pytest.raises(gk.ArgumentError, match="SGD: lr must be >= 0.0, got -1"):
        opt.lr = -1
    opt.lr = 1  # an int becomes a float, as in the constructor
    assert opt.lr == 1.0 and type(opt.lr) is float


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


# -- steps whose replay must equal eager: state, views, aliases, in-place writes ----------

def _same_as_eager(make, inputs):
    """Run eager and captured copies of a step over ``inputs``; results and returned state
    must agree on every call (tensors compared by value)."""
    eager_step, captured_step = make(), gk.capture(make())
    for args in inputs:
        expected = eager_step(*[gk.tensor(a) for a in args])
        got = captured_step(*[gk.tensor(a) for a in args])
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g.numpy(), e.numpy())
    return captured_step


def test_an_op_returning_its_input_does_not_lend_the_callers_memory():
    identity = gk.register_op("identity_capture_test", lambda xp, x: x, lambda ctx, g: (g,))
    try:
        bias = gk.tensor([1.0, 1.0, 1.0])
        f = gk.capture(lambda x: gk.bias_activation(identity(x), bias, activation="relu"))
        for _ in range(4):
            x = gk.tensor(np.full((2, 3), -5.0, np.float32))
            f(x)
            assert (x.numpy() == -5.0).all()
    finally:
        gk.unregister_op("identity_capture_test")


def test_a_new_memory_layout_records_anew():
    bias = gk.tensor([1.0, 1.0, 1.0])

    def f(x):
        q = x * 2.0
        p = q.reshape((6,))  # a copy of an F-ordered q, a view of a C-ordered one
        return gk.bias_activation(q, bias, activation="relu"), p

    a = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    captured = gk.capture(f)
    for array in (np.asfortranarray(a), np.asfortranarray(a), a, a, a):
        y, p = captured(gk.tensor(array))
        assert p.numpy().tolist() == (a * 2).ravel().tolist()
    assert len(captured.plans) == 2


def test_in_place_updates_through_an_alias_or_of_a_fresh_accumulator_replay():
    def make_ema():
        ema = gk.zeros(2)

        def step(x):
            view = ema.detach()  # the same array as ema
            view *= 0.5
            view += x * 0.5
            return ema * 1.0
        return step

    def make_accumulator():
        def step(x):
            acc = gk.zeros(2)  # made by the step, then updated in place
            acc += x
            acc += x
            return acc * 1.0
        return step

    inputs = [([1.0, 2.0],), ([3.0, 1.0],), ([0.5, 0.5],), ([2.0, 2.0],), ([1.0, 0.0],)]
    _same_as_eager(make_ema, inputs)
    _same_as_eager(make_accumulator, inputs)


def test_an_in_place_update_that_casts_replays_the_cast():
    _same_as_eager(lambda: lambda x: (x.__iadd__(0.5), x * 2)[1],
                   [([1, 2, 3],), ([4, 5, 6],), ([7, 8, 9],), ([0, 1, 2],)])


def test_gradients_of_max_abs_clip_maximum_and_power_follow_the_values():
    def make():
        w = gk.tensor([1.0, 2.0, 3.0], requires_grad=True)

        def step(x):
            w.grad = None
            loss = ((w * x).max() + gk.abs(w * x).sum() + gk.clip(w * x, -1.0, 4.0).sum()
                    + gk.maximum(w, x).sum() + (w ** x).sum())
            loss.backward()
            return w.grad * 1.0
        return step

    _same_as_eager(make, [([0., 0., 5.],), ([0., 0., 5.],), ([9., -1., 0.],), ([0., 7., 2.],)])


def test_svm_loss_follows_the_labels():
    scores = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    _same_as_eager(lambda: gk.svm_loss, [(scores, [0, 1, 2, 0]), (scores, [0, 1, 2, 0]),
                                         (scores, [2, 2, 2, 2]), (scores, [1, 0, 1, 0])])


def test_a_tensor_slice_bound_follows_the_argument():
    data = np.arange(1.0, 6.0, dtype=np.float32)
    _same_as_eager(lambda: lambda x, n: x[:n].sum(),
                   [(data, 2), (data, 2), (data, 3), (data, 1)])


def test_an_argument_that_is_a_view_is_recognised():
    data = gk.tensor(np.arange(12, dtype=np.float32).reshape(6, 2))

    def input_grad(x):
        x = x.detach().requires_grad_()
        (x * x).sum().backward()
        return x.grad

    captured = gk.capture(input_grad)
    for i in (0, 0, 2, 4):
        batch = data[i:i + 2]  # a view of data
        assert captured(batch).numpy().tolist() == (2 * batch.numpy()).tolist()


def test_returned_constants_are_the_callers_and_returned_parameters_stay_read_only():
    def make():
        def step(x):
            acc = gk.zeros(2)
            return x * 2.0 + acc, acc
        return step

    captured = gk.capture(make())
    for k in range(5):
        y, acc = captured(gk.tensor([1.0, 2.0]))
        assert y.numpy().tolist() == [2.0, 4.0] and acc.numpy().tolist() == [0.0, 0.0]
        acc += 5.0  # the caller's own tensor
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    opt = gk.optim.SGD([w], lr=0.1)

    @gk.capture
    def step(x):
        (w * x).sum().backward()
        opt.step()
        opt.zero_grad()
        return w

    for _ in range(4):
        out = step(gk.tensor([1.0, 1.0]))
    before = w.numpy().tolist()
    out *= 0.0  # a read-only array: the update installs a new one, w keeps its values
    assert w.numpy().tolist() == before


def test_loading_optimizer_state_after_capture_is_seen_by_replays():
    def make():
        w = gk.tensor([1.0, -2.0], requires_grad=True)
        opt = gk.optim.SGD([w], lr=0.1, momentum=0.9)

        def step(x):
            loss = ((w * x).sum() - 1.0) ** 2
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        return w, opt, step

    (we, oe, se), (wc, oc, sc) = make(), make()
    sc = gk.capture(sc)
    x = gk.tensor([1.0, 1.0])
    for _ in range(3):
        se(x), sc(x)
    state = oe.state_dict()
    state["state.0.velocity"] = np.zeros(2, np.float32)
    oe.load_state_dict(state), oc.load_state_dict(state)
    for _ in range(2):
        se(x), sc(x)
    assert wc.numpy().tolist() == we.numpy().tolist()


def test_redefining_an_op_records_anew():
    cube = gk.register_op("redefined_capture_test", lambda xp, x: x * x, lambda ctx, g: (g,))
    try:
        f = gk.capture(lambda x: cube(x))
        for _ in range(3):
            assert f(gk.tensor(3.0)).item() == 9.0
        gk.register_op("redefined_capture_test", lambda xp, x: x * x * x, lambda ctx, g: (g,),
                       replace=True)
        assert f(gk.tensor(3.0)).item() == 27.0
    finally:
        gk.unregister_op("redefined_capture_test")


@pytest.fixture
def raw_mask_relu():
    """A user op whose VJP computes a mask on raw arrays, outside the ops (no built-in
    op's does any more)."""
    def vjp(ctx, g):
        return (g * ctx.constant(ctx.inputs[0].data > 0),)
    yield gk.register_op("raw_mask_capture_test", lambda xp, x: xp.maximum(x, 0), vjp)
    gk.unregister_op("raw_mask_capture_test")


@pytest.mark.parametrize("case", ["view read after an update", "update of a view",
                                  "argument aliasing state", "existing grad",
                                  "alternating buffers", "raw-array gradient"])
def test_what_a_replay_could_not_repeat_is_refused(case, raw_mask_relu):
    buf, w = gk.zeros(3), gk.tensor([1.0, 2.0], requires_grad=True)
    buffers = [gk.zeros(2), gk.zeros(2)]

    def view_read_after_update(x):
        row = buf.reshape((3,))
        buf.__iadd__(x)
        return row * 1

    def update_of_a_view(x):
        row = x[0]
        row += 100.0
        return x.sum()

    def reads_w(x):
        return (x * w).sum()

    def fresh_grad(x):
        (x * x).sum().backward()

    calls = []

    def alternating(x):
        b = buffers[len(calls) % 2]
        calls.append(1)
        b += x
        return b * 1.0

    def raw_array_gradient(x):
        x = x.detach().requires_grad_()
        raw_mask_relu(x).sum().backward()
        return x.grad

    run, make_args, match = {
        "view read after an update": (view_read_after_update, lambda: (gk.ones(3),),
                                      "through a view or alias"),
        "update of a view": (update_of_a_view, lambda: (gk.ones((2, 2)),), "into a view"),
        "argument aliasing state": (reads_w, lambda: (w.detach(),), "shares its array"),
        "existing grad": (fresh_grad, lambda: (gk.tensor([1.0, 2.0], requires_grad=True)
                                               .__setattr__("grad", gk.ones(2)) or None,),
                          None),
        "alternating buffers": (alternating, lambda: (gk.ones(2),), "alternating buffers"),
        "raw-array gradient": (raw_array_gradient, lambda: (gk.tensor([1.0, 2.0]),),
                               "gradient of raw_mask_capture_test"),
    }[case]
    captured = gk.capture(run)
    if case == "existing grad":
        x = gk.tensor([1.0, 2.0], requires_grad=True)
        x.grad = gk.ones(2)
        with pytest.raises(gk.CaptureError, match="adds to a .grad that was there before"):
            captured(x)
        return
    with pytest.raises(gk.CaptureError, match=match):
        for _ in range(3):
            captured(*make_args())


@pytest.mark.skipif(not importlib.util.find_spec("array_api_strict"),
                    reason="the test backend 'strict' needs array-api-strict")
def test_moves_between_backends_are_replayed():
    """to_backend is recorded like a kernel: the moved values follow the argument."""
    def make():
        return lambda x: (x.to("strict") * 2.0).to(x.backend).sum()
    _same_as_eager(make, [([1.0, 1.0],), ([1.0, 1.0],), ([5.0, 2.0],), ([7.0, 0.5],)])


# -- gradients written in place, presets, views of this call's memory ------------------

def test_clipping_gradients_in_place_and_presetting_them_replay():
    def make(preset_zeros):
        g = gk.tensor(np.ones((1, 4), np.float32), requires_grad=True)  # grad: a view
        w = gk.tensor(np.ones((4, 3), np.float32), requires_grad=True)
        opt = gk.optim.SGD([g, w], lr=0.1)

        def step(x):
            if preset_zeros:
                g.grad, w.grad = gk.zeros_like(g), gk.zeros_like(w)
            loss = ((x * g) @ w).square().mean()
            loss.backward()
            with gk.no_grad():
                g.grad *= 0.5
                w.grad *= 0.25
            opt.step()
            if not preset_zeros:
                opt.zero_grad()
            return loss
        return step

    inputs = [(np.full((8, 4), k + 1.0, np.float32),) for k in range(5)]
    _same_as_eager(lambda: make(False), inputs)
    _same_as_eager(lambda: make(True), inputs)


def test_boolean_masks_are_refused():
    captured = gk.capture(lambda s: s[s > 0].mean())
    with pytest.raises(gk.CaptureError, match="boolean mask gives a result whose shape"):
        captured(gk.tensor([1.0, -1.0, 2.0]))


def test_a_changed_learning_rate_records_anew():
    def make():
        w = gk.tensor([1.0, 2.0], requires_grad=True)
        opt = gk.optim.SGD([w], lr=0.1)

        def step(x, lr):
            opt.lr = lr  # a schedule, set before each step
            loss = (w * x).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
            return w * 1.0
        return step

    eager, captured = make(), gk.capture(make())
    for lr in (0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.05, 0.05):
        x = gk.tensor([1.0, 1.0])
        assert captured(x, lr).numpy().tolist() == eager(x, lr).numpy().tolist()


def test_a_parameter_whose_layout_changes_records_anew():
    a = np.arange(6, dtype=np.float32).reshape(3, 2).T  # F-ordered at first
    w = gk.tensor(a, requires_grad=True)
    bias = gk.zeros(3)

    @gk.capture
    def evaluate(x):
        q = w * x
        return gk.bias_activation(q, bias, activation="relu"), q.reshape((6,))

    for k in range(6):
        if k == 3:
            w.data = w.array_backend.xp.ascontiguousarray(w.data)  # as an optimizer's update leaves it
        _, flat = evaluate(gk.ones((2, 3)))
        assert flat.numpy().tolist() == a.ravel().tolist()


def test_recordings_without_replays_are_bounded_and_reported():
    captured = gk.capture(lambda x, k: x * k)
    with pytest.warns(RuntimeWarning, match="none replayed: an argument changes"):
        for k in range(12):
            captured(gk.ones(2), k)
    assert len(captured.pending) <= 8


def test_capture_on_a_method():
    class Model:
        def __init__(self):
            self.w = gk.tensor([2.0])

        @gk.capture
        def forward(self, x):
            return x * self.w

    model = Model()
    assert [model.forward(gk.tensor([float(k)])).item() for k in range(4)] == [0, 2, 4, 6]


def test_keyword_arguments_are_arguments_recorded_and_replayed(rng):
    batches = _batches(rng, 5)
    optimizer = lambda ps: gk.optim.SGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    _, _, eager_step = _trainer(optimizer)
    _, _, step = _trainer(optimizer)
    captured = gk.capture(step)
    by_keyword = [captured(gk.tensor(x), labels=gk.tensor(y)).item() for x, y in batches]
    assert by_keyword == _train(eager_step, batches)  # bit for bit
    assert captured.recordings == 2 and captured.replays == 3


def test_keyword_arguments_are_guarded_by_name_and_value():
    calls = []

    @gk.capture
    def scaled(x, *, y=None, scale=1.0):
        calls.append(scale)
        return x * scale + (0.0 if y is None else y)

    x, y = gk.tensor([1.0, 2.0]), gk.tensor([10.0, 20.0])
    for _ in range(3):
        assert scaled(x, y=y, scale=2.0).tolist() == [12.0, 24.0]
    assert scaled.replays == 1 and calls == [2.0, 2.0]
    assert scaled(x, y=gk.tensor([0.0, 1.0]), scale=2.0).tolist() == [2.0, 5.0]  # replayed
    assert scaled(x, scale=3.0).tolist() == [3.0, 6.0]  # another keyword value: recorded
    assert scaled(x, scale=2.0, y=y).tolist() == [12.0, 24.0]  # keyword order is no matter
    assert scaled.replays == 3 and calls == [2.0, 2.0, 3.0]
    with pytest.raises(gk.CaptureError, match="keyword argument 'scale' is a ndarray"):
        scaled(x, scale=np.ones(1))


# -- guards: what a replay checks besides its arguments -----------------------------

def _snapshot(model, opt):
    """Every parameter, .grad and optimizer buffer as NumPy copies."""
    return ([p.numpy().copy() for p in model.parameters()],
            [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()],
            {key: np.array(value) for key, value in opt.state_dict().items()})


def _assert_same(a, b):
    (params_a, grads_a, opt_a), (params_b, grads_b, opt_b) = a, b
    assert all(np.array_equal(x, y) for x, y in zip(params_a, params_b))
    assert [g is None for g in grads_a] == [g is None for g in grads_b]
    assert all(np.array_equal(x, y) for x, y in zip(grads_a, grads_b) if x is not None)
    assert opt_a.keys() == opt_b.keys()
    assert all(np.array_equal(opt_a[key], opt_b[key]) for key in opt_a)


def test_a_refused_recording_rolls_back_what_it_did(rng):
    model = gk.nn.MLP([5, 4, 3], seed=0)
    opt = gk.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    first = next(iter(model.parameters()))
    refuse = [False]

    def step(x, labels):
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()  # new parameter arrays, velocity updated in place by the kernel
        if refuse[0]:
            first.data = first.data * 2  # refused once the call ends
        return loss

    captured = gk.capture(step)
    x, y = _batches(rng, 1)[0]
    captured(gk.tensor(x), gk.tensor(y))
    opt.zero_grad()
    before = _snapshot(model, opt)
    refuse[0] = True
    with pytest.raises(gk.CaptureError, match="assigning .data"):
        captured(gk.tensor(x), gk.tensor(y))
    _assert_same(_snapshot(model, opt), before)
    assert all(p.grad is None for p in model.parameters())


def test_a_refused_recording_forgets_the_buffers_it_created(rng):
    model = gk.nn.MLP([5, 4, 3], seed=0)
    opt = gk.optim.Adam(model.parameters(), lr=0.1)
    w = next(iter(model.parameters()))

    def step(x, labels):
        F.cross_entropy(model(x), labels).backward()
        opt.step()
        w.data = w.data + 0  # refused
    x, y = _batches(rng, 1)[0]
    with pytest.raises(gk.CaptureError):
        gk.capture(step)(gk.tensor(x), gk.tensor(y))
    assert opt.state_dict().keys() == {f"hyperparameters.{n}" for n in opt.hyperparameter_names}
    assert all(p.grad is None for p in model.parameters())


def test_a_change_between_the_two_recorded_calls_starts_over(rng):
    batches = _batches(rng, 5)
    eager_model, _, eager_step = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    model, _, step = _trainer(lambda ps: gk.optim.SGD(ps, lr=0.1))
    captured = gk.capture(step)
    for k, (x, y) in enumerate(batches):
        if k == 1:  # after the first recording: the second one is not compared with it
            for m in (model, eager_model):
                m.layers[0].weight.requires_grad = False
        assert captured(gk.tensor(x), gk.tensor(y)).item() == \
            eager_step(gk.tensor(x), gk.tensor(y)).item()
    assert captured.recordings == 3 and captured.replays == 2


def test_a_rebound_variable_of_the_function_records_anew(rng):
    batches = _batches(rng, 6)
    model = gk.nn.MLP([5, 4, 3], seed=0)
    eager_model = gk.nn.MLP([5, 4, 3], seed=0)
    optimizers = {}

    def make_step(get_model, get_opt):
        def step(x, labels):
            loss = F.cross_entropy(get_model()(x), labels)
            loss.backward()
            get_opt().step()
            get_opt().zero_grad()
            return loss
        return step

    opt = gk.optim.SGD(model.parameters(), lr=0.1)
    optimizers["eager"] = gk.optim.SGD(eager_model.parameters(), lr=0.1)

    def step(x, labels):  # reads the closure variable `opt`
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    eager_step = make_step(lambda: eager_model, lambda: optimizers["eager"])
    captured = gk.capture(step)
    for k, (x, y) in enumerate(batches):
        if k == 3:  # the variable now names an Adam optimizer
            opt = gk.optim.Adam(model.parameters(), lr=1e-2)  # noqa: F841  (read by step)
            optimizers["eager"] = gk.optim.Adam(eager_model.parameters(), lr=1e-2)
        assert captured(gk.tensor(x), gk.tensor(y)).item() == \
            eager_step(gk.tensor(x), gk.tensor(y)).item()
    for p, q in zip(model.parameters(), eager_model.parameters()):
        assert np.array_equal(p.numpy(), q.numpy())
    assert captured.recordings == 4


def test_a_module_setting_changed_after_capture_records_anew():
    layer = gk.nn.Linear(3, 3, seed=0)
    dropout = gk.nn.Dropout(0.5, seed=1)
    dropout.eval()
    captured = gk.capture(lambda x: dropout(layer(x)))
    x = gk.ones((2, 3))
    for _ in range(3):
        captured(x)
    assert captured.replays == 1
    dropout.p = 0.0  # the identity in training mode too
    dropout.train()
    assert np.array_equal(captured(x).numpy(), layer(x).numpy())
    assert captured.recordings == 3


def test_a_step_that_keeps_recording_anew_warns_once_naming_why():
    model = gk.nn.MLP([3, 2], seed=0)
    captured = gk.capture(lambda x: model(x).sum())
    x = gk.ones((2, 3))
    with pytest.warns(RuntimeWarning, match=r"keeps recording anew .*MLP module") as heard:
        for k in range(16):
            model.train(k % 2 == 0)  # toggled between every two calls
            captured(x)
            captured(x)
    assert len([w for w in heard if "keeps recording anew" in str(w.message)]) == 1


def test_the_default_dtype_is_part_of_what_a_recording_is_valid_for():
    captured = gk.capture(lambda x: x * 0.1)
    x = gk.tensor([1.0], dtype="float64")
    for _ in range(3):
        captured(x)
    gk.set_default_dtype("float64")
    try:
        assert captured(x).dtype == (x * 0.1).dtype
        assert captured.recordings == 3
    finally:
        gk.set_default_dtype("float32")


def test_a_number_the_function_reads_from_its_variables_is_guarded():
    scale = 2.0
    captured = gk.capture(lambda x: x * scale)
    x = gk.tensor([1.0])
    for value in (2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0):
        scale = float(str(value))  # a new float object each time; equal ones replay
        assert captured(x).tolist() == [value]
    assert captured.recordings == 4 and captured.replays == 3
