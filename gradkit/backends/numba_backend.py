"""The Numba backend: NumPy arrays, with JIT-compiled loops for the memory-bound ops.

Arrays are NumPy arrays and ``xp`` is NumPy, so every op without a kernel here runs
its NumPy reference (matmul stays NumPy's BLAS matmul). The kernels cover the
activations and their backward ops, fused bias+activation forward and backward,
softmax and log_softmax over the last axis, and fused softmax+cross-entropy forward
and backward. Each runs a parallel loop (``prange``) on large arrays and a serial one
on small arrays. A kernel handles C-contiguous (or made so) float32/float64 inputs of
one dtype and one shape; any other case (broadcasting, mixed or integer dtypes, other
axes, empty arrays) runs the op's reference forward, so results never differ from
the NumPy backend by more than rounding.

Numba is imported when the backend is first created, never by ``import gradkit``;
compiled loops are cached on disk, so only the first process compiles them.

>>> import gradkit as gk
>>> from gradkit.backends.numba_backend import numba_missing_reason
>>> reason = numba_missing_reason()
>>> reason is None or "pip install numba" in reason
True
"""
from __future__ import annotations

import math
import threading
from typing import Any, Callable

import numpy as np

from gradkit.backends.numpy_backend import NumpyBackend
from gradkit.ops.activation import ELU_ALPHA, LEAKY_RELU_SLOPE, SOFTMAX_AXIS
from gradkit.registry import get_op

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

INSTALL_HINT = 'pip install numba (or pip install "gradkit[numba]")'


def numba_missing_reason() -> str | None:
    """None when numba imports here, else why not and how to fix it."""
    try:
        import numba  # noqa: F401
    except Exception as exc:  # ImportError, or numba refusing this NumPy version
        return f"numba cannot be imported ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    return None


def _is_float(array: Any) -> bool:
    return type(array) is np.ndarray and array.dtype in _FLOATS


def _input(array: np.ndarray, *shape: int) -> np.ndarray:
    """``array`` as a read-only C-contiguous view (of a copy, if it is not contiguous),
    reshaped to ``shape`` when given.

    Always read-only, so each loop compiles once per dtype: Numba types writable and
    read-only arrays apart, and leaves that require a gradient are read-only.
    """
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    view = array.reshape(shape) if shape else array.view()
    view.flags.writeable = False
    return view


def _scalar_like(array: np.ndarray, value: Any) -> Any:
    """``value`` as a scalar of ``array``'s dtype, or None where NumPy would compute
    ``array * value`` in another dtype (a float64 NumPy scalar with float32 data)."""
    try:
        if type(value) is not float and type(value) is not int \
                and np.result_type(array, value) != array.dtype:
            return None
        return array.dtype.type(value)
    except (TypeError, ValueError, OverflowError):
        return None


# An element of a loop that evaluates exp, expm1 or tanh counts this many times
# towards the parallel threshold (its arithmetic, not memory, is the cost).
TRANSCENDENTAL_WEIGHT = 4
_TRANSCENDENTAL = frozenset({"elu", "sigmoid", "tanh", "elu_backward"})


def _weight(name: str) -> int:
    """TRANSCENDENTAL_WEIGHT for an op or activation that calls exp or tanh, else 1."""
    return TRANSCENDENTAL_WEIGHT if name in _TRANSCENDENTAL else 1


def _reference(op_name: str, *arrays: Any, **params: Any) -> Any:
    """The op's reference forward on NumPy: the answer for every case a kernel skips."""
    return get_op(op_name).forward(np, *arrays, **params)


