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

import inspect
import math
import threading
from typing import Any, Callable

import numpy as np

from gradkit.backends.base import CompiledStep, StepCall
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


def _input(array: np.ndarray, *shape: int) -> np.ndarray:
    """``array`` as a read-only C-contiguous view (of a copy, if it is not contiguous),
    reshaped to ``shape`` when given.

    Always read-only, so each loop compiles once per dtype: Numba types writable and
    read-only arrays apart, and leaves that require a gradient are read-only.
    """
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    view = array.reshape(shape) if shape else array.view()
    view.setflags(write=False)  # (half the cost of setting flags.writeable)
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
# every case its loop does not take; the loops run through NumbaBackend (below).

def _relu(backend: NumbaBackend, op: Any, reference: Callable[..., Any]) -> Callable[..., Any]:
    def relu(x):
        return backend._elementwise("relu", reference, (x,), {})
    return relu


def _leaky_relu(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                ) -> Callable[..., Any]:
    default = _defaults(reference)

    def leaky_relu(x, *, slope=default["slope"]):
        return backend._elementwise("leaky_relu", reference, (x,), {"slope": slope}, (slope,))
    return leaky_relu


def _elu(backend: NumbaBackend, op: Any, reference: Callable[..., Any]) -> Callable[..., Any]:
    default = _defaults(reference)

    def elu(x, *, alpha=default["alpha"]):
        return backend._elementwise("elu", reference, (x,), {"alpha": alpha}, (alpha,))
    return elu


def _sigmoid(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
             ) -> Callable[..., Any]:
    def sigmoid(x):
        return backend._elementwise("sigmoid", reference, (x,), {})
    return sigmoid


def _tanh(backend: NumbaBackend, op: Any, reference: Callable[..., Any]) -> Callable[..., Any]:
    def tanh(x):
        return backend._elementwise("tanh", reference, (x,), {})
    return tanh


def _relu_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                   ) -> Callable[..., Any]:
    def relu_backward(g, x):
        return backend._elementwise("relu_backward", reference, (g, x), {})
    return relu_backward


def _leaky_relu_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                         ) -> Callable[..., Any]:
    default = _defaults(reference)

    def leaky_relu_backward(g, x, *, slope=default["slope"]):
        return backend._elementwise("leaky_relu_backward", reference, (g, x), {"slope": slope},
                                    (slope,))
    return leaky_relu_backward


def _elu_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                  ) -> Callable[..., Any]:
    default = _defaults(reference)

    def elu_backward(g, x, *, alpha=default["alpha"]):
        return backend._elementwise("elu_backward", reference, (g, x), {"alpha": alpha},
                                    (alpha,))
    return elu_backward


def _sigmoid_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                      ) -> Callable[..., Any]:
    def sigmoid_backward(g, y):
        return backend._elementwise("sigmoid_backward", reference, (g, y), {})
    return sigmoid_backward


def _tanh_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                   ) -> Callable[..., Any]:
    def tanh_backward(g, y):
        return backend._elementwise("tanh_backward", reference, (g, y), {})
    return tanh_backward


# -- fused bias + activation --------------------------------------------------------------
def _bias_activation(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                     ) -> Callable[..., Any]:
    default = _defaults(reference)

    def bias_activation(x, bias, *, activation=default["activation"], slope=default["slope"],
                        alpha=default["alpha"]):
        params = {"activation": activation, "slope": slope, "alpha": alpha}
        if not (_is_float(x) and _is_float(bias) and x.dtype == bias.dtype and x.size
                and bias.ndim == 1 and x.ndim >= 1 and x.shape[-1] == bias.shape[0]):
            return reference(x, bias, **params)
        act = backend._activation_args(x, activation, slope, alpha)
        if act is None:
            return reference(x, bias, **params)
        out = np.empty(x.shape, x.dtype)
        cols = bias.shape[0]
        backend._run(backend._loops.bias_activation, x.size * _weight(activation),
                     _input(x, -1, cols), _input(bias), out.reshape(-1, cols), *act)
        return out
    return bias_activation


