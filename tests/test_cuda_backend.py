"""The CUDA backend's parts that can be checked without a GPU.

On a machine with CuPy and a GPU, the whole suite runs on it instead
(GRADKIT_BACKEND=cuda python -m pytest); the kernels themselves are compiled
by ci/compile_kernels.sh through NVRTC, as cupy.RawModule compiles them (tests/test_cuda_compile.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit import backends
from gradkit.backends.cuda import backend as cuda_backend
from gradkit.registry import OPS

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"


def test_importing_gradkit_imports_no_gpu_or_jit_library():
    import subprocess
    import sys
    code = ("import sys, gradkit, gradkit.backends.cuda.backend; "
            "print(sorted(m for m in ('cupy', 'numba') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_unavailable_cuda_says_why_and_how_to_fix():
    reason = cuda_backend.CudaBackend().unavailable_reason()
    status = backends.available()["cuda"]
    if reason is None:
        assert status is None
    else:
        assert "CuPy is not installed" in reason and "pip install" in reason or "CUDA device" in reason
        assert reason in status
        with pytest.raises(gk.BackendError, match="backend 'cuda' is unavailable"):
            gk.tensor([1.0], backend="cupy")


def test_every_kernel_named_in_python_is_defined_in_its_cu_file():
    for source, names in cuda_backend.KERNELS_BY_SOURCE.items():
        text = cuda_backend.kernel_source(source)
        defined = set(re.findall(r"__global__ void (\w+)\(", text))
        assert set(names) <= defined, (source, set(names) - defined)
        for name in names:  # explicitly instantiated for both dtypes
            assert f"{name}<T>" in text


def test_every_cu_file_is_used():
    assert {p.name for p in KERNEL_DIR.glob("*.cu")} == set(cuda_backend.KERNELS_BY_SOURCE)


def test_kernels_replace_registered_ops():
    assert set(cuda_backend.KERNEL_FACTORIES) <= set(OPS)


def test_activation_codes_match_the_cuda_switch():
    text = cuda_backend.kernel_source("activations.cu")
    assert "kind: 0 identity, 1 relu, 2 leaky_relu (slope), 3 elu (alpha), 4 sigmoid, 5 tanh" in text
    assert cuda_backend.ACTIVATION_KINDS == ("identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh")
    from gradkit.ops.fused import ACTIVATIONS
    assert set(ACTIVATIONS) == set(cuda_backend.ACTIVATION_KINDS)


# -- the CUDA backend's Python code on emulated CuPy arrays (emulation, not a GPU) ------

@pytest.fixture
def backend():
    """Not the suite's once-per-backend runs: these tests choose their backend."""
    return None


@pytest.fixture
def emulated():
    """The CUDA backend on emulated CuPy (tests/emulated_cupy.py) and kernels."""
    cuda = backends.get("cuda_emulated") if backends.available()["cuda_emulated"] is None \
        else pytest.skip(f"the CUDA emulator cannot run here: {backends.available()['cuda_emulated']}")
    with gk.use_backend(cuda):
        yield cuda


def test_backward_reaches_leaves_of_arrays_without_a_writeable_flag(emulated):
    x = gk.tensor([1.0, -2.0, 3.0], requires_grad=True)
    assert not hasattr(x.data.flags, "writeable")
    (gk.relu(x) * x).sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 6.0]


def test_writes_never_go_through_an_array_gradkit_protects(emulated):
    leaf = gk.tensor([1.0, 2.0], requires_grad=True)
    y = leaf * leaf
    alias = leaf.detach()          # shares the leaf's (protected) array
    alias[0] = 100.0               # must not change what backward reads
    alias += 1.0
    y.sum().backward()
    assert leaf.tolist() == [1.0, 2.0] and leaf.grad.tolist() == [2.0, 4.0]
    assert alias.tolist() == [101.0, 3.0]


def test_in_place_updates_of_plain_arrays_stay_in_place(emulated):
    buffer = gk.zeros(3)
    array = buffer.data
    buffer += 2.0
    assert buffer.data is array and buffer.tolist() == [2.0, 2.0, 2.0]