class NumbaBackend(NumpyBackend):
    """CPU arrays in NumPy; Numba-compiled parallel loops for the hot ops.

    ``parallel_threshold``: a call runs the parallel loop when its work reaches this,
    else the serial loop. Work counts elements, each weighted ``TRANSCENDENTAL_WEIGHT``
    in loops that evaluate exp or tanh per element (threads pay off on smaller
    arrays there). In isolation on 2 cores relu breaks even near 32k elements and
    sigmoid/tanh near 4k-8k, but inside a training step the loop's OpenMP threads
    and OpenBLAS's matmul threads wait on each other: the medium MLP step (batch
    128, 784-512-512-10) took 7x longer with a 64k threshold than serial. So the
    default (4M elements of work) keeps training-sized arrays serial; raise the
    parallelism for element-wise-heavy work by lowering it.

    >>> import gradkit as gk
    >>> if numba_missing_reason() is None:  # numba installed
    ...     y = gk.relu(gk.tensor([-1.0, 2.0], backend="numba"))
    ...     assert y.backend == "numba" and y.numpy().tolist() == [0.0, 2.0]
    """

    name = "numba"
    parallel_threshold = 1 << 22

    def __init__(self) -> None:
        super().__init__()
        self._missing = numba_missing_reason()
        self._parallel_lock = threading.Lock()
        if self._missing is None:
            from gradkit.backends import numba_kernels
            self._loops = numba_kernels
            for op_name in KERNEL_OPS:
                self.register_kernel(op_name, getattr(self, op_name))

    def unavailable_reason(self) -> str | None:
        return self._missing

    # -- running a loop -----------------------------------------------------------
    def _pick(self, loop: Any, work: int) -> Callable:
        """The parallel variant of ``loop`` when ``work`` reaches the threshold, else serial."""
        return loop.parallel if work >= self.parallel_threshold else loop.serial

    def _run(self, loop: Any, work: int, *args: Any) -> Any:
        """Run ``loop``, in parallel or serially (see :meth:`_pick`).

        Parallel runs take a lock: Numba's fallback thread pool (workqueue, used
        where neither TBB nor OpenMP is present) aborts on concurrent launches.
        """
        compiled = self._pick(loop, work)
        if compiled is loop.parallel:
            with self._parallel_lock:
                return compiled(*args)
        return compiled(*args)

    def _elementwise(self, op_name: str, arrays: tuple, params: dict[str, Any],
                     scalars: tuple = ()) -> np.ndarray:
        """Run the op's loop over same-shape, same-dtype float arrays, flattened."""
        first = arrays[0]
        if not (_is_float(first) and first.size
                and all(_is_float(a) and a.shape == first.shape and a.dtype == first.dtype
                        for a in arrays[1:])):
            return _reference(op_name, *arrays, **params)
        typed = tuple(_scalar_like(first, s) for s in scalars)
        if any(s is None for s in typed):
            return _reference(op_name, *arrays, **params)
        out = np.empty(first.shape, first.dtype)
        flat = [_input(a, -1) for a in arrays]
        self._run(getattr(self._loops, op_name), first.size * _weight(op_name), *flat,
                  out.reshape(-1), *typed)
        return out

    # -- activations ----------------------------------------------------------------
    def relu(self, x):
        return self._elementwise("relu", (x,), {})

    def leaky_relu(self, x, *, slope=LEAKY_RELU_SLOPE):
        return self._elementwise("leaky_relu", (x,), {"slope": slope}, (slope,))

    def elu(self, x, *, alpha=ELU_ALPHA):
        return self._elementwise("elu", (x,), {"alpha": alpha}, (alpha,))

    def sigmoid(self, x):
        return self._elementwise("sigmoid", (x,), {})

    def tanh(self, x):
        return self._elementwise("tanh", (x,), {})

    def relu_backward(self, g, x):
        return self._elementwise("relu_backward", (g, x), {})

    def leaky_relu_backward(self, g, x, *, slope=LEAKY_RELU_SLOPE):
        return self._elementwise("leaky_relu_backward", (g, x), {"slope": slope}, (slope,))

    def elu_backward(self, g, x, *, alpha=ELU_ALPHA):
        return self._elementwise("elu_backward", (g, x), {"alpha": alpha}, (alpha,))

    def sigmoid_backward(self, g, y):
        return self._elementwise("sigmoid_backward", (g, y), {})

    def tanh_backward(self, g, y):
        return self._elementwise("tanh_backward", (g, y), {})

    # -- fused bias + activation --------------------------------------------------------
    def _activation_args(self, like: np.ndarray, activation: Any, slope: Any,
                         alpha: Any) -> tuple | None:
        kind = self._loops.ACTIVATION_CODES.get(activation) if isinstance(activation, str) \
            else None
        if kind is None:
            return None
        slope_, alpha_ = _scalar_like(like, slope), _scalar_like(like, alpha)
        if slope_ is None or alpha_ is None:
            return None
        return kind, slope_, alpha_

    def bias_activation(self, x, bias, *, activation="relu", slope=LEAKY_RELU_SLOPE,
                        alpha=ELU_ALPHA):
        params = {"activation": activation, "slope": slope, "alpha": alpha}
        if not (_is_float(x) and _is_float(bias) and x.dtype == bias.dtype and x.size
                and bias.ndim == 1 and x.ndim >= 1 and x.shape[-1] == bias.shape[0]):
            return _reference("bias_activation", x, bias, **params)
        act = self._activation_args(x, activation, slope, alpha)
        if act is None:
            return _reference("bias_activation", x, bias, **params)
        out = np.empty(x.shape, x.dtype)
        cols = bias.shape[0]
        self._run(self._loops.bias_activation, x.size * _weight(activation), _input(x, -1, cols),
                  _input(bias), out.reshape(-1, cols), *act)
        return out

    def bias_activation_backward(self, g, y, *, activation="relu", slope=LEAKY_RELU_SLOPE,
                                 alpha=ELU_ALPHA):
        params = {"activation": activation, "slope": slope, "alpha": alpha}
        if not (_is_float(g) and _is_float(y) and g.dtype == y.dtype and g.shape == y.shape
                and g.size):
            return _reference("bias_activation_backward", g, y, **params)
        act = self._activation_args(g, activation, slope, alpha)
        if act is None:
            return _reference("bias_activation_backward", g, y, **params)
        out = np.empty(g.shape, g.dtype)
        cols = g.shape[-1] if g.ndim else 1
        self._run(self._loops.bias_activation_backward, g.size,
                  _input(g, -1, cols), _input(y, -1, cols),
                  out.reshape(-1, cols), *act)
        return out

    # -- softmax family (last axis) ---------------------------------------------------
    def _rows(self, op_name: str, x: Any, axis: Any) -> np.ndarray:
        if not (_is_float(x) and x.size and x.ndim >= 1 and type(axis) is int
                and axis in (-1, x.ndim - 1)):
            return _reference(op_name, x, axis=axis)
        out = np.empty(x.shape, x.dtype)
        cols = x.shape[-1]
        self._run(getattr(self._loops, op_name), x.size * TRANSCENDENTAL_WEIGHT,
                  _input(x, -1, cols),
                  out.reshape(-1, cols))
        return out

    def softmax(self, x, *, axis=SOFTMAX_AXIS):
        return self._rows("softmax", x, axis)

    def log_softmax(self, x, *, axis=SOFTMAX_AXIS):
        return self._rows("log_softmax", x, axis)

    # -- fused softmax + cross-entropy ------------------------------------------------
    @staticmethod
    def _labels(labels: Any, rows: int) -> np.ndarray | None:
        """Labels as contiguous int64 (rows,), or None when the kernel cannot take them."""
        if type(labels) is not np.ndarray or labels.dtype.kind not in "iu" \
                or labels.shape != (rows,):
            return None
        if labels.dtype != np.int64:  # the reference's astype(int64), wrap-around included
            labels = labels.astype(np.int64)
        return _input(labels)

    # -- optimizer updates --------------------------------------------------------------
    def _update_applies(self, param: Any, *others: Any) -> bool:
        """Same shape, same float dtype; state buffers (others) writable and contiguous."""
        return (_is_float(param) and param.size > 0 and
                all(_is_float(a) and a.shape == param.shape and a.dtype == param.dtype
                    for a in others) and
                all(a.flags.writeable and a.flags.c_contiguous for a in others[1:]))

    def sgd_update(self, param, grad, velocity=None, *, lr=None, momentum=0.0,
                   nesterov=False, weight_decay=0.0):
        params = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        buffers = (grad,) if velocity is None else (grad, velocity)
        if lr is None or not self._update_applies(param, *buffers):
            return _reference("sgd_update", param, grad, velocity, **params)
        t = param.dtype.type
        out = np.empty(param.shape, param.dtype)
        state = velocity if momentum != 0 else out  # a placeholder the loop never reads
        self._run(self._loops.sgd_update, param.size, _input(param, -1), _input(grad, -1),
                  state.reshape(-1), out.reshape(-1), t(lr), momentum != 0, t(momentum),
                  bool(nesterov), weight_decay != 0, t(weight_decay))
        return out

    def adam_update(self, param, grad, m, v, step, *, lr, beta1, beta2, eps, weight_decay,
                    decoupled):
        params = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                      decoupled=decoupled)
        if not self._update_applies(param, grad, m, v):
            return _reference("adam_update", param, grad, m, v, step, **params)
        step = int(step)
        t = param.dtype.type
        out = np.empty(param.shape, param.dtype)
        self._run(self._loops.adam_update, param.size * TRANSCENDENTAL_WEIGHT,
                  _input(param, -1), _input(grad, -1), m.reshape(-1), v.reshape(-1),
                  out.reshape(-1), t(beta1), t(1 - beta1), t(beta2), t(1 - beta2), t(eps),
                  t(weight_decay), weight_decay != 0 and not decoupled,
                  t(1 - lr * weight_decay), weight_decay != 0 and bool(decoupled),
                  t(math.sqrt(1 - beta2 ** step)), t(lr / (1 - beta1 ** step)))
        return out

    def cross_entropy(self, logits, labels):
        if not (_is_float(logits) and logits.ndim == 2 and logits.size):
            return _reference("cross_entropy", logits, labels)
        rows, cols = logits.shape
        index = self._labels(labels, rows)
        if index is None or index.min() < 0 or index.max() >= cols:
            return _reference("cross_entropy", logits, labels)  # it says what is wrong
        losses = np.empty(rows, logits.dtype)
        mean = self._run(self._loops.cross_entropy, logits.size * TRANSCENDENTAL_WEIGHT,
                         _input(logits), index, losses)
        return np.asarray(mean, dtype=logits.dtype)

    def cross_entropy_backward(self, g, logits, labels):
        if not (_is_float(logits) and logits.ndim == 2 and logits.size and _is_float(g)
                and g.shape == () and g.dtype == logits.dtype):
            return _reference("cross_entropy_backward", g, logits, labels)
        rows, cols = logits.shape
        index = self._labels(labels, rows)
        if index is None:
            return _reference("cross_entropy_backward", g, logits, labels)
        scale = (g / rows)[()]  # the reference's g / n, in the logits' dtype
        out = np.empty(logits.shape, logits.dtype)
        self._run(self._loops.cross_entropy_backward, logits.size * TRANSCENDENTAL_WEIGHT,
                  _input(logits), index, scale, out)
        return out


# The ops that have a Numba kernel: each is the backend method of the same name.
KERNEL_OPS: tuple[str, ...] = (
    "relu", "leaky_relu", "elu", "sigmoid", "tanh",
    "relu_backward", "leaky_relu_backward", "elu_backward", "sigmoid_backward",
    "tanh_backward", "bias_activation", "bias_activation_backward",
    "softmax", "log_softmax", "cross_entropy", "cross_entropy_backward",
    "sgd_update", "adam_update")
