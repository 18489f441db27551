"""Moving a tensor between backends; the gradient flows back across the move.

>>> import gradkit as gk
>>> x = gk.tensor([1.0, 2.0], requires_grad=True)
>>> y = gk.to_backend(x, "numpy")      # a no-op here; "numba", "cuda"... move the data
>>> y.backend
'numpy'
"""
from __future__ import annotations

from typing import Any

from gradkit import backends as _backends
from gradkit.ops.samples import away_from_zero
from gradkit.registry import Sample, composite, primitive
from gradkit.tensor import Tensor


def copy_to_backend_vjp(ctx, g):
    (x,) = ctx.inputs
    return (to_backend(g, x.array_backend),)


def _copy_samples(rng):
    return [Sample(away_from_zero(rng, (2, 3)), backend="numpy")]


@primitive(vjp=copy_to_backend_vjp, samples=_copy_samples, family="backend",
           output_backend="backend")
def copy_to_backend(xp, x, *, backend):
    """``x``'s array copied to the backend named ``backend`` (through the host when the
    two hold different arrays): the op a move dispatches, so the tape and gk.capture see
    it like any kernel; call :func:`to_backend`.

    >>> import gradkit as gk
    >>> gk.copy_to_backend(gk.tensor([1.0]), backend="numpy").backend
    'numpy'
    """
    return _backends.get(backend).from_backend(x, _backends.owner_of(x))


def _samples(rng):
    return [Sample(away_from_zero(rng, (2, 3)), backend="numpy")]


@composite(samples=_samples, family="backend")
def to_backend(x: Tensor, backend: Any) -> Tensor:
    """``x`` on ``backend`` (a name or Backend); returns ``x`` itself if already there.

    Also ``x.to(name)``. The copy is an op (:func:`copy_to_backend`) with a tape node, so
    gradients computed on the new backend come back to ``x`` on its own backend.
    """
    target = _backends.get(backend)
    if target is x.array_backend:
        return x
    return copy_to_backend(x, backend=target.name)
