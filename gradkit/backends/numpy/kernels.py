"""NumPy kernels for the ops whose Array-API reference pays for its portability.

The reference forwards are written against the Array API standard, so they run on
CuPy and array-api-strict too; on NumPy a few of them can be written with fewer,
cheaper calls: fancy indexing instead of a one-hot matrix, ``ufunc.reduce``
instead of the Python-level ``np.sum``/``np.mean`` wrappers, ``.mT`` instead of
``np.matrix_transpose``, one temporary array instead of two in the SGD update.
For a small MLP step (batch 32) these ops were half of the step's time. Each kernel gives the reference's result (the same operations
in the same order; ``gk.testing.check_backend("numpy")`` compares them) and hands
any case it does not cover (other dtypes, malformed input that must raise the
reference's error) to the reference forward.

Each function here is a kernel factory, ``factory(backend, op, reference) -> kernel``
(gradkit/backends/base.py); the NumPy backend resolves ``KERNEL_FACTORIES`` and
``DONATING_KERNEL_FACTORIES`` on each op's first use.

>>> import numpy as np
>>> import gradkit as gk
>>> from gradkit.backends.numpy.backend import NumpyBackend
>>> kernel = NumpyBackend().resolve(gk.registry.get_op("sum_to"))
>>> kernel(np.ones((3, 2)), shape=(2,)).tolist()
[3.0, 3.0]
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
Kernel = Callable[..., Any]


def _is_classification(logits: Any, labels: Any) -> bool:
    """Float32/64 (N, C) logits with N >= 1 and integer (N,) labels."""
    return (logits.dtype in _FLOATS and logits.ndim == 2 and logits.shape[0] > 0 and
            labels.ndim == 1 and labels.dtype.kind in "iu" and
            labels.shape[0] == logits.shape[0])


@functools.lru_cache(maxsize=64)
def _rows(n: int) -> np.ndarray:
    """``np.arange(n)`` (read-only, made once per batch size) to pick one entry per row."""
    rows = np.arange(n)
    rows.flags.writeable = False
    return rows


def cross_entropy(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> Any:
        """The reference's log-sum-exp cross-entropy, picking each row's label by index."""
        if not _is_classification(logits, labels):
            return reference(logits, labels)
        n = logits.shape[0]
        shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
        log_total = np.log(np.add.reduce(np.exp(shifted), axis=1))
        picked = shifted[_rows(n), labels]
        loss = np.add.reduce(log_total - picked) / n  # np.mean, without its Python layers
        if not math.isfinite(loss):  # an infinite logit: the reference's way (shift by 0)
            return reference(logits, labels)
        return loss
    return cross_entropy


def cross_entropy_backward(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def cross_entropy_backward(g: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> Any:
        """``g * (softmax(logits) - onehot) / N``, subtracting 1 at each label in place."""
        if not _is_classification(logits, labels) or g.dtype != logits.dtype or g.ndim != 0:
            return reference(g, logits, labels)
        n = logits.shape[0]
        probs = np.exp(logits - np.maximum.reduce(logits, axis=1, keepdims=True))
        probs /= np.add.reduce(probs, axis=1, keepdims=True)
        probs[_rows(n), labels] -= 1
        probs *= g / n
        return probs
    return cross_entropy_backward


@functools.lru_cache(maxsize=256)
def _summed_axes(from_shape: tuple, to_shape: tuple) -> tuple | None:
    """The axes ``sum_to`` reduces, or None when ``to_shape`` has more dimensions."""
    lead = len(from_shape) - len(to_shape)
    if lead < 0:
        return None
    return tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(to_shape) if n == 1 and from_shape[lead + i] != 1)


def sum_to(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def sum_to(x: np.ndarray, *, shape: Any) -> Any:
        """The reference's reduction, with the axes worked out once per pair of shapes."""
        shape = tuple(shape)
        axes = _summed_axes(x.shape, shape)
        if axes is None or x.dtype not in _FLOATS:
            return reference(x, shape=shape)
        if not axes:
            return x.reshape(shape)
        if len(axes) == x.ndim - len(shape) and axes[-1] == len(axes) - 1:
            return np.add.reduce(x, axis=axes)  # only leading axes: already ``shape``
        return np.add.reduce(x, axis=axes, keepdims=True).reshape(shape)
    return sum_to


