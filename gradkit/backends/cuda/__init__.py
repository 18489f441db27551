"""The CUDA backend: CuPy arrays on an NVIDIA GPU, with gradkit's kernels from the
top-level ``kernels/*.cu``. Importing this package imports neither CuPy nor a GPU library."""
from gradkit.backends.cuda.backend import CudaBackend, kernel_names, kernel_source

__all__ = ["CudaBackend", "kernel_names", "kernel_source"]
