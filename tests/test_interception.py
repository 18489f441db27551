"""The core's one interception point (gradkit.interception): every writer of a
tensor's array or .grad goes through Tensor.write, which reports to the installed
interceptor; replays (report=False) are not heard."""
import contextlib

import numpy as np
import pytest

import gradkit as gk
from gradkit import interception


class Listener:
    """An interceptor that records which writes it hears (and ignores the rest)."""

    def __init__(self):
        self.events = []

    def will_write(self, tensor, how):
        self.events.append(("will_write", tensor, how))

    def wrote_data(self, tensor, source, how):
        assert isinstance(source, gk.Tensor)
        self.events.append(("wrote_data", tensor, how))

    def wrote_grad(self, tensor, grad, accumulated):
        self.events.append(("wrote_grad", tensor, accumulated))

    def stepping_optimizer(self, optimizer):
        return contextlib.nullcontext()

    def __getattr__(self, name):  # kernel, note_created, aliased, called_module, ...
        return lambda *args, **kwargs: None

    def writes(self, tensor):
        """The writes heard for ``tensor`` (each announced by will_write first)."""
        heard = [e for e in self.events if e[1] is tensor]
        announced = [e for e in heard if e[0] == "will_write"]
        done = [e for e in heard if e[0] != "will_write"]
        assert len(announced) <= len(done) and (announced or not done)
        return [e[0] if e[0] != "wrote_data" else f"wrote_data:{e[2]}" for e in done]


@pytest.fixture
def listener():
    heard = Listener()
    token = interception.begin_recording(heard)
    try:
        yield heard
    finally:
        interception.end_recording(token)


def test_in_place_operator_is_reported(listener):
    x = gk.zeros(3)
    version = x._version
    x += 1.0
    assert listener.writes(x) == ["wrote_data:overwrite"]
    assert [e[2] for e in listener.events if e[0] == "will_write"] == ["overwrite"]
    assert x._version == version + 1 and x.tolist() == [1.0, 1.0, 1.0]


def test_setitem_is_reported(listener):
    x = gk.zeros(3)
    x[1] = 5.0
    assert "wrote_data:overwrite" in listener.writes(x)
    assert x.tolist() == [0.0, 5.0, 0.0]


def test_setitem_in_a_graph_is_reported(listener):
    v = gk.tensor(2.0, requires_grad=True)
    x = gk.zeros(3)
    x[1] = v * 3
    assert listener.writes(x) == ["wrote_data:assign"]


def test_grad_assignment_is_reported(listener):
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    w.grad = gk.ones(2)
    w.zero_grad()
    assert listener.writes(w) == ["wrote_grad", "wrote_grad"]
    assert w.grad is None


def test_optimizer_step_and_zero_grad_are_reported(listener):
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    opt = gk.optim.SGD([w], lr=0.5)
    w.grad = gk.ones(2)
    opt.step()
    opt.zero_grad()
    assert listener.writes(w) == ["wrote_grad", "wrote_data:install", "wrote_grad"]
    assert w.tolist() == [0.5, 1.5]


def test_module_load_state_dict_is_reported(listener):
    layer = gk.nn.Linear(2, 3)
    state = {name: np.zeros(p.shape, p.dtype) for name, p in layer.state_dict().items()}
    layer.load_state_dict(state)
    for p in layer.parameters():
        assert listener.writes(p) == ["wrote_data:assign"]
        assert not np.any(p.numpy())


def test_optimizer_load_state_dict_is_reported():
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    opt = gk.optim.Adam([w], lr=0.1)
    w.grad = gk.ones(2)
    opt.step()
    saved = opt.state_dict()
    kept = [v for v in opt.state[0].values() if isinstance(v, gk.Tensor)]
    heard = Listener()
    token = interception.begin_recording(heard)
    try:
        opt.load_state_dict(saved)
    finally:
        interception.end_recording(token)
    assert kept and all(heard.writes(t) == ["wrote_data:assign"] for t in kept)


def test_write_bumps_version_only_for_data():
    x = gk.zeros(2)
    version = x._version
    x.write(grad=None)
    assert x._version == version
    x.write(gk.ones(2).data, versions=3)
    assert x._version == version + 3 and x.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="how must be"):
        x.write(gk.ones(2).data, how="bogus")


def test_install_makes_a_parameter_read_only():
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    w.write(np.array([3.0, 4.0]), how="install")
    assert w.tolist() == [3.0, 4.0]
    assert not w.array_backend.is_writeable(w.data)


def test_unreported_write_is_not_heard(listener):
    x = gk.zeros(2)
    x.write(gk.ones(2).data, report=False)
    x.write(grad=None, report=False)
    assert listener.writes(x) == []


def test_gradient_ready_goes_through_the_interception_point():
    from gradkit.autodiff import on_gradient_ready
    w, b = gk.tensor([2.0], requires_grad=True), gk.tensor([1.0], requires_grad=True)
    seen = []
    remove = interception.add_gradient_ready_listener(lambda leaf: seen.append(leaf))
    remove_public = on_gradient_ready(lambda leaf: seen.append(("public", leaf)))
    try:
        assert len(interception.gradient_ready_listeners) >= 2
        (w * 3.0 + b * w).sum().backward()
    finally:
        remove()
        remove_public()
    assert {id(x) for x in seen if not isinstance(x, tuple)} == {id(w), id(b)}
    assert {id(x[1]) for x in seen if isinstance(x, tuple)} == {id(w), id(b)}
    seen.clear()
    (w * 3.0).sum().backward()
    assert seen == []  # removed


def test_functional_transforms_fire_no_gradient_ready():
    w = gk.tensor([2.0], requires_grad=True)
    seen = []
    remove = interception.add_gradient_ready_listener(seen.append)
    try:
        gk.grad(lambda x: (x * x).sum())(w)
    finally:
        remove()
    assert seen == []


def test_backward_reports_its_gradients_as_accumulated(listener):
    w = gk.tensor([1.0, 2.0], requires_grad=True)
    (w * 3.0).sum().backward()
    w.grad = None
    assert [e[2] for e in listener.events if e[0] == "wrote_grad" and e[1] is w] == [True, False]
