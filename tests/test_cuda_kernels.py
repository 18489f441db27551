"""Every CUDA kernel of kernels/*.cu against its op's NumPy reference.

``python -m pytest -m cuda_kernels`` runs them on CuPy where a GPU is, else on the
CPU emulator (tests/cuda_emulator: the .cu files compiled by g++, launched through
the CUDA backend's own launch code) in two modes: normal grids, and tiny grids (at
most 2 blocks) so every grid-stride and rows-per-block loop goes round more than once.
Emulated runs prove kernel maths, indexing, reductions and launch arguments, not
cuBLAS, CuPy's own kernels or speed.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit import backends
from gradkit.backends.cuda.backend import KERNEL_FACTORIES, THREADS, CudaBackend
from gradkit.registry import get_op

pytestmark = pytest.mark.cuda_kernels

FLOATS = [np.float32, np.float64]
ACTIVATIONS = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh"]
# sizes around the block (256 threads), and past a tiny grid of 2 blocks
SIZES = [1, 7, THREADS - 1, THREADS, THREADS + 1, 3 * THREADS + 5]


@pytest.fixture
def backend():
    """Not the suite's once-per-backend runs: these tests choose the CUDA backend."""
    return None


def _modes() -> list[str]:
    if backends.available()["cuda"] is None:
        return ["gpu"]
    return ["emulated", "emulated-tiny-grid"]


@pytest.fixture(params=_modes())
def cuda(request, monkeypatch):
    """The CUDA backend, real or emulated, with a log of the kernels it launched."""
    if request.param == "gpu":
        backend = backends.get("cuda")
    else:
        from emulated_cuda_backend import EmulatedCudaBackend
        reason = EmulatedCudaBackend().unavailable_reason()
        if reason is not None:
            pytest.skip(f"the CUDA emulator cannot run here: {reason}")
        monkeypatch.setenv("GRADKIT_EMULATOR_TINY_GRID",
                           "1" if request.param == "emulated-tiny-grid" else "0")
        backend = backends.get("cuda_emulated")
    launched: list[str] = []
    original = backend.launch

    def logged(source, name, *args, **kwargs):
        launched.append(name)
        return original(source, name, *args, **kwargs)
    monkeypatch.setattr(backend, "launch", logged)
    backend.launched = launched
    return backend


def _special(rng, shape, dtype, scale=3.0):
    """Normal values with the special ones sprinkled in: NaN, +-inf, +-0, huge, tiny."""
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-30],
                        dtype=dtype)
    flat[: min(flat.size, specials.size)] = specials[: flat.size]
    return x


def _run(cuda, op_name, *arrays, **params):
    """The backend's kernel on device copies of ``arrays``, as a host array, and the
    op's reference on the host arrays."""
    device = [cuda.asarray(a) for a in arrays]
    got = cuda.to_numpy(cuda.resolve(get_op(op_name))(*device, **params))
    with np.errstate(all="ignore"):  # NaN and inf inputs are on purpose
        expected = get_op(op_name).forward(np, *arrays, **params)
    return got, np.asarray(expected), device


def _close(got, expected, dtype):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    tolerance = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def _params(kind):
    return {"leaky_relu": {"slope": 0.2}, "elu": {"alpha": 0.7}}.get(kind, {})


# -- pointwise activations -----------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op_name", ["relu", "leaky_relu", "elu", "sigmoid", "tanh"])
def test_activation_forward(cuda, op_name, size, dtype):
    x = _special(np.random.default_rng(size), (size,), dtype)
    got, expected, _ = _run(cuda, op_name, x, **_params(op_name))
    _close(got, expected, dtype)
    assert cuda.launched == ["activation_forward"]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op_name", ["relu_backward", "leaky_relu_backward", "elu_backward",
                                     "sigmoid_backward", "tanh_backward"])
