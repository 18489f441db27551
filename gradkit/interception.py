"""The core's one interception point: whatever is installed in :data:`current_interceptor`
(in this thread / task) hears about every kernel launch, tensor creation and write.

The core (Tensor, dispatch, backward) reads the variable and calls the installed object's
methods; it never imports who installed it. ``gk.capture`` installs its Recorder here
(``gradkit.capture.recording`` is this same variable). The methods the core calls, as
gradkit.capture.recorder.Recorder documents them: ``will_launch`` and ``kernel``
(dispatch, before and after each kernel), ``note_created`` (Tensor()),
``will_write``, ``wrote_data``, ``wrote_grad``, ``aliased`` (writes to a Tensor's data or
.grad, detach), ``check_accumulation`` (backward, before adding into a .grad), and, from
the layers above, ``called_module`` (a Module's forward) and ``stepping_optimizer`` (an
optimizer's step). Every write of a Tensor's array or .grad goes through ``Tensor.write``,
which makes the write reports.

Beside it, :data:`state_version`: a counter that every change of the Python state a
recorded step may depend on ticks (:func:`note_state_change`): a parameter or module
rebound, a module's train/eval mode, ``requires_grad`` switched, an optimizer created,
loaded or given other buffers. gk.capture compares it on each replay, and re-checks its
guards only when it moved, so an unchanged world costs one integer comparison.

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


# Ticked by every change of Python state a recorded step may have read (see above).
state_version = 0


def note_state_change() -> None:
    """Say that Python state a recording may depend on changed (gk.capture re-checks)."""
    global state_version
    state_version += 1


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
