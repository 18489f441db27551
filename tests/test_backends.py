"""Built-in backends against the NumPy reference: every op, both dtypes, kernels in use.

These tests name the backends they compare (``gk.tensor(..., backend="numba")``), so
each runs once, not once per backend as the rest of the suite does.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import gradkit as gk
from gradkit import backends
from gradkit.registry import OPS, get_op


@pytest.fixture(autouse=True)
def backend():
    """Overrides conftest's per-backend parametrisation: these tests pick their backends."""
    yield backends.get_backend()


# ======================================================================================
# Numba backend
# ======================================================================================

# The ops the Numba backend must run with its own compiled kernels.
NUMBA_KERNEL_OPS = (
    "relu", "leaky_relu", "elu", "sigmoid",
    "relu_backward", "leaky_relu_backward", "elu_backward", "sigmoid_backward",
    "tanh_backward", "bias_activation", "bias_activation_backward",
    "softmax", "log_softmax", "cross_entropy", "cross_entropy_backward")
ACTIVATIONS = ("identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh")
TOLERANCES = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}


@pytest.fixture
def numba_backend():
    """The Numba backend; the test is skipped (saying why) only where numba cannot be imported."""
    from gradkit.backends.numba.backend import numba_missing_reason
    reason = numba_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return backends.get("numba")


def test_importing_gradkit_does_not_import_numba():
    code = "import sys, gradkit; assert 'numba' not in sys.modules, 'numba imported'"
    root = os.path.dirname(os.path.dirname(gk.__file__))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                   env={**os.environ, "PYTHONPATH": root})


def test_numba_missing_says_how_to_install(monkeypatch):
    from gradkit.backends.numba.backend import NumbaBackend
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now fails
    reason = NumbaBackend().unavailable_reason()
    assert reason is not None and "pip install numba" in reason and "gradkit[numba]" in reason


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(n for n, e in OPS.items() if e.samples))
def test_numba_forward_and_vjp_match_numpy(numba_backend, name, dtype):
    """Every op's samples: forward and VJP agree with NumPy (1e-10 / 1e-5 relative)."""
    assert gk.testing.check_backend("numba", ops=[name], dtypes=[dtype]) > 0


@pytest.mark.parametrize("name", NUMBA_KERNEL_OPS)
def test_numba_kernel_is_registered_with_the_reference_signature(numba_backend, name):
    op = get_op(name)
    kernel = numba_backend.resolve(op)
    assert kernel is numba_backend.resolved[name] is numba_backend.resolve(op)  # made once
    assert (kernel.__module__, kernel.__name__) == ("gradkit.backends.numba.backend", name)
    reference = list(inspect.signature(op.forward).parameters.values())[1:]  # minus xp
    assert list(inspect.signature(kernel).parameters.values()) == reference


def test_numba_kernels_run_when_ops_are_called(numba_backend, monkeypatch):
    picked = _picked_loops(numba_backend, monkeypatch)
    x = gk.tensor(np.linspace(-2, 2, 12).reshape(3, 4), backend="numba", requires_grad=True)
    b = gk.tensor(np.full(4, 0.1), backend="numba", requires_grad=True)
    loss = gk.cross_entropy(gk.bias_activation(x, b, activation="tanh"),
                            gk.tensor([0, 3, 1], backend="numba"))
    loss.backward()
    loops = numba_backend._loops
    assert {loop.serial for loop in (loops.bias_activation, loops.cross_entropy,
                                     loops.cross_entropy_backward,
                                     loops.bias_activation_backward)} <= set(picked)


def _kernel_inputs(rng, name, shape, dtype):
    """Arguments and params for one call of op ``name`` on data of ``shape`` (rows, cols)."""
    rows, cols = shape

    def data(low=-3.0, high=3.0, size=shape):
        return rng.uniform(low, high, size=size).astype(dtype)

    labels = rng.integers(0, cols, size=rows)
    activation = name.partition(":")[2]
    name = name.partition(":")[0]
    if name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax"):
        return (data(),), {}
    if name in ("leaky_relu", "elu"):
        return (data(),), {"slope": 0.2} if name == "leaky_relu" else {"alpha": 0.5}
    if name in ("relu_backward", "elu_backward"):
        return (data(), data()), {}
    if name == "leaky_relu_backward":
        return (data(), data()), {"slope": 0.2}
    if name == "sigmoid_backward":
        return (data(), data(0.05, 0.95)), {}
    if name == "tanh_backward":
        return (data(), data(-0.95, 0.95)), {}
    params = {"activation": activation, "slope": 0.2, "alpha": 0.5}
    if name == "bias_activation":
        return (data(), data(size=(cols,))), params
    if name == "bias_activation_backward":
        return (data(), data(-0.9, 0.9)), params
    if name == "cross_entropy":
        return (data() * 10, labels), {}
    assert name == "cross_entropy_backward"
    return (np.asarray(1.7, dtype), data() * 10, labels), {}


