"""njit-callable forms of the Numba backend's kernels, for whole compiled steps.

A captured step compiled into one ``@numba.njit`` function (see ``lowering.py``)
calls these instead of the Python kernel wrappers: each runs the same loop
(``kernels.py``) the wrapper runs, with its scalars cast the way the wrapper casts
them, so results are bit-identical to the Python replay, and writes its result into a
new array or, where the step passes one as ``out``, into a view of the step's arena
(lowering.plan_arena). A kernel that runs a loop exists twice
(:func:`serial_and_parallel`), as the loop does: the lowering picks the variant the
Python kernel would pick for the recorded arrays.
Matmul is ``np.dot`` (SciPy's BLAS inside Numba) for small products and NumPy's own
matmul for those large enough for BLAS threads (:func:`matmul_numpy` says why); where
the Python replay runs a NumPy function no njit code is known to reproduce bit for bit
(tanh, maximum), the compiled step calls it in object mode (:func:`tanh_numpy`).
"""
from __future__ import annotations

import math
import types
from typing import Callable

import numba
import numpy as np

from gradkit.backends.numba import kernels as loops
from gradkit.backends.numba.kernels import OPTIONS, Loop, like

_njit = numba.njit(cache=True, **OPTIONS)


def run_loop(*args):
    """The loop a step kernel runs (bound per variant by :func:`serial_and_parallel`)."""
    raise NotImplementedError("run_loop is bound in each variant of a step kernel")


def serial_and_parallel(loop: Loop) -> Callable[[Callable], Loop]:
    """Decorator: the step kernel compiled twice, its ``run_loop`` calling
    ``loop.serial`` in the ``serial`` variant and ``loop.parallel`` in the ``parallel``
    one. Both loops compute each element the same way (a parallel loop only spreads
    its independent iterations over threads), so the variants' results are equal.

    Each variant is a copy of the function with its own globals (``run_loop`` bound)
    and its own qualified name (Numba's disk cache keys entries by qualified name, as
    in :func:`gradkit.backends.numba.kernels.parallel_and_serial`). The globals are a
    snapshot taken here: a step kernel uses only names imported above.
    """
    def variants(kernel: Callable) -> Loop:
        def variant(suffix: str, compiled: Callable) -> Callable:
            copy = types.FunctionType(kernel.__code__,
                                      {**kernel.__globals__, "run_loop": compiled},
                                      kernel.__name__ + suffix, kernel.__defaults__,
                                      kernel.__closure__)
            copy.__qualname__ = kernel.__qualname__ + suffix
            copy.__doc__ = kernel.__doc__
            return _njit(copy)
        return Loop(parallel=variant("_parallel", loop.parallel),
                    serial=variant("", loop.serial))
    return variants


@_njit
def matmul(a, b, out=None):
    """``a @ b`` of 2-D arrays by ``np.dot``: SciPy's BLAS gemm inside Numba (the same
    OpenBLAS kernels as NumPy's matmul here, checked by tests/test_capture_compile.py)."""
    if out is None:
        return np.dot(a, b)
    return np.dot(a, b, out)


@_njit
def matmul_numpy(a, b, out=None):
    """``a @ b`` of 2-D arrays by NumPy's matmul itself (its BLAS), called from compiled
    code in object mode (about 2 us more than :func:`matmul`).

    For a gemm large enough for OpenBLAS to run on its threads: NumPy's BLAS and
    SciPy's are two libraries with a thread pool each, whose idle threads spin a while
    before sleeping; a program alternating between them on few cores (a compiled step
    between the user's NumPy matmuls) has each pool's spinning threads slow the other
    one's gemm. Here they stay in NumPy's pool, which the Python replay uses too."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    with numba.objmode():
        np.matmul(a, b, out=out)
    return out


@_njit
def add_bias(out, bias):
    """``out += bias`` row by row, in place (the linear reference's ``out += bias``)."""
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] += bias[j]
    return out


@_njit
def sum_rows(x, out=None):
    """``np.add.reduce(x, axis=0)`` of a 2-D array: the reduction's identity (0) plus
    the first row, then each next row added in order (NumPy's order for a reduction
    over the outer axis; the identity makes a column of -0.0 sum to 0.0, as there)."""
    rows, cols = x.shape
    if out is None:
        out = np.empty(cols, x.dtype)
    zero = like(0, x)
    for j in range(cols):
        out[j] = zero + x[0, j]
    for i in range(1, rows):
        for j in range(cols):
            out[j] += x[i, j]
    return out


@serial_and_parallel(loops.bias_activation)
def bias_activation(x, bias, kind, slope, alpha, out=None):
    if out is None:
        out = np.empty(x.shape, x.dtype)
    run_loop(x, bias, out, kind, like(slope, x), like(alpha, x))
    return out


