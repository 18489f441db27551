"""The Numba backend's compiled loops (imported on first use of the backend only).

Every loop here writes into an output array the caller allocates (or, for the
fused loops and the SGD update, over one of its inputs where ``out`` is None: see
"In place" below; gk.capture replays use that for an input read for the last time),
works on C-contiguous arrays of one float dtype (float32 or float64) and of any
number of dimensions (it flattens them itself, or views them as rows of the last
axis, so a caller passes its arrays as they are), and computes the same formula, in
the same order of operations, as the op's reference forward, so most results are
bit-identical to NumPy's. Row sums use NumPy's own pairwise summation order for
that reason. Transcendentals may differ in the last bit or two: exp and expm1 come
from the C library here and from NumPy's SIMD code there, and tanh is
computed here (see :func:`tanh_scalar`).

Each loop exists twice (:class:`Loop`): compiled with ``parallel=True`` (``prange``
spread over threads) and serial (below a size where starting threads costs more
than it saves). Both are cached on disk (``cache=True``: ``__pycache__`` beside this
file, or ``NUMBA_CACHE_DIR``), so a second process loads them instead of compiling.

Constants and scalar arguments are cast to the data's dtype with :func:`like`: a
bare ``1.0`` is a float64 to Numba and would silently compute float32 data in
float64. A caller may pass Python floats (cast here, as ``np.float32(value)`` casts
them) or scalars already of the data's dtype. The loops flatten and cast their
arguments one assignment per line: with ``parallel=True``, Numba 0.68 compiled ``g,
x, out, slope = g.reshape(-1), x.reshape(-1), out.reshape(-1), like(slope, g)`` into
a loop that wrote somewhere other than ``out``.

In place: ``out`` None makes a loop write over its input, rather than the caller
passing that input as ``out`` too: two array arguments may overlap, so LLVM checks
at run time and runs the unvectorized loop when they do (3x slower for a ReLU),
while one array written where it is read vectorizes (see :func:`output`).
"""
from __future__ import annotations

import math
import types
from typing import Callable, NamedTuple

import numba
import numpy as np
from numba import prange
from numba.core import types as nbtypes
from numba.extending import overload

# Activation codes shared by the fused kernels (see gradkit.ops.fused.ACTIVATIONS).
IDENTITY, RELU, LEAKY_RELU, ELU, SIGMOID, TANH = range(6)
ACTIVATION_CODES = {"identity": IDENTITY, "relu": RELU, "leaky_relu": LEAKY_RELU,
                    "elu": ELU, "sigmoid": SIGMOID, "tanh": TANH}

PAIRWISE_BLOCK = 128   # NumPy's PW_BLOCKSIZE: below it, 8 accumulators
REDUCE_CHUNK = 8192    # NumPy's ufunc buffer size: reductions are pairwise per chunk
ROWS_PER_TASK = 16     # rows of cross_entropy per parallel task (one scratch row each)

# IEEE semantics as in NumPy: x / 0 is inf or nan (Numba's default raises
# ZeroDivisionError), and no fast-math reassociation.
OPTIONS = {"error_model": "numpy", "fastmath": False}


class Loop(NamedTuple):
    """One loop compiled twice: ``parallel`` (prange over threads) and ``serial``."""
    parallel: Callable
    serial: Callable


def parallel_and_serial(loop: Callable) -> Loop:
    """Compile ``loop`` as a parallel and as a serial kernel, both cached on disk.

    The serial one is a copy of the function under its own qualified name: Numba's
    disk cache keys entries by qualified name, bytecode and signature, not by the
    ``parallel`` flag, so two compilations of one function would share cache entries
    (a fresh process could load the serial machine code for the parallel loop).
    """
    serial = types.FunctionType(loop.__code__, loop.__globals__, loop.__name__ + "_serial",
                                loop.__defaults__, loop.__closure__)
    serial.__qualname__ = loop.__qualname__ + "_serial"
    serial.__doc__ = loop.__doc__
    return Loop(numba.njit(parallel=True, cache=True, **OPTIONS)(loop),
                numba.njit(cache=True, nogil=True, **OPTIONS)(serial))


# -- scalar helpers (inlined by LLVM into the loops) -----------------------------------

