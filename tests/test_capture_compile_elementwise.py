"""Whole-step compilation of the elementwise ops (gradkit/backends/numba/lowering.py):
standalone activations and their backward ops, arithmetic with arrays and Python
numbers, a mean-squared-error loss, and elementwise chains fused into one expression.
A compiled step gives the Python replay's results bit for bit, whichever loop variant
or NumPy path the Python kernels take. Every test runs on the Numba backend."""
import re

import numpy as np
import pytest

import gradkit as gk
from gradkit.backends import get_backend
from gradkit.backends.base import StepCall
from gradkit.nn import functional as F

numba = pytest.importorskip("numba", reason="whole-step compilation needs numba")
pytest.importorskip("scipy", reason="np.dot inside Numba code needs SciPy's BLAS")


@pytest.fixture(autouse=True)
def backend():
    """(Overrides the suite's per-backend fixture: these tests are about the Numba backend.)"""
    with gk.use_backend("numba") as chosen:
        yield chosen


ACTIVATIONS = {"relu": gk.relu, "leaky_relu": lambda h: gk.leaky_relu(h, slope=0.2),
               "elu": lambda h: gk.elu(h, alpha=0.5), "sigmoid": gk.sigmoid, "tanh": gk.tanh}
SIZES = {"small": (4, 16), "medium": (32, 64), "large": (32, 512)}  # (batch, hidden)


def make_step(activation: str, compiled: bool, batch: int, hidden: int, dtype="float32"):
    """One hidden layer with a standalone activation, an elementwise chain with Python
    numbers, a mean-squared-error loss, SGD with momentum."""
    rng = np.random.default_rng(0)
    w1 = gk.tensor(rng.standard_normal((8, hidden)).astype(dtype) * 0.5, requires_grad=True)
    b1 = gk.tensor(rng.standard_normal(hidden).astype(dtype) * 0.1, requires_grad=True)
    w2 = gk.tensor(rng.standard_normal((hidden, 4)).astype(dtype) * 0.2, requires_grad=True)
    x = gk.tensor(rng.standard_normal((batch, 8)).astype(dtype))
    target = gk.tensor(rng.standard_normal((batch, 4)).astype(dtype))
    params = [w1, b1, w2]
    opt = gk.optim.SGD(params, lr=0.05, momentum=0.9)

    @gk.capture(compile=compiled)
    def step(x, target):
        h = ACTIVATIONS[activation](x @ w1 + b1)
        y = (h * 0.5 - h / 3.0) @ w2
        loss = F.mse_loss(y * 2.0 - 0.25, target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    return step, x, target, params, opt


def run(activation: str, compiled: bool, steps: int = 6, **kwargs):
    step, x, target, params, opt = make_step(activation, compiled, **kwargs)
    losses = [step(x, target).numpy() for _ in range(steps)]
    state = [t.numpy() for entry in opt.state for t in entry.values()
             if isinstance(t, gk.Tensor)]
    return step, losses, [p.numpy() for p in params] + state


def assert_compiled_equals_python(activation: str, **kwargs) -> str:
    """Runs the step both ways; returns the compiled step's source."""
    python, losses, arrays = run(activation, False, **kwargs)
    compiled, losses_c, arrays_c = run(activation, True, **kwargs)
    assert "compiled into one function" in compiled.explain(), compiled.explain()
    assert compiled.replays == python.replays == 4
    assert [a.tobytes() for a in losses] == [a.tobytes() for a in losses_c]
    assert len(arrays) == len(arrays_c) == 6  # 3 parameters, 3 velocities
    for a, b in zip(arrays, arrays_c):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert losses[-1] < losses[0]  # it trains
    return compiled.source


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_step_with_a_standalone_activation_compiles_and_equals_python_replay(activation,
                                                                              size):
    batch, hidden = SIZES[size]
    source = assert_compiled_equals_python(activation, batch=batch, hidden=hidden)
    # not materialized: h * 0.5 and h / 3.0 (h is read again), y * 2.0 and its - 0.25
    assert re.search(r"= \(s\d+ \* s\d+\[\(\)\]\) - \(s\d+ / s\d+\[\(\)\]\)  "
                     r"# subtract \(fused here: \d+ multiply, \d+ divide\)", source), source
    assert re.search(r"# subtract \(fused here: \d+ multiply, \d+ subtract\)", source)
    below = get_backend().numpy_elementwise_below
    elements = batch * hidden
    if activation == "relu":  # NumPy's maximum below its threshold, else the loop
        assert ("relu_numpy(" in source) == (elements < below["relu"])
        assert ("= relu.serial(" in source) == (elements >= below["relu"])
    elif activation == "tanh":
        assert "tanh_numpy(" in source and "tanh_backward.serial(" in source
    else:
        assert f"= {activation}.serial(" in source
    assert ".parallel(" not in source


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_parallel_loops_compiled_equal_python_replay(monkeypatch, activation):
    """Above a (lowered) parallel_threshold the compiled step calls the parallel loops
    the Python kernels run."""
    monkeypatch.setattr(get_backend(), "parallel_threshold", 1024)  # 32 x 64: parallel
    monkeypatch.setattr(get_backend(), "numpy_elementwise_below", {})  # loops at every size
    source = assert_compiled_equals_python(activation, batch=32, hidden=64)
    loops = ["tanh_backward"] if activation == "tanh" else [activation,
                                                             f"{activation}_backward"]
    for loop in loops:
        assert f"= {loop}.parallel(" in source and f"= {loop}.serial(" not in source


def test_float64_step_compiles_and_equals_python_replay():
    source = assert_compiled_equals_python("sigmoid", batch=8, hidden=32, dtype="float64")
    assert "mean_all(" in source and "mean_backward_all(" in source


def test_small_array_of_a_loop_matching_numpy_compiles(monkeypatch):
    """leaky_relu on NumPy's path (its reference, by the same IEEE operations as the
    loop): the compiled step runs the loop, with the same bits."""
    monkeypatch.setattr(get_backend(), "numpy_elementwise_below",
                        {"leaky_relu": 1 << 20, "leaky_relu_backward": 1 << 20})
    assert_compiled_equals_python("leaky_relu", batch=4, hidden=16)


@pytest.mark.parametrize("activation", ["elu", "sigmoid"])
def test_small_array_on_numpys_exp_is_refused_and_named(monkeypatch, activation):
    monkeypatch.setattr(get_backend(), "numpy_elementwise_below", {activation: 1 << 20})
    step, losses, _ = run(activation, True, batch=4, hidden=16)
    text = step.explain()
    assert "partly compiled" in text, text  # the calls around it compile
    assert f"{activation}: 64 elements, below the backend's numpy_elementwise_below" \
        f"[{activation!r}]" in text, text
    assert "NumPy's exp" in text
    _, losses_python, _ = run(activation, False, batch=4, hidden=16)
    assert [a.tobytes() for a in losses] == [a.tobytes() for a in losses_python]


# -- the lowerings and their kernels, directly --------------------------------------------

def special_values(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    return np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.5, 3.0,
                     info.tiny, -info.tiny, info.tiny / 8, info.smallest_subnormal,
                     info.max, -info.max, info.eps], dtype)


