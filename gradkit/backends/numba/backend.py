"""The Numba backend: NumPy arrays, with JIT-compiled loops for the memory-bound ops.

Arrays are NumPy arrays and ``xp`` is NumPy, so every op without a kernel here runs
its NumPy reference (matmul stays NumPy's BLAS matmul). The kernels cover the
activations but tanh (NumPy's vectorized tanh is 4-9x faster than the loop's at every
size) and their backward ops, fused bias+activation forward and backward,
softmax and log_softmax over the last axis, and fused softmax+cross-entropy forward
and backward. Each runs a parallel loop (``prange``) on large arrays and a serial one
on small arrays (always serial on 2 cores or fewer: ``default_parallel_threshold``).
A kernel handles C-contiguous (or made so) float32/float64 inputs of
one dtype and one shape; any other case (broadcasting, mixed or integer dtypes, other
axes, empty arrays) runs the op's reference forward, so results never differ from
the NumPy backend by more than rounding. An SGD update of a small array runs the
NumPy backend's kernel, the same operations in the same order (``numpy_update_below``),
and so do small arrays of the ops listed in ``numpy_elementwise_below``;
gk.capture replays run in-place variants of the fused kernels and of the SGD update
where an input dies (``DONATING_KERNEL_FACTORIES``).

The kernels are factories in ``KERNEL_FACTORIES`` (gradkit/backends/base.py), added
to the NumPy backend's table; each kernel gets its op's reference forward from its
factory for the cases it hands on. Numba is imported when the backend is first
created, never by ``import gradkit``; compiled loops are cached on disk, so only the
first process compiles them.

>>> import gradkit as gk
>>> from gradkit.backends.numba.backend import numba_missing_reason
>>> reason = numba_missing_reason()
>>> reason is None or "pip install numba" in reason
True
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import sys
import threading
from typing import Any, Callable

import numpy as np

from gradkit.backends.base import CompiledStep, StepCall
from gradkit.backends.numpy import kernels as numpy_kernels
from gradkit.backends.numpy.backend import NumpyBackend

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


def _dense(array: np.ndarray) -> np.ndarray:
    """``array``, or a C-contiguous copy of it: what the loops take, of any shape.

    Arrays go to the loops as they are, writable or read-only: Numba compiles a loop
    once per such combination it meets (a step meets one or two), and a read-only
    view per input cost more than the loop itself on the small arrays of a step.
    """
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _lendable(array: np.ndarray) -> bool:
    """Whether a donating kernel may write its result into ``array``: it is no view of
    another array (its base, if any, is no array: what a compiled step allocated has
    Numba's memory handle there), is writable and C-contiguous. That the memory is the
    replay's alone, viewed by nothing still needed, is the plan's check
    (gradkit.capture.plan.Plan._plan_donations), made before it picks a donating kernel."""
    return (not isinstance(array.base, np.ndarray) and array.flags.writeable
            and array.flags.c_contiguous)


def _loop_scalar(array: np.ndarray, value: Any) -> Any:
    """``value`` for a loop over ``array``: a Python float as it is (the loop casts it
    to the data's dtype), another number as a scalar of that dtype; None where NumPy
    would compute ``array * value`` in another dtype (a float64 NumPy scalar with
    float32 data), or ``value`` is not a number."""
    if type(value) is float:
        return value
    if not isinstance(value, (int, float, np.number)):  # (None is no number: NaN in float64)
        return None
    try:
        if type(value) is not int and np.result_type(array, value) != array.dtype:
            return None
        return array.dtype.type(value)
    except (TypeError, ValueError, OverflowError):
        return None


# An element of a loop that evaluates exp, expm1 or tanh counts this many times
# towards the parallel threshold (its arithmetic, not memory, is the cost).
TRANSCENDENTAL_WEIGHT = 4
_TRANSCENDENTAL = frozenset({"elu", "sigmoid", "tanh", "elu_backward", "softmax",
                             "log_softmax", "cross_entropy", "cross_entropy_backward",
                             "adam_update"})


def _weight(name: str) -> int:
    """TRANSCENDENTAL_WEIGHT for an op or activation that calls exp or tanh, else 1."""
    return TRANSCENDENTAL_WEIGHT if name in _TRANSCENDENTAL else 1


def _defaults(reference: Callable[..., Any]) -> dict[str, Any]:
    """The default params of an op's reference forward (a kernel's signature repeats them)."""
    return {name: p.default for name, p in inspect.signature(reference).parameters.items()
            if p.default is not p.empty}


# -- kernel factories: factory(backend, op, reference) -> kernel ---------------------------
# Each kernel takes its op's reference arguments (minus xp) and runs the reference for
# every case its loop does not take; the loops run through NumbaBackend (below). The
# factories with a ``donate`` flag also make the in-place variants gk.capture replays
# use (DONATING_KERNEL_FACTORIES, below): the loop writes into the dying input.

def _relu(backend: NumbaBackend, op: Any, reference: Callable[..., Any]) -> Callable[..., Any]:
    run = backend._elementwise("relu", reference)

    def relu(x):
        return run(x)
    return relu


def _leaky_relu(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                ) -> Callable[..., Any]:
    default = _defaults(reference)
    run = backend._elementwise("leaky_relu", reference, "slope")

    def leaky_relu(x, *, slope=default["slope"]):
        return run(x, slope=slope)
    return leaky_relu


def _elu(backend: NumbaBackend, op: Any, reference: Callable[..., Any]) -> Callable[..., Any]:
    default = _defaults(reference)
    run = backend._elementwise("elu", reference, "alpha")

    def elu(x, *, alpha=default["alpha"]):
        return run(x, alpha=alpha)
    return elu


def _sigmoid(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
             ) -> Callable[..., Any]:
    run = backend._elementwise("sigmoid", reference)

    def sigmoid(x):
        return run(x)
    return sigmoid


def _relu_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                   ) -> Callable[..., Any]:
    run = backend._elementwise("relu_backward", reference)

    def relu_backward(g, x):
        return run(g, x)
    return relu_backward


def _leaky_relu_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                         ) -> Callable[..., Any]:
    default = _defaults(reference)
    run = backend._elementwise("leaky_relu_backward", reference, "slope")

    def leaky_relu_backward(g, x, *, slope=default["slope"]):
        return run(g, x, slope=slope)
    return leaky_relu_backward


def _elu_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                  ) -> Callable[..., Any]:
    default = _defaults(reference)
    run = backend._elementwise("elu_backward", reference, "alpha")

    def elu_backward(g, x, *, alpha=default["alpha"]):
        return run(g, x, alpha=alpha)
    return elu_backward


def _sigmoid_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                      ) -> Callable[..., Any]:
    run = backend._elementwise("sigmoid_backward", reference,
                               small=numpy_kernels.sigmoid_backward(backend, op, reference))

    def sigmoid_backward(g, y):
        return run(g, y)
    return sigmoid_backward


def _tanh_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                   ) -> Callable[..., Any]:
    run = backend._elementwise("tanh_backward", reference)

    def tanh_backward(g, y):
        return run(g, y)
    return tanh_backward


# -- fused bias + activation --------------------------------------------------------------
def _activation_code(backend: NumbaBackend, activation: Any) -> int | None:
    """The loops' code for ``activation``, or None for one they do not know."""
    return backend._loops.ACTIVATION_CODES.get(activation) if type(activation) is str \
        else None


def _bias_activation(backend: NumbaBackend, op: Any, reference: Callable[..., Any],
                     donate: bool = False) -> Callable[..., Any]:
    default = _defaults(reference)
    loop = backend._loops.bias_activation

    def bias_activation(x, bias, *, activation=default["activation"], slope=default["slope"],
                        alpha=default["alpha"]):
        kind = _activation_code(backend, activation)
        if (kind is None or not _is_float(x) or type(bias) is not np.ndarray
                or bias.dtype != x.dtype or bias.ndim != 1 or not x.size or not x.ndim
                or x.shape[-1] != bias.shape[0]):
            return reference(x, bias, activation=activation, slope=slope, alpha=alpha)
        slope_, alpha_ = _loop_scalar(x, slope), _loop_scalar(x, alpha)
        if slope_ is None or alpha_ is None:
            return reference(x, bias, activation=activation, slope=slope, alpha=alpha)
        into = donate and _lendable(x)
        out = None if into else np.empty(x.shape, x.dtype)  # (None: the loop writes into x)
        backend._run(loop, x.size * _weight(activation), _dense(x), _dense(bias), out, kind,
                     slope_, alpha_)
        return x if into else out
    return bias_activation


def _bias_activation_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any],
                              donate: bool = False) -> Callable[..., Any]:
    default = _defaults(reference)
    loop = backend._loops.bias_activation_backward

    def bias_activation_backward(g, y, *, activation=default["activation"],
                                 slope=default["slope"], alpha=default["alpha"]):
        kind = _activation_code(backend, activation)
        if (kind is None or not _is_float(g) or type(y) is not np.ndarray
                or y.dtype != g.dtype or y.shape != g.shape or not g.size):
            return reference(g, y, activation=activation, slope=slope, alpha=alpha)
        slope_, alpha_ = _loop_scalar(g, slope), _loop_scalar(g, alpha)
        if slope_ is None or alpha_ is None:
            return reference(g, y, activation=activation, slope=slope, alpha=alpha)
        into = donate and _lendable(g)
        out = None if into else np.empty(g.shape, g.dtype)
        backend._run(loop, g.size, _dense(g), _dense(y), out, kind, slope_, alpha_)
        return g if into else out
    return bias_activation_backward