KERNEL_CASES = [n for n in NUMBA_KERNEL_OPS if not n.startswith("bias_activation")] + [
    f"{n}:{a}" for n in ("bias_activation", "bias_activation_backward") for a in ACTIVATIONS]
# (rows, cols): tiny rows (< 8 summed per row), wide rows (pairwise blocks and NumPy's
# 8192-element reduction chunks), and many rows (split over threads).
SHAPES = {"small": (3, 5), "wide": (2, 9000), "large": (260, 257)}


def _picked_loops(backend, monkeypatch):
    """A list that records each compiled loop the backend runs from now on."""
    picked = []
    original = backend._pick

    def spy(loop, work):
        picked.append(original(loop, work))
        return picked[-1]
    monkeypatch.setattr(backend, "_pick", spy)
    return picked


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("path", ["serial", "parallel"])
@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("case", KERNEL_CASES)
def test_numba_serial_and_parallel_loops_match_numpy(numba_backend, monkeypatch, case, size,
                                                     path, dtype):
    """Both compiled variants of every loop, forced by the threshold, on every shape."""
    monkeypatch.setattr(numba_backend, "parallel_threshold", 0 if path == "parallel" else 2**62)
    monkeypatch.setattr(numba_backend, "numpy_elementwise_below", {})  # loops at every size
    rng = np.random.default_rng(zlib.crc32(f"{case} {size}".encode()))
    args, params = _kernel_inputs(rng, case, SHAPES[size], dtype)
    name = case.partition(":")[0]
    picked = _picked_loops(numba_backend, monkeypatch)
    actual = numba_backend.resolve(get_op(name))(*args, **params)
    assert picked == [getattr(getattr(numba_backend._loops, name), path)]
    expected = get_op(name).forward(np, *args, **params)
    assert actual.dtype == expected.dtype == dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, **TOLERANCES[dtype])


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_numba_threshold_sends_large_arrays_to_the_parallel_loop(numba_backend, monkeypatch,
                                                                 name):
    monkeypatch.setattr(numba_backend, "parallel_threshold", 1 << 16)
    monkeypatch.setattr(numba_backend, "numpy_elementwise_below", {})  # loops at every size
    picked = _picked_loops(numba_backend, monkeypatch)
    loop = getattr(numba_backend._loops, name)
    for size in (1, 20_000, numba_backend.parallel_threshold):  # sigmoid weighs 4 per element
        x = np.random.default_rng(size).standard_normal(size)
        np.testing.assert_allclose(numba_backend.resolve(get_op(name))(x),
                                   get_op(name).forward(np, x),
                                   rtol=1e-15)
    assert picked == [loop.serial, loop.serial if name == "relu" else loop.parallel,
                      loop.parallel]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_numba_tanh_is_as_accurate_as_numpy(numba_backend, dtype):
    """The loops' own tanh (rational approximation + exp; the fused kernels use it) stays
    within a few ulp. The tanh op itself runs NumPy's."""
    grid = np.geomspace(1e-30, 60, 100_000)
    x = np.concatenate([grid, -grid, np.linspace(-1, 1, 20_001), [0.0, -0.0, np.inf, -np.inf]])
    x = x.astype(dtype)
    fused = numba_backend.resolve(get_op("bias_activation"))

    def tanh(v):
        minus_zero = np.full(v.size, -0.0, dtype)  # (v + -0.0 is v, signed zeros too)
        return fused(v.reshape(1, -1), minus_zero, activation="tanh").reshape(-1)
    y = tanh(x)
    assert numba_backend.resolve(get_op("tanh"))(x).tobytes() == np.tanh(x).tobytes()
    np.testing.assert_allclose(y, np.tanh(x), rtol=2e-15 if dtype is np.float64 else 4e-7,
                               atol=0)
    assert np.signbit(y[-3]) and np.isnan(tanh(np.array([np.nan], dtype)))[0]


