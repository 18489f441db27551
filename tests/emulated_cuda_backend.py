"""The CUDA backend's own Python code on the CPU: emulation, not GPU coverage.

``EmulatedCudaBackend`` is gradkit's :class:`CudaBackend`, unchanged, given the
stand-in CuPy of ``emulated_cupy`` (NumPy arrays with CuPy's traits) whose
``RawModule`` is the CUDA emulator of ``cuda_emulator`` (kernels/*.cu compiled as
host C++). So the backend's launch code, argument tuples, grids and dtype dispatch,
and the engine's and optimizers' handling of arrays without a writeable flag or
implicit host conversion, all run here. cuBLAS, CuPy's own kernels, streams and
timing do not.

The whole suite runs on it with ``GRADKIT_BACKEND=cuda_emulated python -m pytest``.
"""
from __future__ import annotations

import emulated_cupy
from gradkit.backends.cuda.backend import CudaBackend

NAME = "cuda_emulated"


class EmulatedCudaBackend(CudaBackend):
    """The CUDA backend on emulated CuPy arrays and emulated kernels."""

    name = NAME
    dlpack_device_type = 1  # the emulated arrays live in host memory and export as such

    def __init__(self) -> None:
        import cuda_emulator
        module = emulated_cupy.make_module(cuda_emulator.RawModule)
        super().__init__(cupy=module, cupyx=module)

    def unavailable_reason(self) -> str | None:
        import cuda_emulator
        return cuda_emulator.compiler_available()
