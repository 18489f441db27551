"""A recording turned into a replay: which slots a replay reads, keeps, releases and
lets a kernel write into (donation), what it installs into tensors, and the checks
(layouts, guarded values) a plan is valid under."""
from __future__ import annotations

import itertools
import linecache
from typing import Any, NamedTuple

from gradkit import interception
from gradkit.capture.codegen import generate
from gradkit.capture.compare import changed_state
from gradkit.capture.recorder import (CaptureError, DataWrite, GradWrite, OutputSlot,
                                      Recorder, param_slots)
from gradkit.backends.base import CompiledStep, StepCall
from gradkit.errors import GradkitError, describe
from gradkit.tensor import Tensor


class ArgumentRead(NamedTuple):
    """Slot ``slot`` is the array of the function's argument ``index``."""
    slot: int
    index: int


class StateRead(NamedTuple):
    """Slot ``slot`` is ``tensor``'s array, read afresh on every replay (a parameter,
    an optimizer buffer: a tensor the step found in place on both recorded calls)."""
    slot: int
    tensor: Tensor


class StateLayout(NamedTuple):
    """The layout a state tensor's array had when recorded: a plan is valid for it."""
    tensor: Tensor
    shape: tuple
    dtype: Any
    strides: tuple | None


class Constant(NamedTuple):
    """Slot ``slot`` is frozen to ``array`` (a read-only copy of what a tensor the step
    made outside gradkit ops held)."""
    slot: int
    array: Any


