"""The public decorator: :func:`capture` and the :class:`CapturedFunction` it returns,
which records a function's first two calls per signature and replays a plan after."""
from __future__ import annotations

import functools
import sys
import warnings
from typing import Any, Callable, NamedTuple

from gradkit.capture.compare import compare
from gradkit.capture.plan import Plan
from gradkit.capture.recorder import (CaptureError, Recorder, begin_recording, end_recording,
                                      output_template, recording)
from gradkit.tensor import Tensor


def _detached(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach() if value.node is not None else value
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


class FirstRecording(NamedTuple):
    """A signature's first recorded call, waiting for a second one to compare with."""
    recorder: Recorder
    template: Any  # what the call returned, each Tensor as its OutputSlot


class CapturedFunction:
    """``f`` recorded on its first two calls per signature, replayed afterwards.

    ``replays`` counts the calls served by a replay; ``recordings`` the eager,
    recorded ones.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.plans: dict[tuple, Plan] = {}
        self.pending: dict[tuple, FirstRecording] = {}
        self.replays = 0
        self.recordings = 0
        self._warned = False
        self.definitions = _registry().definitions_changed
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Replay, or record a call. Keyword arguments are arguments like positional
        ones: tensors are read afresh on every replay, other values are guarded (part
        of what a recording is valid for), and so are the keywords' names."""
        if recording.get() is not None:  # inside another capture: be part of its recording
            return _detached(self.function(*args, **kwargs))
        if self.definitions != _registry().definitions_changed:  # an op was redefined since
            self.reset()
            self.definitions = _registry().definitions_changed
        names = tuple(sorted(kwargs))
        flat = args + tuple([kwargs[name] for name in names]) if kwargs else args
        key = _signature(flat, names)
        plan = self.plans.get(key)
        if plan is not None:
            if plan.still_valid():
                self.replays += 1
                return plan.run(flat)
            del self.plans[key]  # a parameter's layout or a hyperparameter changed
        return self._record(key, flat, args, kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """``@gk.capture`` on a method: the instance is a (hashable) argument."""
        return self if instance is None else functools.partial(self, instance)

    def _record(self, key: tuple, flat: tuple, args: tuple, kwargs: dict) -> Any:
        """Run the function eagerly, recording; ``flat`` is ``args`` then the keyword
        arguments' values in name order, the arguments a replay reads."""
        recorder = Recorder(flat)
        token = begin_recording(recorder)
        try:
            result = self.function(*args, **kwargs)
            template = output_template(result, recorder)
            recorder.finish()
            recorder.check_untracked_writes()
            recorder.keep_constant_values()
        finally:
            end_recording(token)
        self.recordings += 1
        previous = self.pending.pop(key, None)
        if previous is None:
            self.pending[key] = FirstRecording(recorder, template)
            if len(self.pending) > MAX_PENDING:  # an argument that changes on every call
                self.pending.pop(next(iter(self.pending)))
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"gk.capture({getattr(self.function, '__qualname__', 'function')}): "
                        f"{self.recordings} calls recorded and none replayed: an argument "
                        "changes on every call (a Python number, a new shape?); pass it as "
                        "a tensor, or do not capture this function", RuntimeWarning,
                        stacklevel=3)
        else:
            compare(previous.recorder, recorder, (previous.template, template))
            self.plans[key] = Plan(previous.recorder, recorder, template,
                                   getattr(self.function, "__qualname__", "function"))
            if len(self.plans) > MAX_PLANS:  # the least recently made goes
                self.plans.pop(next(iter(self.plans)))
        return _detached(result)

    @property
    def source(self) -> str:
        """The generated replay function of the newest plan: one line per kernel call."""
        if not self.plans:
            raise CaptureError("capture: nothing recorded yet; the plan exists after the "
                               "second call with the same signature")
        return list(self.plans.values())[-1].source

    def reset(self) -> None:
        """Forget every recording (the next two calls record again)."""
        self.plans.clear()
        self.pending.clear()

    def __repr__(self) -> str:
        return (f"<captured {getattr(self.function, '__qualname__', self.function)}: "
                f"{len(self.plans)} plan(s), {self.replays} replays>")


def _registry() -> Any:
    return sys.modules["gradkit.registry"]


MAX_PENDING = 8  # first recordings kept while waiting for a second call like them
MAX_PLANS = 32  # plans kept per captured function (one per signature)


def _signature(args: tuple, keywords: tuple[str, ...] = ()) -> tuple:
    """What a recording is valid for: each tensor's layout, each other argument's value,
    and the names of the keyword arguments (the last ``len(keywords)`` of ``args``)."""
    key: list[Any] = [_backends.get_backend(), _grad_enabled.get(), keywords]
    first_with_array: dict[int, int] = {}
    for index, value in enumerate(args):
        if type(value) is Tensor:
            data = value.data
            alias = first_with_array.setdefault(id(data), index)
            # strides too: whether a kernel returns a view or a copy can depend on them
            key.append((data.shape, data.dtype, getattr(data, "strides", None),
                        value.array_backend, value.requires_grad, value.grad is None, alias))
        else:
            try:
                hash(value)
            except TypeError:
                positional = len(args) - len(keywords)
                which = f"argument {index}" if index < positional else \
                    f"keyword argument {keywords[index - positional]!r}"
                raise CaptureError(
                    f"capture: {which} is a {type(value).__name__}; pass arrays as "
                    "gradkit Tensors (other arguments must be hashable: they are part of "
                    "what a recording is valid for)") from None
            key.append((type(value), value))
    return tuple(key)


from gradkit import backends as _backends  # noqa: E402  (they import this module's users)
from gradkit.autodiff import grad_enabled as _grad_enabled  # noqa: E402


def capture(function: Callable[..., Any]) -> CapturedFunction:
    """Record ``function``'s kernel calls on two calls, then replay them (see module doc).

    Use it on a whole training step (forward, ``backward``, optimizer step and
    ``zero_grad``); tensor arguments may change values (a new batch) from call to
    call, everything else the step reads is either a tensor that lives across calls
    (parameters, optimizer buffers: read afresh each call) or frozen.

    >>> import gradkit as gk
    >>> double = gk.capture(lambda x: x * 2)
    >>> [double(gk.tensor([float(i)])).item() for i in range(4)]
    [0.0, 2.0, 4.0, 6.0]
    """
    return CapturedFunction(function)
