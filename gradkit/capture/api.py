"""The public decorator: :func:`capture` and the :class:`CapturedFunction` it returns,
which records a function's first two calls per signature and replays a plan after."""
from __future__ import annotations

import collections
import functools
import os
import sys
import types
import warnings
from typing import Any, Callable, NamedTuple

from gradkit import interception
from gradkit.capture.compare import changed_state, compare, same_state
from gradkit.capture.plan import STALE, Plan, changed_flag
from gradkit.capture.recorder import (CaptureError, Recorder, begin_recording, end_recording,
                                      output_template, recording)
from gradkit.dtypes import get_default_dtype
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
    state_version: int  # gradkit.interception.state_version after it

    def invalid_reason(self) -> str | None:
        """Why a second call cannot be compared with this one (the Python state it
        depended on changed in between), or None."""
        if self.state_version == interception.state_version:
            return None
        return changed_state(self.recorder.object_guards.values()) or changed_flag(
            [(e.tensor, e.requires_grad) for e in self.recorder.externals if e.arg is None])


class FunctionVariables:
    """The global and closure variables a captured function's own code names (modules
    aside), as the objects they held when its recordings were made: rebinding one
    (``opt = SGD(...)`` again) makes the function record anew.

    >>> scale = 2.0
    >>> watched = FunctionVariables(lambda x: x * scale)
    >>> watched.changed() is None
    True
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        code = getattr(function, "__code__", None)
        namespace = getattr(function, "__globals__", {})
        self.globals = namespace
        self.global_names = tuple(
            name for name in (code.co_names if code is not None else ())
            if name in namespace and not isinstance(namespace[name], types.ModuleType))
        self.cells = tuple(zip(code.co_freevars, function.__closure__)) if (
            code is not None and function.__closure__) else ()
        self.values = self.current()

    def current(self) -> list:
        """What each watched variable holds now (globals first, then closure cells)."""
        namespace = self.globals
        return ([namespace.get(name, _UNBOUND) for name in self.global_names] +
                [_cell_value(cell) for _, cell in self.cells])

    def changed(self) -> str | None:
        """Which variable holds another object now (an equal number or string aside),
        or None; the new values are kept."""
        namespace, values, index = self.globals, self.values, 0
        for name in self.global_names:
            value = namespace.get(name, _UNBOUND)
            if value is not values[index] and not same_state(value, values[index]):
                return self._rebound(index)
            index += 1
        for _, cell in self.cells:
            value = _cell_value(cell)
            if value is not values[index] and not same_state(value, values[index]):
                return self._rebound(index)
            index += 1
        return None

    def _rebound(self, index: int) -> str:
        self.values = self.current()
        names = self.global_names + tuple(name for name, _ in self.cells)
        return f"its variable {names[index]!r} was rebound"


_UNBOUND = object()


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet
        return _UNBOUND


class CapturedFunction:
    """``f`` recorded on its first two calls per signature, replayed afterwards.

    ``replays`` counts the calls served by a replay; ``recordings`` the eager,
    recorded ones.
    """

    def __init__(self, function: Callable[..., Any], compile: bool | None = None) -> None:
        self.function = function
        # whole-step compilation of each plan (see the package docstring)
        self.compile = compile_by_default() if compile is None else bool(compile)
        self.plans: dict[tuple, Plan] = {}
        self.pending: dict[tuple, FirstRecording] = {}
        self.replays = 0
        self.recordings = 0
        self._warned = False
        self.definitions = _registry().definitions_changed
        self.variables = FunctionVariables(function)
        # (call number, why) of the latest recordings made because state changed
        self.rerecorded: collections.deque = collections.deque(maxlen=REWARN_RECORDINGS)
        self._warned_rerecording = False
        self.calls = 0
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Replay, or record a call. Keyword arguments are arguments like positional
        ones: tensors are read afresh on every replay, other values are guarded (part
        of what a recording is valid for), and so are the keywords' names."""
        if recording.get() is not None:  # inside another capture: be part of its recording
            return _detached(self.function(*args, **kwargs))
        self.calls += 1
        if self.definitions != _registry().definitions_changed:  # an op was redefined since
            self.reset()
            self.definitions = _registry().definitions_changed
        rebound = self.variables.changed()
        if rebound is not None:
            self.reset()
            self._note_rerecording(rebound)
        names = tuple(sorted(kwargs))
        flat = args + tuple([kwargs[name] for name in names]) if kwargs else args
        key = _signature(flat, names)
        plan = self.plans.get(key)
        if plan is not None:
            reason = plan.invalid_reason()
            if reason is None:
                result = plan.run(flat)
                if result is not STALE:
                    self.replays += 1
                    return result
                reason = plan.layout_change()
            del self.plans[key]
            self._note_rerecording(reason)
        return self._record(key, flat, args, kwargs)

    def _note_rerecording(self, reason: str) -> None:
        """Remember why a recording is needed again; warn once if it keeps happening."""
        self.rerecorded.append((self.calls, reason))
        span = self.calls - self.rerecorded[0][0] + 1  # calls since the oldest one kept
        if (len(self.rerecorded) == REWARN_RECORDINGS and not self._warned_rerecording and
                span <= 3 * REWARN_RECORDINGS):
            self._warned_rerecording = True
            reasons = sorted({why for _, why in self.rerecorded})
            warnings.warn(
                f"gk.capture({getattr(self.function, '__qualname__', 'function')}) keeps "
                f"recording anew ({REWARN_RECORDINGS} times in {span} calls): "
                f"{'; '.join(reasons)}. A replay needs "
                "that state unchanged between calls; change it less often, or do not "
                "capture this function", RuntimeWarning, stacklevel=3)

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
        except CaptureError:
            recorder.roll_back()  # a refused call changes nothing
            raise
        finally:
            end_recording(token)
        self.recordings += 1
        previous = self.pending.pop(key, None)
        if previous is not None:
            reason = previous.invalid_reason()
            if reason is not None:  # state changed since: this call is a first recording
                previous = None
                self._note_rerecording(reason)
        if previous is None:
            self.pending[key] = FirstRecording(recorder, template, interception.state_version)
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
            try:
                compare(previous.recorder, recorder, (previous.template, template))
            except CaptureError:
                recorder.roll_back()
                raise
            self.plans[key] = Plan(previous.recorder, recorder, template,
                                   getattr(self.function, "__qualname__", "function"),
                                   compiled=self.compile)
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

    def explain(self) -> str:
        """Per plan (one per signature), which kernel calls run compiled, and why the
        others do not.

        >>> import gradkit as gk
        >>> double = gk.capture(lambda x: x * 2)
        >>> for i in range(3):
        ...     _ = double(gk.tensor([float(i)]))
        >>> print(double.explain())
        plan 0: Python replay, not compiled:
          the numpy backend compiles no steps
        """
        if not self.plans:
            return "no plan yet (a plan exists after the second call with one signature)"
        return "\n".join(f"plan {k}: {plan.explain()}"
                          for k, plan in enumerate(self.plans.values()))

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
REWARN_RECORDINGS = 4  # this many recordings because state changed, close together: warn


