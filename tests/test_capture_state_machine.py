"""gk.capture against eager training, under everything a user does between steps.

The contract tested here: a captured training step, called after any sequence of
ordinary user actions, either

* returns what the same step run eagerly returns and leaves the same state behind,
  BIT FOR BIT (the loss, every parameter's array, its ``requires_grad``, its
  ``.grad`` (present or not, and its values), every optimizer buffer as
  ``opt.state_dict()`` gives it, and the train/eval mode), or
* raises :class:`gk.CaptureError` and leaves everything exactly as it was.

Two identical copies of a small training setup (same seed) receive the same actions.
One runs its step eagerly, the other through ``gk.capture``. The step finds its model
and optimizer through a mutable holder (a :class:`Setup`), as a training script finds
them through its global names, so replacing one is visible to the step.

:class:`CaptureStateMachine` (a hypothesis state machine, run per backend) draws the
action sequences; the ``test_*_after_capture`` functions below it are one
deterministic example per action a replay must notice.
"""
from __future__ import annotations

import functools
import inspect
from collections import Counter
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RULE_MARKER, RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule, run_state_machine_as_test)

import gradkit as gk
from gradkit.nn import functional as F

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # re-recording, overflow

FEATURES, CLASSES = 3, 3
OTHER_BACKEND = {"numpy": "numba", "numba": "numpy"}

# (backend, rule name) -> how many times the rule ran, over every run of the machine;
# also "(step returned)", "(step raised)", "(step refused)" and "(step replayed)"
RULE_COUNTS: Counter = Counter()
MIN_RUNS_PER_RULE = 20


# -- the training setup ----------------------------------------------------------------

class HalvedInTraining(gk.nn.Module):
    """Halves its input in training mode, passes it through in eval mode: a module whose
    behaviour depends on ``training`` without drawing random numbers."""

    def forward(self, x: gk.Tensor) -> gk.Tensor:
        return x * 0.5 if self.training else x * 1.0


class Net(gk.nn.Module):
    """A tiny MLP followed by a mode-dependent module."""

    def __init__(self, hidden: list[int], dtype: str, seed: int) -> None:
        super().__init__()
        self.mlp = gk.nn.MLP([FEATURES, *hidden, CLASSES], activation="tanh", seed=seed,
                             dtype=dtype)
        self.mode_scale = HalvedInTraining()

    def forward(self, x: gk.Tensor) -> gk.Tensor:
        return self.mode_scale(self.mlp(x))

    def linear_layers(self) -> list[gk.nn.Linear]:
        return list(self.mlp.layers)


def make_optimizer(spec: dict, params: Any) -> gk.optim.Optimizer:
    """An optimizer from a spec such as ``{"kind": "sgd", "lr": 0.1, "momentum": 0.9}``."""
    kind, options = spec["kind"], {k: v for k, v in spec.items() if k != "kind"}
    return {"sgd": gk.optim.SGD, "adam": gk.optim.Adam, "adamw": gk.optim.AdamW}[kind](
        list(params), **options)


def sgd_spec(lr: float, weight_decay: float) -> dict:
    return {"kind": "sgd", "lr": lr, "weight_decay": weight_decay}


def momentum_spec(lr: float, momentum: float, nesterov: bool, weight_decay: float) -> dict:
    return {"kind": "sgd", "lr": lr, "momentum": momentum, "nesterov": nesterov,
            "weight_decay": weight_decay}


def adam_spec(kind: str, lr: float, betas: tuple, weight_decay: float) -> dict:
    return {"kind": kind, "lr": lr, "betas": betas, "weight_decay": weight_decay}


OPTIMIZER_SPECS = st.one_of(
    st.builds(sgd_spec, st.sampled_from([0.1, 0.05]), st.sampled_from([0.0, 1e-2])),
    st.builds(momentum_spec, st.sampled_from([0.1, 0.05]), st.sampled_from([0.5, 0.9]),
              st.booleans(), st.sampled_from([0.0, 1e-2])),
    st.builds(adam_spec, st.sampled_from(["adam", "adamw"]), st.sampled_from([1e-2, 3e-2]),
              st.sampled_from([(0.9, 0.999), (0.8, 0.99)]), st.sampled_from([0.0, 1e-2])),
)