def _same_as_reference(backend, name, *args, **params):
    """The kernel's answer equals the reference's (dtype, shape, values; or the error)."""
    try:
        expected = get_op(name).forward(np, *args, **params)
    except Exception as exc:
        with pytest.raises(type(exc)):
            backend.resolve(get_op(name))(*args, **params)
        return
    actual = backend.resolve(get_op(name))(*args, **params)
    assert type(actual) is np.ndarray or np.isscalar(actual)
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tolerance = TOLERANCES.get(expected.dtype.type, dict(rtol=0, atol=0))
    np.testing.assert_allclose(actual, expected, equal_nan=True, **tolerance)


def test_numba_kernels_fall_back_where_they_do_not_apply(numba_backend):
    """Broadcasting, mixed or integer dtypes, other axes, odd scalars, empty arrays."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5))
    x32 = x.astype(np.float32)
    labels = np.array([0, 4, 2, 1])
    check = lambda name, *args, **params: _same_as_reference(numba_backend, name, *args,
                                                              **params)
    check("relu_backward", rng.standard_normal(5), x)                      # broadcasting
    check("tanh_backward", x32, x)                                         # mixed dtypes
    check("relu", np.arange(-3, 3))                                        # integers
    check("leaky_relu", x32, slope=np.float64(0.2))                        # float64 scalar
    check("elu", x32, alpha=np.float32(0.5))
    check("bias_activation", x32, rng.standard_normal(5), activation="sigmoid")
    check("bias_activation", x, x[0], activation="gelu")                  # unknown -> error
    check("bias_activation_backward", x32, x32, activation="elu", alpha=2)
    check("softmax", x, axis=0)                                            # other axis
    check("log_softmax", rng.standard_normal((2, 3, 4)), axis=1)
    check("softmax", np.empty((3, 0)))                                     # empty rows
    check("relu", np.empty((0, 3)))
    check("cross_entropy", x32, labels.astype(np.uint8))                   # other label dtype
    check("cross_entropy", x, np.array([0, 5, 2, 1]))                      # out of range
    check("cross_entropy_backward", np.asarray(2.0), x32, labels)         # float64 g
    check("cross_entropy_backward", np.asarray(2.0), x, np.array([0, -1, 9, 1]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf - inf, log(0)
def test_numba_kernels_handle_layouts_and_extreme_values(numba_backend):
    rng = np.random.default_rng(4)
    check = lambda name, *args, **params: _same_as_reference(numba_backend, name, *args,
                                                              **params)
    extreme = np.array([[-1000.0, -50.0, 0.0, -0.0, 50.0, 1000.0],
                        [np.inf, -np.inf, np.nan, 1e-300, -1e-300, 3.0],
                        [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                        [np.inf, 1.0, 2.0, 3.0, 4.0, 5.0]])
    for data in (extreme, extreme.astype(np.float32)):
        for name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax"):
            check(name, data)
        check("leaky_relu", data, slope=0.1)
        check("elu", data, alpha=0.7)
        for activation in ACTIVATIONS:
            check("bias_activation", data, np.zeros(6, data.dtype), activation=activation)
        check("cross_entropy_backward", np.asarray(1.0, data.dtype), data, np.arange(4))
    large = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 0.0, 1000.0]])
    for data in (large, large.astype(np.float32)):
        check("cross_entropy", data, np.array([2, 2]))
        check("cross_entropy_backward", np.asarray(3.0, data.dtype), data, np.array([0, 2]))
    transposed = rng.standard_normal((6, 5)).T                             # not C-contiguous
    check("sigmoid", transposed)
    check("softmax", transposed)
    check("bias_activation", transposed, rng.standard_normal(6), activation="elu")
    check("elu_backward", transposed, transposed[::-1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_numba_kernels_take_arrays_of_any_dimensions_writable_or_not(numba_backend, dtype):
    """The loops flatten (or take rows of the last axis of) what they are given: 0-d to
    3-d arrays, writable or read-only, all agree with the reference."""
    rng = np.random.default_rng(5)
    check = lambda name, *args, **params: _same_as_reference(numba_backend, name, *args,
                                                              **params)
    for shape in [(), (7,), (2, 3, 4)]:
        x, g = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
        read_only = x.copy()
        read_only.setflags(write=False)
        for data in (x, read_only):
            check("elu", data, alpha=0.5)
            check("tanh_backward", g, np.tanh(data))
            check("bias_activation_backward", g, data, activation="leaky_relu", slope=0.2)
            if shape:
                check("softmax", data)
                check("bias_activation", data, rng.standard_normal(shape[-1:]).astype(dtype),
                      activation="sigmoid")


def test_numba_cross_entropy_of_nan_logits_is_nan_and_bad_labels_raise(numba_backend):
    """The loop's NaN for a label out of range is told from a NaN of the data."""
    kernel = numba_backend.resolve(get_op("cross_entropy"))
    logits = np.zeros((3, 4))
    logits[1, 2] = np.nan
    assert np.isnan(kernel(logits, np.array([0, 1, 3])))
    with pytest.raises(Exception) as reference_error:
        get_op("cross_entropy").forward(np, logits, np.array([0, 4, 3]))
    with pytest.raises(type(reference_error.value)):
        kernel(logits, np.array([0, 4, 3]))