def _bias_activation_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                              ) -> Callable[..., Any]:
    default = _defaults(reference)

    def bias_activation_backward(g, y, *, activation=default["activation"],
                                 slope=default["slope"], alpha=default["alpha"]):
        params = {"activation": activation, "slope": slope, "alpha": alpha}
        if not (_is_float(g) and _is_float(y) and g.dtype == y.dtype and g.shape == y.shape
                and g.size):
            return reference(g, y, **params)
        act = backend._activation_args(g, activation, slope, alpha)
        if act is None:
            return reference(g, y, **params)
        out = np.empty(g.shape, g.dtype)
        cols = g.shape[-1] if g.ndim else 1
        backend._run(backend._loops.bias_activation_backward, g.size,
                     _input(g, -1, cols), _input(y, -1, cols),
                     out.reshape(-1, cols), *act)
        return out
    return bias_activation_backward


# -- softmax family (last axis) -----------------------------------------------------------
def _softmax(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
             ) -> Callable[..., Any]:
    default = _defaults(reference)

    def softmax(x, *, axis=default["axis"]):
        return backend._rows("softmax", reference, x, axis)
    return softmax


def _log_softmax(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                 ) -> Callable[..., Any]:
    default = _defaults(reference)

    def log_softmax(x, *, axis=default["axis"]):
        return backend._rows("log_softmax", reference, x, axis)
    return log_softmax


# -- fused softmax + cross-entropy --------------------------------------------------------
def _cross_entropy(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                   ) -> Callable[..., Any]:
    def cross_entropy(logits, labels):
        if not (_is_float(logits) and logits.ndim == 2 and logits.size):
            return reference(logits, labels)
        rows, cols = logits.shape
        index = backend._labels(labels, rows)
        if index is None or index.min() < 0 or index.max() >= cols:
            return reference(logits, labels)  # it says what is wrong
        losses = np.empty(rows, logits.dtype)
        mean = backend._run(backend._loops.cross_entropy,
                            logits.size * _weight("cross_entropy"), _input(logits), index,
                            losses)
        return np.asarray(mean, dtype=logits.dtype)
    return cross_entropy


def _cross_entropy_backward(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                            ) -> Callable[..., Any]:
    def cross_entropy_backward(g, logits, labels):
        if not (_is_float(logits) and logits.ndim == 2 and logits.size and _is_float(g)
                and g.shape == () and g.dtype == logits.dtype):
            return reference(g, logits, labels)
        rows, cols = logits.shape
        index = backend._labels(labels, rows)
        if index is None:
            return reference(g, logits, labels)
        scale = (g / rows)[()]  # the reference's g / n, in the logits' dtype
        out = np.empty(logits.shape, logits.dtype)
        backend._run(backend._loops.cross_entropy_backward,
                     logits.size * _weight("cross_entropy_backward"), _input(logits), index,
                     scale, out)
        return out
    return cross_entropy_backward


# -- optimizer updates --------------------------------------------------------------------
def _sgd_update(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                ) -> Callable[..., Any]:
    def sgd_update(param, grad, velocity=None, *, lr=None, momentum=0.0, nesterov=False,
                   weight_decay=0.0):
        buffers = (grad,) if velocity is None else (grad, velocity)
        if lr is None or not backend._update_applies(param, *buffers):
            return reference(param, grad, velocity, lr=lr, momentum=momentum,
                             nesterov=nesterov, weight_decay=weight_decay)
        t = param.dtype.type
        out = np.empty(param.shape, param.dtype)
        state = velocity if momentum != 0 else out  # a placeholder the loop never reads
        backend._run(backend._loops.sgd_update, param.size, _input(param, -1),
                     _input(grad, -1), state.reshape(-1), out.reshape(-1), t(lr),
                     momentum != 0, t(momentum), bool(nesterov), weight_decay != 0,
                     t(weight_decay))
        return out
    return sgd_update


