"""Moving a tensor between backends; the gradient flows back across the move.

>>> import gradkit as gk
>>> x = gk.tensor([1.0, 2.0], requires_grad=True)
>>> y = gk.to_backend(x, "numpy")      # a no-op here; "numba", "cuda"... move the data
>>> y.backend
'numpy'
"""
from __future__ import annotations

import functools
from typing import Any

from gradkit import backends as _backends
from gradkit.autodiff import Node, grad_enabled
from gradkit.interception import current_interceptor as capture_recording
from gradkit.ops.samples import away_from_zero
from gradkit.registry import Op, Sample, composite
from gradkit.tensor import Tensor


def to_backend_vjp(ctx, g):
    (x,) = ctx.inputs
    return (to_backend(g, x._backend),)


def _transfer_forward(xp: Any, x: Any, *, backend: Any) -> Any:
    raise RuntimeError("to_backend runs through gradkit.ops.transfer.to_backend, not dispatch")


def _move(array: Any, *, target: Any, source: Any) -> Any:
    """The move itself, as gk.capture replays it."""
    return target.from_backend(array, source)


# The op recorded on the tape by a move; its forward never runs through dispatch,
# because its output lives on another backend than its input.
TRANSFER = Op("to_backend", _transfer_forward, to_backend_vjp, samples=None, family="backend")


def _samples(rng):
    return [Sample(away_from_zero(rng, (2, 3)), backend="numpy")]


@composite(samples=_samples, family="backend")
def to_backend(x: Tensor, backend: Any) -> Tensor:
    """``x`` on ``backend`` (a name or Backend); returns ``x`` itself if already there.

    Also ``x.to(name)``. The copy records a tape node, so gradients computed on
    the new backend come back to ``x`` on its own backend.
    """
    target = _backends.get(backend)
    source = x._backend
    if target is source:
        return x
    data = target.from_backend(x.data, source)
    recorder = capture_recording.get()
    if recorder is not None:  # so that gk.capture replays the move
        recorder.kernel(TRANSFER, functools.partial(_move, target=target, source=source),
                        (x,), {}, data, False, target)
    if x.requires_grad and grad_enabled.get():
        return Tensor(data, target, Node(TRANSFER, (x,), {"backend": target.name}, data,
                                         target, (True,)))
    return Tensor(data, target)