def assert_bits(actual: np.ndarray, expected: np.ndarray, open_nans=None) -> None:
    """``actual`` has ``expected``'s dtype, shape and bits, except at ``open_nans`` (a
    mask: where NaNs of different bits meet in one operation, IEEE 754 leaves open which
    comes out, and compilers commute operands), where both are NaN."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    open_nans = np.zeros(expected.shape, bool) if open_nans is None else open_nans
    assert np.isnan(actual[open_nans]).all() and np.isnan(expected[open_nans]).all()
    assert actual[~open_nans].tobytes() == expected[~open_nans].tobytes()


def different_nans(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where ``a`` and ``b`` are NaNs of different bits (1-d arrays of one dtype)."""
    bits = f"u{a.itemsize}"
    return np.isnan(a) & np.isnan(b) & (a.view(bits) != b.view(bits))


def compile_calls(calls, inputs, results, examples):
    from gradkit.backends.numba import lowering
    compiled = lowering.compile_step(calls, inputs, results, examples, [],
                                     get_backend().runs_parallel)
    assert compiled.function is not None, compiled.reasons
    return compiled


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_arithmetic_equals_numpy_bitwise_on_special_values(dtype):
    """A fused chain of every arithmetic op (with a Python number's 0-d array and a
    broadcast row), and maximum/minimum, against NumPy's ufuncs on all pairs of special
    values: NaN, inf, -0.0, subnormals, the largest finite."""
    values = special_values(dtype)
    a, b = np.repeat(values, values.size), np.tile(values, values.size)
    a, b = a.reshape(values.size, values.size), b.reshape(values.size, values.size)
    row, half = values[::-1].copy(), np.array(0.5, dtype)
    calls = [StepCall(0, "multiply", (0, 2), {}, (), 4),     # a * 0.5
             StepCall(1, "subtract", (4, 1), {}, (), 5),     # - b
             StepCall(2, "divide", (5, 0), {}, (), 6),       # / a
             StepCall(3, "add", (6, 3), {}, (), 7),          # + row (broadcast)
             StepCall(4, "negative", (7,), {}, (), 8),
             StepCall(5, "maximum", (0, 1), {}, (), 9),
             StepCall(6, "minimum", (1, 0), {}, (), 10),
             StepCall(7, "maximum", (0, 2), {}, (), 11)]     # with a 0-d operand
    with np.errstate(all="ignore"):
        chain = a * half - b
        chain = -(chain / a + row)
        expected = {4: a * half, 8: chain, 9: np.maximum(a, b), 10: np.minimum(b, a),
                    11: np.maximum(a, half)}
    examples = {0: a, 1: b, 2: half, 3: row, **expected, 5: chain, 6: chain, 7: chain}
    compiled = compile_calls(calls, [0, 1, 2, 3], [4, 8, 9, 10, 11], examples)
    assert "(fused here: 1 subtract, 2 divide, 3 add)" in compiled.source  # not 4: a result
    assert "maximum_numpy(" in compiled.source
    with np.errstate(all="ignore"):
        results = compiled.function(a, b, half, row)
    for slot, result in zip([4, 8, 9, 10, 11], results):  # maximum, minimum: NumPy's own
        assert_bits(result, expected[slot], np.isnan(expected[slot]) if slot == 8 else None)
    assert (~np.isnan(expected[8])).sum() > values.size ** 2 // 2  # mostly numbers


