"""The core's one interception point: whatever is installed in :data:`current_interceptor`
(in this thread / task) hears about every kernel launch, tensor creation and write.

The core (Tensor, dispatch, backward) reads the variable and calls the installed object's
methods; it never imports who installed it. ``gk.capture`` installs its Recorder here
(``gradkit.capture.recording`` is this same variable). The methods the core calls, as
gradkit.capture.recorder.Recorder documents them: ``kernel`` (dispatch and the transfer
op, after a launch), ``note_created`` (Tensor()), ``will_overwrite``, ``wrote_data``,
``wrote_grad``, ``aliased`` (writes to a Tensor's data or .grad, detach) and
``check_accumulation`` (backward, before adding into a .grad). Every write of a
Tensor's array or .grad goes through ``Tensor.write``, which makes the write reports.

Beside it, the engine's gradient-ready event: :func:`add_gradient_ready_listener`
(``gradkit.autodiff.on_gradient_ready``) registers a listener that hears each leaf
whose ``.grad`` is final during a backward.
"""
from __future__ import annotations

import contextvars
from typing import Any, Callable

# The interceptor of this thread / task (gk.capture's Recorder), or None.
current_interceptor: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "gradkit_capture", default=None)
# How many interceptors are installed now (any thread): Tensor() reports itself only
# while one is, so the common case costs one global read.
active_recordings = 0


def begin_recording(interceptor: Any) -> contextvars.Token:
    """Install ``interceptor`` for this thread / task (undo with :func:`end_recording`)."""
    global active_recordings
    token = current_interceptor.set(interceptor)
    active_recordings += 1
    return token


def end_recording(token: contextvars.Token) -> None:
    global active_recordings
    active_recordings -= 1
    current_interceptor.reset(token)


def note_created(tensor: Any) -> None:
    """Called by Tensor() while an interceptor is installed: a tensor that is new."""
    interceptor = current_interceptor.get()
    if interceptor is not None:
        interceptor.note_created(tensor)


# -- the engine's gradient-ready event ----------------------------------------------
# Listeners hear, during Tensor.backward, each leaf whose .grad just got its last
# contribution (once per leaf per backward), e.g. gk.distributed.DataParallel, which
# starts all-reducing a bucket while backward goes on. Unlike the interceptor, they
# are process-wide: a backward in any thread tells every listener.
gradient_ready_listeners: list[Callable[[Any], None]] = []


def add_gradient_ready_listener(listener: Callable[[Any], None]) -> Callable[[], None]:
    """Register ``listener(leaf)`` for the gradient-ready event; returns its remover
    (``gradkit.autodiff.on_gradient_ready`` is the public name of this)."""
    gradient_ready_listeners.append(listener)

    def remove() -> None:
        if listener in gradient_ready_listeners:
            gradient_ready_listeners.remove(listener)
    return remove


def gradient_ready(leaf: Any) -> None:
    """Called by the engine: ``leaf.grad`` is final for this backward."""
    for listener in list(gradient_ready_listeners):
        listener(leaf)