@serial_and_parallel(loops.bias_activation_backward)
def bias_activation_backward(g, y, kind, slope, alpha, out=None):
    if out is None:
        out = np.empty(g.shape, g.dtype)
    run_loop(g, y, out, kind, like(slope, g), like(alpha, g))
    return out


# Elements of g per block of rows in bias_activation_backward_and_sum_over_g: a block
# of g and one of y (32 KiB each in float32) stay in cache between the loop and the
# sum (at the large benchmark size, 512x2048, the pair of calls took 0.51-0.52 ms and
# the fused one 0.38-0.41 ms; at the small and medium sizes they are within noise)
SUMMED_BLOCK_ELEMENTS = 8192


@_njit
def bias_activation_backward_and_sum_over_g(g, y, kind, slope, alpha, out=None):
    """``bias_activation_backward_over_g.serial`` then ``sum_rows`` of its result (the
    bias's gradient, into ``out`` where given), in one pass: the serial loop runs on a
    block of rows at a time, and the block is added to the sums while still in cache.
    Each element and each sum sees the same operations in the same order as the two
    calls, so the bits are theirs. Returns (the gradient over g, the sums)."""
    rows, cols = g.shape
    if out is None:
        out = np.empty(cols, g.dtype)
    block = max(1, SUMMED_BLOCK_ELEMENTS // cols)
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        loops.bias_activation_backward.serial(g[start:stop], y[start:stop], None, kind,
                                              like(slope, g), like(alpha, g))
        first = start
        if start == 0:  # as sum_rows: the identity plus the first row
            for j in range(cols):
                out[j] = like(0, g) + g[0, j]
            first = 1
        for i in range(first, stop):
            for j in range(cols):
                out[j] += g[i, j]
    return g, out


@serial_and_parallel(loops.cross_entropy)
def cross_entropy(logits, labels):
    """The mean loss as a 0-d array; labels outside [0, classes) raise (the Python
    replay checks them first and says so in gradkit's words)."""
    rows, cols = logits.shape
    if labels.min() < 0 or labels.max() >= cols:
        raise ValueError("cross_entropy: a label is outside [0, classes)")
    losses = np.empty(rows, logits.dtype)
    out = np.empty((), logits.dtype)
    out[()] = run_loop(logits, labels, losses)
    return out


@serial_and_parallel(loops.cross_entropy_backward)
def cross_entropy_backward(g, logits, labels, out=None):
    rows = logits.shape[0]
    scale = g[()] / like(rows, g)  # the wrapper's (g / rows)[()], in g's dtype
    if out is None:
        out = np.empty(logits.shape, logits.dtype)
    run_loop(logits, labels, scale, out)
    return out


@serial_and_parallel(loops.sgd_update)
def sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    out = np.empty(param.shape, param.dtype)
    run_loop(
        np.ascontiguousarray(param).reshape(-1), np.ascontiguousarray(grad).reshape(-1),
        velocity.reshape(-1), out.reshape(-1), like(lr, param), momentum != 0,
        like(momentum, param), nesterov, weight_decay != 0, like(weight_decay, param))
    return out


@serial_and_parallel(loops.sgd_update)
def sgd_update_plain(param, grad, lr, momentum, nesterov, weight_decay):
    """SGD without a velocity buffer (momentum 0): ``out`` stands in for it, unread."""
    out = np.empty(param.shape, param.dtype)
    flat = out.reshape(-1)
    run_loop(
        np.ascontiguousarray(param).reshape(-1), np.ascontiguousarray(grad).reshape(-1),
        flat, flat, like(lr, param), momentum != 0, like(momentum, param), nesterov,
        weight_decay != 0, like(weight_decay, param))
    return out


# -- the activations and their backward ops: each its loop, into a new array ------------
# One template per argument list, compiled once per loop under the loop's name (Numba's
# disk cache tells functions apart by qualified name, as in serial_and_parallel).

def _unary(x, out=None):
    if out is None:
        out = np.empty(x.shape, x.dtype)
    run_loop(x, out)
    return out


def _unary_param(x, param, out=None):
    if out is None:
        out = np.empty(x.shape, x.dtype)
    run_loop(x, out, param)
    return out


def _binary(g, x, out=None):
    if out is None:
        out = np.empty(g.shape, g.dtype)
    run_loop(g, x, out)
    return out


def _binary_param(g, x, param, out=None):
    if out is None:
        out = np.empty(g.shape, g.dtype)
    run_loop(g, x, out, param)
    return out


def _loop_kernel(name: str, template: Callable) -> Loop:
    """The step kernel running loop ``name`` of kernels.py: ``template`` named ``name``."""
    named = types.FunctionType(template.__code__, template.__globals__, name,
                               template.__defaults__, template.__closure__)
    named.__qualname__ = name
    return serial_and_parallel(getattr(loops, name))(named)


relu, sigmoid = (_loop_kernel(name, _unary) for name in ("relu", "sigmoid"))
leaky_relu, elu = (_loop_kernel(name, _unary_param) for name in ("leaky_relu", "elu"))
relu_backward, sigmoid_backward, tanh_backward = (
    _loop_kernel(name, _binary) for name in ("relu_backward", "sigmoid_backward",
                                             "tanh_backward"))
leaky_relu_backward, elu_backward = (
    _loop_kernel(name, _binary_param) for name in ("leaky_relu_backward", "elu_backward"))


# -- NumPy's own elementwise functions, called in object mode ------------------------------
# Where the Python replay runs a NumPy function whose bits no njit code is known to
# reproduce (its SIMD tanh; maximum's choice between -0.0 and 0.0, which depends on
# NumPy's SIMD path), the compiled step calls that function (about 2 us a call).

@_njit
def tanh_numpy(x, out=None):
    """``np.tanh(x)`` (the Numba backend runs NumPy's tanh: see its docstring)."""
    if out is None:
        out = np.empty(x.shape, x.dtype)
    with numba.objmode():
        np.tanh(x, out=out)
    return out


@_njit
def relu_numpy(x, out=None):
    """``np.maximum(x, 0)``: relu's reference, which the Numba backend runs below
    ``numpy_elementwise_below["relu"]``."""
    if out is None:
        out = np.empty(x.shape, x.dtype)
    with numba.objmode():
        np.maximum(x, 0, out=out)
    return out


@_njit
def maximum_numpy(a, b, shape, out=None):
    """``np.maximum(a, b)`` of one dtype, broadcast to ``shape``."""
    if out is None:
        out = np.empty(shape, a.dtype)
    with numba.objmode():
        np.maximum(a, b, out=out)
    return out


@_njit
def minimum_numpy(a, b, shape, out=None):
    """``np.minimum(a, b)`` of one dtype, broadcast to ``shape``."""
    if out is None:
        out = np.empty(shape, a.dtype)
    with numba.objmode():
        np.minimum(a, b, out=out)
    return out


# -- the same kernels writing their result over a dying input --------------------------
# Where the input is an intermediate of the step read for the last time (lowering.py
# decides), as the Python replay's donating kernels do: the loop gets ``out=None`` and
# writes over the input (kernels.output), which keeps it vectorized; the values are the
# allocating kernel's.

@serial_and_parallel(loops.bias_activation)
def bias_activation_over_x(x, bias, kind, slope, alpha):
    run_loop(x, bias, None, kind, like(slope, x), like(alpha, x))
    return x


@serial_and_parallel(loops.bias_activation_backward)
def bias_activation_backward_over_g(g, y, kind, slope, alpha):
    run_loop(g, y, None, kind, like(slope, g), like(alpha, g))
    return g


@serial_and_parallel(loops.cross_entropy_backward)
def cross_entropy_backward_over_logits(g, logits, labels):
    scale = g[()] / like(logits.shape[0], g)
    run_loop(logits, labels, scale, None)
    return logits


@serial_and_parallel(loops.sgd_update)
def sgd_update_over_grad(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    run_loop(
        np.ascontiguousarray(param).reshape(-1), grad.reshape(-1), velocity.reshape(-1),
        None, like(lr, param), momentum != 0, like(momentum, param), nesterov,
        weight_decay != 0, like(weight_decay, param))
    return grad


@serial_and_parallel(loops.sgd_update)
def sgd_update_plain_over_grad(param, grad, lr, momentum, nesterov, weight_decay):
    """Without a velocity buffer (momentum 0): ``grad`` stands in for it, unread."""
    flat = grad.reshape(-1)
    run_loop(
        np.ascontiguousarray(param).reshape(-1), flat, flat, None, like(lr, param),
        momentum != 0, like(momentum, param), nesterov, weight_decay != 0,
        like(weight_decay, param))
    return grad


@serial_and_parallel(loops.adam_update)
def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """The wrapper's scalars, in float64 as Python computes them (``beta ** step`` is
    C's pow, as CPython's float power), then cast to the data's dtype."""
    count = float(step[()])
    out = np.empty(param.shape, param.dtype)
    run_loop(
        np.ascontiguousarray(param).reshape(-1), np.ascontiguousarray(grad).reshape(-1),
        m.reshape(-1), v.reshape(-1), out.reshape(-1), like(beta1, param),
        like(1.0 - beta1, param), like(beta2, param), like(1.0 - beta2, param),
        like(eps, param), like(weight_decay, param), weight_decay != 0 and not decoupled,
        like(1.0 - lr * weight_decay, param), weight_decay != 0 and decoupled,
        like(math.sqrt(1.0 - math.pow(beta2, count)), param),
        like(lr / (1.0 - math.pow(beta1, count)), param))
    return out


# -- the ops a training step uses to count its correct predictions ------------------------

@_njit
def argmax_rows(x):
    """``np.argmax(x, axis=1)`` of a 2-D array: the first largest entry of each row, or
    the row's first NaN (NumPy's rule)."""
    rows, cols = x.shape
    out = np.empty(rows, np.int64)
    for i in range(rows):
        best, value = 0, x[i, 0]
        if not np.isnan(value):
            for j in range(1, cols):
                candidate = x[i, j]
                if np.isnan(candidate):
                    best = j
                    break
                if candidate > value:
                    best, value = j, candidate
        out[i] = best
    return out


@_njit
def _pairwise_block(a, start, n):
    """NumPy's pairwise sum of a block of at most 128 elements ``a[start:start + n]``
    (numpy/_core/src/umath/loops_utils.h: a plain loop below 8, else 8 accumulators)."""
    if n < 8:
        res = a.dtype.type(0)
        for i in range(start, start + n):
            res += a[i]
        return res
    r = a[start:start + 8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[start + i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[start + i]
        i += 1
    return res


@_njit
def _pairwise_sum(a):
    """NumPy's pairwise sum of ``a``: blocks of at most 128 elements, halves above
    (rounded down to a multiple of 8) summed left + right. (An explicit stack, not
    recursion: Numba's disk cache cannot link a recursive function into its callers,
    which is why this does not call kernels._pairwise_block, the recursive form the
    Python kernels use: a warm plan cache then fails to load.)"""
    starts, sizes = np.empty(128, np.int64), np.empty(128, np.int64)
    combine = np.zeros(128, np.bool_)
    values = np.empty(128, a.dtype)
    top, count = 1, 0
    starts[0], sizes[0] = 0, a.size
    while top > 0:
        top -= 1
        start, n = starts[top], sizes[top]
        if n <= 128:
            values[count] = _pairwise_block(a, start, n)
            count += 1
        elif combine[top]:
            count -= 1
            values[count - 1] = values[count - 1] + values[count]
        else:
            half = n // 2
            half -= half % 8
            combine[top] = True  # revisited after both halves: left + right
            starts[top + 1], sizes[top + 1], combine[top + 1] = start + half, n - half, False
            starts[top + 2], sizes[top + 2], combine[top + 2] = start, half, False
            top += 3
    return values[0]


@_njit
def sum_vector(x):
    """``np.sum(x)`` of a contiguous 1-D float array as a 0-d array: the reduction's
    identity (0) plus NumPy's pairwise sum, so -0.0 sums to 0.0 as in NumPy."""
    out = np.empty((), x.dtype)
    out[()] = x.dtype.type(0) + _pairwise_sum(x)
    return out


@_njit
def mean_all(x):
    """The NumPy backend's mean of a whole C-contiguous float array, as a 0-d array:
    ``np.add.reduce(x, axis=None) / x.size`` (NumPy's pairwise sum over the flat
    array, divided in x's dtype by the count, exact there up to 2**24)."""
    out = sum_vector(x.reshape(-1))
    out[()] = out[()] / like(x.size, x)
    return out


@_njit
def mean_backward_all(g, shape, out=None):
    """The NumPy backend's mean_backward of a 0-d ``g`` over a whole array of ``shape``:
    ``g / count`` (in g's dtype) in every element."""
    if out is None:
        out = np.empty(shape, g.dtype)
    out.fill(g[()] / like(out.size, g))
    return out


@_njit
def scalar_array(value, like):
    """``value`` as a 0-d array of ``like``'s dtype: the result of arithmetic on 0-d
    arrays (Numba computes small integers in int64; cast back, they wrap as NumPy's)."""
    out = np.empty((), like.dtype)
    out[()] = value
    return out


@_njit
def as_float64(x):
    """``x.astype(np.float64)`` of a 0-d or 1-D array (bool, integer or float)."""
    out = np.empty(x.shape, np.float64)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        flat_out[i] = np.float64(flat_in[i])
    return out


@_njit
def scalar_to_vector(x):
    """``np.expand_dims(x, 0)`` of a 0-d array: a (1,) array (a copy, not a view)."""
    out = np.empty(1, x.dtype)
    out[0] = x[()]
    return out
