"""The Numba backend: NumPy arrays, with JIT-compiled loops (``kernels.py``) for the
memory-bound ops. Importing this package does not import numba; the backend does, when
it is first created."""
from gradkit.backends.numba.backend import NumbaBackend, numba_missing_reason

__all__ = ["NumbaBackend", "numba_missing_reason"]