class Setup:
    """What a training script holds in its global names: the model, the optimizer, the
    backend the batches go to. The steps read them from here on every call."""

    def __init__(self, backend: str, hidden: list[int], dtype: str, seed: int,
                 optimizer_spec: dict) -> None:
        self.backend, self.dtype = backend, dtype
        with gk.use_backend(backend):
            self.model = Net(hidden, dtype, seed)
        self.opt = make_optimizer(optimizer_spec, self.model.parameters())

    def batch(self, seed: int, size: int, bad_labels: bool = False) -> tuple[gk.Tensor, gk.Tensor]:
        """A batch drawn from ``seed`` (the same for both copies); ``bad_labels``: one
        label out of range, which cross_entropy refuses."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((size, FEATURES)).astype(self.dtype)
        labels = rng.integers(0, CLASSES, size=size)
        if bad_labels:
            labels[0] = CLASSES + 4
        return (gk.tensor(x, backend=self.backend), gk.tensor(labels, backend=self.backend))

    def extra_backward(self, seed: int, size: int) -> None:
        """A backward outside the step: leaves (or adds to) ``.grad`` on the parameters."""
        x, labels = self.batch(seed, size)
        F.cross_entropy(self.model(x), labels).backward()


def training_steps(setup: Setup) -> dict[str, Callable[..., gk.Tensor]]:
    """The two usual shapes of a training step; both find model and optimizer in ``setup``.

    "zero_grad_first" leaves this step's gradients on the parameters; "zero_grad_last"
    adds to whatever ``.grad`` the parameters hold when it is called.
    """
    def zero_grad_first(x: gk.Tensor, labels: gk.Tensor) -> gk.Tensor:
        setup.opt.zero_grad()
        loss = F.cross_entropy(setup.model(x), labels)
        loss.backward()
        setup.opt.step()
        return loss

    def zero_grad_last(x: gk.Tensor, labels: gk.Tensor) -> gk.Tensor:
        loss = F.cross_entropy(setup.model(x), labels)
        loss.backward()
        setup.opt.step()
        setup.opt.zero_grad()
        return loss

    return {"zero_grad_first": zero_grad_first, "zero_grad_last": zero_grad_last}


# -- comparing the copies ----------------------------------------------------------------

def _host_copy(t: gk.Tensor | None) -> np.ndarray | None:
    return None if t is None else np.array(t.numpy(), copy=True)


def snapshot(setup: Setup) -> dict[str, Any]:
    """Everything a step can change or depends on, as NumPy copies, by name."""
    state: dict[str, Any] = {"training": setup.model.training}
    for name, p in setup.model.named_parameters():
        state[f"param {name}"] = _host_copy(p)
        state[f"param {name} .grad"] = _host_copy(p.grad)
        state[f"param {name} requires_grad"] = p.requires_grad
        state[f"param {name} backend"] = p.backend
    state["optimizer type"] = type(setup.opt).__name__
    for key, value in setup.opt.state_dict().items():
        state[f"optimizer {key}"] = np.array(value, copy=True)
    return state


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and np.array_equal(a, b))  # bit for bit, NaN unequal
    return a == b


def _describe_difference(a: Any, b: Any) -> str:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape:
        gap = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)
        return f"{a.dtype} vs {b.dtype} {a.shape}, max |difference| {gap:.3g}"
    return f"{_short(a)} vs {_short(b)}"


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {value.shape}"
    return "<missing>" if value is _MISSING else repr(value)


_MISSING = object()


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The entries where two snapshots differ (missing on one side included)."""
    return [f"{key}: {_describe_difference(a.get(key, _MISSING), b.get(key, _MISSING))}"
            for key in sorted(set(a) | set(b))
            if not _same(a.get(key, _MISSING), b.get(key, _MISSING))]


def assert_same_state(eager: Setup, captured: Setup, after: str) -> None:
    diff = differences(snapshot(eager), snapshot(captured))
    assert not diff, f"after {after}, eager vs captured state differ:\n  " + "\n  ".join(diff)


