"""Record a step's kernel calls once, then replay them without the engine: ``gk.capture``.

An eager step pays, for every op, a Tensor, a tape node, a dispatch and a visit
by the backward walk. For small shapes that is most of the step. ``gk.capture(f)``
runs ``f`` eagerly on its first two calls while recording every kernel launched
(forward, backward and optimizer alike), checks that the two recordings agree,
and from then on replays the recorded kernels on the new arguments' arrays: no
Tensor, node or dispatch per op. It is the CPU counterpart of capturing a CUDA
graph, in the spirit of tinygrad's TinyJit and ``torch.cuda.graphs``.

>>> import gradkit as gk
>>> w = gk.tensor([1.0, 2.0], requires_grad=True)
>>> opt = gk.optim.SGD([w], lr=0.1)
>>> @gk.capture
... def step(x):
...     loss = ((x * w).sum() - 1.0) ** 2
...     loss.backward()
...     opt.step()
...     opt.zero_grad()
...     return loss
>>> [round(step(gk.tensor([1.0, 1.0])).item(), 4) for _ in range(4)]
[4.0, 1.44, 0.5184, 0.1866]
>>> step.replays
2

What a replay repeats: every gradkit op's kernel, in the recorded order with the
recorded params, on the arrays the arguments and pre-existing tensors (parameters,
optimizer buffers) hold at that call; then the arrays the step installed into
pre-existing tensors (in-place operators, ``x[i] = v``, optimizer updates) and the
``.grad`` it left on them. Returned tensors come back detached. Where a kernel reads
an array for the last time and nothing else can see that memory, the backend may
write the kernel's result into it (the source says so), as hand-written NumPy does.

What a replay freezes: everything computed outside gradkit ops (Python numbers,
branches taken, host NumPy results, random draws on the host, a module's
train/eval mode). The two recorded calls must agree on it (same kernels, params,
constants and updated tensors), so a step whose Python side changes between calls
(dropout masks drawn on the host, a branch on a loss value, alternating buffers)
raises :class:`CaptureError` naming the first difference instead of replaying stale
values. An optimizer's hyperparameters are guarded: set ``opt.lr`` (a schedule) and
the next call records anew; so does a parameter whose memory layout changed. It also refuses what it could not
repeat: a read through a view of memory an in-place operator changed, an in-place
update of a view of memory from outside the call, backward adding to a ``.grad``
from before the step, a tensor that shares its array with an argument without being
it, results whose shape depends on values (boolean-mask indexing, argwhere,
unique_values), and the gradient of a user op whose VJP computes a value from its
inputs' raw arrays (``ctx.constant``; no built-in op's VJP does). Arguments with a new shape, strides,
dtype or backend (or new non-tensor arguments) are recorded afresh, like a retrace;
so is everything after an op is redefined with ``register_op(..., replace=True)``.

A replay installs nothing unless every kernel succeeded; buffers that update
kernels change in place (SGD momentum, Adam's m and v) have advanced if a later
kernel fails, as in an eager step that fails after its optimizer step.
"""
from __future__ import annotations

import contextvars
import functools
import itertools
import linecache
import sys
import warnings
from typing import Any, Callable

import numpy as np

from gradkit.errors import GradkitError, describe
from gradkit.tensor import Tensor


class CaptureError(GradkitError, RuntimeError):
    """A captured function cannot be replayed faithfully (see :func:`capture`)."""


# The recorder of the capture running in this thread / task, or None.
recording: contextvars.ContextVar["Recorder | None"] = contextvars.ContextVar(
    "gradkit_capture", default=None)
# How many recordings run now (any thread): Tensor() reports itself only while one does.
active_recordings = 0


def note_created(tensor: Tensor) -> None:
    """Called by Tensor() while a recording runs: this tensor did not exist before."""
    recorder = recording.get()
    if recorder is not None:
        recorder.created.add(id(tensor))


# -- recording ---------------------------------------------------------------------

