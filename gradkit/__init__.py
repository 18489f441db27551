"""gradkit: reverse-mode autodiff with pluggable array backends."""
from gradkit.tensor import Tensor, tensor
from gradkit.creation import (zeros, ones, full, zeros_like, ones_like, full_like, arange,
                              linspace, eye)
from gradkit import registry, testing
from gradkit.ops import *  # noqa: F401,F403
from gradkit.autodiff import (no_grad, enable_grad, is_grad_enabled, grad, value_and_grad,
                              vjp, jvp, jacobian, hessian)
from gradkit.registry import register_op, unregister_op
from gradkit import nn, optim  # noqa: F401
from gradkit.serialization import save, load
from gradkit import data  # noqa: F401
from gradkit.dtypes import (float16, float32, float64, int8, int16, int32, int64, uint8,
                            bool_, get_default_dtype, set_default_dtype)
from gradkit.backends import get_backend, set_backend, use_backend
from gradkit.errors import GradkitError, ShapeError, DTypeError, GraphError, BackendError

__version__ = "0.1.0"