class Plan:
    """A recording turned into a replay: one generated Python function that calls
    the recorded kernels in order, each result in a local variable.

    ``source`` is that function's text (one line per kernel call), so what a replay
    runs can be read; tracebacks through a replay show its lines.
    """

    def __init__(self, first: Recorder, second: Recorder, template: Any, name: str,
                 compiled: bool = False) -> None:
        self.calls = second.calls
        self.template = template
        self.arguments = [ArgumentRead(e.slot, e.arg) for e in second.externals
                          if e.arg is not None]
        # Read on every replay: tensors the step found in place on both calls
        # (parameters, optimizer buffers). Frozen: tensors it made itself each call.
        pairs = [(a, b) for a, b in zip(first.externals, second.externals) if b.arg is None]
        self.state = [StateRead(b.slot, b.tensor) for a, b in pairs if a.tensor is b.tensor]
        self.state_layouts = [StateLayout(b.tensor, b.array.shape, b.array.dtype,
                                          getattr(b.array, "strides", None))
                              for a, b in pairs if a.tensor is b.tensor]
        # What the recording depends on besides arrays (checked when the Python state
        # moved, see invalid_reason): the modules and optimizers it used, and whether
        # each tensor it read from outside requires a gradient.
        self.object_guards = list(second.object_guards.values())
        self.flag_guards = [(b.tensor, b.requires_grad) for a, b in pairs
                            if a.tensor is b.tensor]
        self.state_version = interception.state_version
        # (copies: the recording's arrays go back to the caller, who may modify them)
        self.constants = [Constant(b.slot, b.tensor.array_backend.read_only(
                              b.tensor.array_backend.copy(b.value), in_place=True))
                          for a, b in pairs if a.tensor is not b.tensor]
        # Writes and grads the step left on tensors that outlive it: a target is a
        # Tensor, or an int when it is the caller's argument of that index.
        targets: dict[int, Any] = {id(s.tensor): s.tensor for s in self.state}
        targets.update({id(e.tensor): e.arg for e in second.externals if e.arg is not None})
        self.data_writes = [DataWrite(targets[id(w.target)], w.slot, w.mode, w.count)
                            for w in second.data_writes.values() if id(w.target) in targets]
        self.grad_writes = [GradWrite(targets[id(w.target)], w.slot)
                            for w in second.grad_writes.values() if id(w.target) in targets]
        # tensors whose .grad the step's backward summed into: the recording found none
        # there, and eager would add to one found there (a replay refuses that)
        self.accumulating = [w.target for w in self.grad_writes if type(w.target) is not int
                             and second.first_grad_write.get(id(w.target))]
        self.requires_grad = {id(e.tensor): e.requires_grad for e in second.externals}
        self.target_backends = {id(e.tensor): e.tensor.array_backend
                                for e in second.externals}
        self.argument_tensors = {e.arg: e.tensor for e in second.externals if e.arg is not None}
        constant_slots = {c.slot for c in self.constants}
        self.grad_copies = {w.slot for w in self.grad_writes if w.slot in constant_slots}
        # the slots a replay hands back: what it installs and returns
        returned = _template_outputs(template)
        destinations = ([w.slot for w in self.data_writes] +
                        [w.slot for w in self.grad_writes if w.slot is not None] +
                        list({o.slot for o in returned}))
        self.final_slots = sorted(set(destinations))
        self.output_slots = sorted({o.slot for o in returned})
        # a kernel's result going to one place only: a replay may flag it read-only
        # itself instead of making a read-only view of it
        read_in = {a.slot for a in self.arguments} | {s.slot for s in self.state}
        self.owned = {slot for slot in self.final_slots if destinations.count(slot) == 1
                      and slot not in constant_slots and slot not in read_in}
        last_use: dict[int, int] = {}  # slot -> index of the last call reading it
        for index, call in enumerate(self.calls):
            for slot in call.inputs + param_slots(call):
                last_use[slot] = index
        self._plan_releases(constant_slots | {s.slot for s in self.state}, last_use)
        self._plan_donations(second.memory_of, last_use)
        self.backend_of_slot = {o.slot: o.backend for o in returned}
        self.output_copies = {o.slot for o in returned if o.slot in constant_slots}
        installed = {w.slot for w in self.data_writes if w.mode == "install"}
        self.output_read_only = {o.slot for o in returned if o.slot in installed}
        self.owned -= self.output_read_only
        # whole-step compilation (compiled=True): see _compile_kernels
        self.compile_requested = compiled
        self.segments: list[CompiledSegment] = []
        self.compile_reasons: list[str] = []
        self.compile_seconds: float | None = None
        if compiled:
            self._compile_kernels(second)
        self.filename = f"<gradkit.capture {name} #{next(_plan_numbers)}>"
        self.source, namespace, self._line_calls = generate(self)
        exec(compile(self.source, self.filename, "exec"), namespace)
        linecache.cache[self.filename] = (len(self.source), None,
                                          self.source.splitlines(True), self.filename)
        self._replay = namespace["replay"]

    def _plan_releases(self, held: set[int], last_use: dict[int, int]) -> None:
        """After each call, drop the values no later call reads (eager frees them too)."""
        kept = held | set(self.final_slots)
        per_call: dict[int, list[int]] = {}
        for slot, index in last_use.items():
            if slot not in kept:
                per_call.setdefault(index, []).append(slot)
        for index, call in enumerate(self.calls):
            call.release = tuple(sorted(per_call.get(index, ())))

    def _compile_kernels(self, second: Recorder) -> None:
        """Compile each run of consecutive calls that have a compiled form on their
        backend (Backend.uncompilable_calls; at least MIN_SEGMENT_CALLS of them) into
        one function (Backend.compile_step); the replay calls it where those calls
        stood and runs the other calls in Python. ``compile_reasons`` says why each
        call left to Python is."""
        examples = dict(enumerate(second.arrays))
        reasons = self._uncompilable(examples)
        runs = _runs([n not in reasons for n in range(len(self.calls))],
                     [call.backend for call in self.calls])
        for start, stop in runs:
            if stop - start < MIN_SEGMENT_CALLS:
                reasons[start] = ("the only compilable call in its run (a compiled "
                                  "function of one call saves nothing)")
                continue
            segment = self._compile_segment(start, stop, examples)
            if isinstance(segment, CompiledSegment):
                self.segments.append(segment)
            else:
                self.compile_reasons.append(f"calls {start}-{stop - 1}: {segment}")
        if not self.calls:
            self.compile_reasons.append("the step launches no kernel")
        self.compile_reasons += [f"call {n} {self.calls[n].op.name}: {why}"
                                 for n, why in sorted(reasons.items()) if why is not None]
        if self.segments:
            self.compile_seconds = sum(s.step.compile_seconds for s in self.segments)
        # A view computed in compiled code can be an array the replay already holds
        # (Numba hands back the array whose layout a view matches: x.T.T is x), so
        # such a result is never flagged read-only in place.
        self.owned -= {self.calls[n].output for segment in self.segments
                       for n in range(segment.start, segment.stop)
                       if self.calls[n].op.name in COMPILED_VIEW_OPS}

    def _uncompilable(self, examples: dict[int, Any]) -> dict[int, str]:
        """Why each call without a compiled form has none, by call index (None for the
        calls of a backend that compiles no steps: compile_reasons says that once)."""
        reasons: dict[int, str | None] = {
            n: why for n, call in enumerate(self.calls) for why in [_not_compilable(call)]
            if why}
        by_backend: dict[Any, list[StepCall]] = {}
        for n, call in enumerate(self.calls):
            if n not in reasons:
                by_backend.setdefault(call.backend, []).append(self._step_call(n))
        for backend, calls in by_backend.items():
            if backend.compiles_steps:
                reasons.update(backend.uncompilable_calls(calls, examples))
            else:
                self.compile_reasons.append(f"the {backend.name} backend compiles no steps")
                reasons.update((call.index, None) for call in calls)
        return reasons

    def _step_call(self, n: int) -> StepCall:
        call = self.calls[n]
        return StepCall(n, call.op.name, call.inputs, call.params, call.live, call.output)

    def _compile_segment(self, start: int, stop: int, examples: dict[int, Any]
                         ) -> "CompiledSegment | str":
        """Calls ``start`` to ``stop - 1`` as one compiled function, or why not."""
        inside = self.calls[start:stop]
        produced = {call.output for call in inside}
        inputs = sorted({slot for call in inside for slot in call.inputs
                         if slot not in produced})
        read_after = {slot for call in self.calls[stop:]
                      for slot in call.inputs + param_slots(call)}
        results = sorted(produced & (read_after | set(self.final_slots)))
        live_values = [call.params[name] for call in inside for name in call.live]
        step = inside[0].backend.compile_step(
            [self._step_call(n) for n in range(start, stop)], inputs, results, examples,
            live_values)
        if step.function is None:
            return "; ".join(step.reasons) or "its backend compiled nothing"
        placeholders = {slot: examples[slot] for call in inside if call.check is not None
                        for slot in call.inputs if slot in produced}
        released = sorted({slot for call in inside for slot in call.release} & set(inputs))
        return CompiledSegment(start, stop, step, inputs, results, placeholders, released)

    def explain(self) -> str:
        """Which calls run compiled (and how long compiling took), and why the others
        run on the Python replay."""
        if not self.compile_requested:
            return ("Python replay (compilation off: gk.capture(f, compile=False) or "
                    "GRADKIT_CAPTURE_COMPILE=0)")
        if not self.segments:
            return "Python replay, not compiled:\n" + _indented(self.compile_reasons)
        took = f"compiling or loading took {self.compile_seconds:.2f} s"
        arena = max(s.step.arena_bytes for s in self.segments)
        if arena:
            took = f"{_size(arena)} of intermediates in memory kept between steps; {took}"
        if len(self.segments) == 1 and not self.compile_reasons:
            return f"compiled into one function ({len(self.calls)} kernel calls; {took})"
        spans = ", ".join(f"calls {s.start}-{s.stop - 1}" for s in self.segments)
        compiled = sum(s.stop - s.start for s in self.segments)
        return (f"partly compiled: {len(self.segments)} compiled function(s) run "
                f"{compiled} of {len(self.calls)} kernel calls ({spans}; {took}); the "
                "Python replay runs the others:\n" + _indented(self.compile_reasons))

    def invalid_reason(self) -> str | None:
        """Why this plan no longer fits the Python state (a new recording is needed), or
        None. Checked when gradkit.interception.state_version moved: the guarded state
        of each module and optimizer the step used, and whether each state tensor
        requires a gradient. (The replay itself checks the layouts of the state
        tensors' arrays and refuses stale gradients: see codegen.guard_lines.)
        """
        if self.state_version != interception.state_version:
            reason = changed_state(self.object_guards)
            if reason is None:
                reason = changed_flag(self.flag_guards)
            if reason is not None:
                return reason
            self.state_version = interception.state_version
        return None

    def layout_change(self) -> str:
        """Which state tensor's array has another layout than recorded (the replay
        returned STALE)."""
        for tensor, shape, dtype, strides in self.state_layouts:
            data = tensor.data
            if getattr(data, "strides", None) != strides or data.shape != shape or \
                    data.dtype != dtype:
                return f"the array of {describe(tensor)} has another layout"
        return "a state tensor's array has another layout"

    def _plan_donations(self, memory_of: dict[int, int | None],
                        last_use: dict[int, int]) -> None:
        """Let a kernel write its result into an input read for the last time, where the
        backend has such a variant and that input's memory is this replay's alone: made
        by an earlier kernel here, owning it, and not viewed by any value still needed."""
        needed_after = set(self.final_slots)
        views_of: dict[int, list[int]] = {}  # memory-owning slot -> the slots viewing it
        for viewer, owner in memory_of.items():
            if owner is not None and owner != viewer:
                views_of.setdefault(owner, []).append(viewer)
        for index, call in enumerate(self.calls):
            variant = call.backend.donating_kernels.get(call.op.name)
            if variant is None or call.kernel is not call.backend.resolved.get(call.op.name):
                continue  # (a kernel registered since the recording: leave it be)
            position, kernel = variant
            if position >= len(call.inputs):
                continue
            slot = call.inputs[position]
            viewers = views_of.get(slot, ())
            if (slot in call.release and memory_of.get(slot) == slot
                    and call.inputs.count(slot) == 1 and slot not in param_slots(call)
                    and not any(last_use.get(v, -1) > index or v in needed_after
                                for v in viewers)):
                call.kernel, call.donated = kernel, slot

    def run(self, args: tuple) -> Any:
        """Replay on ``args``; installs what the step wrote into tensors from outside it
        (its last lines, after every kernel succeeded: a failure changes nothing).
        Returns STALE, having done nothing, when a state tensor's array changed layout."""
        try:
            values = self._replay(args)
        except Exception as exc:
            raise self._replay_error(exc) from exc
        if values is None:
            return STALE
        final = dict(zip(self.output_slots, values))
        for slot in self.output_copies:  # a frozen constant returned: the caller's own copy
            final[slot] = self.backend_of_slot[slot].copy(final[slot])
        for slot in self.output_read_only:  # also a parameter's new array, as eager returns
            final[slot] = self.backend_of_slot[slot].read_only(final[slot])
        return _fill_outputs(self.template, final)

    def _replay_error(self, exc: Exception) -> Exception:
        """The error of a kernel during a replay, naming its op and operands."""
        from gradkit.registry import op_error
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != self.filename:
            tb = tb.tb_next
        index = None if tb is None else self._line_calls.get(tb.tb_lineno)
        if index is None or isinstance(exc, GradkitError):
            return exc if isinstance(exc, GradkitError) else CaptureError(
                f"capture: a replay failed: {type(exc).__name__}: {exc}")
        call = self.calls[index]
        local = tb.tb_frame.f_locals
        operands = tuple(Tensor(local[f"s{i}"], call.backend) for i in call.inputs
                         if f"s{i}" in local)
        error = op_error(call.op, operands, exc)
        return type(error)(f"{error} [during a gk.capture replay, kernel call {index}]")

