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

from gradkit.autodiff import GradMode, run_backward
from gradkit.errors import GradkitError
from gradkit.registry import call_sample
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
    out[index] = Tensor(data, inputs[index].array_backend)
    return out


def _scalarize(f: Callable[..., Tensor], cotangent: Any) -> Callable[..., float]:
    """``xs -> sum(cotangent * f(xs))`` as a Python float, evaluated without a tape."""
    def value(xs: list[Tensor]) -> float:
        with GradMode(False):
            out = f(*xs)
        return float(np.sum(np.asarray(out.array_backend.to_numpy(out.data), dtype=np.float64)
                            * cotangent))
    return value


def _analytic(f: Callable[..., Tensor], xs: list[Tensor], wrt: list[int],
              cotangent: np.ndarray) -> list[np.ndarray]:
    leaves = list(xs)
    for i in wrt:
        leaves[i] = xs[i].detach().requires_grad_(True)
    with GradMode(True):
        out = f(*leaves)
    if not isinstance(out, Tensor) or not out.requires_grad:
        return [np.zeros(xs[i].shape) for i in wrt]
    cot = Tensor(out.array_backend.asarray(cotangent.astype(out.dtype)), out.array_backend)
    grads = run_backward([out], [cot], [leaves[i] for i in wrt], False, False)
    return [np.zeros(xs[i].shape) if g is None else
            np.asarray(g.array_backend.to_numpy(g.data), dtype=np.float64)
            for g, i in zip(grads, wrt)]


def _numeric_element_grad(value: Callable, xs: list[Tensor], i: int, eps: float) -> np.ndarray:
    base = np.asarray(xs[i].array_backend.to_numpy(xs[i].data), dtype=np.float64)
    grad = np.zeros(base.shape)
    for k in np.ndindex(*base.shape):
        plus, minus = base.copy(), base.copy()
        plus[k] += eps
        minus[k] -= eps
        up = value(_with(xs, i, xs[i].array_backend.asarray(plus.astype(xs[i].dtype))))
        down = value(_with(xs, i, xs[i].array_backend.asarray(minus.astype(xs[i].dtype))))
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
    with GradMode(False):
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
            base = np.asarray(xs[i].array_backend.to_numpy(xs[i].data), dtype=np.float64)
            moved_up = _with(moved_up, i, xs[i].array_backend.asarray((base + eps * d).astype(xs[i].dtype)))
            moved_down = _with(moved_down, i, xs[i].array_backend.asarray((base - eps * d).astype(xs[i].dtype)))
        numeric = (value(moved_up) - value(moved_down)) / (2 * eps)
        exact = float(sum(np.sum(a * d) for a, d in zip(analytic, direction)))
        error = abs(exact - numeric)
        if not error <= atol + rtol * max(abs(exact), abs(numeric)):  # NaN fails too
            rel = error / max(abs(exact), abs(numeric), 1e-300)
            where = _worst_element(value, xs, wrt, analytic, eps)
            low = [f"input {i} is {xs[i].dtype}" for i in wrt if xs[i].dtype.itemsize < 8]
            hint = (f"; {', '.join(low)}: use float64 inputs, lower precision cannot reach "
                    "these tolerances" if low else "")
            raise GradcheckError(
                f"gradcheck ({label}): directional derivative {exact:.10g} (analytic) vs "
                f"{numeric:.10g} (central differences), abs error {error:.3g}, rel error "
                f"{rel:.3g} > rtol {rtol:g}; {where}{hint}")


def _vjp_function(f: Callable[..., Tensor], n_inputs: int, wrt: list[int],
                  weights: list[np.ndarray]) -> Callable[..., Tensor]:
    """``(*xs, u) -> sum_i <w_i, vjp(u)_i>``: differentiating it checks double backprop."""
    def vjp_of_f(*args: Tensor) -> Tensor:
        xs, u = list(args[:n_inputs]), args[n_inputs]
        for i in wrt:  # evaluated without a tape (numeric side), the inputs still need one
            if not xs[i].requires_grad:
                xs[i] = xs[i].detach().requires_grad_(True)
        with GradMode(True):
            out = f(*xs)
            if not out.requires_grad:
                return (u * 0.0).sum()
            grads = run_backward([out], [u], [xs[i] for i in wrt], True, True)
            terms = [(g * Tensor(g.array_backend.asarray(w.astype(g.dtype)), g.array_backend)).sum()
                     for g, w in zip(grads, weights) if g is not None]
            if not terms:
                return (u * 0.0).sum()
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            return total
    return vjp_of_f


def gradcheck(f: Callable[..., Tensor], *inputs: Any, eps: float = 1e-6, rtol: float = 1e-6,
              atol: float = 1e-9, directions: int = 3, order: int = 1, seed: int = 0,
              nondiff: Sequence[int] = (), _level: int = 1) -> bool:
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
    label = {1: "first order", 2: "second order", 3: "third order"}.get(_level, f"order {_level}")
    _directional_check(f, xs, wrt, rng, eps, rtol, atol, directions, label)
    if order >= 2:
        with GradMode(False):
            out = f(*xs)
        u = tensor(rng.standard_normal(out.shape).astype(out.dtype), backend=out.array_backend)
        weights = [rng.standard_normal(xs[i].shape) for i in wrt]
        second = _vjp_function(f, len(xs), wrt, weights)
        gradcheck(second, *xs, u, eps=eps, rtol=rtol, atol=atol, directions=directions,
                  order=order - 1, seed=seed + 1, nondiff=nondiff, _level=_level + 1)
    return True