class KernelCall:
    """One recorded kernel launch: which kernel, on which slots, with which params."""

    __slots__ = ("op", "kernel", "inputs", "params", "output", "convert", "tensor_params",
                 "check", "release", "backend", "donated")

    def __init__(self, op: Any, kernel: Callable[..., Any], inputs: tuple[int, ...],
                 params: dict, output: int, convert: Callable[..., Any] | None,
                 tensor_params: tuple | None, backend: Any) -> None:
        self.op = op
        self.backend = backend
        self.kernel = kernel
        self.inputs = inputs
        self.params = params
        self.output = output
        self.convert = convert  # the backend's asarray when the kernel returns a scalar
        self.tensor_params = tensor_params  # (backend, paths) when params hold Tensors
        self.check: Callable[..., None] | None = None  # a value check, rerun on each replay
        self.release: tuple[int, ...] = ()  # slots no later call reads
        self.donated: int | None = None  # the input slot whose memory the result takes


class External:
    """An array a recording read but no recorded kernel produced."""

    __slots__ = ("slot", "tensor", "arg", "array", "value")

    def __init__(self, slot: int, tensor: Tensor, arg: int | None) -> None:
        self.slot = slot
        self.tensor = tensor  # the Tensor it was read through
        self.arg = arg  # the function's argument index, when it is an argument
        self.array = tensor.data  # the array object it held when first read
        self.value = tensor.data  # its values then (a copy once written in place)