def test_activation_backward(cuda, op_name, size, dtype):
    rng = np.random.default_rng(size)
    g, saved = _special(rng, (size,), dtype), _special(rng, (size,), dtype, scale=1.0)
    if op_name in ("sigmoid_backward", "tanh_backward"):  # saved is the output
        saved = np.asarray(get_op(op_name[:-len("_backward")]).forward(np, saved))
    got, expected, _ = _run(cuda, op_name, g, saved, **_params(op_name[:-len("_backward")]))
    _close(got, expected, dtype)
    assert len(cuda.launched) == 1


def test_relu_keeps_nan(cuda):
    x = np.array([np.nan, -1.0, 2.0, -0.0], dtype=np.float32)
    got, _, _ = _run(cuda, "relu", x)
    assert np.isnan(got[0]) and got[1:].tolist() == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, THREADS + 3), (2 * THREADS + 1, 3)])
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_bias_activation(cuda, kind, shape, dtype):
    rng = np.random.default_rng(1)
    x, bias = _special(rng, shape, dtype), rng.standard_normal(shape[-1]).astype(dtype)
    got, expected, _ = _run(cuda, "bias_activation", x, bias, activation=kind,
                            **_params(kind))
    _close(got, expected, dtype)
    assert cuda.launched == ["bias_activation_forward"]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_bias_activation_backward(cuda, kind, dtype):
    rng = np.random.default_rng(2)
    z = _special(rng, (9, THREADS + 1), dtype, scale=1.0)
    y = np.asarray(get_op("bias_activation").forward(np, z, np.zeros(z.shape[1], dtype),
                                                     activation=kind, **_params(kind)))
    g = rng.standard_normal(z.shape).astype(dtype)
    got, expected, _ = _run(cuda, "bias_activation_backward", g, y, activation=kind,
                            **_params(kind))
    _close(got, expected, dtype)
    assert cuda.launched == ["activation_backward_from_output"]


def test_empty_and_integer_inputs_run_the_reference(cuda):
    for x in (np.zeros((0,), np.float32), np.arange(5)):
        got, expected, _ = _run(cuda, "relu", x)
        np.testing.assert_array_equal(got, expected)
    assert cuda.launched == []


# -- softmax + cross-entropy -------------------------------------------------------------

def _logits(rng, rows, cols, dtype):
    logits = (rng.standard_normal((rows, cols)) * 4).astype(dtype)
    if rows > 1:
        logits[0, :] *= 1e4         # huge logits: the max shift keeps exp finite
    if rows > 2 and cols > 1:
        logits[1, 0] = -np.inf      # a class that can never be chosen
    return logits


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 5), (3, 7), (5, THREADS + 3),
                                       (2 * THREADS + 1, 10), (4, 1000)])
def test_cross_entropy_forward_and_backward(cuda, rows, cols, dtype):
    rng = np.random.default_rng(rows * cols)
    logits = _logits(rng, rows, cols, dtype)
    labels = rng.integers(1 if cols > 1 else 0, cols, size=rows)
    got, expected, _ = _run(cuda, "cross_entropy", logits, labels)
    _close(got, expected, dtype)
    g = np.asarray(rng.uniform(0.5, 2.0), dtype=dtype)
    got, expected, _ = _run(cuda, "cross_entropy_backward", g, logits, labels)
    _close(got, expected, dtype)
    assert cuda.launched == ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]


@pytest.mark.parametrize("special", [np.nan, np.inf])
def test_cross_entropy_propagates_nan_and_inf_as_the_reference(cuda, special):
    logits = np.array([[1.0, special, 0.5], [0.0, 1.0, 2.0]], dtype=np.float64)
    labels = np.array([0, 2])
    got, expected, _ = _run(cuda, "cross_entropy", logits, labels)
    _close(got, expected, np.float64)
    got, expected, _ = _run(cuda, "cross_entropy_backward", np.asarray(1.0), logits, labels)
    _close(got, expected, np.float64)


def test_cross_entropy_backward_with_a_non_scalar_upstream_runs_the_reference(cuda):
    rng = np.random.default_rng(3)
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    g = rng.standard_normal((4, 1))  # one scale per row: the kernel takes one for all
    got, expected, _ = _run(cuda, "cross_entropy_backward", g, logits, labels)
    _close(got, expected, np.float64)
    assert cuda.launched == []


