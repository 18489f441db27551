"""Gradient checks users can run on their own ops: ``gradcheck``.

``gradcheck(f, *inputs)`` compares the VJPs gradkit computes with central
differences along random directions, and with ``order=2`` does the same for the
VJP itself (differentiated with respect to the inputs and the cotangent), which
checks double backprop. On failure it raises :class:`GradcheckError` naming the
worst element with its analytic and numeric values and errors.

>>> import gradkit as gk
>>> gk.testing.gradcheck(lambda x: gk.tanh(x) * x, gk.tensor([0.5, -1.0], dtype="float64"))
True
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from gradkit.autodiff import _GradMode, run_backward
from gradkit.errors import GradkitError
from gradkit.tensor import Tensor, tensor


class GradcheckError(GradkitError, AssertionError):
    """An analytic gradient disagrees with finite differences."""


def _single_output(f: Callable[..., Any]) -> Callable[..., Tensor]:
    """``f`` with a list/tuple of tensors as output joined into one flat tensor."""
    def joined(*xs: Tensor) -> Tensor:
        out = f(*xs)
        if isinstance(out, (list, tuple)):
            from gradkit.ops import concatenate, reshape
            return concatenate([reshape(o, (-1,)) for o in out], axis=0)
        return out
    return joined


def _is_differentiable(t: Tensor) -> bool:
    return t.dtype.kind == "f"


def _as_tensors(inputs: Sequence[Any]) -> list[Tensor]:
    return [x if isinstance(x, Tensor) else tensor(x) for x in inputs]


def _with(inputs: list[Tensor], index: int, data: Any) -> list[Tensor]:
    """``inputs`` with input ``index`` replaced by a constant holding ``data``."""
    out = list(inputs)
    out[index] = Tensor(data, inputs[index]._backend)
    return out


def _scalarize(f: Callable[..., Tensor], cotangent: Any) -> Callable[..., float]:
    """``xs -> sum(cotangent * f(xs))`` as a Python float, evaluated without a tape."""
    def value(xs: list[Tensor]) -> float:
        with _GradMode(False):
            out = f(*xs)
        return float(np.sum(np.asarray(out._backend.to_numpy(out.data), dtype=np.float64)
                            * cotangent))
    return value


def _analytic(f: Callable[..., Tensor], xs: list[Tensor], wrt: list[int],
              cotangent: np.ndarray) -> list[np.ndarray]:
    leaves = list(xs)
    for i in wrt:
        leaves[i] = xs[i].detach().requires_grad_(True)
    with _GradMode(True):
        out = f(*leaves)
    if not isinstance(out, Tensor) or not out._requires_grad:
        return [np.zeros(xs[i].shape) for i in wrt]
    cot = Tensor(out._backend.asarray(cotangent.astype(out.dtype)), out._backend)
    grads = run_backward([out], [cot], [leaves[i] for i in wrt], False, False)
    return [np.zeros(xs[i].shape) if g is None else
            np.asarray(g._backend.to_numpy(g.data), dtype=np.float64)
            for g, i in zip(grads, wrt)]


def _numeric_element_grad(value: Callable, xs: list[Tensor], i: int, eps: float) -> np.ndarray:
    base = np.asarray(xs[i]._backend.to_numpy(xs[i].data), dtype=np.float64)
    grad = np.zeros(base.shape)
    for k in np.ndindex(*base.shape):
        plus, minus = base.copy(), base.copy()
        plus[k] += eps
        minus[k] -= eps
        up = value(_with(xs, i, xs[i]._backend.asarray(plus.astype(xs[i].dtype))))
        down = value(_with(xs, i, xs[i]._backend.asarray(minus.astype(xs[i].dtype))))
        grad[k] = (up - down) / (2 * eps)
    return grad


def _worst_element(value: Callable, xs: list[Tensor], wrt: list[int],
                   analytic: list[np.ndarray], eps: float) -> str:
    """Per-element comparison, to say where a failed directional check went wrong."""
    worst = None
    for i, a in zip(wrt, analytic):
        if xs[i].size > 4096:
            continue
        n = _numeric_element_grad(value, xs, i, eps)
        err = np.abs(a - n)
        if err.size == 0:
            continue
        k = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        candidate = (float(err[k]), i, k, float(a[k]), float(n[k]))
        if worst is None or candidate[0] > worst[0]:
            worst = candidate
    if worst is None:
        return "inputs too large for an element-wise report"
    abs_err, i, k, a, n = worst
    rel_err = abs_err / max(abs(a), abs(n), 1e-300)
    return (f"worst element: input {i} at index {tuple(int(j) for j in k)}: analytic {a:.10g}, "
            f"numeric {n:.10g}, abs error {abs_err:.3g}, rel error {rel_err:.3g}")


def _directional_check(f: Callable[..., Tensor], xs: list[Tensor], wrt: list[int],
                       rng: np.random.Generator, eps: float, rtol: float, atol: float,
                       directions: int, label: str) -> None:
    with _GradMode(False):
        probe = f(*xs)
    if not isinstance(probe, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(probe).__name__}")
    cotangent = rng.standard_normal(probe.shape)
    value = _scalarize(f, cotangent)
    analytic = _analytic(f, xs, wrt, cotangent)
    for _ in range(directions):
        direction = [rng.standard_normal(xs[i].shape) for i in wrt]
        moved_up, moved_down = list(xs), list(xs)
        for i, d in zip(wrt, direction):
            base = np.asarray(xs[i]._backend.to_numpy(xs[i].data), dtype=np.float64)
            moved_up = _with(moved_up, i, xs[i]._backend.asarray((base + eps * d).astype(xs[i].dtype)))
            moved_down = _with(moved_down, i, xs[i]._backend.asarray((base - eps * d).astype(xs[i].dtype)))
        numeric = (value(moved_up) - value(moved_down)) / (2 * eps)
        exact = float(sum(np.sum(a * d) for a, d in zip(analytic, direction)))
        error = abs(exact - numeric)
        if error > atol + rtol * max(abs(exact), abs(numeric)):
            rel = error / max(abs(exact), abs(numeric), 1e-300)
            where = _worst_element(value, xs, wrt, analytic, eps)
            raise GradcheckError(
                f"gradcheck ({label}): directional derivative {exact:.10g} (analytic) vs "
                f"{numeric:.10g} (central differences), abs error {error:.3g}, rel error "
                f"{rel:.3g} > rtol {rtol:g}; {where}")


def _vjp_function(f: Callable[..., Tensor], n_inputs: int, wrt: list[int],
                  weights: list[np.ndarray]) -> Callable[..., Tensor]:
    """``(*xs, u) -> sum_i <w_i, vjp(u)_i>``: differentiating it checks double backprop."""
    def vjp_of_f(*args: Tensor) -> Tensor:
        xs, u = list(args[:n_inputs]), args[n_inputs]
        for i in wrt:  # evaluated without a tape (numeric side), the inputs still need one
            if not xs[i]._requires_grad:
                xs[i] = xs[i].detach().requires_grad_(True)
        with _GradMode(True):
            out = f(*xs)
            if not out._requires_grad:
                return (u * 0.0).sum()
            grads = run_backward([out], [u], [xs[i] for i in wrt], True, True)
            total = (u * 0.0).sum()
            for g, w in zip(grads, weights):
                if g is not None:
                    total = total + (g * Tensor(g._backend.asarray(w.astype(g.dtype)), g._backend)).sum()
            return total
    return vjp_of_f


def gradcheck(f: Callable[..., Tensor], *inputs: Any, eps: float = 1e-6, rtol: float = 1e-6,
              atol: float = 1e-9, directions: int = 3, order: int = 1, seed: int = 0,
              nondiff: Sequence[int] = ()) -> bool:
    """Check ``f``'s gradients against central differences; True or GradcheckError.

    ``inputs``: Tensors or arrays (use float64: float32 cannot reach these
    tolerances). ``f`` returns a Tensor or a list of Tensors. Floating inputs not listed in ``nondiff`` are differentiated.
    ``order=2`` also checks the gradient of the VJP (double backprop).

    >>> import gradkit as gk
    >>> x = gk.tensor([[1.0, 2.0], [3.0, 4.0]], dtype="float64")
    >>> gk.testing.gradcheck(lambda a: (a @ a).sum(), x, order=2)
    True
    """
    rng = np.random.default_rng(seed)
    f = _single_output(f)
    xs = _as_tensors(inputs)
    wrt = [i for i, x in enumerate(xs) if _is_differentiable(x) and i not in nondiff]
    if not wrt:
        raise ValueError("gradcheck: no floating-point input to differentiate")
    _directional_check(f, xs, wrt, rng, eps, rtol, atol, directions, "first order")
    if order >= 2:
        with _GradMode(False):
            out = f(*xs)
        u = tensor(rng.standard_normal(out.shape).astype(out.dtype), backend=out._backend)
        weights = [rng.standard_normal(xs[i].shape) for i in wrt]
        second = _vjp_function(f, len(xs), wrt, weights)
        gradcheck(second, *xs, u, eps=eps, rtol=rtol, atol=atol, directions=directions,
                  order=order - 1, seed=seed + 1, nondiff=nondiff)
    return True