def assert_unchanged_by_refusal(before: dict[str, Any], captured: Setup, error: Exception) -> None:
    diff = differences(before, snapshot(captured))
    assert not diff, (f"the captured step raised CaptureError ({error}) but changed the "
                      "state:\n  " + "\n  ".join(diff))


def run_both(eager: Callable[[], Any], captured: Callable[[], Any]) -> tuple[Any, Any, bool]:
    """Call the captured step, then (unless it refused with CaptureError, leaving its copy
    unchanged) the eager one. Returns (eager result or exception, captured result or
    exception, whether both ran)."""
    try:
        got = captured()
    except gk.CaptureError as error:
        return None, error, False
    except Exception as error:  # noqa: BLE001  (the eager call must raise the same type)
        got = error
    try:
        expected = eager()
    except Exception as error:  # noqa: BLE001
        expected = error
    return expected, got, True


def check_step(eager_setup: Setup, captured_setup: Setup, eager_step: Callable[..., Any],
               captured_step: Callable[..., Any], seed: int, size: int,
               bad_labels: bool = False) -> str:
    """One call of the step on both copies, checked against the contract (module doc).
    Returns "refused", "raised" or "returned"."""
    before = snapshot(captured_setup)
    expected, got, both_ran = run_both(
        lambda: eager_step(*eager_setup.batch(seed, size, bad_labels)),
        lambda: captured_step(*captured_setup.batch(seed, size, bad_labels)))
    if not both_ran:
        assert_unchanged_by_refusal(before, captured_setup, got)
        return "refused"
    if isinstance(expected, Exception) or isinstance(got, Exception):
        assert type(got) is type(expected), (
            f"eager gave {expected!r}, the captured step {got!r}")
        assert_same_state(eager_setup, captured_setup, f"a step that raised {expected!r}")
        return "raised"
    assert np.array_equal(got.numpy(), expected.numpy()) and \
        got.numpy().dtype == expected.numpy().dtype, \
        f"loss: captured {got.numpy()!r}, eager {expected.numpy()!r}"
    assert_same_state(eager_setup, captured_setup, "a step")
    return "returned"


def apply_to_both(eager_setup: Setup, captured_setup: Setup,
                  action: Callable[[Setup], Any]) -> None:
    """A user action on both copies; where it raises, it must raise alike on both."""
    outcomes = []
    for setup in (eager_setup, captured_setup):
        try:
            action(setup)
            outcomes.append(None)
        except Exception as error:  # noqa: BLE001
            outcomes.append(type(error))
    assert outcomes[0] is outcomes[1], f"the action raised {outcomes} (eager, captured)"


# -- user actions, applied the same way to each copy ---------------------------------------

def replace_weight(setup: Setup, layer_index: int, seed: int, rebuild_optimizer: bool) -> None:
    """``layer.weight = gk.tensor(new values, requires_grad=True)`` (and, usually, a new
    optimizer with the same hyperparameters over the new parameters)."""
    layer = setup.model.linear_layers()[layer_index % len(setup.model.linear_layers())]
    values = np.random.default_rng(seed).standard_normal(layer.weight.shape)
    layer.weight = gk.tensor(values, dtype=setup.dtype, requires_grad=True,
                             backend=layer.weight.backend)
    if rebuild_optimizer:
        setup.opt = rebuilt_optimizer(setup.opt, setup.model.parameters())


def rebuilt_optimizer(opt: gk.optim.Optimizer, params: Any) -> gk.optim.Optimizer:
    """A fresh optimizer of ``opt``'s type and hyperparameters over ``params``."""
    hyper = opt.hyperparameters()
    if isinstance(opt, gk.optim.Adam):
        hyper["betas"] = (hyper.pop("beta1"), hyper.pop("beta2"))
    return type(opt)(list(params), **hyper)


HYPERPARAMETER_CHANGES = [("momentum", 0.0), ("momentum", 0.5), ("momentum", 0.9),
                          ("nesterov", True), ("nesterov", False), ("weight_decay", 0.0),
                          ("weight_decay", 1e-2), ("beta1", 0.8), ("beta1", 0.9),
                          ("beta2", 0.99), ("beta2", 0.999), ("eps", 1e-6)]