def test_cross_entropy_kernels_refuse_labels_they_would_misread(cuda):
    logits = cuda.asarray(np.zeros((4, 3)))
    for kernel in ("cross_entropy", "cross_entropy_backward"):
        g = (cuda.asarray(np.asarray(1.0)),) if kernel.endswith("backward") else ()
        with pytest.raises(gk.ShapeError, match="labels must have shape \\(4,\\)"):
            cuda.resolve(get_op(kernel))(*g, logits, cuda.asarray(np.array([0, 1])))  # too short
        with pytest.raises(gk.DTypeError, match="labels must be integer"):
            cuda.resolve(get_op(kernel))(*g, logits, cuda.asarray(np.array([0.0, 1.0, 2.0, 1.0])))
    assert cuda.launched == []


# -- optimizer updates -------------------------------------------------------------------

SGD_CASES = [dict(lr=0.1), dict(lr=0.1, weight_decay=0.01), dict(lr=0.05, momentum=0.9),
             dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("size", [1, THREADS + 1, 3 * THREADS + 5])
@pytest.mark.parametrize("params", SGD_CASES, ids=str)
def test_sgd_update(cuda, params, size, dtype):
    rng = np.random.default_rng(size)
    param, grad = (rng.standard_normal(size).astype(dtype) for _ in range(2))
    param[0] = np.inf  # weight decay 0 must leave an infinite parameter infinite
    velocity = rng.standard_normal(size).astype(dtype) if "momentum" in params else None
    arrays = (param, grad) if velocity is None else (param, grad, velocity)
    expected_velocity = None if velocity is None else velocity.copy()
    got, _, device = _run(cuda, "sgd_update", *arrays, **params)
    expected = get_op("sgd_update").forward(
        np, param, grad, expected_velocity, **params)  # the reference updates its copy
    _close(got, np.asarray(expected), dtype)
    if velocity is not None:
        _close(cuda.to_numpy(device[2]), expected_velocity, dtype)
    assert cuda.launched == ["sgd_update"]


ADAM_CASES = [dict(weight_decay=0.0, decoupled=False), dict(weight_decay=0.1, decoupled=False),
              dict(weight_decay=0.1, decoupled=True)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("step", [1, 7, 1000])
@pytest.mark.parametrize("params", ADAM_CASES, ids=str)
def test_adam_update(cuda, params, step, dtype):
    rng = np.random.default_rng(step)
    size = 2 * THREADS + 3
    param, grad, m = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    v = rng.uniform(0.01, 1.0, size).astype(dtype)
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **params)
    count = np.array(step, dtype=np.int64)
    device = [cuda.asarray(a) for a in (param, grad, m, v, count)]
    got = cuda.to_numpy(cuda.resolve(get_op("adam_update"))(*device, **hyper))
    m_ref, v_ref = m.copy(), v.copy()
    expected = get_op("adam_update").forward(np, param, grad, m_ref, v_ref, count, **hyper)
    _close(got, np.asarray(expected), dtype)
    _close(cuda.to_numpy(device[2]), m_ref, dtype)
    _close(cuda.to_numpy(device[3]), v_ref, dtype)
    assert cuda.launched == ["adam_update"]


def test_every_kernel_factory_has_a_test_here():
    """A new kernel gets its comparison with the reference in this file."""
    tested = {"relu", "leaky_relu", "elu", "sigmoid", "tanh", "relu_backward",
              "leaky_relu_backward", "elu_backward", "sigmoid_backward", "tanh_backward",
              "bias_activation", "bias_activation_backward", "cross_entropy",
              "cross_entropy_backward", "sgd_update", "adam_update",
              "getitem", "scatter_add"}  # these two: tests/test_cuda_backend.py
    assert set(KERNEL_FACTORIES) == tested


def test_the_fixture_is_the_cuda_backend_class(cuda):
    assert isinstance(cuda, CudaBackend)