def test_numba_sgd_update_takes_the_reference_for_a_scalar_of_another_dtype(numba_backend):
    """A float64 NumPy scalar lr with float32 data: NumPy computes in float64, and so
    does the kernel (by running the reference), as the NumPy backend does."""
    param, grad = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
    for backend in (numba_backend, backends.get("numpy")):
        new = backend.resolve(get_op("sgd_update"))(param, grad, lr=np.float64(0.1))
        assert new.dtype == np.float64 and np.allclose(new, 0.95)


@pytest.mark.parametrize("path", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["bias_activation", "bias_activation_backward",
                                  "cross_entropy_backward", "sgd_update"])
def test_numba_in_place_kernels_equal_the_kernel_bit_for_bit(numba_backend, monkeypatch, name,
                                                             dtype, path):
    """The kernels gk.capture gives a dying input's memory run the same loop, written
    into that input when it owns its memory and may be written, else into a new array."""
    monkeypatch.setattr(numba_backend, "numpy_update_below", 0)  # the loop at every size
    monkeypatch.setattr(numba_backend, "parallel_threshold", 0 if path == "parallel" else 2**62)
    op = get_op(name)
    numba_backend.resolve(op)
    position, in_place = numba_backend.donating_kernels[name]
    kernel = numba_backend.resolved[name]
    wrote_in_place = 0
    for sample in op.samples(np.random.default_rng(0)):
        args = _sample_arrays(sample, dtype)
        expected = np.asarray(kernel(*[a.copy() for a in args], **sample.params))
        for lendable in (True, False):
            donated_args = [a.copy() for a in args]
            if not lendable:  # a view: other arrays may see this memory
                donated_args[position] = donated_args[position].copy()[...]
            donated = donated_args[position]
            got = in_place(*donated_args, **sample.params)
            assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), sample
            assert lendable or got is not donated, sample
            wrote_in_place += got is donated
    assert wrote_in_place > 0


SGD_OPTIONS = [dict(lr=0.1), dict(lr=0.05, weight_decay=0.01), dict(lr=0.1, momentum=0.9),
               dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)]