def like(value, array):
    """``value`` as a scalar of ``array``'s dtype (inside compiled code only)."""
    raise NotImplementedError("like() runs inside Numba-compiled code only")


@overload(like, jit_options=OPTIONS)
def _like(value, array):
    dtype = array.dtype if isinstance(array, nbtypes.Array) else array

    def impl(value, array):
        return dtype(value)
    return impl


def output(out, array):
    """Where a loop writes: ``out`` (viewed in ``array``'s shape), or ``array`` itself
    where ``out`` is None (inside compiled code only; chosen when compiling)."""
    raise NotImplementedError("output() runs inside Numba-compiled code only")


# inline="always": Numba's parallel compilation must see that the result is ``out`` or
# ``array`` (a call's result it takes for a new array, and drops a loop writing only it)
@overload(output, inline="always", jit_options=OPTIONS)
def _output(out, array):
    if isinstance(out, nbtypes.NoneType):
        return lambda out, array: array
    return lambda out, array: out.reshape(array.shape)


def last_axis_length(array):
    """``array.shape[-1]``, or 1 for a 0-d array (inside compiled code only)."""
    raise NotImplementedError("last_axis_length() runs inside Numba-compiled code only")


@overload(last_axis_length, jit_options=OPTIONS)
def _last_axis_length(array):
    if array.ndim == 0:
        return lambda array: 1
    return lambda array: array.shape[-1]


@numba.njit(**OPTIONS)
def _relu(v, zero):
    # np.maximum(v, 0): NaN propagates and -0.0 gives +0.0, as NumPy's loops do.
    return v if v > zero or v != v else zero


@numba.njit(**OPTIONS)
def _leaky_relu(v, slope):
    return v if v > 0 else v * slope


@numba.njit(**OPTIONS)
def _elu(v, alpha, zero):
    if v > 0:
        return v
    return alpha * math.expm1(v if v < zero or v != v else zero)  # expm1(minimum(v, 0))


@numba.njit(**OPTIONS)
def _sigmoid(v, one):
    e = math.exp(-abs(v))
    return one / (one + e) if v >= 0 else e / (one + e)


# tanh as in the Cephes library (S. L. Moshier): a rational approximation below
# |v| = 0.625, else 1 - 2 / (exp(2|v|) + 1). Relative error <= 3e-16 (float64) and
# <= 1.5e-7 (float32), as accurate as NumPy's tanh; and exp is several times faster
# than the C library's tanh (tanhf: ~20 ns per element; NumPy's own is SIMD).
_TANH32 = tuple(np.float32(c) for c in (-5.70498872745e-3, 2.06390887954e-2,
                                        -5.37397155531e-2, 1.33314422036e-1,
                                        -3.33332819422e-1))
_TANH64_P = (-9.64399179425052238628e-1, -9.92877231001918586564e1,
             -1.61468768441708447952e3)
_TANH64_Q = (1.12811678491632931402e2, 2.23548839060100448583e3,
             4.84406305325125486048e3)


def tanh_scalar(v):
    """``tanh(v)`` of a float32 or float64 scalar (inside compiled code only)."""
    raise NotImplementedError("tanh_scalar() runs inside Numba-compiled code only")


def _tanh_float32(v):
    a = abs(v)
    if a >= np.float32(0.625):
        r = np.float32(1) - np.float32(2) / (math.exp(a + a) + np.float32(1))
        return r if v > 0 else -r
    if v == 0:
        return v  # keeps the sign of -0.0
    t0, t1, t2, t3, t4 = _TANH32
    z = v * v
    return ((((t0 * z + t1) * z + t2) * z + t3) * z + t4) * z * v + v


def _tanh_float64(v):
    a = abs(v)
    if a >= 0.625:
        r = 1.0 - 2.0 / (math.exp(a + a) + 1.0)
        return r if v > 0 else -r
    if v == 0:
        return v
    p0, p1, p2 = _TANH64_P
    q0, q1, q2 = _TANH64_Q
    s = v * v
    return v + v * s * (((p0 * s + p1) * s + p2) / (((s + q0) * s + q1) * s + q2))


