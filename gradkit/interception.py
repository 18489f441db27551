"""The core's one interception point: whatever is installed in :data:`current_interceptor`
(in this thread / task) hears about every kernel launch, tensor creation and write.

The core (Tensor, dispatch, backward) reads the variable and calls the installed object's
methods; it never imports who installed it. ``gk.capture`` installs its Recorder here
(``gradkit.capture.recording`` is this same variable). The methods the core calls, as
gradkit.capture.recorder.Recorder documents them: ``kernel`` (dispatch and the transfer
op, after a launch), ``note_created`` (Tensor()), ``will_overwrite``, ``wrote_data``,
``wrote_grad``, ``aliased`` (writes to a Tensor's data or .grad, detach) and
``check_accumulation`` (backward, before adding into a .grad).
"""
from __future__ import annotations

import contextvars
from typing import Any

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