class Recorder:
    """Collects the kernel calls and tensor writes of one eager call."""

    def __init__(self, args: tuple) -> None:
        self.calls: list[KernelCall] = []
        self.arrays: list[Any] = []  # slot -> array (keeps each alive, so ids stay unique)
        self.slot_of: dict[int, int] = {}  # id(array) -> slot holding those values now
        self.externals: list[External] = []
        self.data_writes: dict[int, list] = {}  # id(tensor) -> [tensor, slot, mode, count]
        self.grad_writes: dict[int, list] = {}  # id(tensor) -> [tensor, slot or None]
        # produced slot -> the produced slot owning its memory (itself unless a view of
        # another kernel's result), or None when that memory came from outside
        self.memory_of: dict[int, int | None] = {}
        # id(memory owner) -> (number of slots then, id of the array written through) for
        # memory an in-place operator wrote into
        self.overwritten: dict[int, tuple[int, int]] = {}
        self.alias_of: dict[int, tuple[Tensor, Tensor]] = {}  # id(detached) -> (it, origin)
        self.created: set[int] = set()  # ids of the tensors made during this call
        self.external_roots: dict[int, Any] = {}  # memory owners of the outside arrays
        self.guards: dict[tuple[int, str], tuple[Any, str, Any]] = {}  # Python values read
        self.argument_tensors: dict[int, Tensor] = {}  # slot -> the argument holding it
        self.argument_index: dict[int, int] = {}
        for index, value in enumerate(args):
            if isinstance(value, Tensor) and id(value.data) not in self.slot_of:
                slot = self._external(value, index)
                self.argument_tensors[slot], self.argument_index[slot] = value, index

    def _new_slot(self, array: Any) -> int:
        self.arrays.append(array)
        slot = len(self.arrays) - 1
        self.slot_of[id(array)] = slot
        return slot

    def _external(self, tensor: Tensor, arg: int | None) -> int:
        root = _root(tensor.data)
        self.external_roots[id(root)] = root
        slot = self._new_slot(tensor.data)
        self.externals.append(External(slot, tensor, arg))
        return slot

    def slot(self, tensor: Tensor) -> int:
        """The slot holding ``tensor``'s array (a new external slot if none does).

        A whole-array view of a slot's array (the read-only view ``requires_grad_``
        makes of an argument) is that slot too.
        """
        array = tensor.data
        slot = self.slot_of.get(id(array))
        if slot is None and getattr(array, "base", None) is not None:
            slot = self._same_memory_slot(array)
            if slot is not None:
                self.slot_of[id(array)] = slot
                self.arrays.append(array)  # alive, so its id stays its own
        if self.overwritten:
            self._check_not_stale(array, slot)
        if slot is not None and slot in self.argument_tensors and \
                self._origin(tensor) is not self.argument_tensors[slot]:
            raise CaptureError(
                f"capture: the function reads a tensor ({describe(tensor)}) that shares its "
                f"array with argument {self.argument_index[slot]} without being it (an "
                "argument passed as w.detach() while the function also reads w?); a replay "
                "would read the next call's argument for both. Pass a copy, or pass w itself")
        if slot is None:
            alias = self.alias_of.get(id(tensor))
            if alias is not None and alias[1].data is array:  # x.detach(): read x itself
                tensor = alias[1]
            return self._external(tensor, None)
        return slot

    def _same_memory_slot(self, view: Any) -> int | None:
        """The slot of a kernel result or argument whose memory and layout ``view`` has."""
        base = view.base
        if id(base) in self.slot_of and _same_layout(base, view):
            return self.slot_of[id(base)]
        key = _layout_key(view)
        for slot in self.argument_tensors:  # an argument that is itself a view
            if key is not None and _layout_key(self.arrays[slot]) == key:
                return slot
        return None

    def check_accumulation(self, leaf: Tensor) -> None:
        """backward is about to add to ``leaf.grad``: only a gradient made in this call."""
        slot = self.slot_of.get(id(leaf.grad.data))
        made_here = id(leaf.grad) in self.created or slot in self.memory_of or any(
            e.slot == slot and id(e.tensor) in self.created for e in self.externals)
        if not made_here:
            raise CaptureError(
                f"capture: backward adds to a .grad that was there before the step "
                f"({describe(leaf)}); a replay would not add to the gradient present at "
                "its call. Call zero_grad (or set .grad = None) in the step, before backward")

    def _origin(self, tensor: Tensor) -> Tensor:
        alias = self.alias_of.get(id(tensor))
        return tensor if alias is None else alias[1]

    def aliased(self, detached: Tensor, origin: Tensor) -> None:
        """``detached`` shares ``origin``'s array (``origin.detach()``)."""
        while id(origin) in self.alias_of:
            origin = self.alias_of[id(origin)][1]
        self.alias_of[id(detached)] = (detached, origin)

    def _check_not_stale(self, array: Any, slot: int | None) -> None:
        """Refuse a read of memory an in-place operator changed through another array
        (a view taken before ``buf += x``): a replay would read the old values."""
        written = self.overwritten.get(id(_root(array)))
        if written is None or id(array) == written[1] or (slot is not None and
                                                           slot >= written[0]):
            return
        raise CaptureError(
            "capture: the function reads, through a view or alias, memory that an in-place "
            "operator changed (e.g. v = buf.reshape(...); buf += x; use v); a replay "
            "cannot repeat that. Take the view after the update, or write buf = buf + x")

    def will_overwrite(self, tensor: Tensor) -> None:
        """Called before an in-place operator writes into ``tensor``'s array."""
        array = tensor.data
        if not tensor._backend.is_writeable(array):
            return  # Backend.overwrite will install a new array: no memory is shared
        root = _root(array)
        if root is not array and self.memory_of.get(self.slot_of.get(id(array), -1)) is None:
            raise CaptureError(
                f"capture: an in-place operator writes into a view ({describe(tensor)}) of "
                "memory from outside this call, so into the array it views; a replay cannot "
                "repeat that. Use x[index] = value on the viewed tensor, or an out-of-place "
                "operator")
        slot = self.slot_of.get(id(array))
        for ext in self.externals:  # keep the values it was read with (a constant's)
            if ext.slot == slot and ext.value is array:
                ext.value = tensor._backend.copy(array)
        # later reads of this memory through any other array are stale (see slot())
        self.overwritten[id(root)] = (len(self.arrays), id(array))

    def guard(self, owner: Any, name: str) -> None:
        """A Python value the step reads (an optimizer's learning rate): a replay runs
        only while ``getattr(owner, name)`` still equals what this recording saw."""
        self.guards[(id(owner), name)] = (owner, name, getattr(owner, name))

    def kernel(self, op: Any, kernel: Callable[..., Any], args: tuple, params: dict,
               out: Any, converted: bool, backend: Any) -> None:
        """Called by dispatch after every kernel launch while recording."""
        if op.value_shaped or (op.index_param is not None and
                               _boolean_index(params.get(op.index_param))):
            raise CaptureError(
                f"capture: {op.name} {'' if op.value_shaped else 'with a boolean mask '}"
                "gives a result whose shape depends on the values; a replay keeps the "
                "recorded shapes, so this step cannot be captured (use gk.where with a mask)")
        inputs = tuple([self.slot(t) for t in args])
        tensor_params = _tensor_paths(params)
        if tensor_params:
            params = _substitute(params, tensor_params, [self.slot(t) for t in
                                                         _tensors_at(params, tensor_params)])
            tensor_params = (backend, tensor_params)
        reused = self.slot_of.get(id(out))  # a kernel that returned an array it was given
        owner = self._memory_owner(out) if reused is None else self.memory_of.get(reused)
        call = KernelCall(op, kernel, inputs, params, self._new_slot(out),
                          backend.asarray if converted else None, tensor_params or None, backend)
        self.memory_of[call.output] = call.output if owner is _OWN else owner
        if getattr(op, "check_values", False):
            call.check = functools.partial(_run_check, op, backend)
        self.calls.append(call)

    def _memory_owner(self, array: Any) -> Any:
        """_OWN if ``array`` owns its memory, else the produced slot owning it (or None)."""
        base = getattr(array, "base", _OWN)
        if base is None:
            return _OWN
        root = _root(base)
        slot = self.slot_of.get(id(root))
        if slot is None and id(root) not in self.external_roots:
            return _OWN  # a view of a kernel's private temporary (sum_to's reshape)
        return slot if slot is not None and slot in self.memory_of else None

    def wrote_data(self, tensor: Tensor, result: Tensor, mode: str) -> None:
        """``tensor`` now holds ``result``'s values (an in-place operator, setitem or
        an optimizer). ``mode`` is how a replay installs them, as the eager path did:
        "overwrite" (Backend.overwrite), "install" (read-only when the tensor requires
        a gradient, as optimizers do) or "assign" (plain assignment)."""
        slot = self.slot(result)
        self.slot_of[id(tensor.data)] = slot
        targets = [tensor]
        if mode == "overwrite":  # the same array read through another tensor (x.detach())
            targets += [e.tensor for e in self.externals
                        if e.tensor is not tensor and e.tensor.data is tensor.data]
        for target in targets:
            entry = self.data_writes.get(id(target))
            count = 0 if entry is None else entry[3]
            self.data_writes[id(target)] = [target, slot, mode, count + 1]

    def wrote_grad(self, tensor: Tensor, grad: Tensor | None) -> None:
        # the gradient tensor itself: its array may still change (w.grad *= scale), so its
        # slot is looked up when the call ends (finish)
        self.grad_writes[id(tensor)] = [tensor, grad]

    def finish(self) -> None:
        """The end of the recorded call: each .grad left behind, as the slot it holds now."""
        for entry in self.grad_writes.values():
            if isinstance(entry[1], Tensor):
                entry[1] = self.slot(entry[1])

    def keep_constant_values(self) -> None:
        """Copy what the arrays made during the call held, before the caller gets them
        back (and may change them in place): they are this recording's constants."""
        for ext in self.externals:
            if ext.arg is None and id(ext.tensor) in self.created and ext.value is ext.array:
                ext.value = ext.tensor._backend.copy(ext.value)

    def check_untracked_writes(self) -> None:
        """A tensor whose array was replaced by plain assignment cannot be replayed."""
        for ext in self.externals:
            tensor = ext.tensor
            if tensor.data is not ext.array and id(tensor) not in self.data_writes and \
                    self.slot_of.get(id(tensor.data)) is None:
                raise CaptureError(
                    f"capture: the function replaced the array of a tensor it read "
                    f"({describe(tensor)}) by assigning .data (or another path gradkit does "
                    "not see); a replay would not repeat that. Update it with an in-place "
                    "operator, x[...] = value, or an optimizer")