# -- backend conformance ------------------------------------------------------------

class ConformanceError(GradkitError, AssertionError):
    """A backend's forward or VJP disagrees with the NumPy reference."""


TOLERANCES = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-6)}


def _on(backend: Any, sample: Any, dtype: str) -> list[Tensor]:
    out = []
    for i, a in enumerate(sample.args):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(dtype)
        t = tensor(a, backend=backend)
        if t.dtype.kind == "f" and i not in sample.nondiff:
            t.requires_grad_(True)
        out.append(t)
    return out


def _run(entry: Any, sample: Any, xs: list[Tensor], cotangent: np.ndarray | None
         ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    with GradMode(True):
        out = call_sample(entry, xs, sample.params)
    if isinstance(out, (list, tuple)):
        from gradkit.ops import concatenate, reshape
        out = concatenate([reshape(o, (-1,)) for o in out], axis=0)
    value = np.asarray(out.array_backend.to_numpy(out.data))
    if cotangent is None or not out.requires_grad:
        return value, []
    cot = tensor(cotangent.astype(value.dtype), backend=out.array_backend)
    wrt = [x for x in xs if x.requires_grad]
    grads = run_backward([out], [cot], wrt, False, False)
    return value, [None if g is None else np.asarray(g.array_backend.to_numpy(g.data)) for g in grads]


def _mismatch(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> str | None:
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return (f"got {actual.dtype} {actual.shape}, the reference gives "
                f"{expected.dtype} {expected.shape}")
    if expected.dtype.kind != "f":
        return None if np.array_equal(expected, actual) else "values differ"
    if np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        return None
    error = np.abs(actual.astype(np.float64) - expected)
    worst = np.unravel_index(int(np.argmax(error)), error.shape) if error.ndim else ()
    return (f"worst at {tuple(int(i) for i in worst)}: {actual[worst]!r} vs reference "
            f"{expected[worst]!r}")


def check_backend(backend: Any, ops: Sequence[str] | None = None,
                  dtypes: Sequence[str] = ("float64", "float32"), seed: int = 0) -> int:
    """Check every op's forward and VJP on ``backend`` against the NumPy reference
    (each op's reference forward on NumPy, without the NumPy backend's kernels).

    Runs each registered op on each of its samples, in each dtype, on ``backend``
    and on NumPy, and compares the outputs and the gradients for one random
    cotangent (float64: rtol 1e-10; float32: rtol 1e-5). Raises
    :class:`ConformanceError` listing every disagreement; returns the number of
    comparisons made. A backend author runs this on their backend.

    >>> import gradkit as gk
    >>> gk.testing.check_backend("numpy", ops=["exp", "matmul"]) > 0
    True
    """
    from gradkit import backends as _backends
    from gradkit.registry import OPS
    from gradkit.backends.numpy.backend import NumpyBackend
    target = _backends.get(backend)
    reference = NumpyBackend(kernels=False)  # the reference forwards, no kernel
    names = sorted(OPS) if ops is None else list(ops)
    failures: list[str] = []
    count = 0
    for name in names:
        entry = OPS[name]
        rng = np.random.default_rng(seed)
        for index, sample in enumerate(entry.samples(rng) if entry.samples else []):
            for dtype in dtypes:
                rtol, atol = TOLERANCES[dtype]
                label = f"{name} sample {index} ({dtype})"
                try:
                    with _backends.use_backend(reference):  # constants an op makes go there too
                        expected, expected_grads = _run(entry, sample,
                                                        _on(reference, sample, dtype), None)
                        cotangent = (np.random.default_rng(seed + index).standard_normal(
                            expected.shape) if entry.differentiable and expected.dtype.kind == "f"
                            else None)
                        expected, expected_grads = _run(entry, sample,
                                                        _on(reference, sample, dtype), cotangent)
                    with _backends.use_backend(target):
                        actual, actual_grads = _run(entry, sample, _on(target, sample, dtype),
                                                    cotangent)
                except Exception as exc:  # a crash is a failure to report, with the others
                    failures.append(f"{label}: raised {type(exc).__name__}: {exc}")
                    continue
                problems = [_mismatch(expected, actual, rtol, atol)]
                for k, (e, a) in enumerate(zip(expected_grads, actual_grads)):
                    if (e is None) != (a is None):
                        problems.append(f"gradient {k}: one backend gave None")
                    elif e is not None:
                        problem = _mismatch(e, a, rtol, atol)
                        problems.append(problem and f"gradient {k}: {problem}")
                failures += [f"{label}: {p}" for p in problems if p]
                count += 1 + len(expected_grads)
    if failures:
        raise ConformanceError(f"backend {target.name!r} disagrees with the NumPy reference in "
                               f"{len(failures)} case(s):\n  " + "\n  ".join(failures))
    return count
