"""kernels/*.cu compiled as cupy.RawModule will compile them: NVRTC, no GPU needed.

The cuda_kernels tests run ci/nvrtc_compile.py in-process when a libnvrtc is found
(GRADKIT_NVRTC = the .so or its folder, or an nvidia-cuda-nvrtc wheel in site-packages)
and skip otherwise; the rest checks, without NVRTC, that the checker compiles with
exactly the backend's options and name expressions plus CuPy's additions.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from gradkit.backends.cuda import backend as cuda_backend

CHECKER_PATH = Path(__file__).resolve().parents[1] / "ci" / "nvrtc_compile.py"
# What CuPy 14.2 appends to RawModule's options (CuPy's -I folders aside; see the checker).
CUPY_ADDITIONS = ("-ftz=true", "-arch={target}", "--device-as-default-execution-space")


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("nvrtc_compile", CHECKER_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def libraries(checker):
    try:
        return checker.find_libraries()
    except checker.NvrtcNotFound as exc:
        pytest.skip(f"NVRTC not found: {exc}")


def test_checker_options_are_the_backends_plus_cupys(checker):
    for target in checker.DEFAULT_TARGETS:
        expected = cuda_backend.COMPILE_OPTIONS + tuple(
            option.format(target=target) for option in CUPY_ADDITIONS)
        assert checker.cupy_nvrtc_options(cuda_backend.COMPILE_OPTIONS, target) == expected


def test_checker_orders_options_as_cupy_does(checker):
    assert checker.cupy_nvrtc_options(("-std=c++14",), "sm_80", cupy_include="/cupy",
                                      cuda_include="/cuda") == (
        "-I/cupy/cupy/_cccl/cub", "-I/cupy/cupy/_cccl/thrust", "-I/cupy/cupy/_cccl/libcudacxx",
        "-std=c++14", "-I/cupy", "-I/cuda",
        "-ftz=true", "-arch=sm_80", "--device-as-default-execution-space")
    assert checker.cupy_nvrtc_options(("-O3",), "compute_90")[:2] == ("-O3", "--std=c++17")


def test_checker_compiles_what_the_backend_compiles(checker, monkeypatch):
    """Every kernel file, with the backend's options and name expressions, no copies."""
    calls = []

    class RecordingNvrtc:
        version = (12, 9)

        def __init__(self, path):
            pass

        def compile(self, source, filename, names, options):
            calls.append((filename, source, names, options))
            return checker.Compiled(log="", lowered={n: n for n in names}, ptx=b"ptx",
                                    cubin=b"cubin")

    monkeypatch.setattr(checker, "Nvrtc", RecordingNvrtc)
    results = checker.check([Path("libnvrtc.so.12")], ("sm_80",))
    assert all(result.ok for result in results), [r.line() for r in results]
    assert [call[0] for call in calls] == cuda_backend.kernel_names()
    for filename, source, names, options in calls:
        assert source == cuda_backend.kernel_source(filename)
        assert names == cuda_backend.name_expressions(filename)
        assert options == checker.cupy_nvrtc_options(cuda_backend.COMPILE_OPTIONS, "sm_80")


def test_checker_fails_a_kernel_file_the_backend_never_compiles(checker, monkeypatch):
    monkeypatch.setattr(cuda_backend, "kernel_names",
                        lambda: sorted(cuda_backend.KERNELS_BY_SOURCE) + ["stray.cu"])
    monkeypatch.setattr(checker, "Nvrtc", lambda path: pytest.fail("compiled nothing yet"))
    results = checker.check([], ("sm_80",))
    assert [r.file for r in results if not r.ok] == ["stray.cu"]


@pytest.fixture(scope="module")
def results(checker, libraries):
    """The whole check, once per run (the suite repeats each test per backend)."""
    return checker.check(libraries)


@pytest.mark.cuda_kernels
def test_every_kernel_compiles_with_nvrtc(checker, libraries, results):
    assert results and all(result.ok for result in results), checker.report(results, libraries)


@pytest.mark.cuda_kernels
def test_nvrtc_rejects_what_only_nvcc_accepts(checker, libraries):
    """The check sees the bug nvcc hid: NVRTC has no host headers, so no INFINITY."""
    source = "template <typename T> __global__ void fill(T* x) { x[0] = -INFINITY; }\n"
    nvrtc = checker.Nvrtc(libraries[0])
    compiled = nvrtc.compile(source, "fill.cu", ["fill<float>"],
                             checker.cupy_nvrtc_options(cuda_backend.COMPILE_OPTIONS, "sm_80"))
    ok, message = checker._verdict(compiled, ["fill<float>"], "sm_80")
    assert not ok and 'identifier "INFINITY" is undefined' in message