def _root(array: Any) -> Any:
    """The array owning ``array``'s memory (itself when it is not a view)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


def _layout_key(array: Any) -> tuple | None:
    """(address, shape, strides, dtype) of an array's data, where the library says."""
    interface = getattr(array, "__array_interface__", None)  # NumPy
    address = interface["data"][0] if interface else getattr(getattr(array, "data", None),
                                                               "ptr", None)  # CuPy
    if address is None:
        return None
    return (address, array.shape, getattr(array, "strides", None), str(array.dtype))


def _same_layout(base: Any, view: Any) -> bool:
    return (base.shape == view.shape and base.dtype == view.dtype and
            getattr(base, "strides", None) == getattr(view, "strides", None))


_OWN = object()  # marks an array that owns its memory

def _boolean_index(index: Any) -> bool:
    items = index if isinstance(index, (tuple, list)) else (index,)
    for item in items:
        dtype = getattr(item, "dtype", None)
        if dtype is not None and getattr(item, "ndim", 0) > 0 and np.dtype(
                dtype if isinstance(dtype, np.dtype) else str(dtype)).kind == "b":
            return True
        if isinstance(item, list) and item and all(isinstance(v, bool) for v in item):
            return True
    return False


def _run_check(op: Any, backend: Any, *arrays: Any, **params: Any) -> None:
    op.check(*[Tensor(a, backend) for a in arrays], **params)


