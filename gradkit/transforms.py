"""Functional transforms: grad, value_and_grad, vjp, jvp, jacobian, hessian.

Built on the core's tape (gradkit.autodiff.run_backward), above the ops they use; they
are also importable from gradkit.autodiff, where they lived first (bound there when this
module loads, so the core does not import upward).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from gradkit import autodiff as _autodiff
from gradkit.autodiff import root_cotangent, run_backward
from gradkit.errors import DTypeError, ShapeError, describe
from gradkit.grad_mode import Differentiating, GradMode, grad_enabled
from gradkit.tensor import Tensor

def _as_input_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    from gradkit.tensor import tensor
    return tensor(value)


def _prepare(args: tuple, argnums: Sequence[int], where: str) -> tuple[list, list[Tensor], bool]:
    """Wrap the differentiated arguments as Tensors that require a gradient.

    Returns the new argument list, the tensors to differentiate with respect to,
    and whether to record the backward pass: yes when an argument is already being
    traced by an outer transform, which is how grad of grad composes.
    """
    args = list(args)
    wrt: list[Tensor] = []
    outer = False
    for i in argnums:
        if not -len(args) <= i < len(args):
            raise IndexError(f"{where}: argnums={i} but the function got {len(args)} arguments")
        t = _as_input_tensor(args[i])
        if not np.issubdtype(t.dtype, np.floating):
            raise DTypeError(f"{where}: argument {i} ({describe(t)}) must be floating point "
                             "to be differentiated")
        if t.requires_grad and grad_enabled.get():
            outer = True
        else:
            t = t.detach().requires_grad_(True)
        args[i] = t
        wrt.append(t)
    return args, wrt, outer


def _normalize_argnums(argnums: int | Sequence[int]) -> tuple[tuple[int, ...], bool]:
    if isinstance(argnums, int):
        return (argnums,), True
    return tuple(argnums), False


def _zeros_like(t: Tensor) -> Tensor:
    return Tensor(t.array_backend.xp.zeros(t.shape, dtype=t.data.dtype), t.array_backend)


def _gradients_of(out: Tensor, wrt: list[Tensor], cotangent: Tensor, create_graph: bool,
                  retain_graph: bool) -> list[Tensor]:
    if not out.requires_grad:
        return [_zeros_like(t) for t in wrt]
    grads = run_backward([out], [cotangent], wrt, retain_graph, create_graph)
    return [g if g is not None else _zeros_like(t) for g, t in zip(grads, wrt)]


def _as_output(value: Any, where: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}: the function must return a gradkit Tensor, "
                        f"got {type(value).__name__}")
    return value


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0
                   ) -> Callable[..., tuple[Tensor, Any]]:
    """``f``'s value and its gradient with respect to argument(s) ``argnums``.

    ``f`` must return a scalar (size-1) Tensor.

    >>> import gradkit as gk
    >>> value, g = gk.value_and_grad(lambda x: (x * x).sum())(gk.tensor([1.0, 2.0]))
    >>> value.item(), g.numpy().tolist()
    (5.0, [2.0, 4.0])
    """
    nums, single = _normalize_argnums(argnums)

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> tuple[Tensor, Any]:
        new_args, wrt, outer = _prepare(args, nums, "grad")
        with GradMode(True), Differentiating(wrt):
            out = _as_output(f(*new_args, **kwargs), "grad")
        cotangent = root_cotangent(out, None, "grad")
        grads = _gradients_of(out, wrt, cotangent, create_graph=outer, retain_graph=outer)
        if not outer:
            out = out.detach()
        return out, (grads[0] if single else tuple(grads))
    return wrapper


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """The gradient of scalar-valued ``f`` with respect to argument(s) ``argnums``.

    Composes: ``gk.grad(gk.grad(f))`` is the second derivative.

    >>> import gradkit as gk
    >>> gk.grad(lambda x: x ** 3)(gk.tensor(2.0)).item()
    12.0
    >>> gk.grad(gk.grad(lambda x: x ** 3))(gk.tensor(2.0)).item()
    12.0
    """
    with_value = value_and_grad(f, argnums)

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return with_value(*args, **kwargs)[1]
    return wrapper


def vjp(f: Callable[..., Any], *primals: Any) -> tuple[Tensor, Callable[[Any], tuple]]:
    """``f(*primals)`` and a function mapping a cotangent to one gradient per primal.

    >>> import gradkit as gk
    >>> out, vjp_fn = gk.vjp(lambda x: x * 3, gk.tensor([1.0, 2.0]))
    >>> vjp_fn(gk.tensor([1.0, 10.0]))[0].numpy().tolist()
    [3.0, 30.0]
    """
    args, wrt, outer = _prepare(primals, range(len(primals)), "vjp")
    with GradMode(True), Differentiating(wrt):
        out = _as_output(f(*args), "vjp")

    def vjp_fn(cotangent: Any) -> tuple[Tensor, ...]:
        cot = root_cotangent(out, cotangent, "vjp")
        record = outer or (cot.requires_grad and grad_enabled.get())
        return tuple(_gradients_of(out, wrt, cot, create_graph=record, retain_graph=True))

    return (out if outer else out.detach()), vjp_fn


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]
        ) -> tuple[Tensor, Tensor]:
    """``f(*primals)`` and its directional derivative along ``tangents``.

    Forward mode from reverse mode by the double-VJP trick: the VJP is linear in
    its cotangent ``u``, so differentiating ``<vjp(u), tangents>`` by ``u`` gives J t.

    >>> import gradkit as gk
    >>> out, t = gk.jvp(lambda x: x * x, (gk.tensor([3.0]),), (gk.tensor([1.0]),))
    >>> t.numpy().tolist()
    [6.0]
    """
    # a single Tensor stands for a one-element tuple
    primals = (primals,) if isinstance(primals, Tensor) else tuple(primals)
    tangents = (tangents,) if isinstance(tangents, Tensor) else tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: got {len(primals)} primals but {len(tangents)} tangents")
    args, wrt, outer = _prepare(primals, range(len(primals)), "jvp")
    tangent_tensors = []
    for i, (p, t) in enumerate(zip(wrt, tangents)):
        t = _as_input_tensor(t)
        if t.shape != p.shape:
            raise ShapeError(f"jvp: tangent {i} has shape {t.shape} but its primal has "
                             f"shape {p.shape}")
        tangent_tensors.append(t.astype(p.dtype) if t.dtype != p.dtype else t)
    with GradMode(True), Differentiating(wrt):
        out = _as_output(f(*args), "jvp")
        u = _zeros_like(out).requires_grad_(True)
        if not out.requires_grad:
            return out, _zeros_like(out)
        grads = run_backward([out], [u], wrt, retain_graph=True, create_graph=True)
        total = None
        for g, t in zip(grads, tangent_tensors):
            if g is not None:
                term = (g * t).sum()
                total = term if total is None else total + term
    if total is None or not total.requires_grad:
        return (out if outer else out.detach()), _zeros_like(out)
    (tangent_out,) = run_backward([total], [root_cotangent(total, None, "jvp")], [u],
                                  retain_graph=outer, create_graph=outer)
    if tangent_out is None:
        tangent_out = _zeros_like(out)
    return (out if outer else out.detach()), tangent_out


def _jacobians_of(out: Tensor, wrt: list[Tensor], outer: bool) -> list[Tensor]:
    """d out / d w for each w in ``wrt``: one VJP per output element, one-hot cotangents."""
    from gradkit.ops import reshape, stack
    rows: list[list[Tensor]] = [[] for _ in wrt]
    xp = out.array_backend.xp
    for k in range(out.size):
        basis = xp.zeros(out.size, dtype=out.data.dtype)
        basis[k] = 1
        cot = Tensor(xp.reshape(basis, out.shape), out.array_backend)
        for row, g in zip(rows, _gradients_of(out, wrt, cot, create_graph=outer,
                                               retain_graph=True)):
            row.append(g)
    return [reshape(stack(row), out.shape + t.shape) if row else
            Tensor(xp.zeros(out.shape + t.shape, dtype=t.data.dtype), t.array_backend)
            for row, t in zip(rows, wrt)]


def jacobian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """A function returning the Jacobian of ``f``: shape ``out.shape + x.shape``.

    With a tuple ``argnums`` it returns one Jacobian per argument; when ``f``
    returns a tuple of Tensors, one result per output (as in JAX).

    >>> import gradkit as gk
    >>> gk.jacobian(lambda x: x * x)(gk.tensor([1.0, 2.0])).numpy().tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    nums, single = _normalize_argnums(argnums)

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        new_args, wrt, outer = _prepare(args, nums, "jacobian")
        with GradMode(True), Differentiating(wrt):
            result = f(*new_args, **kwargs)
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        per_output = []
        for out in outputs:
            jacobians = _jacobians_of(_as_output(out, "jacobian"), wrt, outer)
            per_output.append(jacobians[0] if single else tuple(jacobians))
        return tuple(per_output) if isinstance(result, (tuple, list)) else per_output[0]
    return wrapper


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """A function returning the Hessian of scalar ``f``: shape ``x.shape + x.shape``.

    With a tuple ``argnums``, the nested tuple ``H[i][j] = d2f / dx_i dx_j``.

    >>> import gradkit as gk
    >>> gk.hessian(lambda x: (x ** 3).sum())(gk.tensor([1.0, 2.0])).numpy().tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    return jacobian(grad(f, argnums), argnums)


for _name in ("value_and_grad", "grad", "vjp", "jvp", "jacobian", "hessian"):
    setattr(_autodiff, _name, globals()[_name])  # gradkit.autodiff.grad & co. keep working