def _adam_update(backend: NumbaBackend, op: Any, reference: Callable[..., Any]
                 ) -> Callable[..., Any]:
    def adam_update(param, grad, m, v, step, *, lr, beta1, beta2, eps, weight_decay,
                    decoupled):
        if not backend._update_applies(param, grad, m, v):
            return reference(param, grad, m, v, step, lr=lr, beta1=beta1, beta2=beta2,
                             eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        step = int(step)
        t = param.dtype.type
        out = np.empty(param.shape, param.dtype)
        backend._run(backend._loops.adam_update, param.size * _weight("adam_update"),
                     _input(param, -1), _input(grad, -1), m.reshape(-1), v.reshape(-1),
                     out.reshape(-1), t(beta1), t(1 - beta1), t(beta2), t(1 - beta2), t(eps),
                     t(weight_decay), weight_decay != 0 and not decoupled,
                     t(1 - lr * weight_decay), weight_decay != 0 and bool(decoupled),
                     t(math.sqrt(1 - beta2 ** step)), t(lr / (1 - beta1 ** step)))
        return out
    return adam_update


# The ops that have a Numba kernel, and the factory of each.
KERNEL_FACTORIES: dict[str, Callable[..., Callable[..., Any]]] = {
    "relu": _relu, "leaky_relu": _leaky_relu, "elu": _elu, "sigmoid": _sigmoid,
    "tanh": _tanh, "relu_backward": _relu_backward,
    "leaky_relu_backward": _leaky_relu_backward, "elu_backward": _elu_backward,
    "sigmoid_backward": _sigmoid_backward, "tanh_backward": _tanh_backward,
    "bias_activation": _bias_activation, "bias_activation_backward": _bias_activation_backward,
    "softmax": _softmax, "log_softmax": _log_softmax, "cross_entropy": _cross_entropy,
    "cross_entropy_backward": _cross_entropy_backward, "sgd_update": _sgd_update,
    "adam_update": _adam_update}


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

    At 4M exactly, the SGD update of a 2048x2048 weight (the large MLP step, batch
    512, 1024-2048-2048-10) runs in parallel: 8-16 ms against 2-3 ms serial alone on
    2 cores shared with other processes, yet the whole step, paired with the NumPy
    floor in the same conditions, measured 0.93-0.97x with it parallel and 0.99-1.01x
    serial (Python replay; compiled, both within 0.97-1.04x), so the default stays.

    >>> import gradkit as gk
    >>> if numba_missing_reason() is None:  # numba installed
    ...     y = gk.relu(gk.tensor([-1.0, 2.0], backend="numba"))
    ...     assert y.backend == "numba" and y.numpy().tolist() == [0.0, 2.0]
    """

    name = "numba"
    parallel_threshold = 1 << 22
    # The NumPy backend's kernels for the other ops; an in-place variant of the NumPy
    # backend's only where its op keeps the NumPy kernel it was written for.
    kernel_factories = {**NumpyBackend.kernel_factories, **KERNEL_FACTORIES}
    donating_kernel_factories = {
        name: entry for name, entry in NumpyBackend.donating_kernel_factories.items()
        if name not in KERNEL_FACTORIES}

    def __init__(self) -> None:
        super().__init__()
        self._missing = numba_missing_reason()
        self._parallel_lock = threading.Lock()
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
        if compiled is loop.parallel:
            with self._parallel_lock:
                return compiled(*args)
        return compiled(*args)

    def _elementwise(self, loop_name: str, reference: Callable[..., Any], arrays: tuple,
                     params: dict[str, Any], scalars: tuple = ()) -> np.ndarray:
        """Run the loop over same-shape, same-dtype float arrays, flattened; else the
        reference."""
        first = arrays[0]
        if not (_is_float(first) and first.size
                and all(_is_float(a) and a.shape == first.shape and a.dtype == first.dtype
                        for a in arrays[1:])):
            return reference(*arrays, **params)
        typed = tuple(_scalar_like(first, s) for s in scalars)
        if any(s is None for s in typed):
            return reference(*arrays, **params)
        out = np.empty(first.shape, first.dtype)
        flat = [_input(a, -1) for a in arrays]
        self._run(getattr(self._loops, loop_name), first.size * _weight(loop_name), *flat,
                  out.reshape(-1), *typed)
        return out

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

    def _rows(self, loop_name: str, reference: Callable[..., Any], x: Any,
              axis: Any) -> np.ndarray:
        """Run a loop over the rows of the last axis (softmax, log_softmax)."""
        if not (_is_float(x) and x.size and x.ndim >= 1 and type(axis) is int
                and axis in (-1, x.ndim - 1)):
            return reference(x, axis=axis)
        out = np.empty(x.shape, x.dtype)
        cols = x.shape[-1]
        self._run(getattr(self._loops, loop_name), x.size * _weight(loop_name),
                  _input(x, -1, cols),
                  out.reshape(-1, cols))
        return out

    @staticmethod
    def _labels(labels: Any, rows: int) -> np.ndarray | None:
        """Labels as contiguous int64 (rows,), or None when the kernel cannot take them."""
        if type(labels) is not np.ndarray or labels.dtype.kind not in "iu" \
                or labels.shape != (rows,):
            return None
        if labels.dtype != np.int64:  # the reference's astype(int64), wrap-around included
            labels = labels.astype(np.int64)
        return _input(labels)

    def _update_applies(self, param: Any, *others: Any) -> bool:
        """Same shape, same float dtype; state buffers (others) writable and contiguous."""
        return (_is_float(param) and param.size > 0 and
                all(_is_float(a) and a.shape == param.shape and a.dtype == param.dtype
                    for a in others) and
                all(a.flags.writeable and a.flags.c_contiguous for a in others[1:]))

    # -- whole-step compilation ------------------------------------------------------
    def runs_parallel(self, name: str, elements: int) -> bool:
        """Whether a kernel's loop over ``elements`` elements runs in parallel: its work
        (the elements, weighted ``TRANSCENDENTAL_WEIGHT`` where ``name``, an op or an
        activation, evaluates exp or tanh per element) reaches ``parallel_threshold``."""
        return elements * _weight(name) >= self.parallel_threshold

    def compile_step(self, calls: list[StepCall], inputs: list[int], results: list[int],
                     examples: dict[int, Any], live_values: list[Any]) -> CompiledStep:
        """One ``@numba.njit`` function running every call (see
        gradkit/backends/numba/lowering.py), each loop serial or parallel as the Python
        replay's kernel picks it (:meth:`runs_parallel`); not where a kernel of this
        backend was replaced (``register_kernel``): the lowerings repeat the built-in
        kernels. A step running a parallel loop takes the backend's parallel lock (see
        :meth:`_run`)."""
        reasons = [] if self._missing is None else [self._missing]
        for call in calls:
            if self.kernel_factories.get(call.op) is not type(self).kernel_factories.get(
                    call.op):
                reasons.append(f"call {call.index} {call.op}: its kernel was replaced on "
                               "this backend")
        if reasons:
            return CompiledStep(None, "", reasons, 0.0, ())
        from gradkit.backends.numba import lowering
        compiled = lowering.compile_step(calls, inputs, results, examples, live_values,
                                         self.runs_parallel)
        if compiled.function is None or not lowering.runs_parallel_loops(compiled.source):
            return compiled
        # Start Numba's thread pool: a step loaded from the plan cache calls the
        # parallel loops without the compilation that starts it (and crashes).
        import numba
        numba.get_num_threads()
        return CompiledStep(self._locked(compiled.function), compiled.source, compiled.reasons,
                            compiled.compile_seconds, compiled.live)

    def _locked(self, function: Callable) -> Callable:
        """``function`` run under the parallel lock (it launches parallel loops)."""
        lock = self._parallel_lock

        def locked(*args):
            with lock:
                return function(*args)
        return locked