def test_numbas_own_maximum_differs_from_numpys_on_signed_zeros():
    """Why maximum and minimum call NumPy's: Numba's np.maximum picks the other zero of
    a (0.0, -0.0) pair than NumPy's loops do here (its choice follows its SIMD path)."""
    from gradkit.backends.numba.kernels import OPTIONS
    maximum = numba.njit(**OPTIONS)(lambda a, b: np.maximum(a, b))
    a, b = np.array([0.0, -0.0]), np.array([-0.0, 0.0])
    assert np.array_equal(maximum(a, b), np.maximum(a, b))  # equal as numbers
    assert maximum(a, b).tobytes() != np.maximum(a, b).tobytes()  # not as bits


def test_scalar_arithmetic_keeps_dtype_and_wraps():
    """0-d operands (a loss times a number, Adam's step count) give a 0-d array of
    their dtype; integers wrap as NumPy's do."""
    big = np.array(np.iinfo(np.int32).max, np.int32)
    one = np.array(1, np.int32)
    x, y = np.array(0.1, np.float32), np.array(3.0, np.float32)
    calls = [StepCall(0, "add", (0, 1), {}, (), 4), StepCall(1, "divide", (2, 3), {}, (), 5),
             StepCall(2, "negative", (0,), {}, (), 6)]
    with np.errstate(all="ignore"):
        expected = [np.asarray(big + one), np.asarray(x / y), np.asarray(-big)]
    compiled = compile_calls(calls, [0, 1, 2, 3], [4, 5, 6],
                             dict(zip([0, 1, 2, 3, 4, 5, 6], [big, one, x, y, *expected])))
    for result, want in zip(compiled.function(big, one, x, y), expected):
        assert result.shape == () and result.dtype == want.dtype
        assert result.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(__import__("gradkit.backends.numba.lowering",
                                                 fromlist=["x"]).LOOP_MATCHES_NUMPY))
