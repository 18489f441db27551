"""The generated replay function: one line of Python per recorded kernel call."""
from __future__ import annotations

import functools
from typing import Any

from gradkit.capture.recorder import CaptureError, fill_params, param_slots
from gradkit.errors import describe
from gradkit.tensor import Tensor


def generate(plan: Any) -> tuple[str, dict[str, Any], dict[int, int]]:
    """The replay function's source, the names it uses, and line -> kernel call index,
    for a plan (gradkit.capture.plan.Plan: codegen sits below it, so it is not imported).

    Slot ``i`` is the local ``s{i}``. Kernel call ``n`` of op ``name`` calls
    ``name_n``: the backend's kernel, or the op's reference forward with the
    backend's array module ``xp{n}`` as first argument (the comment says which);
    its params are ``p{n}``, and ``o{n}`` the optimizer whose hyperparameters it reads
    afresh (replay inputs). State tensors are ``t{i}``, frozen constants ``c{i}``. A
    compiled segment of calls is one call of ``compiled_step_k`` instead (its source
    is at the end, as a comment). The last lines install what the step wrote into
    tensors from outside it (``w{k}``).
    """
    namespace: dict[str, Any] = {"Tensor": Tensor}
    lines = ["def replay(args):"]
    for slot, index in plan.arguments:
        lines.append(f"    s{slot} = args[{index}].data")
    for slot, tensor in plan.state:
        namespace[f"t{slot}"] = tensor
        lines.append(f"    s{slot} = t{slot}.data")
    lines += guard_lines(plan, namespace)
    for slot, array in plan.constants:
        namespace[f"c{slot}"] = array
        lines.append(f"    s{slot} = c{slot}")
    line_calls: dict[int, int] = {}
    segments = {segment.start: (k, segment) for k, segment in enumerate(plan.segments)}
    n = 0
    while n < len(plan.calls):
        if n in segments:
            k, segment = segments[n]
            lines += segment_lines(plan, k, segment, namespace)
            n = segment.stop
            continue
        lines.append(call_line(n, plan.calls[n], namespace))
        line_calls[len(lines)] = n
        n += 1
    lines += install_lines(plan, namespace)
    returned = "".join(f"s{i}, " for i in plan.output_slots)
    lines.append(f"    return ({returned})")
    for k, segment in enumerate(plan.segments):  # what the compiled_step_k run
        lines += ["", f"# compiled_step_{k}:"] + [
            "# " + line for line in segment.step.source.splitlines()]
    return "\n".join(lines) + "\n", namespace, line_calls


def call_line(n: int, call: Any, namespace: dict[str, Any]) -> str:
    """The replay's line running kernel call ``n`` (its check, the call, the releases)."""
    name = "".join(c if c.isalnum() else "_" for c in call.op.name) + f"_{n}"
    arguments = [f"s{i}" for i in call.inputs]
    kernel = call.kernel
    if isinstance(kernel, functools.partial) and kernel.func is call.op.forward and \
            len(kernel.args) == 1 and not kernel.keywords:
        # the reference forward: call it directly, with the array module first
        namespace[name], namespace[f"xp{n}"] = kernel.func, kernel.args[0]
        arguments.insert(0, f"xp{n}")
        what = (f"move to {call.backend.name}" if call.op.output_backend is not None
                else f"reference forward on {call.backend.name}")
    else:
        namespace[name] = kernel
        what = f"{call.backend.name} kernel"
        if call.donated is not None:
            what += f", result written into s{call.donated}'s memory"
    arguments += param_arguments(n, call, namespace)
    statements = []
    if call.check is not None:
        namespace[f"v{n}"] = call.check
        checked = [a for a in arguments if not a.startswith("xp")]
        statements.append(f"v{n}({', '.join(checked)})")
    expression = f"{name}({', '.join(arguments)})"
    if call.convert is not None:
        namespace[f"a{n}"] = call.convert
        expression = f"a{n}({expression})"
    statements.append(f"s{call.output} = {expression}")
    if call.release:
        statements.append("del " + ", ".join(f"s{i}" for i in call.release))
    return "    " + "; ".join(statements) + f"  # {what}"


def param_arguments(n: int, call: Any, namespace: dict[str, Any]) -> list[str]:
    """Call ``n``'s params as keyword arguments: the recorded ones (``p{n}``, filled
    with the arrays of its tensor params where it has some) and the live ones, read
    from their owner ``o{n}``."""
    arguments = []
    fixed = {k: v for k, v in call.params.items() if k not in call.live}
    if call.tensor_params is not None:
        namespace[f"p{n}"] = functools.partial(fill_params, call)
        arguments.append(f"**p{n}({', '.join(f's{i}' for i in param_slots(call))})")
    elif fixed:
        namespace[f"p{n}"] = fixed
        arguments.append(f"**p{n}")
    if call.live:
        namespace[f"o{n}"] = call.live_owner
        arguments += [f"{name}=o{n}.{name}" for name in call.live]
    return arguments