# -- softmax family (last axis) -----------------------------------------------------------
def _softmax(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
             ) -> Callable[..., Any]:
    default = _defaults(reference)
    run = backend._rows("softmax", reference)

    def softmax(x, *, axis=default["axis"]):
        return run(x, axis)
    return softmax


def _log_softmax(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                 ) -> Callable[..., Any]:
    default = _defaults(reference)
    run = backend._rows("log_softmax", reference)

    def log_softmax(x, *, axis=default["axis"]):
        return run(x, axis)
    return log_softmax


# -- fused softmax + cross-entropy --------------------------------------------------------
_INT64 = np.dtype(np.int64)


def _labels(labels: Any, rows: int) -> np.ndarray | None:
    """Labels as contiguous int64 (rows,), or None when the loops cannot take them."""
    if type(labels) is not np.ndarray or labels.dtype.kind not in "iu" \
            or labels.shape != (rows,):
        return None
    if labels.dtype != _INT64:  # the reference's astype(int64), wrap-around included
        return labels.astype(np.int64)
    return _dense(labels)


def _is_logits(logits: Any) -> bool:
    return _is_float(logits) and logits.ndim == 2 and logits.size > 0


def _cross_entropy(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                   ) -> Callable[..., Any]:
    loop = backend._loops.cross_entropy

    def cross_entropy(logits, labels):
        index = _labels(labels, logits.shape[0]) if _is_logits(logits) else None
        if index is None:
            return reference(logits, labels)
        losses = np.empty(index.shape[0], logits.dtype)
        mean = backend._run(loop, logits.size * _weight("cross_entropy"), _dense(logits),
                            index, losses)
        if mean != mean and (index.min() < 0 or index.max() >= logits.shape[1]):
            return reference(logits, labels)  # a label out of range: it says which
        return np.asarray(mean, dtype=logits.dtype)
    return cross_entropy