def set_hyperparameter(opt: gk.optim.Optimizer, name: str, value: Any) -> None:
    """``opt.<name> = value`` where ``opt`` has it and the result is a valid SGD
    (nesterov needs momentum > 0); otherwise nothing."""
    if name not in opt.hyperparameter_names:
        return
    if isinstance(opt, gk.optim.SGD) and (
            (name == "nesterov" and value and opt.momentum == 0)
            or (name == "momentum" and value == 0 and opt.nesterov)):
        return
    setattr(opt, name, value)


def load_optimizer_state(setup: Setup, saved: dict | None, drop_buffers: bool) -> None:
    """``opt.load_state_dict`` of ``saved`` (or of its own current state), optionally
    without its ``state.*`` entries (buffers and step counts)."""
    state = dict(setup.opt.state_dict() if saved is None else saved)
    if drop_buffers:
        state = {k: v for k, v in state.items() if not k.startswith("state.")}
    setup.opt.load_state_dict(state)


def perturbed_model_state(setup: Setup, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (array + rng.standard_normal(array.shape)).astype(array.dtype)
            for name, array in setup.model.state_dict().items()}


def move_to_backend(setup: Setup, backend: str) -> None:
    """``model.to(backend)``, batches there too, and a new optimizer (the old one holds
    the old parameter tensors)."""
    setup.model.to(backend)
    setup.backend = backend
    setup.opt = rebuilt_optimizer(setup.opt, setup.model.parameters())


# -- the state machine ----------------------------------------------------------------------

SEEDS = st.integers(0, 2 ** 16)