def matrix_transpose(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def matrix_transpose(x: np.ndarray) -> Any:
        """``x.mT`` (a view, as ``np.matrix_transpose`` returns)."""
        if x.ndim < 2:
            return reference(x)
        return x.mT
    return matrix_transpose


def matmul_transposed(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def matmul_transposed(x1: np.ndarray, x2: np.ndarray, *, transpose_x1: bool = False,
                          transpose_x2: bool = False) -> Any:
        """``np.matmul`` of the ``.mT`` views (``np.matrix_transpose`` without its Python
        layers)."""
        return np.matmul(x1.mT if transpose_x1 else x1, x2.mT if transpose_x2 else x2)
    return matmul_transposed


def bias_activation(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def bias_activation(x: np.ndarray, bias: np.ndarray, *, activation: str = "relu",
                        slope: float = 0.01, alpha: float = 1.0) -> Any:
        """``relu(x + bias)`` clipping the sum in place; other activations: the reference."""
        if activation != "relu":
            return reference(x, bias, activation=activation, slope=slope, alpha=alpha)
        z = x + bias
        return np.maximum(z, 0, out=z)
    return bias_activation


# (The two helpers below repeat what gradkit.ops.reduce/shape compute for the ops: the
# backends sit below the ops in the layers, so they keep their own, for the axes the
# kernels take: None, an int or a tuple.)
def _reduced_count(shape: tuple, axis: Any) -> int:
    """How many elements a reduction over ``axis`` (None, an int or a tuple) combines."""
    if axis is None or not shape:  # (a 0-d array reduces to itself, axis 0 or -1 too)
        return math.prod(shape)
    axes = (axis,) if type(axis) is int else axis
    return math.prod([shape[a] for a in axes])


_AXIS_TYPES = (type(None), int, tuple)
# mean: up to this count, the sum divided by the count in the data's dtype gives np.mean's
# bits (the count is exact in float32); above it np.mean, which divides in float64, runs
MEAN_EXACT_COUNT = 1 << 24


def sum_(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def sum(x: np.ndarray, *, axis: Any = None, keepdims: bool = False,  # noqa: A001
            dtype: Any = None) -> Any:
        """``np.add.reduce``: what ``np.sum`` runs, without its Python layers."""
        if dtype is not None or x.dtype not in _FLOATS or type(axis) not in _AXIS_TYPES:
            return reference(x, axis=axis, keepdims=keepdims, dtype=dtype)
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return sum


def mean(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def mean(x: np.ndarray, *, axis: Any = None, keepdims: bool = False) -> Any:
        """The sum divided by the count, as ``np.mean`` computes it for float32/64 (the
        count as a Python int: exact in float32 up to 2**24, where the result is the
        same as ``np.mean``'s float64 division rounded back)."""
        if x.dtype not in _FLOATS or not x.size or type(axis) not in _AXIS_TYPES:
            return reference(x, axis=axis, keepdims=keepdims)  # (an empty mean warns)
        count = _reduced_count(x.shape, axis)
        if count > MEAN_EXACT_COUNT:
            return reference(x, axis=axis, keepdims=keepdims)
        return np.add.reduce(x, axis=axis, keepdims=keepdims) / count
    return mean


def mean_backward(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def mean_backward(g: np.ndarray, *, shape: Any, axis: Any = None,
                      keepdims: bool = False) -> Any:
        """Each element of ``g`` divided by the count, written once per repeat: one
        division into a new array instead of a broadcast view and a division."""
        shape = tuple(shape)
        if g.dtype not in _FLOATS or type(axis) not in _AXIS_TYPES or (
                axis is not None and not shape):
            return reference(g, shape=shape, axis=axis, keepdims=keepdims)
        if not keepdims:
            g = g.reshape(_keepdims_shape(shape, axis))
        out = np.empty(shape, g.dtype)
        return np.divide(g, _reduced_count(shape, axis), out=out)
    return mean_backward


@functools.lru_cache(maxsize=256)
def _keepdims_shape(shape: tuple, axis: Any) -> tuple:
    """``shape`` with the axes of ``axis`` (None, an int or a tuple) kept as size 1."""
    if axis is None:
        return (1,) * len(shape)
    axes = {a % len(shape) for a in ((axis,) if type(axis) is int else axis)}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def reshape(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def reshape(x: np.ndarray, *, shape: Any, copy: Any = None) -> Any:
        """``x.reshape(shape)``: the method, without ``np.reshape``'s Python layers."""
        if copy is not None:
            return reference(x, shape=shape, copy=copy)
        return x.reshape(shape)
    return reshape


# 0-d arrays of 0 and 1 per float dtype: a ufunc takes them faster than Python numbers
_ONE = {dtype: np.ones((), dtype) for dtype in _FLOATS}
# (1, -1) of each float dtype, for the sigmoid kernel
_SIGMOID_CONSTANTS = {dtype: (np.ones((), dtype), -np.ones((), dtype)) for dtype in _FLOATS}
# The sigmoid kernels' ufuncs, looked up once: on 16 elements the six calls are the
# kernel's whole cost, and six lookups in NumPy's namespace add a tenth to it.
_copysign, _exp, _heaviside, _maximum, _add, _divide, _multiply, _subtract = (
    np.copysign, np.exp, np.heaviside, np.maximum, np.add, np.divide, np.multiply,
    np.subtract)


def sigmoid(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def sigmoid(x: np.ndarray) -> Any:
        """The reference's ``1 / (1 + e)`` where ``x >= 0``, else ``e / (1 + e)``, with
        ``e = exp(-|x|)``, as one division: ``max(e, step(x)) / (1 + e)`` (``e <= 1``;
        ``step`` is 1 from 0 up, NaN at NaN), in six ufunc calls on two arrays (their
        cost, not the arithmetic, is what 16 elements take)."""
        constants = _SIGMOID_CONSTANTS.get(x.dtype)
        if constants is None or not x.ndim:  # (a 0-d result would be a scalar)
            return reference(x)
        one, minus_one = constants
        e = _copysign(x, minus_one)
        _exp(e, e)
        numerator = _heaviside(x, one)
        _maximum(e, numerator, out=numerator)
        _add(e, one, e)
        return _divide(numerator, e, numerator)
    return sigmoid


def sigmoid_backward(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def sigmoid_backward(g: np.ndarray, y: np.ndarray) -> Any:
        """The reference's ``g * y * (1 - y)``, in one new array."""
        dtype = g.dtype  # (one dict lookup, and ``is`` for y's: a tenth of the kernel)
        one = _ONE.get(dtype)
        if one is None or y.dtype is not dtype or g.shape != y.shape or not g.ndim:
            return reference(g, y)
        out = _multiply(g, y)
        return _multiply(out, _subtract(one, y), out=out)
    return sigmoid_backward


def sgd_update(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def sgd_update(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray | None = None, *,
                   lr: Any = None, momentum: float = 0.0, nesterov: bool = False,
                   weight_decay: float = 0.0) -> Any:
        """The reference's update with one new array: ``lr * grad`` is computed into the
        result, which ``param - ...`` then overwrites (for a 784x512 float32 weight: 94 us
        instead of 150 us; the reference allocates twice)."""
        if param.dtype not in _FLOATS or grad.dtype != param.dtype or \
                type(lr) is not float and type(lr) is not int:
            return reference(param, grad, velocity, lr=lr, momentum=momentum,
                             nesterov=nesterov, weight_decay=weight_decay)
        if weight_decay != 0:
            grad = grad + weight_decay * param
        if momentum != 0:
            velocity *= momentum  # the reference's velocity[...] = momentum * velocity + grad
            velocity += grad
            grad = grad + momentum * velocity if nesterov else velocity
        out = np.multiply(grad, lr)
        return np.subtract(param, out, out=out)
    return sgd_update


KERNEL_FACTORIES = {factory.__name__: factory for factory in (
    cross_entropy, cross_entropy_backward, sum_to, matrix_transpose, matmul_transposed,
    bias_activation,
    sgd_update, mean, mean_backward, reshape, sigmoid, sigmoid_backward)}
KERNEL_FACTORIES["sum"] = sum_  # (named so it does not hide the builtin here)


# -- kernels that write their result into a dying input (gk.capture replays) ------------
# A replay knows when an input array is read for the last time; where it was made by an
# earlier kernel of the same replay (and nothing views it), the kernels below reuse its
# memory for the result instead of allocating, as the hand-written floor does with its
# in-place updates. Each computes exactly what the kernel above does, and hands any case
# it does not cover to it.

def bias_activation_into_x(backend: Any, op: Any, reference: Kernel) -> Kernel:
    not_in_place = bias_activation(backend, op, reference)

    def bias_activation_into_x(x: np.ndarray, bias: np.ndarray, *, activation: str = "relu",
                               slope: float = 0.01, alpha: float = 1.0) -> Any:
        """relu(x + bias), written into ``x``."""
        if activation != "relu" or x.dtype not in _FLOATS or bias.dtype != x.dtype or \
                bias.shape != x.shape[-1:] or not _lendable(x):
            return not_in_place(x, bias, activation=activation, slope=slope, alpha=alpha)
        np.add(x, bias, out=x)
        return np.maximum(x, 0, out=x)
    return bias_activation_into_x


def bias_activation_backward_into_g(backend: Any, op: Any, reference: Kernel) -> Kernel:
    def bias_activation_backward_into_g(g: np.ndarray, y: np.ndarray, *,
                                        activation: str = "relu", slope: float = 0.01,
                                        alpha: float = 1.0) -> Any:
        """relu: ``g * (y > 0)``, written into ``g``."""
        if activation != "relu" or g.dtype not in _FLOATS or y.dtype != g.dtype or \
                y.shape != g.shape or not _lendable(g):
            return reference(g, y, activation=activation, slope=slope, alpha=alpha)
        return np.multiply(g, (y > 0).astype(g.dtype), out=g)  # the reference's product
    return bias_activation_backward_into_g


def cross_entropy_backward_into_logits(backend: Any, op: Any, reference: Kernel) -> Kernel:
    not_in_place = cross_entropy_backward(backend, op, reference)

    def cross_entropy_backward_into_logits(g: np.ndarray, logits: np.ndarray,
                                           labels: np.ndarray) -> Any:
        """The softmax-minus-one-hot gradient, written into ``logits``."""
        if not _is_classification(logits, labels) or g.dtype != logits.dtype or \
                g.ndim != 0 or not _lendable(logits):
            return not_in_place(g, logits, labels)
        n = logits.shape[0]
        np.subtract(logits, np.maximum.reduce(logits, axis=1, keepdims=True), out=logits)
        probs = np.exp(logits, out=logits)
        probs /= np.add.reduce(probs, axis=1, keepdims=True)
        probs[_rows(n), labels] -= 1
        probs *= g / n
        return probs
    return cross_entropy_backward_into_logits


def sgd_update_into_grad(backend: Any, op: Any, reference: Kernel) -> Kernel:
    not_in_place = sgd_update(backend, op, reference)

    def sgd_update_into_grad(param: np.ndarray, grad: np.ndarray, velocity: Any = None, *,
                             lr: Any = None, momentum: float = 0.0, nesterov: bool = False,
                             weight_decay: float = 0.0) -> Any:
        """Plain SGD (no momentum, no weight decay): ``param - lr * grad`` written into
        ``grad``."""
        if momentum != 0 or weight_decay != 0 or param.dtype not in _FLOATS or \
                grad.dtype != param.dtype or grad.shape != param.shape or \
                type(lr) is not float and type(lr) is not int or not _lendable(grad):
            return not_in_place(param, grad, velocity, lr=lr, momentum=momentum,
                                nesterov=nesterov, weight_decay=weight_decay)
        np.multiply(grad, lr, out=grad)
        return np.subtract(param, grad, out=grad)
    return sgd_update_into_grad


def _lendable(array: np.ndarray) -> bool:
    """Owns its memory and may be written (a replay checked nothing else views it)."""
    return array.base is None and array.flags.writeable


# op name -> (the input whose memory the result may take, the factory of the kernel that
# does so)
DONATING_KERNEL_FACTORIES = {
    "bias_activation": (0, bias_activation_into_x),
    "bias_activation_backward": (0, bias_activation_backward_into_g),
    "cross_entropy_backward": (1, cross_entropy_backward_into_logits),
    "sgd_update": (1, sgd_update_into_grad),
}