def _cross_entropy_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any],
                            donate: bool = False) -> Callable[..., Any]:
    loop = backend._loops.cross_entropy_backward

    def cross_entropy_backward(g, logits, labels):
        index = None
        if _is_logits(logits) and type(g) is np.ndarray and g.shape == () \
                and g.dtype == logits.dtype:
            index = _labels(labels, logits.shape[0])
        if index is None:
            return reference(g, logits, labels)
        scale = g[()] / index.shape[0]  # the reference's g / n, in the logits' dtype
        into = donate and _lendable(logits)
        out = None if into else np.empty(logits.shape, logits.dtype)
        backend._run(loop, logits.size * _weight("cross_entropy_backward"), _dense(logits),
                     index, scale, out)
        return logits if into else out
    return cross_entropy_backward


# -- optimizer updates --------------------------------------------------------------------
def _update_applies(param: Any, grad: Any, *state: Any) -> bool:
    """Same shape, same float dtype; state buffers writable and contiguous."""
    if not (_is_float(param) and param.size and type(grad) is np.ndarray
            and grad.dtype == param.dtype and grad.shape == param.shape):
        return False
    for buffer in state:
        if not (type(buffer) is np.ndarray and buffer.dtype == param.dtype
                and buffer.shape == param.shape and buffer.flags.writeable
                and buffer.flags.c_contiguous):
            return False
    return True


