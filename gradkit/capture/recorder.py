"""Recording one eager call of a captured function: the ``recording`` context variable
the engine reads, the :class:`Recorder` it reports every kernel launch and tensor write
to, and the records it keeps (:class:`KernelCall`, :class:`External`)."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np

from gradkit.errors import CaptureError, describe  # noqa: F401  (gk.capture exports it)
from gradkit.interception import (begin_recording, current_interceptor,  # noqa: F401
                                  end_recording, note_created)
from gradkit.tensor import Tensor


# The variable the engine reads (the core's one interception point) and its bookkeeping
# live in the core, gradkit.interception; a Recorder is what gk.capture installs there.
recording = current_interceptor


# -- recording ---------------------------------------------------------------------

class TensorParams(NamedTuple):
    """Where a kernel call's params held Tensors: a replay rebuilds them on ``backend``
    around the arrays of the slots that now sit at ``paths``."""
    backend: Any
    paths: tuple


# eq=False: records are compared field by field (compare), never as wholes
@dataclass(slots=True, eq=False)
class KernelCall:
    """One recorded kernel launch: which kernel, on which slots, with which params."""
    op: Any
    kernel: Callable[..., Any]
    inputs: tuple[int, ...]
    params: dict
    output: int
    convert: Callable[..., Any] | None  # the backend's asarray when the kernel returns a scalar
    tensor_params: TensorParams | None  # when params hold Tensors
    backend: Any
    check: Callable[..., None] | None = None  # a value check, rerun on each replay
    release: tuple[int, ...] = ()  # slots no later call reads
    donated: int | None = None  # the input slot whose memory the result takes
    live: tuple[str, ...] = ()  # params a replay reads afresh from ``live_owner``
    live_owner: Any = None  # (an optimizer: its hyperparameters are replay inputs)


@dataclass(slots=True, eq=False)
class External:
    """An array a recording read but no recorded kernel produced."""
    slot: int
    tensor: Tensor  # the Tensor it was read through
    arg: int | None  # the function's argument index, when it is an argument
    array: Any  # the array object it held when first read
    value: Any  # its values then (a copy once written in place)
    requires_grad: bool  # whether it required a gradient then


@dataclass(slots=True, eq=False)
class DataWrite:
    """``target`` holds ``slot``'s values after the call, installed as ``mode`` says
    (see Recorder.wrote_data), after ``count`` writes (its version goes up by that).
    In a recording ``target`` is a Tensor; in a plan, an argument's index or a Tensor."""
    target: Any
    slot: int
    mode: str
    count: int


@dataclass(slots=True, eq=False)
class GradWrite:
    """``target`` is left with ``slot``'s array as its ``.grad`` (None: no gradient).
    While recording, ``grad`` is the gradient tensor itself: its array may still change
    (``w.grad *= scale``), so its slot is looked up when the call ends."""
    target: Any
    slot: int | None = None
    grad: Tensor | None = None


class Overwrite(NamedTuple):
    """An in-place operator wrote into some memory: when, and through which array."""
    slots_before: int  # the number of slots then (later slots are newer values)
    array_id: int  # id of the array written through


class Alias(NamedTuple):
    """``tensor`` shares ``origin``'s array (``origin.detach()``)."""
    tensor: Tensor
    origin: Tensor


class ObjectGuard(NamedTuple):
    """An object the step used (a module it called, an optimizer it stepped) and its
    ``guarded_state()`` then: a replay needs the same state (see same_state)."""
    owner: Any
    state: Any
    what: str


class SavedTensor(NamedTuple):
    """A tensor as it was before the recorded call first touched it, to roll back to
    when the recording is refused: its array (and a copy of the values, when
    writable: a kernel may update it in place), .grad and version."""
    tensor: Tensor
    data: Any
    values: Any
    grad: Tensor | None
    version: int


