"""Comparing the two recordings of a captured function: :func:`compare` raises a
:class:`CaptureError` naming the first way they differ."""
from __future__ import annotations

from operator import attrgetter
from typing import Any

import numpy as np

from gradkit.capture.recorder import CaptureError, KernelCall, Recorder
from gradkit.errors import describe


# what two writes must agree on (their targets may differ where made anew each call)
_DATA_WRITE_EFFECT = attrgetter("slot", "mode", "count")  # a DataWrite's
_GRAD_WRITE_EFFECT = attrgetter("slot")  # a GradWrite's


def same_value(a: Any, b: Any) -> bool:
    """Equality for params: arrays by value, floats with NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, slice):
        return (a.start, a.stop, a.step) == (b.start, b.stop, b.step)
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return _same_array(a, b)
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)


_PLAIN = (int, float, complex, str, bytes, bool, type(None))


def same_state(a: Any, b: Any) -> bool:
    """Equality for guarded Python state (``guarded_state()`` tuples): the same objects,
    or equal plain values (numbers, strings, None) of the same type; tuples item by item.

    >>> w = object()
    >>> same_state((("lr", 0.1), ("w", w)), (("lr", 0.1), ("w", w)))
    True
    >>> same_state((("training", True),), (("training", False),))
    False
    """
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, _PLAIN):
        return a == b or (a != a and b != b)  # NaN equals NaN here
    return False


def changed_state(guards: Any) -> str | None:
    """What changed among ``guards`` (ObjectGuards), or None when nothing did."""
    for guard in guards:
        if not same_state(guard.owner.guarded_state(), guard.state):
            return f"the {guard.what} it used changed ({guard.owner!r:.80})"
    return None


def _same_array(a: Any, b: Any) -> bool:
    a, b = np.asarray(_host(a)), np.asarray(_host(b))
    return a.shape == b.shape and a.dtype == b.dtype and bool(
        np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _host(array: Any) -> Any:
    get = getattr(array, "get", None)  # CuPy
    return get() if callable(get) and not isinstance(array, np.ndarray) else array


def _describe_call(call: KernelCall, index: int) -> str:
    return f"kernel call {index} ({call.op.name})"


def compare(first: Recorder, second: Recorder, outputs: tuple[Any, Any]) -> None:
    """Raise CaptureError at the first way two recordings of the same call differ."""
    hint = ("capture replays kernels with the values of its recording; a step whose "
            "Python side changes between calls cannot be captured (see gk.capture)")
    if len(first.calls) != len(second.calls):
        raise CaptureError(f"capture: the first call launched {len(first.calls)} kernels, "
                           f"the second {len(second.calls)} (a branch or loop that depends "
                           f"on values, state created on the first call, or gradients "
                           f"accumulating across calls: call zero_grad in the step?); {hint}")
    for index, (a, b) in enumerate(zip(first.calls, second.calls)):
        where = _describe_call(b, index)
        if a.op is not b.op or a.inputs != b.inputs or a.output != b.output or \
                a.live != b.live or a.live_owner is not b.live_owner:
            raise CaptureError(f"capture: {where} differs between the first two calls "
                               f"(first call: {a.op.name}); {hint}")
        for name in b.params:
            if name not in b.live and not same_value(a.params[name], b.params[name]):
                raise CaptureError(
                    f"capture: {where}: param {name!r} was {a.params[name]!r} on the first "
                    f"call and {b.params[name]!r} on the second; {hint}")
    if len(first.externals) != len(second.externals):
        raise CaptureError(f"capture: the two calls read different numbers of outside "
                           f"arrays; {hint}")
    for a, b in zip(first.externals, second.externals):
        if a.slot != b.slot or a.arg != b.arg:
            raise CaptureError(f"capture: the two calls read their inputs differently; {hint}")
        if a.arg is None and a.tensor is not b.tensor and (
                id(a.tensor) not in first.created or id(b.tensor) not in second.created):
            raise CaptureError(
                f"capture: the two calls read different tensors that were made before the "
                f"call ({describe(a.tensor)}, then {describe(b.tensor)}: alternating buffers, "
                "or a tensor the caller replaced?); a replay would read one of them always; "
                f"pass it as an argument instead; {hint}")
        if a.arg is None and a.tensor is not b.tensor and not _same_array(a.value, b.value):
            raise CaptureError(
                f"capture: a tensor made outside gradkit ops ({describe(b.tensor)}) held "
                "different values on the first two calls (data converted with gk.tensor "
                "inside the step, random numbers drawn on the host, a value computed with "
                f"NumPy?); pass it as an argument instead; {hint}")
    # tensors both calls read from outside: parameters, buffers (the others are made anew)
    persistent = {id(a.tensor) for a, b in zip(first.externals, second.externals)
                  if a.tensor is b.tensor}
    for kind, a_writes, b_writes, effect in (
            ("updated", first.data_writes, second.data_writes, _DATA_WRITE_EFFECT),
            ("left gradients on", first.grad_writes, second.grad_writes, _GRAD_WRITE_EFFECT)):
        a_list, b_list = list(a_writes.values()), list(b_writes.values())
        if len(a_list) != len(b_list) or any(
                effect(a) != effect(b) or (a.target is not b.target and (
                    id(a.target) in persistent or id(b.target) in persistent))
                for a, b in zip(a_list, b_list)):
            raise CaptureError(f"capture: the two calls {kind} tensors differently; {hint}")
    if not same_value(outputs[0], outputs[1]):
        raise CaptureError(f"capture: the function returned different Python values on "
                           f"its first two calls ({outputs[0]!r}, {outputs[1]!r}); return "
                           f"Tensors instead; {hint}")