def _sgd_update(backend: NumbaBackend, op: Any, reference: Callable[..., Any],
                donate: bool = False) -> Callable[..., Any]:
    loop = backend._loops.sgd_update
    # the NumPy backend's kernel: the loop's operations in its order, in two or three
    # ufunc calls that cost less than one call of the loop on a small array
    small = (numpy_kernels.sgd_update_into_grad if donate else
             numpy_kernels.sgd_update)(backend, op, reference)

    def sgd_update(param, grad, velocity=None, *, lr=None, momentum=0.0, nesterov=False,
                   weight_decay=0.0):
        if type(param) is np.ndarray and param.size < backend.numpy_update_below and (
                not donate or momentum == 0 and weight_decay == 0):  # (NumPy's in place)
            return small(param, grad, velocity, lr=lr, momentum=momentum,
                         nesterov=nesterov, weight_decay=weight_decay)
        plain = momentum == 0
        applies = (_update_applies(param, grad) if plain else
                   velocity is not None and _update_applies(param, grad, velocity))
        scalars = (_loop_scalar(param, lr), _loop_scalar(param, momentum),
                   _loop_scalar(param, weight_decay)) if applies else (None,)
        if None in scalars:
            return reference(param, grad, velocity, lr=lr, momentum=momentum,
                             nesterov=nesterov, weight_decay=weight_decay)
        lr_, momentum_, weight_decay_ = scalars
        into = donate and _lendable(grad)
        out = None if into else np.empty(param.shape, param.dtype)
        result = grad if into else out
        backend._run(loop, param.size, _dense(param), _dense(grad),
                     result if plain else velocity,  # (plain: a writable placeholder, unread)
                     out, lr_, not plain, momentum_, bool(nesterov), weight_decay != 0,
                     weight_decay_)
        return result
    return sgd_update