class Recorder:
    """Collects the kernel calls and tensor writes of one eager call."""

    def __init__(self, args: tuple) -> None:
        self.calls: list[KernelCall] = []
        self.arrays: list[Any] = []  # slot -> array (keeps each alive, so ids stay unique)
        self.slot_of: dict[int, int] = {}  # id(array) -> slot holding those values now
        self.externals: list[External] = []
        self.data_writes: dict[int, DataWrite] = {}  # id(tensor) -> its last write
        self.grad_writes: dict[int, GradWrite] = {}  # id(tensor) -> the .grad it was left
        # produced slot -> the produced slot owning its memory (itself unless a view of
        # another kernel's result), or None when that memory came from outside
        self.memory_of: dict[int, int | None] = {}
        # id(memory owner) -> the last in-place write into that memory
        self.overwritten: dict[int, Overwrite] = {}
        self.alias_of: dict[int, Alias] = {}  # id(detached) -> it and its origin
        self.created: set[int] = set()  # ids of the tensors made during this call
        self.external_roots: dict[int, Any] = {}  # memory owners of the outside arrays
        self.object_guards: dict[int, ObjectGuard] = {}  # id(owner) -> its guard
        self.covered_modules: set[int] = set()  # ids of the modules those guards cover
        self.saved: dict[int, SavedTensor] = {}  # id(tensor) -> it before the call
        self.undo: list[Callable[[], None]] = []  # Python state to restore on refusal
        self.first_grad_write: dict[int, bool] = {}  # id(tensor) -> backward's (accumulated)?
        self.live_owner: Any = None  # the optimizer stepping now (see stepping_optimizer)
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
        self._save(tensor)
        root = _root(tensor.data)
        self.external_roots[id(root)] = root
        slot = self._new_slot(tensor.data)
        self.externals.append(External(slot, tensor, arg, tensor.data, tensor.data,
                                       tensor.requires_grad))
        return slot

    def slot(self, tensor: Tensor) -> int:
        """The slot holding ``tensor``'s array (a new external slot if none does).

        A whole-array view of a slot's array (the read-only view ``requires_grad_``
        makes of an argument) is that slot too.
        """
        array = tensor.data
        slot = self.slot_of.get(id(array))
        if slot is None and _array_base(array) is not None:
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
            if alias is not None and alias.origin.data is array:  # x.detach(): read x itself
                tensor = alias.origin
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

    def note_created(self, tensor: Tensor) -> None:
        """Tensor() while this recording runs: this tensor did not exist before the call."""
        self.created.add(id(tensor))

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
        return tensor if alias is None else alias.origin

    def aliased(self, detached: Tensor, origin: Tensor) -> None:
        """``detached`` shares ``origin``'s array (``origin.detach()``)."""
        while id(origin) in self.alias_of:
            origin = self.alias_of[id(origin)].origin
        self.alias_of[id(detached)] = Alias(detached, origin)

    def _check_not_stale(self, array: Any, slot: int | None) -> None:
        """Refuse a read of memory an in-place operator changed through another array
        (a view taken before ``buf += x``): a replay would read the old values."""
        written = self.overwritten.get(id(_root(array)))
        if written is None or id(array) == written.array_id or (
                slot is not None and slot >= written.slots_before):
            return
        raise CaptureError(
            "capture: the function reads, through a view or alias, memory that an in-place "
            "operator changed (e.g. v = buf.reshape(...); buf += x; use v); a replay "
            "cannot repeat that. Take the view after the update, or write buf = buf + x")

    def _save(self, tensor: Tensor) -> None:
        """Keep ``tensor``'s state before this call's first touch (see roll_back)."""
        if id(tensor) not in self.saved:
            backend, data = tensor.array_backend, tensor.data
            values = backend.copy(data) if backend.is_writeable(data) else None
            self.saved[id(tensor)] = SavedTensor(tensor, data, values, tensor.grad,
                                                 tensor.version)

    def will_launch(self, operands: tuple) -> None:
        """Called by dispatch before a kernel runs: keep the state of the tensors from
        before the call it reads (an optimizer's kernel updates buffers in place)."""
        for tensor in operands:
            if id(tensor) not in self.saved and id(tensor.data) not in self.slot_of:
                self._save(tensor)

    def roll_back(self) -> None:
        """Undo what the recorded call did to tensors and state from before it: the
        refused call leaves the model, its gradients and the optimizer as they were."""
        for saved in self.saved.values():
            tensor, data = saved.tensor, saved.data
            if saved.values is not None:  # written in place by a kernel or operator?
                data = tensor.array_backend.overwrite(data, saved.values)
            tensor.write(data, grad=saved.grad, versions=saved.version - tensor.version,
                         report=False)
        for undo in reversed(self.undo):
            undo()

    def will_write(self, tensor: Tensor, how: str | None) -> None:
        """Called before Tensor.write changes ``tensor``'s array (installed ``how``) or,
        with ``how=None``, only its .grad."""
        self._save(tensor)
        if how == "overwrite":
            self._will_overwrite(tensor)

    def _will_overwrite(self, tensor: Tensor) -> None:
        """Before an in-place operator writes into ``tensor``'s array."""
        array = tensor.data
        if not tensor.array_backend.is_writeable(array):
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
                ext.value = tensor.array_backend.copy(array)
        # later reads of this memory through any other array are stale (see slot())
        self.overwritten[id(root)] = Overwrite(len(self.arrays), id(array))

    def called_module(self, module: Any) -> None:
        """A module's forward runs: a replay needs its attributes and its descendants'
        as they are now (parameters, children, training mode...; ``guarded_state()``,
        whose entries start with the module they describe)."""
        if id(module) not in self.covered_modules:
            state = module.guarded_state()
            self.object_guards[id(module)] = ObjectGuard(
                module, state, f"{type(module).__name__} module")
            self.covered_modules.update(id(entry[0]) for entry in state)

    @contextlib.contextmanager
    def stepping_optimizer(self, optimizer: Any) -> Any:
        """An optimizer's step runs inside this: a replay needs the optimizer's
        ``guarded_state()`` (parameters, buffers, which hyperparameters give it buffers);
        the kernels it launches read its hyperparameters (``hyperparameter_names``) as
        replay inputs, so a schedule changes them without a new recording."""
        if id(optimizer) not in self.object_guards:
            self.object_guards[id(optimizer)] = ObjectGuard(
                optimizer, optimizer.guarded_state(), f"{type(optimizer).__name__} optimizer")
            entries = [dict(state) for state in optimizer.state]
            self.undo.append(functools.partial(_restore_entries, optimizer.state, entries))
        outer, self.live_owner = self.live_owner, optimizer
        try:
            yield
        finally:
            self.live_owner = outer

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
            tensor_params = TensorParams(backend, tensor_params)
        reused = self.slot_of.get(id(out))  # a kernel that returned an array it was given
        owner = self._memory_owner(out) if reused is None else self.memory_of.get(reused)
        call = KernelCall(op, kernel, inputs, params, self._new_slot(out),
                          backend.asarray if converted else None, tensor_params or None, backend)
        if self.live_owner is not None and not tensor_params:
            call.live = _live_params(self.live_owner, params)
            call.live_owner = self.live_owner if call.live else None
        self.memory_of[call.output] = call.output if owner is _OWN else owner
        if getattr(op, "check_values", False):
            call.check = functools.partial(_run_check, op, backend)
        self.calls.append(call)

    def _memory_owner(self, array: Any) -> Any:
        """_OWN if ``array`` owns its memory, else the produced slot owning it (or None)."""
        base = _array_base(array) if hasattr(array, "base") else _OWN
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
            count = 0 if entry is None else entry.count
            self.data_writes[id(target)] = DataWrite(target, slot, mode, count + 1)

    def wrote_grad(self, tensor: Tensor, grad: Tensor | None, accumulated: bool) -> None:
        # the gradient tensor itself: its array may still change (w.grad *= scale), so its
        # slot is looked up when the call ends (finish)
        self.grad_writes[id(tensor)] = GradWrite(tensor, grad=grad)
        # backward's sum into the .grad found there first: a replay needs no .grad there
        self.first_grad_write.setdefault(id(tensor), accumulated)

    def finish(self) -> None:
        """The end of the recorded call: each .grad left behind, as the slot it holds now."""
        for write in self.grad_writes.values():
            if write.grad is not None:
                write.slot = self.slot(write.grad)

    def keep_constant_values(self) -> None:
        """Copy what the arrays made during the call held, before the caller gets them
        back (and may change them in place): they are this recording's constants."""
        for ext in self.externals:
            if ext.arg is None and id(ext.tensor) in self.created and ext.value is ext.array:
                ext.value = ext.tensor.array_backend.copy(ext.value)

    def check_untracked_writes(self) -> None:
        """A tensor whose array was replaced by plain assignment cannot be replayed."""
        for ext in self.externals:
            tensor = ext.tensor
            if tensor.data is not ext.array and self.slot_of.get(id(tensor.data)) is None:
                raise CaptureError(
                    f"capture: the function replaced the array of a tensor it read "
                    f"({describe(tensor)}) by assigning .data (or another path gradkit does "
                    "not see); a replay would not repeat that. Update it with an in-place "
                    "operator, x[...] = value, or an optimizer")