def _signature(args: tuple, keywords: tuple[str, ...] = ()) -> tuple:
    """What a recording is valid for: each tensor's layout, each other argument's value,
    and the names of the keyword arguments (the last ``len(keywords)`` of ``args``)."""
    key: list[Any] = [_backends.get_backend(), _grad_enabled.get(), get_default_dtype(),
                      keywords]
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


def compile_by_default() -> bool:
    """Whether ``gk.capture`` compiles its plans when not told: yes, unless the
    environment variable ``GRADKIT_CAPTURE_COMPILE`` is 0 (a plan compiles only where
    its backend compiles steps: the Numba backend; elsewhere it is the Python replay)."""
    return os.environ.get("GRADKIT_CAPTURE_COMPILE", "1").strip().lower() not in (
        "0", "false", "no")


def capture(function: Callable[..., Any] | None = None, *,
            compile: bool | None = None) -> Any:
    """Record ``function``'s kernel calls on two calls, then replay them (see module doc).

    Where a plan's backend compiles steps (the Numba backend), each run of its kernel
    calls that have a compiled form also becomes one native function (see ``explain()``);
    ``compile=False`` (or ``GRADKIT_CAPTURE_COMPILE=0``) keeps the Python replay.
    ``@gk.capture(compile=False)`` decorates too.

    Use it on a whole training step (forward, ``backward``, optimizer step and
    ``zero_grad``); tensor arguments may change values (a new batch) from call to
    call, everything else the step reads is either a tensor that lives across calls
    (parameters, optimizer buffers: read afresh each call) or frozen.

    >>> import gradkit as gk
    >>> double = gk.capture(lambda x: x * 2)
    >>> [double(gk.tensor([float(i)])).item() for i in range(4)]
    [0.0, 2.0, 4.0, 6.0]
    """
    if function is None:
        return functools.partial(capture, compile=compile)
    return CapturedFunction(function, compile)
