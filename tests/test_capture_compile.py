"""gk.capture on the Numba backend compiles the kernel section of a replay into one njit
function, which gives the Python replay's results bit for bit. Every test here runs on
the Numba backend (the one that compiles steps), whatever the suite's backends are."""
import re

import numpy as np
import pytest

import gradkit as gk
from gradkit.benchmarks.mlp import _data
from gradkit.nn import functional as F

numba = pytest.importorskip("numba", reason="whole-step compilation needs numba")
pytest.importorskip("scipy", reason="np.dot inside Numba code needs SciPy's BLAS")


@pytest.fixture(autouse=True)
def backend():
    """(Overrides the suite's per-backend fixture: these tests are about the Numba backend.)"""
    with gk.use_backend("numba") as chosen:
        yield chosen


def make_step(optimizer: str, compiled: bool, dims=(64, 64, 64, 10), batch=32,
              activation="relu"):
    weights, x_host, labels_host = _data(list(dims), batch)
    with gk.use_backend("numba"):
        ws = [gk.tensor(w, requires_grad=True) for w in weights]
        bs = [gk.zeros(w.shape[1], requires_grad=True) for w in weights]
        x, labels = gk.tensor(x_host), gk.tensor(labels_host)
    params = ws + bs
    opt = (gk.optim.SGD(params, lr=0.05, momentum=0.9) if optimizer == "sgd" else
           gk.optim.Adam(params, lr=1e-2))

    @gk.capture(compile=compiled)
    def step(x, labels):
        h = x
        for w, b in zip(ws[:-1], bs[:-1]):
            h = gk.bias_activation(h @ w, b, activation=activation)
        loss = F.cross_entropy(gk.linear(h, ws[-1], bs[-1]), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    return step, x, labels, params, opt


def run(optimizer: str, compiled: bool, steps: int = 8, **kwargs):
    step, x, labels, params, opt = make_step(optimizer, compiled, **kwargs)
    losses = []
    for k in range(steps):
        if k == 5:
            opt.lr = opt.lr * 0.5  # a schedule: a live param of the compiled function
        losses.append(step(x, labels).numpy())
    state = [np.asarray(t.numpy()) for entry in opt.state for t in entry.values()
             if isinstance(t, gk.Tensor)]
    return step, losses, [p.numpy() for p in params], state


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_compiled_equals_python_replay(optimizer, activation):
    python, losses, params, state = run(optimizer, False, activation=activation)
    compiled, losses_c, params_c, state_c = run(optimizer, True, activation=activation)
    assert "compiled into one function" in compiled.explain(), compiled.explain()
    assert "compiled_step" in compiled.source and "@numba.njit" in compiled.source
    assert compiled.replays == python.replays == 6
    assert [l.tobytes() for l in losses] == [l.tobytes() for l in losses_c]
    for a, b in zip(params + state, params_c + state_c):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert len(state) == len(state_c) > 0
    plan = list(compiled.plans.values())[0]
    assert plan.compile_seconds is not None and plan.compile_seconds >= 0



def test_compiled_bias_gradients_equal_python_replay_for_a_batch_of_one():
    """One example a step: a ReLU unit off for it has a gradient of 0.0 or -0.0 (the
    sign of the upstream gradient), which the bias's gradient sums to 0.0 in NumPy (the
    reduction starts from its identity) and in the compiled step alike."""
    def gradients(compiled: bool) -> list[bytes]:
        weights, x_host, labels_host = _data([64, 64, 64, 10], 1)
        ws = [gk.tensor(w, requires_grad=True) for w in weights]
        bs = [gk.zeros(w.shape[1], requires_grad=True) for w in weights]
        opt = gk.optim.SGD(ws + bs, lr=0.05)

        @gk.capture(compile=compiled)
        def step(x, labels):
            h = x
            for w, b in zip(ws[:-1], bs[:-1]):
                h = gk.bias_activation(h @ w, b)
            F.cross_entropy(gk.linear(h, ws[-1], bs[-1]), labels).backward()
            grads = [b.grad for b in bs[:-1]]
            opt.step()
            opt.zero_grad()
            return grads
        x, labels = gk.tensor(x_host), gk.tensor(labels_host)
        seen = [g.numpy().tobytes() for _ in range(4) for g in step(x, labels)]
        assert ("compiled into one function" in step.explain()) == compiled, step.explain()
        return seen
    compiled = gradients(True)
    assert compiled == gradients(False)
    sums = [np.frombuffer(g, np.float32) for g in compiled]
    assert any((g == 0).any() for g in sums)  # units off for the example


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_parallel_loops_compiled_equal_python_replay(backend, monkeypatch, optimizer,
                                                     activation):
    """A step whose arrays reach parallel_threshold (lowered here, as for large arrays)
    compiles the parallel loops the Python replay runs, with the same results."""
    from gradkit.backends import get_backend
    numba_backend = get_backend()
    monkeypatch.setattr(numba_backend, "parallel_threshold", 2048)  # (32, 64): parallel
    python, losses, params, state = run(optimizer, False, activation=activation)
    compiled, losses_c, params_c, state_c = run(optimizer, True, activation=activation)
    assert "compiled into one function" in compiled.explain(), compiled.explain()
    source = list(compiled.plans.values())[0].segments[0].step.source
    def runs(kernel: str, variant: str) -> bool:  # (an "_over_" form writes over an input)
        return re.search(rf"= {kernel}\w*\.{variant}\(", source) is not None
    assert runs("bias_activation", "parallel") and not runs("bias_activation", "serial")
    update = "sgd_update" if optimizer == "sgd" else "adam_update"
    assert runs(update, "parallel") and runs(update, "serial")  # 64x64, bias
    assert [l.tobytes() for l in losses] == [l.tobytes() for l in losses_c]
    for a, b in zip(params + state, params_c + state_c):
        assert a.tobytes() == b.tobytes()

def test_uncovered_op_falls_back_and_is_named():
    w = gk.tensor(np.ones(4, np.float32), requires_grad=True, backend="numba")
    opt = gk.optim.SGD([w], lr=0.1)

    def step(x):
        loss = gk.exp(x * w).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    x = gk.tensor(np.arange(4, dtype=np.float32) / 10, backend="numba")
    compiled = gk.capture(step, compile=True)
    values = [step(x).item() for _ in range(2)] + [compiled(x).item() for _ in range(4)]
    text = compiled.explain()
    assert "exp: no lowering for this op" in text, text
    assert compiled.replays == 2 and values[0] > values[-1]


def make_step_with_sin(compiled: bool):
    """A step whose hidden layer's sin (and its VJP's cos) has no compiled form."""
    weights, x_host, labels_host = _data([64, 64, 64, 10], 32)
    ws = [gk.tensor(w, requires_grad=True) for w in weights]
    bs = [gk.zeros(w.shape[1], requires_grad=True) for w in weights]
    opt = gk.optim.SGD(ws + bs, lr=0.05, momentum=0.9)

    @gk.capture(compile=compiled)
    def step(x, labels):
        h = gk.sin(gk.bias_activation(x @ ws[0], bs[0]))
        h = gk.bias_activation(h @ ws[1], bs[1])
        loss = F.cross_entropy(gk.linear(h, ws[2], bs[2]), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    return step, gk.tensor(x_host), gk.tensor(labels_host), ws + bs


def test_the_calls_around_an_op_without_lowering_compile():
    """The runs of calls before, between and after the calls with no compiled form
    compile, each into a function of its own, and the step gives the Python replay's
    results bit for bit."""
    results = {}
    for compiled in (False, True):
        step, x, labels, params = make_step_with_sin(compiled)
        losses = [step(x, labels).numpy().tobytes() for _ in range(6)]
        results[compiled] = losses + [p.numpy().tobytes() for p in params]
    assert results[True] == results[False]
    text, plan = step.explain(), list(step.plans.values())[0]
    assert "partly compiled" in text and "call 2 sin: no lowering for this op" in text, text
    assert "cos: no lowering for this op" in text, text
    assert len(plan.segments) >= 2
    compiled_calls = {n for s in plan.segments for n in range(s.start, s.stop)}
    named = {int(n) for n in re.findall(r"^  call (\d+) ", text, re.MULTILINE)}
    assert compiled_calls | named == set(range(len(plan.calls)))  # each call accounted for
    assert not compiled_calls & named
    for k in range(len(plan.segments)):
        assert f"compiled_step_{k}(" in step.source and f"# compiled_step_{k}:" in step.source
    assert re.search(r"= sin_2\(", step.source), step.source


def test_value_checks_run_before_a_compiled_segment():
    step, x, labels, params = make_step_with_sin(True)
    for _ in range(3):
        step(x, labels)
    before = [p.numpy().copy() for p in params]
    bad = labels.numpy().copy()
    bad[0] = 10
    with pytest.raises(gk.ShapeError, match="class indices"):
        step(x, gk.tensor(bad))
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(before, params))


def test_a_lone_compilable_call_stays_on_the_python_replay():
    w = gk.tensor(np.eye(3, dtype=np.float32))
    step = gk.capture(lambda x: gk.sin(gk.cos(x) @ w), compile=True)
    x = gk.tensor(np.ones((2, 3), np.float32))
    values = [step(x).numpy() for _ in range(3)]
    assert "call 1 matmul: the only compilable call in its run" in step.explain()
    assert not list(step.plans.values())[0].segments
    assert values[2].tobytes() == values[0].tobytes()


def test_new_batch_shape_records_anew():
    step, x, labels, params, opt = make_step("sgd", True)
    for _ in range(3):
        step(x, labels)
    half_x = gk.tensor(x.numpy()[:16], backend="numba")
    half_labels = gk.tensor(labels.numpy()[:16], backend="numba")
    for _ in range(3):
        step(half_x, half_labels)
    assert step.recordings == 4 and step.replays == 2 and len(step.plans) == 2
    assert step.explain().count("compiled into one function") == 2


def test_labels_out_of_range_refused_by_the_check():
    step, x, labels, params, opt = make_step("sgd", True)
    for _ in range(3):
        step(x, labels)
    bad = labels.numpy().copy()
    bad[0] = 10
    with pytest.raises(gk.ShapeError, match="class indices"):
        step(x, gk.tensor(bad, backend="numba"))


def test_sum_rows_matches_numpy_reduce():
    from gradkit.backends.numba.step_kernels import sum_rows
    rng = np.random.default_rng(1)
    for shape in [(32, 10), (128, 512), (3, 2), (1000, 7)]:
        for dtype in (np.float32, np.float64):
            x = (rng.standard_normal(shape) * 100).astype(dtype)
            x[:, 0] = -0.0  # sums to 0.0 (NumPy starts from the identity)
            x[1:, 1] = -0.0
            assert sum_rows(x).tobytes() == np.add.reduce(x, axis=0).tobytes()


def test_matmul_matches_numpy():
    """Both compiled matmuls: np.dot (SciPy's BLAS) and NumPy's own, from object mode."""
    from gradkit.backends.numba.step_kernels import matmul as dot, matmul_numpy

    def matmul(a, b):
        product = dot(a, b)
        assert matmul_numpy(a, b).tobytes() == product.tobytes()
        return product
    rng = np.random.default_rng(2)
    for m, k, n in [(32, 64, 64), (128, 784, 512), (32, 64, 10)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = rng.standard_normal((m, n)).astype(np.float32)
        assert matmul(a, b).tobytes() == (a @ b).tobytes()
        assert matmul(a.T.copy().T, b).tobytes() == (a @ b).tobytes()
        assert matmul(c, b.T).tobytes() == (c @ b.T).tobytes()
        assert matmul(a.T, c).tobytes() == (a.T @ c).tobytes()


def test_activation_codes_match_the_loops():
    from gradkit.backends.numba import kernels, lowering
    assert lowering.ACTIVATION_CODES == kernels.ACTIVATION_CODES


def test_on_by_default_and_off_with_the_environment_variable(monkeypatch):
    monkeypatch.delenv("GRADKIT_CAPTURE_COMPILE", raising=False)
    step, x, labels, params, opt = make_step("sgd", None)
    for _ in range(3):
        step(x, labels)
    assert "compiled into one function" in step.explain()
    monkeypatch.setenv("GRADKIT_CAPTURE_COMPILE", "0")
    step, x, labels, params, opt = make_step("sgd", None)
    for _ in range(3):
        step(x, labels)
    assert "compilation off" in step.explain()


# -- the capture state machine, compiled ------------------------------------------------
# Fewer examples: each new plan compiles (about a second per source and dtype, cached on
# disk after); the model's mode-dependent multiply stays on the Python replay between
# compiled segments where it has no lowering.

def test_compiled_captured_training_equals_eager_under_user_actions():
    """tests/test_capture_state_machine.py's contract when the plans are compiled."""
    from hypothesis.stateful import run_state_machine_as_test
    from test_capture_state_machine import (MACHINE_SETTINGS, MIN_RUNS_PER_RULE, RULE_COUNTS,
                                            machine_for)
    from hypothesis import settings
    key = "numba-compiled"
    already = {rule: n for (name, rule), n in RULE_COUNTS.items() if name == key}
    machine = machine_for("numba", compiled=True)
    machine.count = lambda self, name: RULE_COUNTS.update([(key, name)])
    run_state_machine_as_test(machine, settings=settings(MACHINE_SETTINGS, max_examples=60,
                                                         stateful_step_count=40))
    counts = {rule: n - already.get(rule, 0) for (name, rule), n in sorted(RULE_COUNTS.items())
              if name == key}
    print(f"\nrule counts, numba compiled: {counts}")
    assert counts.get("(step replayed compiled)", 0) >= MIN_RUNS_PER_RULE, counts


def test_the_step_of_gradkit_train_compiles_and_equals_the_python_replay():
    from gradkit.training import training_step
    X, y = gk.data.spiral(n_per_class=20, seed=1)
    results = {}
    for compiled in (False, True):
        model = gk.nn.MLP([2, 16, 3], seed=0)
        step = training_step(model, gk.optim.Adam(model.parameters(), lr=1e-2))
        step.compile = compiled
        sums = [step(gk.tensor(X[:32]), gk.tensor(y[:32])).numpy() for _ in range(5)]
        results[compiled] = sums + [p.numpy() for p in model.parameters()]
        assert ("compiled into one function" in step.explain()) == compiled
    assert all(a.tobytes() == b.tobytes() for a, b in zip(results[False], results[True]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_vector_is_numpys_pairwise_sum(dtype):
    from gradkit.backends.numba.step_kernels import sum_vector
    rng = np.random.default_rng(0)
    for n in [*range(1, 140), 255, 256, 257, 1000, 4099, 70001]:
        a = rng.standard_normal(n).astype(dtype)
        assert sum_vector(a)[()].tobytes() == np.sum(a).tobytes(), n
    assert sum_vector(np.array([-0.0] * 20))[()].tobytes() == np.sum([-0.0] * 20).tobytes()


def test_argmax_rows_and_casts_match_numpy():
    from gradkit.backends.numba.step_kernels import argmax_rows, as_float64, scalar_to_vector
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    x[3, 2] = x[3, 4] = np.nan  # the first NaN wins
    x[4] = 1.0  # ties: the first one
    x[5, 0] = np.nan
    assert np.array_equal(argmax_rows(x), np.argmax(x, axis=1))
    for array in (np.array([True, False]), np.arange(4), np.float32([0.1, -2.5]),
                  np.array(np.float32(0.1))):
        assert as_float64(array).tobytes() == array.astype(np.float64).tobytes()
    assert scalar_to_vector(np.array(2.5)).tolist() == [2.5]



def test_results_are_written_over_only_where_nothing_reads_them_again():
    """The compiled step writes a kernel's result over a dying intermediate (as the Python
    replay's donating kernels do), never over one the step returns or reads later."""
    from gradkit.backends.base import StepCall
    from gradkit.backends.numba.lowering import overwritable_inputs
    calls = [StepCall(0, "matmul", (0, 1), {}, (), 2),
             StepCall(1, "bias_activation", (2, 3), {}, (), 4),    # 2 dies here
             StepCall(2, "matmul", (4, 1), {}, (), 5),
             StepCall(3, "bias_activation", (5, 3), {}, (), 6),    # 5 is returned
             StepCall(4, "matrix_transpose", (6,), {}, (), 7),     # views 6
             StepCall(5, "bias_activation_backward", (6, 4), {}, (), 8),
             StepCall(6, "sgd_update", (1, 8), {}, (), 9)]         # 8 dies here
    assert overwritable_inputs(calls, [5, 7, 9]) == {(1, 0), (6, 1)}


def logits_step():
    """(a compiled step of a 2-layer MLP returning its loss and its logits, x, labels)"""
    weights, x_host, labels_host = _data([8, 6, 3], 5)
    w1, w2 = (gk.tensor(w, requires_grad=True) for w in weights)
    b1 = gk.zeros(6, requires_grad=True)
    opt = gk.optim.SGD([w1, w2, b1], lr=0.1)

    def step(x, labels):
        logits = gk.bias_activation(x @ w1, b1) @ w2
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss, logits
    return gk.capture(step, compile=True), gk.tensor(x_host), gk.tensor(labels_host)


def test_compiled_step_returning_its_logits_keeps_them():
    compiled, x, labels = logits_step()
    results = [compiled(x, labels) for _ in range(4)]
    assert "compiled into one function" in compiled.explain(), compiled.explain()
    assert "cross_entropy_backward_over_logits" not in compiled.source.split("def step")[-1]
    for loss, logits in results[2:]:  # the compiled calls: logits as the forward made them
        expected = F.cross_entropy(logits, labels).numpy()
        assert loss.numpy().tobytes() == expected.tobytes()


def test_a_compiled_double_transpose_returns_its_values_and_leaves_the_argument_writable():
    """Compiled code hands back the very input array for x.mT.mT (its layout matches):
    the replay must not treat that result as an array of its own."""
    w = gk.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    opt = gk.optim.SGD([w], lr=0.1)

    @gk.capture(compile=True)
    def step(x):
        loss = (w * x.mT.mT).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return x.mT.mT
    x = gk.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    outputs = [step(x) for _ in range(4)]
    plan = list(step.plans.values())[0]
    assert plan.segments, step.explain()
    assert x.data.flags.writeable and np.array_equal(outputs[-1].numpy(), x.numpy())
    np.testing.assert_allclose(w.numpy(), 1 - 0.4 * x.numpy(), rtol=1e-6, atol=1e-6)


def test_the_arena_holds_only_what_nothing_outside_the_step_sees():
    """A buffer goes into the arena unless the step returns it, a view may be taken of
    it, or it is below the size limit; buffers whose spans of calls do not meet share
    bytes, those that meet (a call reading one and making the other) never do."""
    from gradkit.backends.base import StepCall
    from gradkit.backends.numba.lowering import Layouts, overwritable_inputs, plan_arena
    calls = [StepCall(0, "matmul", (0, 1), {}, (), 2),
             StepCall(1, "bias_activation", (2, 3), {}, (), 4),  # over 2: shares its buffer
             StepCall(2, "matmul", (4, 1), {}, (), 5),           # returned
             StepCall(3, "matmul", (4, 1), {}, (), 6),
             StepCall(4, "matrix_transpose", (6,), {}, (), 7),   # may view 6
             StepCall(5, "matmul", (4, 1), {}, (), 8),           # 2/4 read last here
             StepCall(6, "relu", (8,), {}, (), 9),               # 8 read last here
             StepCall(7, "sum_to", (9,), {"shape": (4,)}, (), 10)]
    results = [5, 7, 10]
    examples = {slot: np.zeros((4, 4), np.float32) for slot in range(10)}
    examples[3] = examples[10] = np.zeros(4, np.float32)
    layouts = Layouts(examples, None, overwritable_inputs(calls, results))
    assert layouts.may_overwrite(calls[1], 0)
    # 2 (with 4) spans calls 0-5, 8 spans 5-6, 9 spans 6-7: 9 takes 2's bytes again
    assert plan_arena(calls, results, layouts, min_bytes=0) == ({2: 0, 8: 64, 9: 0}, 128)
    assert plan_arena(calls, results, layouts, min_bytes=65) == ({}, 0)
    # 4 returned: the buffer 2 that holds it goes nowhere near the arena
    assert 2 not in plan_arena(calls, results + [4], layouts, min_bytes=0)[0]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_compiled_step_with_an_arena_equals_the_python_replay(monkeypatch, optimizer,
                                                              activation):
    """With every intermediate in the arena (the size limit lowered to 0), the compiled
    step still gives the Python replay's bits, step after step."""
    from gradkit.backends.numba import lowering
    monkeypatch.setattr(lowering, "ARENA_MIN_BYTES", 0)
    python, losses, params, state = run(optimizer, False, activation=activation)
    compiled, losses_c, params_c, state_c = run(optimizer, True, activation=activation)
    source = list(compiled.plans.values())[0].segments[0].step.source
    assert "= arena[" in source and "def step(arena, " in source
    assert re.search(r"KiB of intermediates in memory kept between steps",
                     compiled.explain()), compiled.explain()
    assert [l.tobytes() for l in losses] == [l.tobytes() for l in losses_c]
    for a, b in zip(params + state, params_c + state_c):
        assert a.tobytes() == b.tobytes()


def test_float64_mean_loss_step_with_an_arena_equals_the_python_replay(monkeypatch):
    """Standalone ops (matmul, add, sigmoid and its backward, a mean loss) in float64,
    every intermediate in the arena: the Python replay's bits."""
    from gradkit.backends.numba import lowering
    monkeypatch.setattr(lowering, "ARENA_MIN_BYTES", 0)

    def losses(compiled: bool) -> list[bytes]:
        rng = np.random.default_rng(3)
        w1, w2 = (gk.tensor(rng.standard_normal(shape), requires_grad=True)
                  for shape in ((6, 5), (5, 2)))
        b1 = gk.tensor(np.zeros(5), requires_grad=True)
        opt = gk.optim.Adam([w1, w2, b1], lr=0.01)

        @gk.capture(compile=compiled)
        def step(x, y):
            loss = F.mse_loss(gk.sigmoid(x @ w1 + b1) @ w2, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        x, y = gk.tensor(rng.standard_normal((4, 6))), gk.tensor(rng.standard_normal((4, 2)))
        seen = [step(x, y).numpy().tobytes() for _ in range(5)]
        assert ("= arena[" in step.source) == compiled, step.explain()
        return seen + [t.numpy().tobytes() for t in (w1, w2, b1)]
    assert losses(True) == losses(False)


def test_a_compiled_step_returns_nothing_of_its_arena(monkeypatch):
    """What a step returns (its logits) stays as it was when later steps reuse the
    arena."""
    from gradkit.backends.numba import lowering
    monkeypatch.setattr(lowering, "ARENA_MIN_BYTES", 0)
    step, x, labels = logits_step()
    results = [step(x, labels) for _ in range(5)]
    assert "= arena[" in step.source, step.source
    seen = [logits.numpy().copy() for _, logits in results]
    step(x, labels)
    for (loss, logits), before in zip(results, seen):
        assert logits.numpy().tobytes() == before.tobytes()
        assert loss.numpy().tobytes() == F.cross_entropy(logits, labels).numpy().tobytes()


def test_every_op_that_writes_into_the_arena_is_lowered_with_its_view():
    """Each op of WRITES_INTO, its result placed in the arena, gets the view as its
    kernel's ``out`` (else its bytes would be kept and never written)."""
    from gradkit.backends.base import StepCall
    from gradkit.backends.numba.lowering import (ACTIVATION_LOOPS, NUMPY_CALLS, WRITES_INTO,
                                                 Layouts, arena_name, lower_call)
    m, v, s, labels = (np.ones((4, 3), np.float32), np.ones(3, np.float32),
                       np.array(1.0, np.float32), np.zeros(4, np.int64))
    act = {"activation": "relu", "slope": 0.01, "alpha": 1.0}
    operands = {  # op -> (inputs, params, result)
        "matmul": ((m, m.T.copy()), {}, np.ones((4, 4), np.float32)),
        "matmul_transposed": ((m, m), {"transpose_x1": False, "transpose_x2": True},
                              np.ones((4, 4), np.float32)),
        "linear": ((m, m.T.copy(), np.ones(4, np.float32)), {}, np.ones((4, 4), np.float32)),
        "bias_activation": ((m, v), act, m),
        "bias_activation_backward": ((m, m), act, m),
        "cross_entropy_backward": ((s, m, labels), {}, m),
        "sum_to": ((m,), {"shape": (3,)}, v),
        "mean_backward": ((s,), {"shape": (4, 3)}, m),
        "maximum": ((m, m), {}, m), "minimum": ((m, m), {}, m), "tanh": ((m,), {}, m),
        "leaky_relu": ((m,), {"slope": 0.01}, m), "elu": ((m,), {"alpha": 1.0}, m),
        "leaky_relu_backward": ((m, m), {"slope": 0.01}, m),
        "elu_backward": ((m, m), {"alpha": 1.0}, m)}
    for op in ACTIVATION_LOOPS | set(NUMPY_CALLS):
        operands.setdefault(op, (((m,) if not op.endswith("_backward") else (m, m)), {}, m))
    assert set(operands) == WRITES_INTO
    for op, (inputs, params, result) in operands.items():
        slots = tuple(range(len(inputs)))
        call = StepCall(0, op, slots, params, (), len(inputs))
        layout = Layouts(dict(enumerate(inputs + (result,))), lambda name, n: False)
        layout.arena = {call.output: 0}
        assert f", {arena_name(call.output)})" in lower_call(call, layout), op


def test_compiled_steps_share_one_arena_of_the_largest_need(monkeypatch):
    """Plans of two batch sizes keep the larger one's bytes, once; the arena goes with
    the last compiled step holding it."""
    import gc
    import weakref
    from gradkit.backends.numba import lowering
    monkeypatch.setattr(lowering, "ARENA_MIN_BYTES", 0)
    monkeypatch.setattr(lowering, "_shared_arena", lambda: None)  # a fresh one here
    step, x, labels = logits_step()
    for _ in range(3):
        step(x, labels)
    small = [s.step.arena_bytes for s in list(step.plans.values())[0].segments]
    weights, x_host, labels_host = _data([8, 6, 3], 50)
    x_large, labels_large = gk.tensor(x_host), gk.tensor(labels_host)
    for _ in range(3):
        step(x_large, labels_large)
    sizes = [s.step.arena_bytes for plan in step.plans.values() for s in plan.segments]
    arena = lowering.shared_arena()
    assert len(sizes) == 2 and max(sizes) > max(small) > 0
    assert arena.nbytes == max(sizes)
    for _ in range(2):  # the small plan again: the arena as it was
        step(x, labels)
    assert lowering.shared_arena() is arena and arena.nbytes == max(sizes)
    freed = weakref.ref(arena)
    del step, arena
    gc.collect()
    assert freed() is None and lowering._shared_arena() is None


def test_a_compiled_step_with_an_arena_runs_one_call_at_a_time():
    """Threads calling one compiled step (one arena) get what serial calls give."""
    import threading
    from gradkit.backends.base import StepCall
    from gradkit.backends.numba.lowering import compile_step
    rng = np.random.default_rng(0)
    # (512, 512) float32 intermediates: 1 MiB each, the arena's smallest
    x, w = (rng.standard_normal((512, 512)).astype(np.float32) for _ in range(2))
    calls = [StepCall(0, "matmul", (0, 1), {}, (), 2), StepCall(1, "tanh", (2,), {}, (), 3),
             StepCall(2, "matmul", (3, 1), {}, (), 4)]
    examples = {0: x, 1: w, 2: x @ w, 3: np.tanh(x @ w), 4: np.tanh(x @ w) @ w}
    compiled = compile_step(calls, [0, 1], [4], examples, [], lambda name, n: False)
    assert compiled.function is not None, compiled.reasons
    assert compiled.arena_bytes == 2 * 512 * 512 * 4 and "= arena[" in compiled.source
    inputs = [rng.standard_normal((512, 512)).astype(np.float32) for _ in range(8)]
    expected = [compiled.function(a, w)[0] for a in inputs]
    for a, out in zip(inputs, expected):
        assert out.tobytes() == (np.tanh(a @ w) @ w).tobytes()
    got = [None] * len(inputs)

    def call(k):
        for _ in range(3):
            got[k] = compiled.function(inputs[k], w)[0]
    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [g.tobytes() for g in got] == [e.tobytes() for e in expected]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", range(6))
@pytest.mark.parametrize("shape", [(1, 5), (7, 3), (33, 64), (3, 9000)])
def test_backward_and_bias_sum_in_one_pass_give_the_two_calls_bits(kind, shape, dtype):
    """The fused kernel (blocks of rows: a block, one row, a ragged last block) gives
    bias_activation_backward_over_g then sum_rows bit for bit, into ``out`` too."""
    from gradkit.backends.numba.step_kernels import (
        bias_activation_backward_and_sum_over_g, bias_activation_backward_over_g, sum_rows)
    rng = np.random.default_rng(kind)
    g = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    g[:, 0] = -0.0  # a column summing to 0.0
    two = bias_activation_backward_over_g.serial(g.copy(), y, kind, 0.01, 1.0)
    fused_g = g.copy()
    result, sums = bias_activation_backward_and_sum_over_g(fused_g, y, kind, 0.01, 1.0)
    assert result is fused_g and result.tobytes() == two.tobytes()
    assert sums.tobytes() == sum_rows(two).tobytes() == np.add.reduce(two, axis=0).tobytes()
    out = np.full(shape[1], np.nan, dtype)
    _, into = bias_activation_backward_and_sum_over_g(g.copy(), y, kind, 0.01, 1.0, out)
    assert into is out and out.tobytes() == sums.tobytes()


def test_the_bias_sum_runs_in_its_backward_pass_only_where_that_pass_is_serial(backend,
                                                                              monkeypatch):
    """In the compiled MLP step each hidden layer's bias gradient is summed in the
    backward's pass (the sum_to call has no line of its own, the arena counts it at the
    backward); with the backward's loop parallel, the two stay apart."""
    from gradkit.backends.base import StepCall
    from gradkit.backends.numba.lowering import as_run
    compiled = run("sgd", True, steps=3)[0]
    body = compiled.source.split("def step")[-1]
    assert body.count("bias_activation_backward_and_sum_over_g(") == 2
    assert re.search(r"# bias_activation_backward \(fused here: \d+ sum_to\)", body)
    assert body.count("sum_rows(") == 1  # the last layer's, of cross_entropy's gradient
    calls = [StepCall(3, "bias_activation_backward", (0, 1), {}, (), 2),
             StepCall(4, "matmul", (2, 1), {}, (), 3), StepCall(5, "sum_to", (2,), {}, (), 4)]
    assert [(c.index, c.op) for c in as_run(calls, {3: calls[2]})] == [
        (3, "bias_activation_backward"), (3, "sum_to"), (4, "matmul")]

    monkeypatch.setattr(backend, "parallel_threshold", 2048)  # (32, 64): parallel
    parallel = run("sgd", True, steps=3)[0]
    body = parallel.source.split("def step")[-1]
    assert "bias_activation_backward_and_sum_over_g" not in body
    assert "bias_activation_backward_over_g.parallel(" in body