class CaptureStateMachine(RuleBasedStateMachine):
    """Two copies of a training setup, one stepped eagerly, one through gk.capture."""

    backend = "numpy"  # set per run (see machine_for)
    compiled = False  # gk.capture(step, compile=True)

    def count(self, name: str) -> None:
        RULE_COUNTS[(self.backend, name)] += 1

    @initialize(hidden=st.lists(st.integers(2, 4), min_size=1, max_size=2),
                dtype=st.sampled_from(["float64", "float32"]), seed=SEEDS,
                optimizer_spec=OPTIMIZER_SPECS)
    def build(self, hidden, dtype, seed, optimizer_spec):
        self.eager = Setup(self.backend, hidden, dtype, seed, optimizer_spec)
        self.captured = Setup(self.backend, hidden, dtype, seed, optimizer_spec)
        self.eager_steps = training_steps(self.eager)
        self.captured_steps = {name: gk.capture(step, compile=self.compiled)
                               for name, step in training_steps(self.captured).items()}
        self.batch_size = 4
        self.saved_optimizer_states: tuple[dict, dict] | None = None
        self.saved_model_states: tuple[dict, dict] | None = None
        self.count("build")

    def both(self, action: Callable[[Setup], Any]) -> None:
        apply_to_both(self.eager, self.captured, action)

    def step(self, variant: str, seed: int, size: int, bad_labels: bool = False) -> None:
        captured_step = self.captured_steps[variant]
        replays = captured_step.replays
        outcome = check_step(self.eager, self.captured, self.eager_steps[variant],
                             captured_step, seed, size, bad_labels)
        self.count(f"(step {outcome})")
        if captured_step.replays > replays:
            self.count("(step replayed)")
            if any(plan.segments for plan in captured_step.plans.values()):
                self.count("(step replayed compiled)")

    # calls of the step
    @rule(variant=st.sampled_from(["zero_grad_first", "zero_grad_last"]), seed=SEEDS)
    def call_step(self, variant, seed):
        self.count("call_step")
        self.step(variant, seed, self.batch_size)

    @rule(variant=st.sampled_from(["zero_grad_first", "zero_grad_last"]), seed=SEEDS,
          calls=st.integers(2, 4))
    def call_step_repeatedly(self, variant, seed, calls):  # (a run of calls replays)
        self.count("call_step_repeatedly")
        for k in range(calls):
            self.step(variant, seed + k, self.batch_size)

    @rule(size=st.sampled_from([4, 4, 2, 5]))
    def change_batch_size(self, size):
        self.count("change_batch_size")
        self.batch_size = size

    @rule(seed=SEEDS)
    def call_step_with_bad_labels(self, seed):
        # zero_grad_last only: zero_grad_first clears the gradients eagerly before
        # cross_entropy raises, and a failing replay installs nothing (documented)
        self.count("call_step_with_bad_labels")
        self.step("zero_grad_last", seed, self.batch_size, bad_labels=True)

    # optimizer hyperparameters
    @rule(lr=st.sampled_from([0.1, 0.05, 0.01]))
    def schedule_lr(self, lr):
        self.count("schedule_lr")
        self.both(lambda s: setattr(s.opt, "lr", lr))

    @rule(change=st.sampled_from(HYPERPARAMETER_CHANGES))
    def change_hyperparameter(self, change):
        self.count("change_hyperparameter")
        self.both(lambda s: set_hyperparameter(s.opt, *change))

    # parameters
    @rule(index=st.integers(0, 5), frozen=st.booleans())
    def freeze_or_unfreeze(self, index, frozen):
        self.count("freeze_or_unfreeze")

        def action(setup):
            params = list(setup.model.parameters())
            params[index % len(params)].requires_grad = not frozen
        self.both(action)

    @rule(layer=st.integers(0, 2), seed=SEEDS, rebuild_optimizer=st.booleans())
    def replace_parameter(self, layer, seed, rebuild_optimizer):
        self.count("replace_parameter")
        self.both(lambda s: replace_weight(s, layer, seed, rebuild_optimizer))

    @rule(spec=OPTIMIZER_SPECS)
    def new_optimizer(self, spec):
        self.count("new_optimizer")
        self.both(lambda s: setattr(s, "opt", make_optimizer(spec, s.model.parameters())))

    # saved state
    @rule()
    def save_optimizer_state(self):
        self.count("save_optimizer_state")
        self.saved_optimizer_states = (self.eager.opt.state_dict(),
                                       self.captured.opt.state_dict())

    @rule(use_saved=st.booleans(), drop_buffers=st.booleans())
    def load_optimizer_state(self, use_saved, drop_buffers):
        self.count("load_optimizer_state")
        saved = self.saved_optimizer_states if use_saved else None
        eager_saved, captured_saved = saved if saved is not None else (None, None)
        apply_to_both(self.eager, self.captured, lambda s: load_optimizer_state(
            s, eager_saved if s is self.eager else captured_saved, drop_buffers))

    @rule(seed=SEEDS, use_saved=st.booleans())
    def load_model_state(self, seed, use_saved):
        self.count("load_model_state")
        if use_saved and self.saved_model_states is not None:
            states = dict(zip(("eager", "captured"), self.saved_model_states))
        else:  # perturbed from the eager copy's (the copies agree), the same for both
            state = perturbed_model_state(self.eager, seed)
            states = {"eager": state, "captured": state}
        self.both(lambda s: s.model.load_state_dict(
            states["eager" if s is self.eager else "captured"]))

    @rule()
    def save_model_state(self):
        self.count("save_model_state")
        self.saved_model_states = (self.eager.model.state_dict(),
                                   self.captured.model.state_dict())

    # gradients left on the parameters
    @rule(seed=SEEDS)
    def leave_gradients(self, seed):
        self.count("leave_gradients")
        self.both(lambda s: s.extra_backward(seed, self.batch_size))

    @rule()
    def clear_gradients(self):
        self.count("clear_gradients")
        self.both(lambda s: s.model.zero_grad())

    # mode and backend
    @rule(training=st.booleans())
    def set_mode(self, training):
        self.count("set_mode")
        self.both(lambda s: s.model.train(training))

    @rule()
    def move_to_other_backend(self):
        self.count("move_to_other_backend")
        target = OTHER_BACKEND[self.eager.backend]
        self.both(lambda s: move_to_backend(s, target))

    @precondition(lambda self: self.eager.backend != self.backend)
    @rule()
    def move_back(self):
        self.count("move_back")
        self.both(lambda s: move_to_backend(s, self.backend))

    @invariant()
    def copies_agree(self):
        assert_same_state(self.eager, self.captured, "an action")


def rule_names(machine: type) -> list[str]:
    return [name for name, member in inspect.getmembers(machine)
            if getattr(member, RULE_MARKER, None) is not None]