class CompiledSegment(NamedTuple):
    """Calls ``start`` to ``stop - 1`` of a plan, run as one compiled function
    (``step``): it reads the slots ``inputs`` (then the live params) and returns
    ``results``, the slots read after it or handed back. ``placeholders`` are the
    recorded arrays of the slots made inside it that its calls' value checks read;
    ``released`` the inputs no later call reads."""
    start: int
    stop: int
    step: CompiledStep
    inputs: list
    results: list
    placeholders: dict
    released: list


# the fewest consecutive calls compiled into one function
MIN_SEGMENT_CALLS = 2
# ops whose compiled form returns a view of an input
COMPILED_VIEW_OPS = frozenset({"matrix_transpose"})


def _runs(compilable: list[bool], backends: list[Any]) -> list[tuple[int, int]]:
    """(start, stop) of each maximal run of compilable calls on one backend.

    >>> _runs([True, True, False, True, True, True], ["a", "a", "a", "a", "b", "b"])
    [(0, 2), (3, 4), (4, 6)]
    """
    runs: list[tuple[int, int]] = []
    for n, ok in enumerate(compilable):
        if not ok:
            continue
        if runs and runs[-1][1] == n and backends[n] is backends[n - 1]:
            runs[-1] = (runs[-1][0], n + 1)
        else:
            runs.append((n, n + 1))
    return runs


