"""The NumPy backend: NumPy arrays and the reference forwards, with a few NumPy kernels
(``kernels.py``) where they beat the reference."""
from gradkit.backends.numpy.backend import NumpyBackend

__all__ = ["NumpyBackend"]
