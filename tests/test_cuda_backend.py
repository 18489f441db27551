"""The CUDA backend's parts that can be checked without a GPU.

On a machine with CuPy and a GPU, the whole suite runs on it instead
(GRADKIT_BACKEND=cuda python -m pytest); the kernels themselves are compiled
by ci/compile_kernels.sh through NVRTC, as cupy.RawModule compiles them (tests/test_cuda_compile.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import gradkit as gk
from gradkit import backends
from gradkit.backends import cuda_backend
from gradkit.registry import OPS

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"


def test_importing_gradkit_imports_no_gpu_or_jit_library():
    import subprocess
    import sys
    code = ("import sys, gradkit, gradkit.backends.cuda_backend; "
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