@overload(tanh_scalar, jit_options=OPTIONS)
def _tanh_scalar(v):
    return _tanh_float32 if v == nbtypes.float32 else _tanh_float64


@numba.njit(**OPTIONS)
def _max_nan(row, start, n):
    """``np.max`` of ``row[start:start + n]`` (n >= 1): NaN if any element is NaN."""
    m = row[start]
    for j in range(start + 1, start + n):
        v = row[j]
        if v > m or v != v:
            m = v
        if m != m:
            break
    return m


@numba.njit(**OPTIONS)
def _pairwise_block(a, start, n):
    """NumPy's pairwise sum of ``a[start:start + n]``, in its exact order of additions."""
    if n < 8:
        res = like(0, a)
        for i in range(start, start + n):
            res += a[i]
        return res
    if n <= PAIRWISE_BLOCK:
        r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
        r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
        end8 = start + n - n % 8
        for i in range(start + 8, end8, 8):
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(end8, start + n):
            res += a[i]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_block(a, start, n2) + _pairwise_block(a, start + n2, n - n2)


@numba.njit(**OPTIONS)
def _sum(a, start, n):
    """``np.sum(a[start:start + n])`` as NumPy computes it: pairwise within buffer chunks."""
    total = like(0, a)
    for lo in range(start, start + n, REDUCE_CHUNK):
        total += _pairwise_block(a, lo, min(REDUCE_CHUNK, start + n - lo))
    return total


# -- activations, forward: x -> out, element by element --------------------------------

@parallel_and_serial
def relu(x, out):
    x = x.reshape(-1)
    out = out.reshape(-1)
    zero = like(0, x)
    for i in prange(x.size):
        out[i] = _relu(x[i], zero)


@parallel_and_serial
def leaky_relu(x, out, slope):
    x = x.reshape(-1)
    out = out.reshape(-1)
    slope = like(slope, x)
    for i in prange(x.size):
        out[i] = _leaky_relu(x[i], slope)


@parallel_and_serial
def elu(x, out, alpha):
    x = x.reshape(-1)
    out = out.reshape(-1)
    alpha = like(alpha, x)
    zero = like(0, x)
    for i in prange(x.size):
        out[i] = _elu(x[i], alpha, zero)


@parallel_and_serial
def sigmoid(x, out):
    x = x.reshape(-1)
    out = out.reshape(-1)
    one = like(1, x)
    for i in prange(x.size):
        out[i] = _sigmoid(x[i], one)


# -- activations, backward: (g, x or y) -> out, element by element ----------------------

@parallel_and_serial
def relu_backward(g, x, out):
    g = g.reshape(-1)
    x = x.reshape(-1)
    out = out.reshape(-1)
    one, zero = like(1, g), like(0, g)
    for i in prange(g.size):
        out[i] = g[i] * (one if x[i] > 0 else zero)


@parallel_and_serial
def leaky_relu_backward(g, x, out, slope):
    g = g.reshape(-1)
    x = x.reshape(-1)
    out = out.reshape(-1)
    slope = like(slope, g)
    for i in prange(g.size):
        out[i] = g[i] if x[i] > 0 else g[i] * slope


@parallel_and_serial
def elu_backward(g, x, out, alpha):
    g = g.reshape(-1)
    x = x.reshape(-1)
    out = out.reshape(-1)
    alpha = like(alpha, g)
    zero = like(0, g)
    for i in prange(g.size):
        v = x[i]
        if v > 0:
            out[i] = g[i]
        else:  # g * (alpha * exp(minimum(x, 0)))
            out[i] = g[i] * (alpha * math.exp(v if v < zero or v != v else zero))


@parallel_and_serial
def sigmoid_backward(g, y, out):
    g = g.reshape(-1)
    y = y.reshape(-1)
    out = out.reshape(-1)
    one = like(1, g)
    for i in prange(g.size):
        out[i] = g[i] * y[i] * (one - y[i])


@parallel_and_serial
def tanh_backward(g, y, out):
    g = g.reshape(-1)
    y = y.reshape(-1)
    out = out.reshape(-1)
    one = like(1, g)
    for i in prange(g.size):
        out[i] = g[i] * (one - y[i] * y[i])