def _restore_entries(states: list[dict], entries: list[dict]) -> None:
    for state, kept in zip(states, entries):
        state.clear()
        state.update(kept)


def _live_params(owner: Any, params: dict) -> tuple[str, ...]:
    """The params of a kernel the optimizer ``owner`` launches that are its
    hyperparameters (the very values it holds), in params order."""
    names = owner.hyperparameter_names
    return tuple(name for name in params
                 if name in names and params[name] is getattr(owner, name))


def _root(array: Any) -> Any:
    """The array owning ``array``'s memory (itself when it is not a view; an array whose
    base is no array, such as Numba's memory handle for what a compiled step
    allocated, owns its memory)."""
    while _array_base(array) is not None:
        array = array.base
    return array


def _array_base(array: Any) -> Any:
    """``array.base`` when it is an array, else None."""
    base = getattr(array, "base", None)
    return base if base is not None and hasattr(base, "shape") else None


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


def param_slots(call: KernelCall) -> tuple[int, ...]:
    if call.tensor_params is None:
        return ()
    return tuple(_get(call.params, path) for path in call.tensor_params.paths)


def fill_params(call: KernelCall, *values: Any) -> dict:
    """``call``'s params with its Tensors rebuilt around this replay's arrays."""
    backend, paths = call.tensor_params
    return _substitute(call.params, paths, [Tensor(v, backend) for v in values])


# -- what a call returned --------------------------------------------------------

@dataclass(slots=True, repr=False)
class OutputSlot:
    """Where a returned Tensor's array sits in a recording (equal: the same slot)."""
    slot: int
    backend: Any = field(compare=False)

    def __repr__(self) -> str:
        return f"<output slot {self.slot}>"


def output_template(value: Any, recorder: Recorder) -> Any:
    """The returned structure with each Tensor replaced by its slot."""
    if isinstance(value, Tensor):
        return OutputSlot(recorder.slot(value), value.array_backend)
    if isinstance(value, (tuple, list)):
        return type(value)(output_template(v, recorder) for v in value)
    if isinstance(value, dict):
        return {k: output_template(v, recorder) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CaptureError(f"capture: the function returned a {type(value).__name__}; a captured "
                       "function returns Tensors (or tuples, lists, dicts of them, or None)")