def test_a_training_step_reads_one_value_back_to_the_host(emulated):
    """The label range check, min and max in one copy; Adam's step count stays on the
    device. Every other device-to-host copy would stall a GPU once per step."""
    from emulated_cupy import HostReads
    model = gk.nn.MLP([5, 8, 3])
    optimizer = gk.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x, labels = gk.tensor(rng.standard_normal((6, 5))), gk.tensor(rng.integers(0, 3, 6))
    for _ in range(2):  # the second step has no first-call work left
        before = HostReads.count
        loss = gk.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        reads = HostReads.count - before
    assert reads == 1, f"{reads} device-to-host copies in one training step"


def test_kernels_are_compiled_and_looked_up_once(emulated, monkeypatch):
    lookups = []
    module_class = emulated.cupy.RawModule

    class CountingModule(module_class):
        def get_function(self, name):
            lookups.append(name)
            return super().get_function(name)
    monkeypatch.setattr(emulated.cupy, "RawModule", CountingModule)
    monkeypatch.setattr(emulated, "_functions", {})
    monkeypatch.setattr(emulated, "_modules", {})
    for _ in range(3):
        gk.relu(gk.tensor([1.0, -1.0]))
    assert lookups == ["activation_forward<float>"]


@pytest.mark.parametrize("index", [np.array([0, 3]), np.array([-4, 1]), (slice(None), np.array([2]))])
def test_integer_indices_out_of_range_raise_where_cupy_would_wrap(emulated, index):
    x = gk.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    with pytest.raises(gk.IndexingError, match="out of range"):
        x[index]
    y = x[np.array([0, 2, 2])]  # in range: a gather, and its VJP a scatter-add
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]


def test_arrays_on_two_devices_refuse_one_kernel(emulated, monkeypatch):
    import emulated_cupy
    x, y = (emulated.asarray(np.ones(3, np.float32)) for _ in range(2))
    monkeypatch.setattr(emulated_cupy.ndarray, "device", property(
        lambda self: emulated_cupy.Device(1 if self is y else 0)))
    with pytest.raises(gk.BackendError, match="different GPUs"):
        emulated.launch("activations.cu", "activation_forward", (x, y), 1, ())


def test_info_reports_versions_devices_and_that_the_kernels_compile(emulated):
    lines = emulated.report()
    assert lines[0].startswith("CuPy emulated, CUDA runtime 12.9, driver supports CUDA 12.9")
    assert "compute capability 9.0" in lines[1]
    assert lines[-1] == "gradkit's kernels compile here (NVRTC, CUDA headers)"


def _cupy_with(**runtime):
    import types
    import emulated_cupy
    module = emulated_cupy.make_module(None)
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(**runtime))
    return module


def _no_driver():
    raise RuntimeError("cudaErrorInsufficientDriver")


@pytest.mark.parametrize("runtime,reason", [
    (dict(driverGetVersion=_no_driver), "no NVIDIA driver .*nvidia-smi must work"),
    (dict(driverGetVersion=lambda: 0), "no NVIDIA driver is loaded"),
    (dict(driverGetVersion=lambda: 11080, getDeviceCount=_no_driver),
     "no usable CUDA device.*driver supports CUDA 11.8.*cuda12 or cuda13"),
    (dict(driverGetVersion=lambda: 12090, getDeviceCount=lambda: 0), "no CUDA device is visible"),
])
def test_unusable_cuda_says_why_and_how_to_fix(runtime, reason):
    from gradkit.backends.cuda.backend import CudaBackend
    assert re.search(reason, CudaBackend(cupy=_cupy_with(**runtime)).unavailable_reason())


@pytest.mark.parametrize("captured", [False, True])
def test_gradkit_train_reads_loss_and_accuracy_back_once_per_epoch(emulated, captured):
    """Each batch's one read is its label range check (rerun by a replay too); the
    epoch's sums come back once."""
    from emulated_cupy import HostReads
    from gradkit.training import train_epoch, training_step
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    model = gk.nn.MLP([4, 8, 3], seed=0)
    optimizer = gk.optim.SGD(model.parameters(), lr=0.1)
    loader = gk.data.DataLoader(X, y, batch_size=10, seed=0)
    step = training_step(model, optimizer, captured=captured)
    train_epoch(model, optimizer, loader, step)  # first-call work; captured: 2 recorded
    before = HostReads.count
    loss, accuracy = train_epoch(model, optimizer, loader, step)
    assert not captured or step.replays == 2 + 4
    assert HostReads.count - before == 4 + 1 and 0 < loss and 0 <= accuracy <= 1