def _tensor_paths(value: Any, path: tuple = ()) -> tuple:
    """Where Tensors sit inside a params dict (an index tuple holding a Tensor)."""
    if isinstance(value, Tensor):
        return (path,)
    if isinstance(value, dict):
        return tuple(p for key, item in value.items() for p in _tensor_paths(item, path + (key,)))
    if isinstance(value, (tuple, list)):
        return tuple(p for i, item in enumerate(value) for p in _tensor_paths(item, path + (i,)))
    if isinstance(value, slice):  # x[:n] with a tensor n
        return tuple(p for name in _SLICE_FIELDS
                     for p in _tensor_paths(getattr(value, name), path + (name,)))
    return ()


_SLICE_FIELDS = ("start", "stop", "step")


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = getattr(value, key) if isinstance(value, slice) else value[key]
    return value


def _tensors_at(params: dict, paths: tuple) -> list[Tensor]:
    return [_get(params, path) for path in paths]


def _substitute(value: Any, paths: tuple, replacements: list, path: tuple = ()) -> Any:
    """``value`` with the item at each of ``paths`` replaced (containers rebuilt)."""
    for p, replacement in zip(paths, replacements):
        if p == path:
            return replacement
    if not any(p[:len(path)] == path for p in paths):
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, paths, replacements, path + (k,)) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(*[_substitute(getattr(value, name), paths, replacements, path + (name,))
                       for name in _SLICE_FIELDS])
    rebuilt = [_substitute(v, paths, replacements, path + (i,)) for i, v in enumerate(value)]
    return type(value)(rebuilt)


# -- comparing two recordings ------------------------------------------------------

def _same_value(a: Any, b: Any) -> bool:
    """Equality for params: arrays by value, floats with NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, slice):
        return (a.start, a.stop, a.step) == (b.start, b.stop, b.step)
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return _same_array(a, b)
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)


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
        if a.op is not b.op or a.inputs != b.inputs or a.output != b.output:
            raise CaptureError(f"capture: {where} differs between the first two calls "
                               f"(first call: {a.op.name}); {hint}")
        for name in b.params:
            if not _same_value(a.params[name], b.params[name]):
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
    for kind, a_writes, b_writes in (("updated", first.data_writes, second.data_writes),
                                     ("left gradients on", first.grad_writes,
                                      second.grad_writes)):
        a_list, b_list = list(a_writes.values()), list(b_writes.values())
        if len(a_list) != len(b_list) or any(
                a[1:] != b[1:] or (a[0] is not b[0] and (id(a[0]) in persistent or
                                                       id(b[0]) in persistent))
                for a, b in zip(a_list, b_list)):
            raise CaptureError(f"capture: the two calls {kind} tensors differently; {hint}")
    if not _same_value(outputs[0], outputs[1]):
        raise CaptureError(f"capture: the function returned different Python values on "
                           f"its first two calls ({outputs[0]!r}, {outputs[1]!r}); return "
                           f"Tensors instead; {hint}")


# -- the replay plan ---------------------------------------------------------------

class _OutputSlot:
    """Where a returned Tensor's array sits in a recording."""

    __slots__ = ("slot", "backend")

    def __init__(self, slot: int, backend: Any) -> None:
        self.slot = slot
        self.backend = backend

    def __eq__(self, other: Any) -> bool:
        return type(other) is _OutputSlot and other.slot == self.slot

    def __repr__(self) -> str:
        return f"<output slot {self.slot}>"


