"""njit-callable forms of the Numba backend's kernels, for whole compiled steps.

A captured step compiled into one ``@numba.njit`` function (see ``lowering.py``)
calls these instead of the Python kernel wrappers: each allocates its result and runs
the same serial loop (``kernels.py``) the wrapper runs, with its scalars cast the way
the wrapper casts them, so results are bit-identical to the Python replay. Matmul is
``np.dot`` (SciPy's BLAS inside Numba; the same OpenBLAS kernels as NumPy's matmul
here, checked by tests/test_capture_compile.py).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from gradkit.backends.numba import kernels as loops
from gradkit.backends.numba.kernels import OPTIONS, like

_njit = numba.njit(cache=True, **OPTIONS)


@_njit
def matmul(a, b):
    """``a @ b`` of 2-D arrays (BLAS gemm, as NumPy's matmul)."""
    return np.dot(a, b)


@_njit
def linear(x, weight, bias):
    """``x @ weight`` then ``+= bias`` row by row (the reference's ``out += bias``)."""
    out = np.dot(x, weight)
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] += bias[j]
    return out


@_njit
def sum_rows(x):
    """``np.add.reduce(x, axis=0)`` of a 2-D array: the first row, then each next row
    added in order (NumPy's order for a reduction over the outer axis)."""
    rows, cols = x.shape
    out = np.empty(cols, x.dtype)
    for j in range(cols):
        out[j] = x[0, j]
    for i in range(1, rows):
        for j in range(cols):
            out[j] += x[i, j]
    return out


@_njit
def add_scalars(a, b):
    """``a + b`` of two 0-d arrays of one dtype, as a 0-d array."""
    out = np.empty((), a.dtype)
    out[()] = a[()] + b[()]
    return out


@_njit
def bias_activation(x, bias, kind, slope, alpha):
    out = np.empty(x.shape, x.dtype)
    loops.bias_activation.serial(x, bias, out, kind, like(slope, x), like(alpha, x))
    return out


@_njit
def bias_activation_backward(g, y, kind, slope, alpha):
    out = np.empty(g.shape, g.dtype)
    loops.bias_activation_backward.serial(g, y, out, kind, like(slope, g), like(alpha, g))
    return out


@_njit
def cross_entropy(logits, labels):
    """The mean loss as a 0-d array; labels outside [0, classes) raise (the Python
    replay checks them first and says so in gradkit's words)."""
    rows, cols = logits.shape
    if labels.min() < 0 or labels.max() >= cols:
        raise ValueError("cross_entropy: a label is outside [0, classes)")
    losses = np.empty(rows, logits.dtype)
    out = np.empty((), logits.dtype)
    out[()] = loops.cross_entropy.serial(logits, labels, losses)
    return out


@_njit
def cross_entropy_backward(g, logits, labels):
    rows = logits.shape[0]
    scale = g[()] / like(rows, g)  # the wrapper's (g / rows)[()], in g's dtype
    out = np.empty(logits.shape, logits.dtype)
    loops.cross_entropy_backward.serial(logits, labels, scale, out)
    return out


@_njit
def sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    out = np.empty(param.shape, param.dtype)
    loops.sgd_update.serial(
        np.ascontiguousarray(param).reshape(-1), np.ascontiguousarray(grad).reshape(-1),
        velocity.reshape(-1), out.reshape(-1), like(lr, param), momentum != 0,
        like(momentum, param), nesterov, weight_decay != 0, like(weight_decay, param))
    return out


@_njit
def sgd_update_plain(param, grad, lr, momentum, nesterov, weight_decay):
    """SGD without a velocity buffer (momentum 0): ``out`` stands in for it, unread."""
    out = np.empty(param.shape, param.dtype)
    flat = out.reshape(-1)
    loops.sgd_update.serial(
        np.ascontiguousarray(param).reshape(-1), np.ascontiguousarray(grad).reshape(-1),
        flat, flat, like(lr, param), momentum != 0, like(momentum, param), nesterov,
        weight_decay != 0, like(weight_decay, param))
    return out


@_njit
def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """The wrapper's scalars, in float64 as Python computes them (``beta ** step`` is
    C's pow, as CPython's float power), then cast to the data's dtype."""
    count = float(step[()])
    out = np.empty(param.shape, param.dtype)
    loops.adam_update.serial(
        np.ascontiguousarray(param).reshape(-1), np.ascontiguousarray(grad).reshape(-1),
        m.reshape(-1), v.reshape(-1), out.reshape(-1), like(beta1, param),
        like(1.0 - beta1, param), like(beta2, param), like(1.0 - beta2, param),
        like(eps, param), like(weight_decay, param), weight_decay != 0 and not decoupled,
        like(1.0 - lr * weight_decay, param), weight_decay != 0 and decoupled,
        like(math.sqrt(1.0 - math.pow(beta2, count)), param),
        like(lr / (1.0 - math.pow(beta1, count)), param))
    return out