@pytest.mark.parametrize("in_place", [False, True], ids=["new", "in_place"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_numba_sgd_update_of_small_arrays_runs_numpy_with_the_loops_bits(
        numba_backend, monkeypatch, dtype, in_place):
    """Below ``numpy_update_below`` elements the NumPy backend's kernel runs (cheaper
    than a call of the loop there; in place, for plain SGD only: NumPy's in-place
    kernel covers nothing else); it does the loop's operations in its order, so the
    new parameter and the velocity are the same bits either way."""
    op = get_op("sgd_update")
    numba_backend.resolve(op)
    kernel = (numba_backend.donating_kernels["sgd_update"][1] if in_place else
              numba_backend.resolved["sgd_update"])
    picked = _picked_loops(numba_backend, monkeypatch)
    rng = np.random.default_rng(6)
    size = 1000
    for options in SGD_OPTIONS:
        param, grad, velocity = (rng.standard_normal(size).astype(dtype) for _ in range(3))
        results = []
        for below in (size + 1, size):  # NumPy's kernel, then the loop
            monkeypatch.setattr(numba_backend, "numpy_update_below", below)
            state = velocity.copy() if "momentum" in options else None
            new = kernel(param, grad.copy(), state, **options)
            results.append([new.tobytes(), None if state is None else state.tobytes()])
        assert results[0] == results[1], options
    runs = sum(1 if set(options) == {"lr"} or not in_place else 2 for options in SGD_OPTIONS)
    assert picked == [numba_backend._loops.sgd_update.serial] * runs


def test_numba_kernels_are_loaded_from_the_disk_cache(numba_backend):
    """After one process compiled a loop, a fresh process loads it instead of compiling."""
    numba_backend.resolve(get_op("relu"))(np.ones(1 << 14))  # compiled (or loaded), saved
    code = textwrap.dedent("""
        import numpy as np, gradkit as gk
        from gradkit import backends
        from gradkit.backends.numba import kernels as numba_kernels
        backends.get("numba").resolve(gk.registry.get_op("relu"))(np.ones(1 << 14))
        stats = numba_kernels.relu.serial.stats
        assert not stats.cache_misses and sum(stats.cache_hits.values()) == 1, stats
    """)
    root = os.path.dirname(os.path.dirname(gk.__file__))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                   env={**os.environ, "PYTHONPATH": root})


@pytest.mark.parametrize("name", sorted(__import__(
    "gradkit.backends.numba.backend", fromlist=["NumbaBackend"]).NumbaBackend
    .numpy_elementwise_below))
def test_numba_small_elementwise_arrays_run_numpys_kernel(numba_backend, monkeypatch, name):
    """Below the op's size the NumPy backend's kernel runs (its bits), no loop; from it
    on, the loop."""
    below = numba_backend.numpy_elementwise_below[name]
    picked = _picked_loops(numba_backend, monkeypatch)
    kernel = numba_backend.resolve(get_op(name))
    numpy_kernel = backends.get("numpy").resolve(get_op(name))
    rng = np.random.default_rng(1)
    for size in (1, 7, below - 1):
        args = [rng.uniform(0.05, 0.95, size).astype(np.float32) for _ in get_op(name).arg_names]
        assert kernel(*args).tobytes() == numpy_kernel(*args).tobytes()
    assert picked == []
    args = [rng.uniform(0.05, 0.95, below).astype(np.float32) for _ in get_op(name).arg_names]
    np.testing.assert_allclose(kernel(*args), numpy_kernel(*args), **TOLERANCES[np.float32])
    assert picked == [getattr(numba_backend._loops, name).serial]


# -- Numba optimizer kernels -------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [7, 300_000])  # serial and parallel loops (see below)
def test_fused_optimizer_updates_match_the_reference(monkeypatch, dtype, size):
    pytest.importorskip("numba")
    numba_backend = gk.backends.get("numba")
    monkeypatch.setattr(numba_backend, "parallel_threshold", 1 << 16)
    monkeypatch.setattr(numba_backend, "numpy_update_below", 0)  # the loops at every size
    assert {"sgd_update", "adam_update"} <= set(numba_backend.kernel_factories)
    rng = np.random.default_rng(size)
    arrays = [rng.standard_normal(size).astype(dtype) for _ in range(3)]
    v_state = np.abs(rng.standard_normal(size)).astype(dtype)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    for name, kwargs in [("sgd_update", dict(lr=0.1, momentum=0.9, nesterov=True,
                                             weight_decay=0.01)),
                         ("adam_update", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                                              weight_decay=0.1, decoupled=True))]:
        results = {}
        for backend in ("numpy", "numba"):
            param, grad, m = (gk.tensor(a.copy(), backend=backend) for a in arrays)
            buffers = [m] if name == "sgd_update" else [
                m, gk.tensor(v_state.copy(), backend=backend), gk.tensor(5, backend=backend)]
            new = getattr(gk, name)(param, grad, *buffers, **kwargs)
            results[backend] = [new.numpy()] + [b.numpy() for b in buffers]
        for expected, actual in zip(results["numpy"], results["numba"]):
            assert actual.dtype == expected.dtype
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-30)


# -- the NumPy backend's kernels --------------------------------------------------------

def _sample_arrays(sample, dtype):
    return [np.array(a, dtype=dtype) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
            for a in sample.args]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(__import__(
    "gradkit.backends.numpy.kernels", fromlist=["KERNEL_FACTORIES"]).KERNEL_FACTORIES))
def test_numpy_kernels_equal_the_reference_bit_for_bit(name, dtype):
    """Same operations in the same order: not close, equal (and the same dtype); buffers an
    op updates in place (SGD's velocity) end equal too."""
    from gradkit.backends.numpy.backend import NumpyBackend
    op = get_op(name)
    kernel = NumpyBackend().resolve(op)
    assert kernel.__name__ == name  # the factory's kernel, not the reference
    for sample in op.samples(np.random.default_rng(0)):
        kernel_args = _sample_arrays(sample, dtype)
        reference_args = [a.copy() for a in kernel_args]
        got = np.asarray(kernel(*kernel_args, **sample.params))
        expected = np.asarray(op.forward(np, *reference_args, **sample.params))
        assert got.dtype == expected.dtype and got.shape == expected.shape, sample
        assert np.array_equal(got, expected, equal_nan=True), sample
        for k, r in zip(kernel_args, reference_args):
            assert np.array_equal(k, r, equal_nan=True), sample