def machine_for(backend: str, compiled: bool = False) -> type[CaptureStateMachine]:
    return type(f"CaptureStateMachine_{backend}{'_compiled' if compiled else ''}",
                (CaptureStateMachine,), {"backend": backend, "compiled": compiled})


MACHINE_SETTINGS = settings(max_examples=1000, stateful_step_count=50, deadline=None,
                            derandomize=True, database=None,
                            suppress_health_check=[HealthCheck.too_slow])


def test_captured_training_equals_eager_under_user_actions(backend):
    """The state machine on each backend (the autouse ``backend`` fixture's); then every
    rule, and calls served by a replay, must have run many times (without them the
    machine proves little)."""
    already = {rule: n for (name, rule), n in RULE_COUNTS.items() if name == backend.name}
    try:
        run_state_machine_as_test(machine_for(backend.name), settings=MACHINE_SETTINGS)
    finally:
        counts = {rule: n - already.get(rule, 0) for (name, rule), n in
                  sorted(RULE_COUNTS.items()) if name == backend.name}
        print(f"\nrule counts on {backend.name}: {counts}")
    wanted = rule_names(CaptureStateMachine) + ["(step replayed)"]
    rare = {r: counts.get(r, 0) for r in wanted if counts.get(r, 0) < MIN_RUNS_PER_RULE}
    assert not rare, f"rules that ran fewer than {MIN_RUNS_PER_RULE} times: {rare}"


# -- one deterministic example per action a replay must see -------------------------------

def captured_pair(optimizer_spec: dict, variant: str = "zero_grad_first", dtype="float64"):
    """Eager and captured copies, stepped until the captured one replays."""
    backend = gk.get_backend().name
    eager = Setup(backend, [4], dtype, 0, optimizer_spec)
    captured = Setup(backend, [4], dtype, 0, optimizer_spec)
    eager_step = training_steps(eager)[variant]
    captured_step = gk.capture(training_steps(captured)[variant])
    for seed in range(3):
        assert check_step(eager, captured, eager_step, captured_step, seed, 4) == "returned"
    assert captured_step.replays == 1
    return eager, captured, functools.partial(check_step, eager, captured, eager_step,
                                              captured_step)


SGD = {"kind": "sgd", "lr": 0.1}
MOMENTUM = {"kind": "sgd", "lr": 0.1, "momentum": 0.9}


def test_a_gradient_left_before_the_call_after_capture():
    eager, captured, step = captured_pair(SGD, variant="zero_grad_last")
    apply_to_both(eager, captured, lambda s: s.extra_backward(seed=10, size=4))
    step(seed=11, size=4)  # eager adds this step's gradient to the one left


def test_optimizer_state_loaded_without_buffers_after_capture():
    eager, captured, step = captured_pair(MOMENTUM)
    apply_to_both(eager, captured, lambda s: load_optimizer_state(s, None, drop_buffers=True))
    step(seed=10, size=4)  # eager starts a new velocity at zero


def test_a_parameter_frozen_after_capture():
    eager, captured, step = captured_pair(SGD)
    apply_to_both(eager, captured,
                  lambda s: setattr(s.model.linear_layers()[0].weight, "requires_grad", False))
    step(seed=10, size=4)  # eager leaves the frozen weight as it is


def test_a_parameter_replaced_after_capture():
    eager, captured, step = captured_pair(SGD)
    apply_to_both(eager, captured, lambda s: replace_weight(s, 0, seed=7, rebuild_optimizer=True))
    step(seed=10, size=4)


def test_a_new_optimizer_bound_to_the_same_name_after_capture():
    eager, captured, step = captured_pair(MOMENTUM)
    apply_to_both(eager, captured, lambda s: setattr(
        s, "opt", make_optimizer(MOMENTUM, s.model.parameters())))
    step(seed=10, size=4)  # eager's new optimizer starts with no velocity


def test_eval_mode_set_after_capture():
    eager, captured, step = captured_pair(SGD)
    apply_to_both(eager, captured, lambda s: s.model.eval())
    step(seed=10, size=4)  # eager no longer halves the logits