# -- fused bias + activation ----------------------------------------------------------

@parallel_and_serial
def bias_activation(x, bias, out, kind, slope, alpha):
    """``out = act(x + bias)`` over the rows of ``x``'s last axis, as long as ``bias``;
    the branch is per row. ``out`` None: into ``x``."""
    cols = bias.size
    x = x.reshape(-1, cols)
    result = output(out, x)
    rows = x.shape[0]
    slope = like(slope, x)
    alpha = like(alpha, x)
    one, zero = like(1, x), like(0, x)
    for i in prange(rows):
        if kind == RELU:
            for j in range(cols):
                result[i, j] = _relu(x[i, j] + bias[j], zero)
        elif kind == LEAKY_RELU:
            for j in range(cols):
                result[i, j] = _leaky_relu(x[i, j] + bias[j], slope)
        elif kind == ELU:
            for j in range(cols):
                result[i, j] = _elu(x[i, j] + bias[j], alpha, zero)
        elif kind == SIGMOID:
            for j in range(cols):
                result[i, j] = _sigmoid(x[i, j] + bias[j], one)
        elif kind == TANH:
            for j in range(cols):
                result[i, j] = tanh_scalar(x[i, j] + bias[j])
        else:  # IDENTITY
            for j in range(cols):
                result[i, j] = x[i, j] + bias[j]


@parallel_and_serial
def bias_activation_backward(g, y, out, kind, slope, alpha):
    """``out = g * act'(z)`` from the output ``y``, over the rows of the last axis.
    ``out`` None: into ``g``."""
    cols = last_axis_length(g)
    g = g.reshape(-1, cols)
    y = y.reshape(-1, cols)
    result = output(out, g)
    rows = g.shape[0]
    slope = like(slope, g)
    alpha = like(alpha, g)
    one, zero = like(1, g), like(0, g)
    for i in prange(rows):
        if kind == RELU:
            for j in range(cols):
                result[i, j] = g[i, j] * (one if y[i, j] > 0 else zero)
        elif kind == LEAKY_RELU:
            for j in range(cols):
                result[i, j] = g[i, j] * (one if y[i, j] > 0 else slope)
        elif kind == ELU:
            for j in range(cols):
                v = y[i, j]
                result[i, j] = g[i, j] * (one if v > 0 else v + alpha)
        elif kind == SIGMOID:
            for j in range(cols):
                v = y[i, j]
                result[i, j] = g[i, j] * (v * (one - v))
        elif kind == TANH:
            for j in range(cols):
                v = y[i, j]
                result[i, j] = g[i, j] * (one - v * v)
        else:  # IDENTITY
            for j in range(cols):
                result[i, j] = g[i, j] * one


# -- softmax family: rows of the last axis (of length >= 1) -------------------------------

@numba.njit(**OPTIONS)
def _finite_shift(x, i, cols):
    """The row's max, or 0 where it is not finite (as the reference's _shifted)."""
    m = _max_nan(x[i], 0, cols)
    return m if math.isfinite(m) else like(0, x)


@parallel_and_serial
def softmax(x, out):
    cols = x.shape[-1]
    x = x.reshape(-1, cols)
    out = out.reshape(-1, cols)
    rows = x.shape[0]
    for i in prange(rows):
        shift = _finite_shift(x, i, cols)
        for j in range(cols):
            out[i, j] = math.exp(x[i, j] - shift)
        total = _sum(out[i], 0, cols)
        for j in range(cols):
            out[i, j] = out[i, j] / total


@parallel_and_serial
def log_softmax(x, out):
    cols = x.shape[-1]
    x = x.reshape(-1, cols)
    out = out.reshape(-1, cols)
    rows = x.shape[0]
    for i in prange(rows):
        shift = _finite_shift(x, i, cols)
        for j in range(cols):
            out[i, j] = math.exp(x[i, j] - shift)
        log_total = math.log(_sum(out[i], 0, cols))
        for j in range(cols):
            out[i, j] = (x[i, j] - shift) - log_total