def test_the_numpy_backend_runs_its_kernels_and_the_reference_backend_does_not():
    from gradkit.backends.numpy.backend import NumpyBackend
    from gradkit.backends.numpy.kernels import KERNEL_FACTORIES
    assert set(KERNEL_FACTORIES) <= set(NumpyBackend().kernel_factories)
    reference_only = NumpyBackend(kernels=False)
    assert reference_only.kernel_factories == {} == reference_only.donating_kernel_factories
    op = get_op("sum_to")
    assert reference_only.resolve(op).func is op.forward  # the reference, bound to NumPy
    assert NumpyBackend().resolve(op).__name__ == "sum_to"
    assert NumpyBackend.kernel_factories == KERNEL_FACTORIES  # the class's table unchanged
    assert gk.testing.check_backend("numpy", ops=sorted(KERNEL_FACTORIES)) > 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(__import__(
    "gradkit.backends.numpy.kernels",
    fromlist=["DONATING_KERNEL_FACTORIES"]).DONATING_KERNEL_FACTORIES))
def test_numpy_in_place_kernels_equal_the_reference_bit_for_bit(name, dtype):
    """The kernels gk.capture gives a dying input's memory: the reference's result,
    written into that input when the case is theirs."""
    from gradkit.backends.numpy.backend import NumpyBackend
    op = get_op(name)
    backend = NumpyBackend()
    assert name not in backend.donating_kernels  # made with the op's kernel, on first use
    backend.resolve(op)
    position, kernel = backend.donating_kernels[name]
    wrote_in_place = 0
    for sample in op.samples(np.random.default_rng(0)):
        kernel_args = _sample_arrays(sample, dtype)
        reference_args = [a.copy() for a in kernel_args]
        donated = kernel_args[position]
        got = kernel(*kernel_args, **sample.params)
        expected = np.asarray(op.forward(np, *reference_args, **sample.params))
        assert np.asarray(got).dtype == expected.dtype, sample
        assert np.array_equal(got, expected, equal_nan=True), sample
        wrote_in_place += got is donated
    assert wrote_in_place > 0


def test_numpy_mean_kernel_equals_np_mean_beyond_float32s_exact_counts():
    """A float32 mean over more than 2**24 elements: np.mean divides in float64."""
    from gradkit.backends.numpy.backend import NumpyBackend
    x = np.random.default_rng(0).random((1 << 24) + 1, dtype=np.float32)
    kernel = NumpyBackend().resolve(get_op("mean"))
    assert kernel(x).tobytes() == np.mean(x).tobytes()
    assert kernel(x[:1000]).tobytes() == np.mean(x[:1000]).tobytes()


def test_numba_compiled_steps_write_over_the_inputs_the_replay_donates():
    """The lowering's table of ops writing over an input is the backend's donating one."""
    pytest.importorskip("numba")
    from gradkit.backends.numba.backend import DONATING_KERNEL_FACTORIES
    from gradkit.backends.numba.lowering import OVERWRITES
    assert OVERWRITES == {name: position
                          for name, (position, _) in DONATING_KERNEL_FACTORIES.items()}


@pytest.mark.parametrize("op,param", [("leaky_relu", "slope"), ("elu", "alpha")])
def test_numba_kernels_refuse_a_param_that_is_no_number_as_numpy_does(numba_backend, op, param):
    x = np.linspace(-1, 1, 8)
    errors = []
    for backend in ("numpy", "numba"):
        with pytest.raises(gk.GradkitError) as caught:
            getattr(gk, op)(gk.tensor(x, backend=backend), **{param: None})
        errors.append(type(caught.value))
    assert errors[0] is errors[1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_sigmoid_kernel_equals_the_reference_on_special_and_extreme_values(dtype):
    from gradkit.backends.numpy.backend import NumpyBackend
    op = get_op("sigmoid")
    x = np.concatenate([np.linspace(-800, 800, 20001),
                        np.random.default_rng(0).standard_normal(5000) * 30,
                        [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 5e-324]]
                       ).astype(dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # (as the reference)
        got = NumpyBackend().resolve(op)(x)
    expected = op.forward(np, x)
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