def segment_lines(plan: Any, k: int, segment: Any, namespace: dict[str, Any]) -> list[str]:
    """The replay's lines running a compiled segment (gradkit.capture.plan.CompiledSegment):
    the value checks of its calls, then one call of its function ``compiled_step_k``
    (source at the end, as a comment) returning the slots read after it. A check runs
    on the real arrays of operands made before the segment and on zeros of the
    recorded layout for those made inside it (cross_entropy's check reads only its
    labels' values; the compiled code checks the labels again)."""
    lines = []
    for n in range(segment.start, segment.stop):
        call = plan.calls[n]
        if call.check is None:
            continue
        namespace[f"v{n}"] = call.check
        operands = []
        for slot in call.inputs:
            example = segment.placeholders.get(slot)
            if example is not None:
                namespace[f"z{slot}"] = call.backend.xp.zeros_like(example)
            operands.append(f"s{slot}" if example is None else f"z{slot}")
        operands += param_arguments(n, call, namespace)
        lines.append(f"    v{n}({', '.join(operands)})  # {call.op.name}'s value check")
    function = f"compiled_step_{k}"
    namespace[function] = segment.step.function
    arguments = [f"s{i}" for i in segment.inputs]
    for name, kind in segment.step.live:  # (named param_n: call n's live param)
        n = int(name[name.rindex("_") + 1:])
        namespace[f"o{n}"] = plan.calls[n].live_owner
        arguments.append(f"{kind}(o{n}.{name[:name.rindex('_')]})")
    results = "".join(f"s{i}, " for i in segment.results)
    statement = f"({results}) = {function}({', '.join(arguments)})"
    if segment.released:
        statement += "; del " + ", ".join(f"s{i}" for i in segment.released)
    lines.append(f"    {statement}  # calls {segment.start}-{segment.stop - 1}: "
                 f"{segment.stop - segment.start} kernel calls in one compiled function")
    return lines


def guard_lines(plan: Any, namespace: dict[str, Any]) -> list[str]:
    """Before any kernel: ``return None`` (the plan is stale) when a state tensor's array
    has another layout than recorded, and a CaptureError for a .grad the step's backward
    would add to (``refuse_stale_gradient``)."""
    slots = {id(tensor): slot for slot, tensor in plan.state}
    lines = []
    for tensor, shape, dtype, strides in plan.state_layouts:
        s, slot = f"s{slots[id(tensor)]}", slots[id(tensor)]
        namespace[f"d{slot}"] = dtype
        layout = (f"getattr({s}, 'strides', None) != {strides!r}" if strides is None
                  else f"{s}.strides != {strides!r}")
        lines.append(f"    if {s}.shape != {shape!r} or {layout} or ({s}.dtype is not d{slot} "
                     f"and {s}.dtype != d{slot}): return None  # another layout")
    if plan.accumulating:
        namespace["refuse_stale_gradient"] = refuse_stale_gradient
    for k, tensor in enumerate(plan.accumulating):
        namespace[f"g{k}"] = tensor
        lines.append(f"    if g{k}.grad is not None: refuse_stale_gradient(g{k})")
    return lines


def install_lines(plan: Any, namespace: dict[str, Any]) -> list[str]:
    """One ``Tensor.write`` per tensor from outside the step that it wrote: the array it
    left there, installed as the eager step did, and/or the .grad it left."""
    writes: dict[int, list] = {}  # id of the target (tensor or argument index) -> [data, grad]
    for index, kind in ((0, plan.data_writes), (1, plan.grad_writes)):
        for write in kind:
            writes.setdefault(id(write.target), [write.target, None, None])[index + 1] = write
    lines = []
    for k, (target, data, grad) in enumerate(writes.values()):
        if type(target) is int:
            name, tensor = f"args[{target}]", plan.argument_tensors[target]
        else:
            name, tensor = f"w{k}", target
            namespace[name] = target
        backend = plan.target_backends[id(tensor)]
        namespace[f"b{k}"] = backend
        parts = []
        if data is not None:
            parts.append(_installed_array(data, name, backend, k, plan, namespace))
        if grad is not None:
            gradient = "None"
            if grad.slot is not None:
                array = f"s{grad.slot}"
                if grad.slot in plan.grad_copies:
                    namespace[f"copy{k}"] = backend.copy
                    array = f"copy{k}({array})"
                gradient = f"Tensor({array}, b{k})"
            parts.append(f"grad={gradient}")
        if data is not None:
            parts.append(f"versions={data.count}")
        lines.append(f"    {name}.write({', '.join(parts)}, report=False)  # install")
    return lines


def _installed_array(write: Any, name: str, backend: Any, k: int, plan: Any,
                     namespace: dict[str, Any]) -> str:
    """The expression for the array ``write`` installs, as the eager step installed it."""
    array = f"s{write.slot}"
    if write.mode == "overwrite":  # into the tensor's own memory when it is writable
        namespace[f"overwrite{k}"] = backend.overwrite
        return f"overwrite{k}({name}.data, {array})"
    if write.mode == "install" and plan.requires_grad[id(plan.argument_tensors.get(
            write.target) if type(write.target) is int else write.target)]:
        namespace[f"read_only{k}"] = backend.read_only  # a parameter's array is read-only
        return f"read_only{k}({array}, in_place={write.slot in plan.owned})"
    return array


def refuse_stale_gradient(tensor: Tensor) -> None:
    """A .grad the recorded backward would have added to (gradient accumulation across
    calls) cannot be replayed: eager adds, a replay would overwrite."""
    raise CaptureError(
        f"capture: {describe(tensor)} has a .grad from before this call, and the step's "
        "backward adds to it (the recorded calls found none there); a replay would replace "
        "it instead. Call zero_grad before backward in the step, or set .grad = None before "
        "calling it")