def _output_template(value: Any, recorder: Recorder) -> Any:
    """The returned structure with each Tensor replaced by its slot."""
    if isinstance(value, Tensor):
        return _OutputSlot(recorder.slot(value), value._backend)
    if isinstance(value, (tuple, list)):
        return type(value)(_output_template(v, recorder) for v in value)
    if isinstance(value, dict):
        return {k: _output_template(v, recorder) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CaptureError(f"capture: the function returned a {type(value).__name__}; a captured "
                       "function returns Tensors (or tuples, lists, dicts of them, or None)")


def _fill_outputs(template: Any, slots: list) -> Any:
    if type(template) is _OutputSlot:
        return Tensor(slots[template.slot], template.backend)
    if isinstance(template, (tuple, list)):
        return type(template)(_fill_outputs(v, slots) for v in template)
    if isinstance(template, dict):
        return {k: _fill_outputs(v, slots) for k, v in template.items()}
    return template


def _detached(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach() if value.node is not None else value
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


class Plan:
    """A recording turned into a replay: one generated Python function that calls
    the recorded kernels in order, each result in a local variable.

    ``source`` is that function's text (one line per kernel call), so what a replay
    runs can be read; tracebacks through a replay show its lines.
    """

    def __init__(self, first: Recorder, second: Recorder, template: Any, name: str) -> None:
        self.calls = second.calls
        self.template = template
        self.arguments = [(e.slot, e.arg) for e in second.externals if e.arg is not None]
        # Read on every replay: tensors the step found in place on both calls
        # (parameters, optimizer buffers). Frozen: tensors it made itself each call.
        pairs = [(a, b) for a, b in zip(first.externals, second.externals) if b.arg is None]
        self.state = [(b.slot, b.tensor) for a, b in pairs if a.tensor is b.tensor]
        self.state_layouts = [(b.tensor, (b.array.shape, b.array.dtype,
                                          getattr(b.array, "strides", None)))
                              for a, b in pairs if a.tensor is b.tensor]
        self.guards = list(second.guards.values())
        # (copies: the recording's arrays go back to the caller, who may modify them)
        self.constants = [(b.slot, b.tensor._backend.read_only(b.tensor._backend.copy(b.value),
                                                              in_place=True))
                          for a, b in pairs if a.tensor is not b.tensor]
        # Writes and grads the step left on tensors that outlive it: a target is a
        # Tensor, or an int when it is the caller's argument of that index.
        targets: dict[int, Any] = {id(t): t for _, t in self.state}
        targets.update({id(e.tensor): e.arg for e in second.externals if e.arg is not None})
        self.data_writes = [(targets[id(t)], slot, mode, count) for t, slot, mode, count
                            in second.data_writes.values() if id(t) in targets]
        self.grad_writes = [(targets[id(t)], slot) for t, slot in second.grad_writes.values()
                            if id(t) in targets]
        constant_slots = {slot for slot, _ in self.constants}
        self.grad_copies = {slot for _, slot in self.grad_writes if slot in constant_slots}
        # the slots a replay hands back: what it installs and returns
        returned = _template_outputs(template)
        destinations = ([slot for _, slot, _, _ in self.data_writes] +
                        [slot for _, slot in self.grad_writes if slot is not None] +
                        list({o.slot for o in returned}))
        self.final_slots = sorted(set(destinations))
        # a kernel's result going to one place only: a replay may flag it read-only
        # itself instead of making a read-only view of it
        self.owned = {slot for slot in self.final_slots if destinations.count(slot) == 1
                      and slot not in constant_slots and slot not in dict(self.arguments)
                      and slot not in dict(self.state)}
        last_use: dict[int, int] = {}  # slot -> index of the last call reading it
        for index, call in enumerate(self.calls):
            for slot in call.inputs + _param_slots(call):
                last_use[slot] = index
        self._plan_releases(constant_slots | {slot for slot, _ in self.state}, last_use)
        self._plan_donations(second.memory_of, last_use)
        self.backend_of_slot = {o.slot: o.backend for o in returned}
        self.output_copies = {o.slot for o in returned if o.slot in constant_slots}
        installed = {slot for target, slot, mode, _ in self.data_writes if mode == "install"}
        self.output_read_only = {o.slot for o in returned if o.slot in installed}
        self.owned -= self.output_read_only
        self.filename = f"<gradkit.capture {name} #{next(_plan_numbers)}>"
        self.source, namespace, self._line_calls = _generate(self)
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
        for tensor, (shape, dtype, strides) in self.state_layouts:
            data = tensor.data
            if getattr(data, "strides", None) != strides or data.shape != shape or \
                    (data.dtype is not dtype and data.dtype != dtype):
                return False
        for owner, name, value in self.guards:
            current = getattr(owner, name)
            if current is not value and not _same_value(current, value):
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
            if variant is None or call.kernel is not call.backend._resolved.get(call.op.name):
                continue  # (a kernel registered since the recording: leave it be)
            position, kernel = variant
            if position >= len(call.inputs):
                continue
            slot = call.inputs[position]
            viewers = views_of.get(slot, ())
            if (slot in call.release and memory_of.get(slot) == slot
                    and call.inputs.count(slot) == 1 and slot not in _param_slots(call)
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
        from gradkit.registry import _op_error
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
        error = _op_error(call.op, operands, exc)
        return type(error)(f"{error} [during a gk.capture replay, kernel call {index}]")

    def _install(self, final: dict, args: tuple) -> None:
        for target, slot, mode, count in self.data_writes:
            tensor = args[target] if type(target) is int else target
            backend = tensor._backend
            if mode == "overwrite":
                tensor.data = backend.overwrite(tensor.data, final[slot])
            elif mode == "install":
                tensor.data = (backend.read_only(final[slot], in_place=slot in self.owned)
                               if tensor._requires_grad else final[slot])
            else:  # "assign"
                tensor.data = final[slot]
            tensor._version += count
        for target, slot in self.grad_writes:
            tensor = args[target] if type(target) is int else target
            if slot is None:
                tensor._grad = None
                continue
            array = final[slot]
            if slot in self.grad_copies:
                array = tensor._backend.copy(array)
            tensor._grad = Tensor(array, tensor._backend)


_plan_numbers = itertools.count()


def _generate(plan: Plan) -> tuple[str, dict[str, Any], dict[int, int]]:
    """The replay function's source, the names it uses, and line -> kernel call index.

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
            what = f"reference forward on {call.backend.name}"
        else:
            namespace[name] = kernel
            what = ("move to " if call.op.name == "to_backend" else "") + \
                f"{call.backend.name}" + ("" if call.op.name == "to_backend" else " kernel")
            if call.donated is not None:
                what += f", result written into s{call.donated}'s memory"
        if call.tensor_params is not None:
            namespace[f"p{n}"] = functools.partial(_fill_params, call)
            arguments.append(f"**p{n}({', '.join(f's{i}' for i in _param_slots(call))})")
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


def _param_slots(call: KernelCall) -> tuple[int, ...]:
    if call.tensor_params is None:
        return ()
    return tuple(_get(call.params, path) for path in call.tensor_params[1])


def _fill_params(call: KernelCall, *values: Any) -> dict:
    """``call``'s params with its Tensors rebuilt around this replay's arrays."""
    backend, paths = call.tensor_params
    return _substitute(call.params, paths, [Tensor(v, backend) for v in values])


def _template_outputs(template: Any) -> list["_OutputSlot"]:
    if type(template) is _OutputSlot:
        return [template]
    if isinstance(template, (tuple, list)):
        return [o for v in template for o in _template_outputs(v)]
    if isinstance(template, dict):
        return _template_outputs(list(template.values()))
    return []


# -- the public decorator ------------------------------------------------------------

class CapturedFunction:
    """``f`` recorded on its first two calls per signature, replayed afterwards.

    ``replays`` counts the calls served by a replay; ``recordings`` the eager,
    recorded ones.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.plans: dict[tuple, Plan] = {}
        self.pending: dict[tuple, tuple[Recorder, Any]] = {}
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
        global active_recordings
        recorder = Recorder(flat)
        token = recording.set(recorder)
        active_recordings += 1
        try:
            result = self.function(*args, **kwargs)
            template = _output_template(result, recorder)
            recorder.finish()
            recorder.check_untracked_writes()
            recorder.keep_constant_values()
        finally:
            active_recordings -= 1
            recording.reset(token)
        self.recordings += 1
        previous = self.pending.pop(key, None)
        if previous is None:
            self.pending[key] = (recorder, template)
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
            first, first_template = previous
            compare(first, recorder, (first_template, template))
            self.plans[key] = Plan(first, recorder, template,
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
                        value._backend, value._requires_grad, value._grad is None, alias))
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