def _adam_update(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                 ) -> Callable[..., Any]:
    loop = backend._loops.adam_update

    def adam_update(param, grad, m, v, step, *, lr, beta1, beta2, eps, weight_decay,
                    decoupled):
        if not _update_applies(param, grad, m, v):
            return reference(param, grad, m, v, step, lr=lr, beta1=beta1, beta2=beta2,
                             eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        step = int(step)
        out = np.empty(param.shape, param.dtype)
        # the reference's scalars, combined as Python combines them (the loop casts
        # each to the data's dtype)
        backend._run(loop, param.size * _weight("adam_update"), _dense(param), _dense(grad),
                     m, v, out, float(beta1), float(1 - beta1), float(beta2),
                     float(1 - beta2), float(eps), float(weight_decay),
                     weight_decay != 0 and not decoupled, float(1 - lr * weight_decay),
                     weight_decay != 0 and bool(decoupled), math.sqrt(1 - beta2 ** step),
                     float(lr / (1 - beta1 ** step)))
        return out
    return adam_update


# The ops that have a Numba kernel, and the factory of each.
KERNEL_FACTORIES: dict[str, Callable[..., Callable[..., Any]]] = {
    "relu": _relu, "leaky_relu": _leaky_relu, "elu": _elu, "sigmoid": _sigmoid,
    "relu_backward": _relu_backward,
    "leaky_relu_backward": _leaky_relu_backward, "elu_backward": _elu_backward,
    "sigmoid_backward": _sigmoid_backward, "tanh_backward": _tanh_backward,
    "bias_activation": _bias_activation, "bias_activation_backward": _bias_activation_backward,
    "softmax": _softmax, "log_softmax": _log_softmax, "cross_entropy": _cross_entropy,
    "cross_entropy_backward": _cross_entropy_backward, "sgd_update": _sgd_update,
    "adam_update": _adam_update}

# The ops whose kernel has an in-place variant: op name -> (the input whose memory the
# result may take, the factory of that variant).
DONATING_KERNEL_FACTORIES: dict[str, tuple[int, Callable[..., Callable[..., Any]]]] = {
    name: (position, functools.partial(KERNEL_FACTORIES[name], donate=True))
    for name, position in (("bias_activation", 0), ("bias_activation_backward", 0),
                           ("cross_entropy_backward", 1), ("sgd_update", 1))}


# A parallel_threshold no array reaches: every loop runs serially.
SERIAL_ONLY = sys.maxsize


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_parallel_threshold(cores: int) -> int:
    """``NumbaBackend.parallel_threshold`` on a machine with ``cores`` cores: 4M elements
    of work, or SERIAL_ONLY on 2 cores or fewer, where the loops' threads and BLAS's
    fight over the cores (the class docstring has the measurements).

    >>> default_parallel_threshold(2) == SERIAL_ONLY, default_parallel_threshold(16)
    (True, 4194304)
    """
    return SERIAL_ONLY if cores <= 2 else NumbaBackend.parallel_threshold


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
    parallelism for element-wise-heavy work by lowering it (on the backend object:
    ``gradkit.backends.get_backend()`` under ``gk.use_backend("numba")``).

    On 2 cores or fewer the loops stay serial (``parallel_threshold`` is
    ``SERIAL_ONLY``; see :func:`default_parallel_threshold`): OpenBLAS's threads take
    both cores for every matmul, and after a parallel loop Numba's OpenMP threads
    spin-wait, taking them back from the next matmul. The large MLP step (batch 512,
    1024-2048-2048-10, whose 2048x2048 SGD update reaches 4M), paired with the NumPy
    floor, 3 runs of 16 pairs each per setting, one setting per process: parallel
    0.947-1.016x (compiled 0.975-1.016), serial 0.944-0.946x (compiled 0.923-0.949),
    the serial runs' quartiles within +-2% and the parallel ones' up to +-6%; with
    ``OMP_WAIT_POLICY=PASSIVE`` (no spinning) parallel measured 0.96x. The update alone,
    after a matmul, is faster in parallel (1.66 ms against 2.28 ms serial).

    ``numpy_update_below``: an SGD update of fewer elements runs the NumPy backend's
    kernel, which does the loop's operations in the loop's order (the same bits) in
    two or three ufunc calls, cheaper there than one call of the loop (whose fixed
    cost, ~1.7 us, is mostly Numba's dispatch of its ten arguments). Measured per
    call, float32 (numba loop / NumPy kernel, us): 4096 elements 2.4 / 1.7, 8192
    2.7 / 2.3, 16384 3.7 / 3.9, 65536 9.1 / 12.5; in place (gk.capture) 8192
    2.5 / 2.3, 16384 2.9 / 3.4. With momentum in place the loop wins from ~1000
    elements (NumPy's in-place kernel covers plain SGD only), so there it always runs.

    ``numpy_elementwise_below``: op -> the size below which its NumPy kernel (one to
    three ufunc calls) beats one call of its loop. Measured per call, float32, loop /
    NumPy, us: relu 16 elements 1.24 / 0.55, 4096 1.72 / 1.35, 8192 2.09 / 2.14;
    relu_backward 16 1.60 / 1.43, 2048 1.78 / 2.13; tanh_backward 16 1.59 / 0.99, 2048
    1.78 / 1.47, 4096 2.10 / 2.56; sigmoid_backward alike. leaky_relu, elu and sigmoid
    keep the loop (NumPy's kernels for them are several calls: slower, or, for sigmoid,
    faster only between ~2k and ~1M elements, where NumPy's exp is vectorized).

    >>> import gradkit as gk
    >>> if numba_missing_reason() is None:  # numba installed
    ...     y = gk.relu(gk.tensor([-1.0, 2.0], backend="numba"))
    ...     assert y.backend == "numba" and y.numpy().tolist() == [0.0, 2.0]
    """

    name = "numba"
    parallel_threshold = 1 << 22  # (on more than 2 cores; see __init__)
    numpy_update_below = 1 << 14
    numpy_elementwise_below = {"relu": 8192, "relu_backward": 1024, "tanh_backward": 2048,
                               "sigmoid_backward": 2048}
    # The NumPy backend's kernels for the other ops; an in-place variant of the NumPy
    # backend's only where its op keeps the NumPy kernel it was written for.
    kernel_factories = {**NumpyBackend.kernel_factories, **KERNEL_FACTORIES}
    donating_kernel_factories = {
        **{name: entry for name, entry in NumpyBackend.donating_kernel_factories.items()
           if name not in KERNEL_FACTORIES},
        **DONATING_KERNEL_FACTORIES}

    def __init__(self) -> None:
        super().__init__()
        self._missing = numba_missing_reason()
        self._parallel_lock = threading.Lock()
        self.parallel_threshold = default_parallel_threshold(available_cores())
        if self._missing is None:
            from gradkit.backends.numba import kernels as numba_kernels
            self._loops = numba_kernels

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
        if compiled is loop.serial:
            return compiled(*args)
        with self._parallel_lock:
            return compiled(*args)

    def _elementwise(self, name: str, reference: Callable[..., Any],
                     scalar: str | None = None, small: Callable[..., Any] | None = None
                     ) -> Callable[..., Any]:
        """A kernel running loop ``name`` over one or two same-shape, same-dtype float
        arrays (and the param named ``scalar``, if any), else ``reference``; arrays of
        fewer than ``numpy_elementwise_below[name]`` elements go to ``small`` (the NumPy
        backend's kernel; by default the reference)."""
        loop, weight = getattr(self._loops, name), _weight(name)
        small = reference if small is None else small

        def run(*arrays: Any, **params: Any) -> Any:
            first = arrays[0]
            if type(first) is not np.ndarray:
                return reference(*arrays, **params)
            size = first.size
            if size < self.numpy_elementwise_below.get(name, 0):
                return small(*arrays, **params)
            if first.dtype not in _FLOATS or not size:
                return reference(*arrays, **params)
            if len(arrays) == 1:  # (the common unary case spelled out: this is per call)
                dense = (_dense(first),)
            else:
                for other in arrays[1:]:
                    if type(other) is not np.ndarray or other.dtype != first.dtype \
                            or other.shape != first.shape:
                        return reference(*arrays, **params)
                dense = tuple([_dense(a) for a in arrays])
            if scalar is None:
                value = ()
            else:
                value = (_loop_scalar(first, params[scalar]),)
                if value[0] is None:
                    return reference(*arrays, **params)
            out = np.empty(first.shape, first.dtype)
            self._run(loop, size * weight, *dense, out, *value)
            return out
        return run

    def _rows(self, name: str, reference: Callable[..., Any]) -> Callable[..., Any]:
        """A kernel running loop ``name`` over the rows of the last axis (softmax,
        log_softmax), else ``reference``."""
        loop = getattr(self._loops, name)

        def run(x: Any, axis: Any) -> Any:
            if not (_is_float(x) and x.size and x.ndim >= 1 and type(axis) is int
                    and axis in (-1, x.ndim - 1)):
                return reference(x, axis=axis)
            out = np.empty(x.shape, x.dtype)
            self._run(loop, x.size * _weight(name), _dense(x), out)
            return out
        return run

    # -- whole-step compilation ------------------------------------------------------
    compiles_steps = True

    def runs_parallel(self, name: str, elements: int) -> bool:
        """Whether a kernel's loop over ``elements`` elements runs in parallel: its work
        (the elements, weighted ``TRANSCENDENTAL_WEIGHT`` where ``name``, an op or an
        activation, evaluates exp or tanh per element) reaches ``parallel_threshold``."""
        return elements * _weight(name) >= self.parallel_threshold

    def compile_step(self, calls: list[StepCall], inputs: list[int], results: list[int],
                     examples: dict[int, Any], live_values: list[Any]) -> CompiledStep:
        """One ``@numba.njit`` function running every call (see
        gradkit/backends/numba/lowering.py), each loop serial or parallel as the Python
        replay's kernel picks it (:meth:`runs_parallel`), or NumPy's code where that
        kernel runs it (``numpy_elementwise_below``; both rules as they are when the step
        is compiled, which it is once per plan); not where a kernel of this
        backend was replaced (``register_kernel``): the lowerings repeat the built-in
        kernels. A step running a parallel loop takes the backend's parallel lock (see
        :meth:`_run`)."""
        reasons = self.uncompilable_calls(calls, examples)
        if reasons:
            ops = {call.index: call.op for call in calls}
            return CompiledStep(None, "", [f"call {index} {ops[index]}: {why}"
                                           for index, why in sorted(reasons.items())], 0.0, ())
        from gradkit.backends.numba import lowering
        compiled = lowering.compile_step(calls, inputs, results, examples, live_values,
                                         self.runs_parallel,
                                         numpy_below=self.numpy_elementwise_below)
        if compiled.function is None or not lowering.runs_parallel_loops(compiled.source):
            return compiled
        # Start Numba's thread pool: a step loaded from the plan cache calls the
        # parallel loops without the compilation that starts it (and crashes).
        import numba
        numba.get_num_threads()
        return CompiledStep(self._locked(compiled.function), compiled.source, compiled.reasons,
                            compiled.compile_seconds, compiled.live, compiled.arena_bytes)

    def uncompilable_calls(self, calls: list[StepCall], examples: dict[int, Any]
                           ) -> dict[int, str]:
        """The calls without a lowering for their recorded arrays (see lowering.py), or
        whose kernel was replaced on this backend (``register_kernel``: the lowerings
        repeat the built-in kernels), by call index, with why."""
        if self._missing is not None:
            return {call.index: self._missing for call in calls}
        from gradkit.backends.numba import lowering
        reasons = lowering.unlowered_calls(calls, examples, self.runs_parallel,
                                           self.numpy_elementwise_below)
        for call in calls:
            if self.kernel_factories.get(call.op) is not type(self).kernel_factories.get(
                    call.op):
                reasons[call.index] = "its kernel was replaced on this backend"
        return reasons

    def _locked(self, function: Callable) -> Callable:
        """``function`` run under the parallel lock (it launches parallel loops)."""
        lock = self._parallel_lock

        def locked(*args):
            with lock:
                return function(*args)
        return locked