@parallel_and_serial
def cross_entropy(logits, labels, losses):
    """Per-row losses ``log(sum(exp(shifted))) - shifted[label]``; returns their mean.

    ``logits`` (rows, cols), ``labels`` (rows,) integers; ``losses`` (rows,) of the
    logits' dtype receives the per-row values. A label outside [0, cols) makes it
    return NaN at once (the caller tells that NaN from one of the data's).
    """
    rows, cols = logits.shape
    for i in range(rows):
        if labels[i] < 0 or labels[i] >= cols:
            return like(np.nan, logits)
    tasks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for t in prange(tasks):
        scratch = np.empty(cols, logits.dtype)
        for i in range(t * ROWS_PER_TASK, min(rows, (t + 1) * ROWS_PER_TASK)):
            shift = _finite_shift(logits, i, cols)
            for j in range(cols):
                scratch[j] = math.exp(logits[i, j] - shift)
            log_total = math.log(_sum(scratch, 0, cols))
            losses[i] = log_total - (logits[i, labels[i]] - shift)
    return _sum(losses, 0, rows) / like(rows, logits)


@parallel_and_serial
def cross_entropy_backward(logits, labels, scale, out):
    """``out = (softmax(logits) - onehot(labels)) * scale`` (no finite guard on the max,
    as in the reference); a label outside [0, cols) gives no one-hot entry. ``out``
    None: into ``logits`` (each row is read before it is written)."""
    rows, cols = logits.shape
    result = output(out, logits)
    one = like(1, logits)
    scale = like(scale, logits)
    for i in prange(rows):
        shift = _max_nan(logits[i], 0, cols)
        for j in range(cols):
            result[i, j] = math.exp(logits[i, j] - shift)
        total = _sum(result[i], 0, cols)
        label = labels[i]
        for j in range(cols):
            p = result[i, j] / total
            result[i, j] = (p - one if j == label else p) * scale



# -- optimizer updates (one pass; state buffers updated in place) ----------------------
# The arrays are flattened here; the scalars arrive combined the way NumPy combines
# the reference's Python scalars (in float64, see the Numba backend's adam_update) and
# are cast to the data's dtype here, so results match the reference in float64 and
# float32. Each loop's flattening and casts stand one per line: unpacked together in a
# tuple assignment, Numba's parallel compilation dropped the loop's writes to ``out``.

@parallel_and_serial
def sgd_update(param, grad, velocity, out, lr, use_momentum, momentum, nesterov,
               use_decay, weight_decay):
    """``out = param - lr * step`` (see gk.sgd_update); ``out`` None: into ``grad``."""
    param = param.reshape(-1)
    grad = grad.reshape(-1)
    velocity = velocity.reshape(-1)
    result = output(out, grad)
    lr = like(lr, param)
    momentum = like(momentum, param)
    weight_decay = like(weight_decay, param)
    for i in prange(param.size):
        g = grad[i]
        if use_decay:
            g = g + weight_decay * param[i]
        if use_momentum:
            v = momentum * velocity[i] + g
            velocity[i] = v
            g = g + momentum * v if nesterov else v
        result[i] = param[i] - lr * g


@parallel_and_serial
def adam_update(param, grad, m, v, out, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                l2, use_l2, shrink, use_shrink, bias2_sqrt, step_size):
    param = param.reshape(-1)
    grad = grad.reshape(-1)
    m = m.reshape(-1)
    v = v.reshape(-1)
    out = out.reshape(-1)
    beta1 = like(beta1, param)
    one_minus_beta1 = like(one_minus_beta1, param)
    beta2 = like(beta2, param)
    one_minus_beta2 = like(one_minus_beta2, param)
    eps = like(eps, param)
    l2 = like(l2, param)
    shrink = like(shrink, param)
    bias2_sqrt = like(bias2_sqrt, param)
    step_size = like(step_size, param)
    for i in prange(param.size):
        g = grad[i]
        if use_l2:
            g = g + l2 * param[i]
        m_new = beta1 * m[i] + one_minus_beta1 * g
        v_new = beta2 * v[i] + one_minus_beta2 * (g * g)
        m[i] = m_new
        v[i] = v_new
        p = param[i]
        if use_shrink:
            p = p * shrink
        out[i] = p - step_size * (m_new / (math.sqrt(v_new) / bias2_sqrt + eps))
