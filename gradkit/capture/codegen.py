"""The generated replay function: one line of Python per recorded kernel call."""
from __future__ import annotations

import functools
from typing import Any

from gradkit.capture.recorder import fill_params, param_slots


def generate(plan: Any) -> tuple[str, dict[str, Any], dict[int, int]]:
    """The replay function's source, the names it uses, and line -> kernel call index,
    for a plan (gradkit.capture.plan.Plan: codegen sits below it, so it is not imported).

    Slot ``i`` is the local ``s{i}``. Kernel call ``n`` of op ``name`` calls
    ``name_n``: the backend's kernel, or the op's reference forward with the
    backend's array module ``xp{n}`` as first argument (the comment says which);
    its params are ``p{n}``. State tensors are ``t{i}``, frozen constants ``c{i}``.
    """
    namespace: dict[str, Any] = {}
    lines = ["def replay(args):"]
    for slot, index in plan.arguments:
        lines.append(f"    s{slot} = args[{index}].data")
    for slot, tensor in plan.state:
        namespace[f"t{slot}"] = tensor
        lines.append(f"    s{slot} = t{slot}.data")
    for slot, array in plan.constants:
        namespace[f"c{slot}"] = array
        lines.append(f"    s{slot} = c{slot}")
    line_calls: dict[int, int] = {}
    for n, call in enumerate(plan.calls):
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
        if call.tensor_params is not None:
            namespace[f"p{n}"] = functools.partial(fill_params, call)
            arguments.append(f"**p{n}({', '.join(f's{i}' for i in param_slots(call))})")
        elif call.params:
            namespace[f"p{n}"] = call.params
            arguments.append(f"**p{n}")
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
        lines.append("    " + "; ".join(statements) + f"  # {what}")
        line_calls[len(lines)] = n
    returned = "".join(f"s{i}, " for i in plan.final_slots)
    lines.append(f"    return ({returned})")
    return "\n".join(lines) + "\n", namespace, line_calls
