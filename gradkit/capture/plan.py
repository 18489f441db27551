"""A recording turned into a replay: which slots a replay reads, keeps, releases and
lets a kernel write into (donation), what it installs into tensors, and the checks
(layouts, guarded values) a plan is valid under."""
from __future__ import annotations

import itertools
import linecache
from typing import Any, NamedTuple

from gradkit.capture.codegen import generate
from gradkit.capture.compare import same_value
from gradkit.capture.recorder import (CaptureError, DataWrite, GradWrite, OutputSlot,
                                      Recorder, param_slots)
from gradkit.errors import GradkitError
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

    def __init__(self, first: Recorder, second: Recorder, template: Any, name: str) -> None:
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
        self.guards = list(second.guards.values())
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
        constant_slots = {c.slot for c in self.constants}
        self.grad_copies = {w.slot for w in self.grad_writes if w.slot in constant_slots}
        # the slots a replay hands back: what it installs and returns
        returned = _template_outputs(template)
        destinations = ([w.slot for w in self.data_writes] +
                        [w.slot for w in self.grad_writes if w.slot is not None] +
                        list({o.slot for o in returned}))
        self.final_slots = sorted(set(destinations))
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

    def still_valid(self) -> bool:
        """Whether the state tensors kept the layouts and the guarded Python values
        (an optimizer's hyperparameters) the values they had when recorded."""
        for tensor, shape, dtype, strides in self.state_layouts:
            data = tensor.data
            if getattr(data, "strides", None) != strides or data.shape != shape or \
                    (data.dtype is not dtype and data.dtype != dtype):
                return False
        for owner, name, value in self.guards:
            current = getattr(owner, name)
            if current is not value and not same_value(current, value):
                return False
        return True

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
        try:
            values = self._replay(args)
        except Exception as exc:
            raise self._replay_error(exc) from exc
        final = dict(zip(self.final_slots, values))
        self._install(final, args)  # only once every kernel succeeded: a failure changes nothing
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

    def _install(self, final: dict, args: tuple) -> None:
        for write in self.data_writes:
            target, slot, mode = write.target, write.slot, write.mode
            tensor = args[target] if type(target) is int else target
            backend = tensor.array_backend
            if mode == "overwrite":
                array = backend.overwrite(tensor.data, final[slot])
            elif mode == "install":
                array = (backend.read_only(final[slot], in_place=slot in self.owned)
                         if tensor.requires_grad else final[slot])
            else:  # "assign"
                array = final[slot]
            # the values as the recording computed them; a replay is not heard as a write
            tensor.write(array, versions=write.count, report=False)
        for write in self.grad_writes:
            target, slot = write.target, write.slot
            tensor = args[target] if type(target) is int else target
            if slot is None:
                tensor.write(grad=None, report=False)
                continue
            array = final[slot]
            if slot in self.grad_copies:
                array = tensor.array_backend.copy(array)
            tensor.write(grad=Tensor(array, tensor.array_backend), report=False)


_plan_numbers = itertools.count()


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