def _size(nbytes: int) -> str:
    """``nbytes`` in MiB, or in KiB below one MiB."""
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def _indented(lines: list[str]) -> str:
    return "\n".join(f"  {line}" for line in lines)


def _not_compilable(call: Any) -> str | None:
    """Why a call cannot be part of a compiled step (before asking its backend), or None."""
    if call.tensor_params is not None:
        return "its params hold tensors"
    if not getattr(call.op.forward, "__module__", "").startswith("gradkit.ops"):
        return "an op defined outside gradkit"
    return None


_plan_numbers = itertools.count()
STALE = object()  # Plan.run: this plan does not fit the arrays any more


def changed_flag(flags: list) -> str | None:
    """Which tensor's requires_grad differs from the recorded one, if any."""
    for tensor, requires_grad in flags:
        if tensor.requires_grad != requires_grad:
            return f"requires_grad of {describe(tensor)} was switched"
    return None


def _fill_outputs(template: Any, slots: list) -> Any:
    if type(template) is OutputSlot:
        return Tensor(slots[template.slot], template.backend)
    if isinstance(template, (tuple, list)):
        return type(template)(_fill_outputs(v, slots) for v in template)
    if isinstance(template, dict):
        return {k: _fill_outputs(v, slots) for k, v in template.items()}
    return template


def _template_outputs(template: Any) -> list["OutputSlot"]:
    if type(template) is OutputSlot:
        return [template]
    if isinstance(template, (tuple, list)):
        return [o for v in template for o in _template_outputs(v)]
    if isinstance(template, dict):
        return _template_outputs(list(template.values()))
    return []