def test_loops_give_numpys_bits_where_the_python_kernel_runs_numpy(monkeypatch, op, dtype):
    """For LOOP_MATCHES_NUMPY, the loop a compiled step runs on small arrays gives what
    the Python kernel's NumPy path gives there, on special values and random ones."""
    from gradkit.backends.numba import step_kernels
    from gradkit.registry import get_op
    numba_backend = get_backend()
    monkeypatch.setattr(numba_backend, "numpy_elementwise_below", {op: 1 << 30})
    kernel = numba_backend.resolve(get_op(op))
    values = special_values(dtype)
    rng = np.random.default_rng(3)
    first = np.concatenate([np.repeat(values, values.size), rng.standard_normal(100)])
    second = np.concatenate([np.tile(values, values.size), rng.uniform(-2, 2, 100)])
    arrays = [first.astype(dtype), second.astype(dtype)][:len(get_op(op).arg_names)]
    params = {name: 0.3 for name in ("slope",) if "leaky" in op}
    with np.errstate(all="ignore"):
        expected = kernel(*arrays, **params)
    actual = getattr(step_kernels, op).serial(*arrays, *params.values())
    assert_bits(actual, expected, different_nans(*arrays) if len(arrays) == 2 else None)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mean_and_its_backward_are_the_numpy_kernels(dtype):
    from gradkit.backends.numba.step_kernels import mean_all, mean_backward_all
    from gradkit.registry import get_op
    numpy_backend = gk.backends.get("numpy")
    mean = numpy_backend.resolve(get_op("mean"))
    mean_backward = numpy_backend.resolve(get_op("mean_backward"))
    rng = np.random.default_rng(4)
    for shape in [(1,), (7,), (5, 6), (32, 64), (3, 129, 7), (300, 301)]:
        x = (rng.standard_normal(shape) * 10).astype(dtype)
        assert mean_all(x).tobytes() == np.asarray(mean(x)).tobytes(), shape
        g = np.asarray(rng.standard_normal(), dtype)
        assert mean_backward_all(g, shape).tobytes() == mean_backward(g, shape=shape).tobytes()
    assert mean_all(np.array([-0.0, -0.0], dtype)).tobytes() == \
        np.asarray(mean(np.array([-0.0, -0.0], dtype))).tobytes()


def test_a_fused_read_keeps_its_input_from_being_written_over():
    """A call fused into a later one reads its inputs there: an input dying in between
    is not written over (overwritable_inputs sees the fused reads), and a state buffer
    an update writes in between keeps the producer from fusing."""
    from gradkit.backends.numba.lowering import (Layouts, fusions, overwritable_inputs,
                                                 without_fused)
    m = lambda: np.zeros((4, 3), np.float32)  # noqa: E731
    calls = [StepCall(0, "matmul", (0, 1), {}, (), 2),
             StepCall(1, "multiply", (2, 3), {}, (), 4),          # reads 2
             StepCall(2, "bias_activation", (2, 5), {}, (), 6),   # 2's last reader, unfused
             StepCall(3, "subtract", (4, 6), {}, (), 7)]          # 4 fused here: reads 2
    examples = {0: m(), 1: np.zeros((3, 3), np.float32), 2: m(), 3: m(), 4: m(),
                5: np.zeros(3, np.float32), 6: m(), 7: m()}
    fused = fusions(calls, [7], Layouts(examples, None))
    assert fused == {4: 3}
    assert (2, 0) in overwritable_inputs(calls, [7])
    assert (2, 0) not in overwritable_inputs(without_fused(calls, fused), [7])
    # an SGD update with momentum between writes its velocity (slot 3) in place
    update = StepCall(2, "sgd_update", (1, 8, 3), {}, (), 9)
    examples.update({8: examples[1], 9: examples[1]})
    assert fusions([calls[0], calls[1], update, calls[3]], [7], Layouts(examples, None)) == {}


def test_elementwise_tables_match_the_backend():
    """The lowered activation loops are the Numba backend's kernels, each with a loop
    and a step kernel; the NumPy-called ops and the arithmetic have no kernel there
    (the Python replay runs NumPy's function)."""
    from gradkit.backends.numba import kernels, lowering, step_kernels
    from gradkit.backends.numba.backend import KERNEL_FACTORIES, NumbaBackend
    for op in lowering.ACTIVATION_LOOPS:
        assert op in KERNEL_FACTORIES and hasattr(kernels, op)
        assert getattr(step_kernels, op).serial is not getattr(step_kernels, op).parallel
    assert lowering.LOOP_MATCHES_NUMPY <= lowering.ACTIVATION_LOOPS
    for op in [*lowering.NUMPY_CALLS, *lowering.ARRAY_EXPRESSION_OPS]:
        assert op not in NumbaBackend.kernel_factories
    assert set(NumbaBackend.numpy_elementwise_below) <= lowering.ACTIVATION_LOOPS
