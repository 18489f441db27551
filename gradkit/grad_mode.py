"""Grad mode (``gk.no_grad``, ``gk.enable_grad``) and the transforms' guard against a
differentiated tensor leaving the graph: the part of the engine that Tensor itself needs,
so it sits below gradkit.tensor (the tape and backward, in gradkit.autodiff, sit above).
"""
from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable, Sequence

from gradkit.errors import GraphError, describe

# -- grad mode -------------------------------------------------------------------

# Per thread and per asyncio task (a ContextVar), like gk.use_backend.
grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("gradkit_grad", default=True)


def is_grad_enabled() -> bool:
    """Whether ops record tape nodes right now (in this thread / task)."""
    return grad_enabled.get()


class GradMode:
    """Context manager and decorator that sets grad recording on or off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> None:
        self._tokens.append(grad_enabled.set(self.enabled))

    def __exit__(self, *exc: Any) -> None:
        grad_enabled.reset(self._tokens.pop())

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with GradMode(self.enabled):
                return function(*args, **kwargs)
        return wrapper


def no_grad() -> GradMode:
    """Record no tape inside the block (or the decorated function).

    >>> import gradkit as gk
    >>> x = gk.tensor([1.0], requires_grad=True)
    >>> with gk.no_grad():
    ...     (x * 2).requires_grad
    False
    """
    return GradMode(False)


def enable_grad() -> GradMode:
    """Record the tape inside the block, even within ``no_grad``."""
    return GradMode(True)


# -- the tape --------------------------------------------------------------------


# -- what the transforms differentiate -----------------------------------------------

# The tensors the enclosing gk.grad / vjp / jvp / jacobian / hessian calls differentiate
# (this thread / task): a host copy of one of them, or of anything computed from one,
# carries no gradient, so the transform would silently return zeros.
_differentiated: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "gradkit_differentiated", default=())


class Differentiating:
    """Inside the block, ``wrt`` are among the tensors the transforms differentiate."""

    def __init__(self, wrt: Sequence[Any]) -> None:
        self.wrt = tuple(wrt)

    def __enter__(self) -> None:
        self._token = _differentiated.set(_differentiated.get() + self.wrt)

    def __exit__(self, *exc: Any) -> None:
        _differentiated.reset(self._token)


def depends_on(t: Any, leaves: set[int]) -> bool:
    """Whether ``t`` is one of ``leaves`` (ids) or was computed from one (walks the tape)."""
    stack, seen = [t], set()
    while stack:
        current = stack.pop()
        if id(current) in leaves:
            return True
        node = current.node
        if node is None or node.inputs is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(i for i in node.inputs if i._requires_grad)
    return False


def check_stays_in_graph(t: Any, where: str) -> None:
    """Raise GraphError if ``t`` leaves the graph of a transform that differentiates it.

    ``.numpy()``, ``.item()`` and ``gk.tensor(t)`` copy the values out of the graph;
    inside ``gk.grad(f)`` that is a silent zero gradient unless it is what the user
    means, which they say with ``.detach()``.
    """
    differentiated = _differentiated.get()
    if not differentiated or not t._requires_grad:
        return
    if depends_on(t, {id(d) for d in differentiated}):
        raise GraphError(
            f"{where}: this tensor ({describe(t)}) depends on an input that gk.grad/vjp/jvp/"
            "jacobian/hessian differentiates; a host copy of it carries no gradient, so the "
            "transform would silently return zeros. Compute with gradkit ops instead, or "
            "call .detach() first if you mean to leave the graph")
