"""gradkit: reverse-mode autodiff with pluggable array backends.

The module is also an Array API namespace: ``x.__array_namespace__()`` returns it,
so code written for the standard runs on gradkit tensors (see the README).
"""
import math as _math
import sys as _sys

from gradkit.tensor import Tensor, tensor, HostConversionError
from gradkit.tensor import bind_namespace as _bind_namespace
from gradkit.device import Device
from gradkit.creation import (zeros, ones, empty, full, zeros_like, ones_like, empty_like,
                              full_like, arange, linspace, eye, asarray, from_dlpack)
from gradkit import registry, testing
from gradkit.ops import *  # noqa: F401,F403
from gradkit.autodiff import no_grad, enable_grad, is_grad_enabled
from gradkit.transforms import grad, value_and_grad, vjp, jvp, jacobian, hessian
from gradkit.registry import register_op, unregister_op
from gradkit import nn, optim  # noqa: F401
from gradkit.serialization import save, load
from gradkit import data  # noqa: F401
from gradkit import linalg, random  # noqa: F401
from gradkit import distributed  # noqa: F401  (imports mpi4py only under mpiexec)
from gradkit.dtypes import (float16, float32, float64, int8, int16, int32, int64, uint8,
                            uint16, uint32, uint64, bool_, get_default_dtype,
                            set_default_dtype, isdtype, result_type, can_cast, finfo, iinfo)
from gradkit.array_api import (astype, clip, __array_namespace_info__,  # noqa: F401
                               __array_api_version__)
from gradkit.backends import get_backend, set_backend, use_backend
from gradkit.capture import capture, CaptureError
from gradkit.errors import (GradkitError, ShapeError, DTypeError, GraphError, BackendError,
                            ArgumentError, IndexingError)

bool = bool_  # the standard's name (shadows the builtin inside this module only)
e, pi, inf, nan, newaxis = _math.e, _math.pi, _math.inf, _math.nan, None

__version__ = "0.1.0"

_bind_namespace(_sys.modules[__name__])  # Tensor.__array_namespace__


def __getattr__(name: str):
    """``getattr(gk, "linalg.inv")``: registry names of the linalg ops resolve too (and
    of the collectives ``gk.distributed`` registers as ops: ``distributed.agree``)."""
    if name.startswith("linalg."):
        try:
            return getattr(linalg, name[len("linalg."):])
        except AttributeError:
            pass
    if name.startswith("distributed."):
        try:
            return getattr(distributed.ops, name[len("distributed."):])
        except AttributeError:
            pass
    raise AttributeError(f"module 'gradkit' has no attribute {name!r}")
