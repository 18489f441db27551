"""Whole-step compilation for gk.capture on the Numba backend: each recorded kernel
call lowered to a line of ``@numba.njit`` code, the lines made into one function.

``LOWERINGS`` maps an op name to its lowering: ``lower(call, layout)`` gets a
:class:`gradkit.backends.base.StepCall` and ``layout`` (:class:`Layouts`;
``layout(slot)`` is the recorded :class:`Layout` of a slot's array) and returns the
expression computing the call's result from its inputs ``s{i}`` (and live params, see
:func:`live_name`), or raises :class:`NoLowering` saying why this call cannot be
compiled (it would take a path the compiled code does not have, such as the op's
reference for mixed dtypes).
A lowering accepts only the cases where the compiled code computes what the Python
kernel computes: the same loop (``step_kernels.py``), called in the variant (serial
or parallel) the Python kernel picks for those arrays (:meth:`Layouts.variant`), or
the same NumPy function, or the same IEEE operations in the same order.

Lowered: matmul, linear, matmul_transposed, matrix_transpose, sum_to; bias_activation
and its backward; cross_entropy and its backward; the SGD and Adam updates; argmax,
equal, astype, sum, expand_dims, concatenate (counting correct predictions); and the
elementwise ops: the activations the backend runs as loops and their backward ops
(ACTIVATION_LOOPS; below the backend's ``numpy_elementwise_below``, where the Python
kernel runs NumPy's code, the loop where it does the same operations,
LOOP_MATCHES_NUMPY, NumPy's maximum for relu, else none); tanh, maximum and minimum
(NumPy's functions, called in object mode: NUMPY_CALLS); add, subtract, multiply,
divide and negative of one float dtype (a Python number is a 0-d operand; 0-d
integers too, such as Adam's step count), as array expressions; the mean of a whole
array and its backward op. Not lowered, among others: exp, log, sqrt, power,
sum_backward (a broadcast view in Python), reductions over an axis, integer arrays
in arithmetic.

Elementwise chains fuse (:func:`fusions`): an array expression whose result only a
later one reads is written into that one's expression, so Numba's array-expression
rewrite makes the chain one loop with no array in between; the reader's comment in
the source names the calls fused into it. Exact arithmetic rounds the same fused or
not (no FMA contraction: OPTIONS has fastmath off), so the bits stay the Python
replay's; one thing neither NumPy nor Numba fixes is which NaN comes out where two
NaNs of different sign or payload meet in one operation (IEEE 754 leaves it open,
and compilers commute operands), so there a compiled step may give the other NaN.

A hidden layer's backward (bias_activation_backward over its incoming gradient) sums
the bias's gradient in the same pass where its loop is serial (:func:`summed_backwards`).
Intermediates of ARENA_MIN_BYTES and more that nothing outside the function sees live
in an arena kept from call to call (:func:`plan_arena`).

>>> all(op in LOWERINGS for op in ("matmul", "bias_activation", "cross_entropy", "sgd_update"))
True
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import sys
import threading
import time
import weakref
from pathlib import Path
from collections import Counter
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from gradkit.backends.base import CompiledStep, StepCall
from gradkit.backends.numpy.kernels import MEAN_EXACT_COUNT

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# live params passed as bool (the others as float)
FLAG_PARAMS = frozenset({"nesterov", "decoupled"})
# from the fused kernels (gradkit.backends.numba.kernels.ACTIVATION_CODES)
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "elu": 3, "sigmoid": 4,
                    "tanh": 5}


class Layout(NamedTuple):
    """A recorded array's shape, dtype and flags."""
    shape: tuple
    dtype: np.dtype
    c_contiguous: bool
    f_contiguous: bool
    writeable: bool

    @classmethod
    def of(cls, array: Any) -> "Layout":
        if type(array) is not np.ndarray:
            raise NoLowering(f"a {type(array).__name__} operand, not a NumPy array")
        flags = array.flags
        return cls(array.shape, array.dtype, flags.c_contiguous, flags.f_contiguous,
                   flags.writeable)


class NoLowering(Exception):
    """This call has no compiled form (the message says why)."""


class Layouts:
    """What a lowering knows of the recorded step: ``layout(slot)``, the :class:`Layout`
    of a slot's recorded array, :meth:`variant`, which loop a kernel runs,
    :meth:`runs_numpy`, whether it hands the array to NumPy instead, and
    :meth:`may_overwrite`, whether a call may write its result over an input
    (``overwritable``: see :func:`overwritable_inputs`)."""

    def __init__(self, examples: dict[int, Any], runs_parallel: Callable[[str, int], bool],
                 overwritable: frozenset = frozenset(),
                 numpy_below: Mapping[str, int] | None = None):
        self._examples = examples
        self._layouts: dict[int, Layout] = {}
        self._runs_parallel = runs_parallel
        self.overwritable = overwritable
        self._numpy_below = dict(numpy_below or {})
        self.arena: dict[int, int] = {}  # slot -> its offset in the arena (plan_arena)
        # backward call index -> the sum_to call it runs too (summed_backwards)
        self.summed: dict[int, StepCall] = {}

    def into(self, call: StepCall) -> str:
        """The ``out`` argument of a kernel writing ``call``'s result: ``", a{slot}"``,
        its view of the arena, where :func:`plan_arena` placed it there; else nothing
        (the kernel allocates)."""
        return f", {arena_name(call.output)}" if call.output in self.arena else ""

    def may_overwrite(self, call: StepCall, position: int) -> bool:
        """Whether ``call`` may write its result over its input ``position``."""
        return (call.index, position) in self.overwritable

    def __call__(self, slot: int) -> Layout:
        if slot not in self._layouts:
            self._layouts[slot] = Layout.of(self._examples[slot])
        return self._layouts[slot]

    def variant(self, kernel: str, work_name: str, shape: tuple) -> str:
        """``kernel.parallel`` or ``kernel.serial``: the variant of a step kernel that
        runs a loop (see step_kernels.serial_and_parallel), as the Python kernel picks
        it for an array of ``shape`` (:meth:`runs_parallel`)."""
        parallel = self.runs_parallel(work_name, shape)
        return f"{kernel}.{'parallel' if parallel else 'serial'}"

    def runs_parallel(self, work_name: str, shape: tuple) -> bool:
        """Whether the Python kernel runs its loop in parallel on an array of ``shape``
        (the backend's ``runs_parallel(work_name, elements)``)."""
        return self._runs_parallel(work_name, math.prod(shape))

    def runs_numpy(self, op: str, shape: tuple) -> bool:
        """Whether the Python kernel of ``op`` hands an array of ``shape`` to NumPy's
        kernel rather than its loop (the backend's ``numpy_elementwise_below``)."""
        return math.prod(shape) < self._numpy_below.get(op, 0)


# The activations and backward ops the Numba backend runs as one loop each (its
# KERNEL_FACTORIES; step_kernels.py has a step kernel of each loop's name).
ACTIVATION_LOOPS = frozenset({"relu", "leaky_relu", "elu", "sigmoid", "relu_backward",
                              "leaky_relu_backward", "elu_backward", "sigmoid_backward",
                              "tanh_backward"})
# Those whose Python kernel, on arrays below numpy_elementwise_below, runs NumPy code that
# computes each element by the loop's IEEE operations in the loop's order (no exp, no
# maximum): there the loop gives the same bits too.
LOOP_MATCHES_NUMPY = frozenset({"leaky_relu", "relu_backward", "leaky_relu_backward",
                                "sigmoid_backward", "tanh_backward"})
# Exact IEEE arithmetic (NumPy's ufunc and the operator in njit code round alike, with no
# FMA contraction: OPTIONS has fastmath off), lowered as array expressions, which fuse.
OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}
ARRAY_EXPRESSION_OPS = frozenset(OPERATORS) | {"negative"}
# NumPy functions the compiled step calls in object mode (step_kernels.tanh_numpy says
# why): op -> its step kernel
NUMPY_CALLS = {"tanh": "tanh_numpy", "maximum": "maximum_numpy", "minimum": "minimum_numpy"}
# The ops an update writes in place from this input on (its state buffers)
UPDATES_IN_PLACE = {"sgd_update": 2, "adam_update": 2}

# Ops whose compiled result is a new array, never a view of an input: a slot one of them
# made can be written over by its last reader (the ops reading it view nothing either).
NEW_ARRAY_OPS = frozenset({"matmul", "matmul_transposed", "linear", "bias_activation",
                           "bias_activation_backward", "cross_entropy",
                           "cross_entropy_backward", "sum_to", "sgd_update", "mean",
                           "mean_backward", *ACTIVATION_LOOPS, *ARRAY_EXPRESSION_OPS,
                           *NUMPY_CALLS})
# op -> the input its step kernel can write its result over (the "_over_" kernels)
OVERWRITES = {"bias_activation": 0, "bias_activation_backward": 0,
              "cross_entropy_backward": 1, "sgd_update": 1}


def overwritable_inputs(calls: list[StepCall], results: list[int]) -> frozenset:
    """(call index, input position) of each call that may write its result over that
    input, as the Python replay's donating kernels do: the input is an array the step
    made (by an op of NEW_ARRAY_OPS), read only by such ops, for the last time by this
    call and once in it, and not among the step's results.

    >>> c = [StepCall(0, "matmul", (0, 1), {}, (), 2), StepCall(1, "bias_activation", (2, 3), {}, (), 4)]
    >>> sorted(overwritable_inputs(c, [4]))
    [(1, 0)]
    """
    made_by = {call.output: call.op for call in calls}
    last_reader: dict[int, int] = {}
    views = set()  # slots some op that is not NEW_ARRAY_OPS reads (it may view them)
    for call in calls:
        for slot in call.inputs:
            last_reader[slot] = call.index
            if call.op not in NEW_ARRAY_OPS:
                views.add(slot)
    found = set()
    for call in calls:
        position = OVERWRITES.get(call.op)
        if position is None or position >= len(call.inputs):
            continue
        slot = call.inputs[position]
        if (made_by.get(slot) in NEW_ARRAY_OPS and slot not in views and slot not in results
                and last_reader[slot] == call.index and call.inputs.count(slot) == 1):
            found.add((call.index, position))
    return frozenset(found)


# Ops whose lowering passes the kernel an ``out`` array where it allocates its result
# (Layouts.into): their results can live in the step's arena. (An op here whose
# lowering forgot Layouts.into would leave its bytes in the arena unused, not misplace
# a result: tests/test_capture_compile.py checks that every one passes it.)
WRITES_INTO = frozenset({"matmul", "matmul_transposed", "linear", "bias_activation",
                         "bias_activation_backward", "cross_entropy_backward", "sum_to",
                         "mean_backward", *ACTIVATION_LOOPS, *NUMPY_CALLS})
# Offsets in the arena are multiples of this (a cache line; an AVX-512 vector)
ARENA_ALIGNMENT = 64
# The smallest buffer given a place in the arena (see plan_arena)
ARENA_MIN_BYTES = 1 << 20


def plan_arena(calls: list[StepCall], results: list[int], layout: Layouts,
               min_bytes: int = ARENA_MIN_BYTES) -> tuple[dict[int, int], int]:
    """Where the step's intermediates live in its arena: (the slot of the call making
    each buffer placed there -> its byte offset, the arena's size in bytes).

    The arena is one array kept from step to step (:func:`compile_step`), so a step
    writes into memory the previous one used instead of asking the allocator for it
    again. Numba allocates with malloc, which maps a block above its mmap threshold
    (glibc: 32 MiB at most) fresh on every request, every page of it faulting on
    first write: a compiled step with 64 MiB intermediates (batch 262144 through
    64-64-64-10) took 65,540 page faults and ~0.34 s a step, with them in the arena
    0 faults and ~0.21 s.

    A buffer is the result of a call of WRITES_INTO (not 0-d), with the results
    later calls write over it (``_over_`` kernels). It goes into the arena when it has
    at least ``min_bytes`` and none of its slots is among ``results`` (read after the
    compiled code) or read by an op that may return a view (outside NEW_ARRAY_OPS):
    then nothing outside the compiled function ever sees it. Smaller buffers stay
    with malloc, whose free lists hand a step the blocks the previous one freed, with
    no page faults and still in cache; for them the arena's own cost shows (a Python
    call around the compiled one, a view per buffer): the small benchmark step, 64
    KiB of intermediates, ran at 0.85x the NumPy floor with them all in the arena
    against 0.82x without.

    A buffer holds its bytes from the call making it to its last reader, inclusive
    (a call writes its result over an input only through an ``_over_`` kernel), at
    the lowest offset free over that span: buffers whose spans do not meet share
    memory, as malloc gives a freed block to the next request, so the arena is
    about the step's peak of live intermediates.

    >>> f32 = lambda *shape: np.zeros(shape, np.float32)
    >>> c = [StepCall(0, "matmul", (0, 1), {}, (), 2),             # h = x @ w
    ...      StepCall(1, "relu", (2,), {}, (), 3),                 # a = relu(h)
    ...      StepCall(2, "matmul", (3, 1), {}, (), 4),             # y = a @ w
    ...      StepCall(3, "matmul", (4, 1), {}, (), 5)]             # z = y @ w
    >>> examples = {0: f32(4, 4), 1: f32(4, 4), 2: f32(4, 4), 3: f32(4, 4), 4: f32(4, 4),
    ...             5: f32(4, 4)}
    >>> plan_arena(c, [5], Layouts(examples, None), min_bytes=0)  # 2 and 4 share
    ({2: 0, 3: 64, 4: 0}, 128)
    """
    owner: dict[int, int] = {}  # slot -> the slot that made the buffer holding it
    for call in calls:
        position = OVERWRITES.get(call.op)
        if position is not None and layout.may_overwrite(call, position):
            if call.inputs[position] in owner:
                owner[call.output] = owner[call.inputs[position]]
        elif call.op in WRITES_INTO and layout(call.output).shape != ():
            owner[call.output] = call.output
    escaped = {owner[slot] for slot in results if slot in owner}
    span: dict[int, list[int]] = {}  # buffer -> [first call, last call]
    for call in calls:
        for slot in call.inputs:
            if slot in owner:
                span[owner[slot]][1] = call.index
            if call.op not in NEW_ARRAY_OPS and slot in owner:
                escaped.add(owner[slot])
        if owner.get(call.output) == call.output:
            span[call.output] = [call.index, call.index]
    offsets: dict[int, int] = {}
    placed: list[tuple[int, int, int]] = []  # (offset, end, last call) of each buffer
    for buffer, (first, last) in span.items():  # in the order the calls make them
        nbytes = layout(buffer).dtype.itemsize * math.prod(layout(buffer).shape)
        if buffer in escaped or nbytes < min_bytes:
            continue
        size = -(-nbytes // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
        offset = 0
        for start, end, _ in sorted(p for p in placed if p[2] >= first):
            if offset + size <= start:
                break
            offset = max(offset, end)
        placed.append((offset, offset + size, last))
        offsets[buffer] = offset
    return offsets, max((end for _, end, _ in placed), default=0)


def arena_name(slot: int) -> str:
    """The compiled function's view of the arena holding ``slot``."""
    return f"a{slot}"


def runs_parallel_loops(source: str) -> bool:
    """Whether a compiled step's source calls a parallel variant of a step kernel."""
    return ".parallel(" in source


def live_name(name: str, n: int) -> str:
    """The compiled function's argument for live param ``name`` of call ``n``."""
    return f"{name}_{n}"


def _param(call: StepCall, name: str) -> str:
    """A param's value in the source: the live argument, else the recorded literal."""
    if name in call.live:
        return live_name(name, call.index)
    value = call.params[name]
    if isinstance(value, bool) and name in FLAG_PARAMS:
        return repr(value)
    if type(value) not in (float, int) or isinstance(value, bool):
        raise NoLowering(f"param {name}={value!r} is not a Python number")
    return repr(float(value))


def _floats(layouts: list[Layout], what: str = "operands") -> np.dtype:
    """The one float dtype of ``layouts`` (else NoLowering)."""
    dtypes = {layout.dtype for layout in layouts}
    if len(dtypes) != 1 or layouts[0].dtype not in _FLOATS:
        raise NoLowering(f"{what} of dtypes {sorted(map(str, dtypes))}, not one of float32 "
                         "or float64")
    return layouts[0].dtype


def _dense(layout: Layout, ndim: int, what: str) -> None:
    if len(layout.shape) != ndim or 0 in layout.shape:
        raise NoLowering(f"{what} of shape {layout.shape}, not a non-empty {ndim}-d array")
    if not (layout.c_contiguous or layout.f_contiguous):
        raise NoLowering(f"{what} is not contiguous")


def _names(call: StepCall) -> list[str]:
    return [f"s{i}" for i in call.inputs]


# -- the lowerings ------------------------------------------------------------------

# m * n * k from which OpenBLAS runs a gemm on its threads (interface/gemm.c:
# SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD, 65536 * 4)
BLAS_THREADED_WORK = 65536 * 4


def _matmul(call: StepCall, layout: Layouts, a: Layout, b: Layout,
            transpose_a: bool = False, transpose_b: bool = False) -> str:
    """The product of the call's first two inputs (each transposed first where asked): by
    NumPy's own matmul where the gemm is large enough for BLAS threads
    (step_kernels.matmul_numpy says why), else np.dot; into the call's arena view."""
    rows, inner = a.shape[::-1] if transpose_a else a.shape
    cols = b.shape[0] if transpose_b else b.shape[1]
    kernel = "matmul_numpy" if rows * inner * cols >= BLAS_THREADED_WORK else "matmul"
    x, y = _names(call)[:2]
    return (f"{kernel}({x}{'.T' if transpose_a else ''}, {y}{'.T' if transpose_b else ''}"
            f"{layout.into(call)})")


def lower_matmul(call: StepCall, layout: Layouts) -> str:
    a, b = (layout(i) for i in call.inputs)
    _floats([a, b])
    _dense(a, 2, "x")
    _dense(b, 2, "y")
    return _matmul(call, layout, a, b)


def lower_matmul_transposed(call: StepCall, layout: Layouts) -> str:
    a, b = (layout(i) for i in call.inputs)
    _floats([a, b])
    _dense(a, 2, "x1")
    _dense(b, 2, "x2")
    return _matmul(call, layout, a, b, call.params["transpose_x1"],
                   call.params["transpose_x2"])


def lower_linear(call: StepCall, layout: Layouts) -> str:
    layouts = [layout(i) for i in call.inputs]
    _floats(layouts)
    _dense(layouts[0], 2, "x")
    _dense(layouts[1], 2, "weight")
    if len(layouts) == 3:
        _dense(layouts[2], 1, "bias")
    product = _matmul(call, layout, *layouts[:2])
    return product if len(layouts) == 2 else f"add_bias({product}, s{call.inputs[2]})"


def lower_matrix_transpose(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    if len(x.shape) != 2:
        raise NoLowering(f"x of shape {x.shape}, not 2-d")
    return f"s{call.inputs[0]}.T"


def lower_sum_to(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    _floats([x])
    if len(x.shape) != 2 or tuple(call.params["shape"]) != x.shape[1:] or x.shape[0] == 0:
        raise NoLowering(f"sum from {x.shape} to {tuple(call.params['shape'])}: only a "
                         "2-d array summed over its first axis is compiled")
    if not x.c_contiguous or x.shape[1] < 2:
        raise NoLowering("only a C-contiguous (rows, cols >= 2) array is summed by rows")
    return f"sum_rows(s{call.inputs[0]}{layout.into(call)})"


def _activation(call: StepCall) -> str:
    activation = call.params.get("activation", "relu")
    if activation not in ACTIVATION_CODES:
        raise NoLowering(f"activation {activation!r} has no fused loop")
    return (f"{ACTIVATION_CODES[activation]}, {_param(call, 'slope')}, "
            f"{_param(call, 'alpha')}")


def lower_bias_activation(call: StepCall, layout: Layouts) -> str:
    x, bias = (layout(i) for i in call.inputs)
    _floats([x, bias])
    _dense(x, 2, "x")
    _dense(bias, 1, "bias")
    if x.shape[1] != bias.shape[0] or not x.c_contiguous:
        raise NoLowering(f"x {x.shape} and bias {bias.shape}: only a C-contiguous (rows, "
                         "cols) x with a (cols,) bias is compiled")
    name = "bias_activation_over_x" if layout.may_overwrite(call, 0) else "bias_activation"
    kernel = layout.variant(name, call.params.get("activation", "relu"), x.shape)
    return (kernel + "({}, {}, ".format(*_names(call)) + _activation(call) +
            layout.into(call) + ")")


def lower_bias_activation_backward(call: StepCall, layout: Layouts) -> str:
    g, y = (layout(i) for i in call.inputs)
    _floats([g, y])
    _dense(g, 2, "g")
    if g.shape != y.shape or not (g.c_contiguous and y.c_contiguous):
        raise NoLowering("only C-contiguous g and y of one 2-d shape are compiled")
    arguments = "({}, {}, ".format(*_names(call)) + _activation(call)
    if call.index in layout.summed:  # and the bias's gradient (summed_backwards)
        return ("bias_activation_backward_and_sum_over_g" + arguments +
                layout.into(layout.summed[call.index]) + ")")
    name = ("bias_activation_backward_over_g" if layout.may_overwrite(call, 0) else
            "bias_activation_backward")
    return layout.variant(name, call.op, g.shape) + arguments + layout.into(call) + ")"


def _labels(labels: Layout, rows: int) -> None:
    if labels.dtype != np.dtype(np.int64) or labels.shape != (rows,) or \
            not labels.c_contiguous:
        raise NoLowering(f"labels {labels.shape} {labels.dtype}: only contiguous int64 "
                         "(rows,) labels are compiled")


def lower_cross_entropy(call: StepCall, layout: Layouts) -> str:
    logits, labels = (layout(i) for i in call.inputs)
    _floats([logits])
    _dense(logits, 2, "logits")
    if not logits.c_contiguous:
        raise NoLowering("logits are not C-contiguous")
    _labels(labels, logits.shape[0])
    return layout.variant("cross_entropy", call.op, logits.shape) + "({}, {})".format(
        *_names(call))


def lower_cross_entropy_backward(call: StepCall, layout: Layouts) -> str:
    g, logits, labels = (layout(i) for i in call.inputs)
    _floats([g, logits])
    _dense(logits, 2, "logits")
    if g.shape != () or not logits.c_contiguous:
        raise NoLowering("only a 0-d g and C-contiguous logits are compiled")
    _labels(labels, logits.shape[0])
    name = ("cross_entropy_backward_over_logits" if layout.may_overwrite(call, 1) else
            "cross_entropy_backward")
    return (layout.variant(name, call.op, logits.shape) +
            "({}, {}, {}{})".format(*_names(call), layout.into(call)))


def _update_operands(call: StepCall, layout: Layouts, count: int) -> None:
    layouts = [layout(i) for i in call.inputs[:count]]
    _floats(layouts)
    if len({lay.shape for lay in layouts}) != 1 or 0 in layouts[0].shape:
        raise NoLowering("parameter and buffers of different (or empty) shapes")
    for lay in layouts[2:]:
        if not (lay.writeable and lay.c_contiguous):
            raise NoLowering("a state buffer is read-only or not C-contiguous")


def lower_sgd_update(call: StepCall, layout: Layouts) -> str:
    _update_operands(call, layout, len(call.inputs))
    scalars = ", ".join(_param(call, name) for name in ("lr", "momentum", "nesterov",
                                                          "weight_decay"))
    kernel = "sgd_update" if len(call.inputs) == 3 else "sgd_update_plain"
    if layout.may_overwrite(call, 1) and layout(call.inputs[1]).c_contiguous:
        kernel += "_over_grad"
    return (layout.variant(kernel, call.op, layout(call.inputs[0]).shape) +
            f"({', '.join(_names(call))}, {scalars})")


def lower_adam_update(call: StepCall, layout: Layouts) -> str:
    _update_operands(call, layout, 4)
    step = layout(call.inputs[4])
    if step.shape != () or step.dtype.kind not in "iu":
        raise NoLowering("step is not a 0-d integer array")
    scalars = ", ".join(_param(call, name) for name in ("lr", "beta1", "beta2", "eps",
                                                          "weight_decay", "decoupled"))
    kernel = layout.variant("adam_update", call.op, layout(call.inputs[0]).shape)
    return kernel + "({}, {}, {}, {}, {}, ".format(*_names(call)) + scalars + ")"


# -- counting correct predictions (gradkit train's step) ---------------------------------

def lower_argmax(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    _floats([x])
    _dense(x, 2, "x")
    if call.params.get("axis") not in (1, -1) or call.params.get("keepdims") or \
            not x.c_contiguous:
        raise NoLowering("only the argmax of each row of a C-contiguous 2-d array is compiled")
    return f"argmax_rows(s{call.inputs[0]})"


def lower_equal(call: StepCall, layout: Layouts) -> str:
    a, b = (layout(i) for i in call.inputs)
    if a.shape != b.shape or a.dtype != b.dtype or len(a.shape) != 1 or \
            a.dtype.kind not in "iuf":
        raise NoLowering(f"operands {a.shape} {a.dtype} and {b.shape} {b.dtype}: only "
                         "1-d numbers of one shape and dtype are compiled")
    return "({} == {})".format(*_names(call))


def lower_astype(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    if np.dtype(call.params["dtype"]) != np.dtype(np.float64) or len(x.shape) > 1 or \
            x.dtype.kind not in "biuf" or not x.c_contiguous:
        raise NoLowering(f"astype {x.dtype} {x.shape} to {call.params['dtype']}: only 0-d "
                         "and 1-d arrays to float64 are compiled")
    return f"as_float64(s{call.inputs[0]})"


def lower_sum(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    _floats([x])
    if len(x.shape) != 1 or not x.c_contiguous or call.params.get("keepdims") or \
            call.params.get("axis") not in (None, 0, -1) or call.params.get("dtype") is not None:
        raise NoLowering("only the whole sum of a contiguous 1-d array is compiled")
    return f"sum_vector(s{call.inputs[0]})"


def lower_expand_dims(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    if x.shape != () or call.params.get("axis") not in (0, -1):
        raise NoLowering("only a 0-d array made (1,) is compiled")
    return f"scalar_to_vector(s{call.inputs[0]})"


def lower_concatenate(call: StepCall, layout: Layouts) -> str:
    layouts = [layout(i) for i in call.inputs]
    if any(len(lay.shape) != 1 for lay in layouts) or len({lay.dtype for lay in layouts}) != 1 \
            or call.params.get("axis") not in (0, -1):
        raise NoLowering("only 1-d arrays of one dtype are concatenated when compiled")
    return f"np.concatenate(({', '.join(_names(call))},))"


# -- elementwise ops ------------------------------------------------------------------

def _elementwise_shape(layouts: list[Layout], integers: bool = False) -> tuple:
    """The result shape of an elementwise op on ``layouts`` of one dtype: a float one,
    each operand 0-d or a non-empty C-contiguous array (NumPy's result then is
    C-contiguous too), broadcast only to the shape of one of them; or, where
    ``integers``, an integer one of 0-d operands (an Adam step count)."""
    one_dtype = len({lay.dtype for lay in layouts}) == 1
    if integers and one_dtype and layouts[0].dtype.kind in "iu":
        if any(lay.shape for lay in layouts):
            raise NoLowering("integer arrays: only 0-d integers are compiled")
        return ()
    _floats(layouts)
    for position, lay in enumerate(layouts):
        if lay.shape and (0 in lay.shape or not lay.c_contiguous):
            raise NoLowering(f"operand {position} of shape {lay.shape} is empty or not "
                             "C-contiguous")
    shape = np.broadcast_shapes(*(lay.shape for lay in layouts))
    if shape not in [lay.shape for lay in layouts]:
        raise NoLowering(f"operands {[lay.shape for lay in layouts]} broadcast to "
                         f"{shape}, the shape of none of them")
    return shape


def _array_expression_of(call: StepCall, layout: Layouts, template: str) -> str:
    """``template`` (``{}`` for each operand) as an array expression, a 0-d operand as
    its scalar; of 0-d operands only, a 0-d array of their dtype (integers: wrapping
    as NumPy's do)."""
    layouts = [layout(i) for i in call.inputs]
    shape = _elementwise_shape(layouts, integers=call.op != "divide")
    expression = template.format(*(f"s{i}[()]" if lay.shape == () else f"s{i}"
                                   for i, lay in zip(call.inputs, layouts)))
    return expression if shape else f"scalar_array({expression}, s{call.inputs[0]})"


def lower_arithmetic(call: StepCall, layout: Layouts) -> str:
    """add, subtract, multiply, divide: ``x1 op x2``."""
    return _array_expression_of(call, layout, "{} %s {}" % OPERATORS[call.op])


def lower_negative(call: StepCall, layout: Layouts) -> str:
    return _array_expression_of(call, layout, "-{}")


def lower_numpy_call(call: StepCall, layout: Layouts) -> str:
    """tanh, maximum, minimum: NumPy's function (NUMPY_CALLS), from object mode."""
    layouts = [layout(i) for i in call.inputs]
    shape = _elementwise_shape(layouts)
    if not shape:
        raise NoLowering("0-d operands (only arrays are compiled)")
    arguments = _names(call) + ([repr(shape)] if len(layouts) == 2 else [])
    return f"{NUMPY_CALLS[call.op]}({', '.join(arguments)}{layout.into(call)})"


def lower_activation_loop(call: StepCall, layout: Layouts) -> str:
    """An op of ACTIVATION_LOOPS by its loop, in the Python kernel's variant; below the
    backend's ``numpy_elementwise_below``, where that kernel runs NumPy's code: the loop
    where it gives the same bits (LOOP_MATCHES_NUMPY), NumPy's maximum for relu."""
    layouts = [layout(i) for i in call.inputs]
    shape = _elementwise_shape(layouts)
    if not shape or len({lay.shape for lay in layouts}) != 1:
        raise NoLowering("only arrays of one shape (not 0-d) are compiled")
    arguments = ", ".join(_names(call) + [_param(call, name) for name in call.params]
                          ) + layout.into(call)
    if not layout.runs_numpy(call.op, shape):
        return layout.variant(call.op, call.op, shape) + f"({arguments})"
    if call.op == "relu":
        return f"relu_numpy({arguments})"
    if call.op not in LOOP_MATCHES_NUMPY:
        raise NoLowering(f"{math.prod(shape)} elements, below the backend's "
                         f"numpy_elementwise_below[{call.op!r}]: its Python kernel runs "
                         "NumPy's exp there, whose bits the loop's do not match")
    return f"{call.op}.serial({arguments})"


def _mean_count(shape: tuple) -> None:
    """Refuse a mean over all of ``shape`` unless non-empty, at least 1-d and of at most
    MEAN_EXACT_COUNT elements (above it the NumPy backend's kernel runs np.mean)."""
    if not shape or not math.prod(shape):
        raise NoLowering(f"a mean over shape {shape}: only non-empty arrays are compiled")
    if math.prod(shape) > MEAN_EXACT_COUNT:
        raise NoLowering(f"a mean of {math.prod(shape)} elements: above "
                         f"{MEAN_EXACT_COUNT} the Python kernel runs np.mean")


def lower_mean(call: StepCall, layout: Layouts) -> str:
    (x,) = (layout(i) for i in call.inputs)
    axis = call.params.get("axis")
    if call.params.get("keepdims") or not (axis is None or len(x.shape) == 1 and
                                           axis in (0, -1)):
        raise NoLowering("only the mean of a whole array (axis None) is compiled")
    _floats([x])
    if not x.c_contiguous:
        raise NoLowering("x is not C-contiguous")
    _mean_count(x.shape)
    return f"mean_all(s{call.inputs[0]})"


def lower_mean_backward(call: StepCall, layout: Layouts) -> str:
    (g,) = (layout(i) for i in call.inputs)
    shape = tuple(call.params["shape"])
    if g.shape != () or call.params.get("axis") is not None or call.params.get("keepdims"):
        raise NoLowering("only the gradient of a whole array's mean (a 0-d g) is compiled")
    _floats([g])
    _mean_count(shape)
    return f"mean_backward_all(s{call.inputs[0]}, {shape!r}{layout.into(call)})"


LOWERINGS: dict[str, Callable[[StepCall, Layouts], str]] = {
    "matmul": lower_matmul, "matmul_transposed": lower_matmul_transposed,
    "linear": lower_linear,
    "matrix_transpose": lower_matrix_transpose, "sum_to": lower_sum_to,
    "bias_activation": lower_bias_activation,
    "bias_activation_backward": lower_bias_activation_backward,
    "cross_entropy": lower_cross_entropy,
    "cross_entropy_backward": lower_cross_entropy_backward,
    "sgd_update": lower_sgd_update, "adam_update": lower_adam_update,
    "argmax": lower_argmax, "equal": lower_equal, "astype": lower_astype, "sum": lower_sum,
    "expand_dims": lower_expand_dims, "concatenate": lower_concatenate,
    "negative": lower_negative, "mean": lower_mean, "mean_backward": lower_mean_backward,
    **{op: lower_arithmetic for op in OPERATORS},
    **{op: lower_numpy_call for op in NUMPY_CALLS},
    **{op: lower_activation_loop for op in ACTIVATION_LOOPS}}


# -- fusing elementwise chains ---------------------------------------------------------

def _array_expression(call: StepCall, layout: Layouts) -> bool:
    """Whether ``call`` lowers to an array expression of exact arithmetic (not 0-d)."""
    try:
        return call.op in ARRAY_EXPRESSION_OPS and layout(call.output).shape != ()
    except NoLowering:
        return False


def _written_between(calls: list[StepCall], first: int, last: int, slots: set) -> bool:
    """Whether a call after call ``first`` and before call ``last`` updates one of
    ``slots`` in place (an optimizer's state buffer)."""
    return any(first < call.index < last and
               slots.intersection(call.inputs[UPDATES_IN_PLACE[call.op]:])
               for call in calls if call.op in UPDATES_IN_PLACE)


def fusions(calls: list[StepCall], results: list[int], layout: Layouts) -> dict[int, int]:
    """Slot -> the index of the call whose array expression computes it inline, not
    into an array of its own: a slot an array expression made, read once in the step,
    by a later array expression of its shape and dtype, not among ``results``, whose
    reads (its own inputs and those of what it inlines) no call in between updates in
    place. Exact arithmetic in one dtype rounds each operation alike fused or not, and
    Numba's array-expression rewrite makes the whole expression one loop.

    >>> from gradkit.backends.numba.lowering import Layouts
    >>> f32 = lambda *shape: np.zeros(shape, np.float32)
    >>> c = [StepCall(0, "multiply", (0, 1), {}, (), 2),  # x * 0.5
    ...      StepCall(1, "subtract", (2, 3), {}, (), 4)]   # ... - y
    >>> examples = {0: f32(3), 1: f32(), 2: f32(3), 3: f32(3), 4: f32(3)}
    >>> fusions(c, [4], Layouts(examples, None))  # slot 2 computed inside call 1
    {2: 1}
    """
    readers = Counter(slot for call in calls for slot in call.inputs)
    made_by = {call.output: call for call in calls}
    reads = {call.index: set(call.inputs) for call in calls}
    fused: dict[int, int] = {}
    for call in calls:
        if not _array_expression(call, layout):
            continue
        for slot in dict.fromkeys(call.inputs):
            producer = made_by.get(slot)
            if (producer is not None and readers[slot] == 1 and slot not in results
                    and _array_expression(producer, layout)
                    and layout(slot)[:2] == layout(call.output)[:2]  # shape, dtype
                    and not _written_between(calls, producer.index, call.index,
                                             reads[producer.index])):
                fused[slot] = call.index
                reads[call.index] |= reads[producer.index]
    return fused


def without_fused(calls: list[StepCall], fused: dict[int, int]) -> list[StepCall]:
    """The calls the compiled step runs, each reading the inputs of the calls fused into
    it too (as :func:`overwritable_inputs` must see them: those are read there)."""
    extra: dict[int, tuple] = {}
    for call in calls:  # in order: what a call inlines is known before it is inlined
        if call.output in fused:
            reader = fused[call.output]
            extra[reader] = extra.get(reader, ()) + call.inputs + extra.get(call.index, ())
    return [StepCall(call.index, call.op, call.inputs + extra.get(call.index, ()),
                     call.params, call.live, call.output)
            for call in calls if call.output not in fused]


def summed_backwards(calls: list[StepCall], layout: Layouts) -> dict[int, StepCall]:
    """bias_activation_backward call index -> the sum_to call summing its result over
    the rows (the bias's gradient), where one kernel can run both
    (step_kernels.bias_activation_backward_and_sum_over_g, bit for bit): the backward
    writes over its g in its serial loop, and the sum is one that sum_rows lowers.

    >>> f32 = lambda *shape: np.zeros(shape, np.float32)
    >>> c = [StepCall(0, "matmul", (0, 1), {}, (), 2),
    ...      StepCall(1, "bias_activation_backward", (2, 3),
    ...               {"activation": "relu", "slope": 0.01, "alpha": 1.0}, (), 4),
    ...      StepCall(2, "matmul", (4, 1), {}, (), 5),
    ...      StepCall(3, "sum_to", (4,), {"shape": (4,)}, (), 6)]
    >>> layout = Layouts({0: f32(4, 4), 1: f32(4, 4), 2: f32(4, 4), 3: f32(4, 4),
    ...                   4: f32(4, 4), 5: f32(4, 4), 6: f32(4)}, lambda name, n: False,
    ...                  overwritable_inputs(c, [5, 6]))
    >>> {k: call.index for k, call in summed_backwards(c, layout).items()}
    {1: 3}
    """
    sum_of: dict[int, StepCall] = {}
    for call in calls:
        if call.op == "sum_to":
            sum_of.setdefault(call.inputs[0], call)
    summed = {}
    for call in calls:
        total = sum_of.get(call.output)
        if call.op != "bias_activation_backward" or total is None or \
                not layout.may_overwrite(call, 0):
            continue
        try:
            lower_bias_activation_backward(call, layout)
            lower_sum_to(total, layout)
        except NoLowering:
            continue
        if not layout.runs_parallel(call.op, layout(call.output).shape):
            summed[call.index] = total
    return summed


def as_run(calls: list[StepCall], summed: dict[int, StepCall]) -> list[StepCall]:
    """The calls in the order the compiled code runs them: each sum of ``summed`` at
    its backward call (and under its index)."""
    moved = {total.index for total in summed.values()}
    ordered = []
    for call in calls:
        if call.index in moved:
            continue
        ordered.append(call)
        if call.index in summed:
            total = summed[call.index]
            ordered.append(StepCall(call.index, total.op, total.inputs, total.params,
                                    total.live, total.output))
    return ordered


# -- the compiled function ------------------------------------------------------------

HEADER = '''"""A gk.capture step compiled by gradkit.backends.numba.lowering (generated)."""
import numba
import numpy as np
from gradkit.backends.numba.kernels import OPTIONS
from gradkit.backends.numba.step_kernels import (
    matmul, matmul_numpy, add_bias, sum_rows, bias_activation,
    bias_activation_backward, cross_entropy, cross_entropy_backward, sgd_update,
    sgd_update_plain, adam_update, argmax_rows, sum_vector, as_float64,
    scalar_to_vector, bias_activation_over_x, bias_activation_backward_over_g,
    bias_activation_backward_and_sum_over_g,
    cross_entropy_backward_over_logits, sgd_update_over_grad, sgd_update_plain_over_grad,
    relu, leaky_relu, elu, sigmoid, relu_backward, leaky_relu_backward, elu_backward,
    sigmoid_backward, tanh_backward, tanh_numpy, relu_numpy, maximum_numpy, minimum_numpy,
    mean_all, mean_backward_all, scalar_array)


@numba.njit(cache=True, **OPTIONS)
'''


def lower_call(call: StepCall, layout: Layouts) -> str:
    """The expression computing ``call``'s result (NoLowering where it has none)."""
    lower = LOWERINGS.get(call.op)
    if lower is None:
        raise NoLowering("no lowering for this op")
    return lower(call, layout)


def lower_calls(calls: list[StepCall], layout: Layouts, fused: dict[int, int] | None = None
                ) -> tuple[list[str], list[str]]:
    """(the body's lines, and one reason per call that has no lowering); a call in
    ``fused`` (see :func:`fusions`) gets no line: its expression goes into its reader's,
    whose comment names it; nor does a sum the backward before it runs too
    (``layout.summed``, see :func:`summed_backwards`)."""
    fused = fused or {}
    lines, missing = [], []
    inline: dict[int, tuple[str, list]] = {}  # slot -> (expression, its calls)
    summed = {total.index for total in layout.summed.values()}
    for call in calls:
        if call.index in summed:
            continue
        try:
            expression = lower_call(call, layout)
        except NoLowering as why:
            missing.append(f"call {call.index} {call.op}: {why}")
            continue
        inlined = []
        for slot in call.inputs:
            if slot in inline:
                code, names = inline.pop(slot)
                expression = re.sub(rf"\bs{slot}\b", f"({code})", expression)
                inlined += names
        if call.output in fused:
            inline[call.output] = expression, inlined + [(call.index, call.op)]
            continue
        targets = f"s{call.output}"
        if call.index in layout.summed:
            total = layout.summed[call.index]
            targets += f", s{total.output}"
            inlined.append((total.index, total.op))
        names = ", ".join(f"{n} {op}" for n, op in sorted(inlined))
        note = f" (fused here: {names})" if inlined else ""
        lines.append(f"    {targets} = {expression}  # {call.op}{note}")
    return lines, missing


def unlowered_calls(calls: list[StepCall], examples: dict[int, Any],
                    runs_parallel: Callable[[str, int], bool],
                    numpy_below: Mapping[str, int] | None = None) -> dict[int, str]:
    """Why each call without a lowering for its recorded arrays has none, by call index
    (``runs_parallel`` and ``numpy_below`` as for :func:`compile_step`)."""
    layout = Layouts(examples, runs_parallel, numpy_below=numpy_below)
    reasons = {}
    for call in calls:
        try:
            lower_call(call, layout)
        except NoLowering as why:
            reasons[call.index] = str(why)
    return reasons


def compile_step(calls: list[StepCall], inputs: list[int], results: list[int],
                 examples: dict[int, Any], live_values: list[Any],
                 runs_parallel: Callable[[str, int], bool],
                 numpy_below: Mapping[str, int] | None = None) -> CompiledStep:
    """The calls as one njit function of ``inputs`` and the live params, returning
    ``results`` (the slots read after these calls); ``examples`` holds the recorded
    array of every slot (its layout says which lowering applies, and the function is
    compiled for those types now); ``runs_parallel(name, elements)`` says which loops
    the Python kernels run in parallel and ``numpy_below`` (op -> size) below which
    they run NumPy's code instead (the backend's rules, as they are now).

    The intermediates no one outside the function sees live in an arena
    (:func:`plan_arena`): the returned function passes the process's
    (:func:`shared_arena`) to the compiled one, which other compiled steps and calls
    from other threads wait for, and the arena stays for the next step."""
    layouts = Layouts(examples, runs_parallel, numpy_below=numpy_below)
    fused = fusions(calls, results, layouts)
    executed = without_fused(calls, fused)
    layouts.overwritable = overwritable_inputs(executed, results)
    layouts.summed = summed_backwards(executed, layouts)
    layouts.arena, arena_bytes = plan_arena(as_run(executed, layouts.summed), results,
                                            layouts, ARENA_MIN_BYTES)
    lines, missing = lower_calls(calls, layouts, fused)
    if missing:
        return CompiledStep(None, "", missing, 0.0, ())
    live = tuple((live_name(name, call.index), "bool" if name in FLAG_PARAMS else "float")
                 for call in calls for name in call.live)
    arguments = ((["arena"] if arena_bytes else []) + [f"s{i}" for i in inputs] +
                 [name for name, _ in live])
    returned = "".join(f"s{i}, " for i in results)
    source = (HEADER + f"def step({', '.join(arguments)}):\n" +
              "\n".join(_arena_views(layouts) + lines) + f"\n    return ({returned})\n")
    started = time.perf_counter()
    try:
        function = _load(source)
        signature = tuple(_typeof(examples[i]) for i in inputs) + tuple(
            _typeof(bool(v) if kind == "bool" else float(v))
            for (_, kind), v in zip(live, live_values))
        if arena_bytes:
            function.compile((_typeof(new_arena(0)),) + signature)
            function = _passing_arena(function, shared_arena(), arena_bytes)
        else:
            function.compile(signature)
    except Exception as exc:  # a lowering's line Numba refuses: a bug here, not the user's
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return CompiledStep(None, source, [f"Numba could not compile the step "
                                           f"({type(exc).__name__}: {first_line})"], 0.0, ())
    return CompiledStep(function, source, [], time.perf_counter() - started, live,
                        arena_bytes)


def new_arena(size: int) -> np.ndarray:
    """``size`` bytes (uint8) starting at a multiple of ARENA_ALIGNMENT."""
    raw = np.empty(size + ARENA_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ARENA_ALIGNMENT
    return raw[start:start + size]


class Arena:
    """The memory compiled steps keep for their intermediates between calls: one array,
    grown to the largest step's need, used by one step at a time (``lock``). Every
    compiled step of the process shares the one :func:`shared_arena` returns, so a
    captured function's plans for several batch sizes (and several captured functions)
    keep the largest step's bytes, not the sum of them all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._array = new_arena(0)

    def at_least(self, size: int) -> np.ndarray:
        """The arena, grown to ``size`` bytes first if smaller (call under ``lock``)."""
        if self._array.size < size:
            self._array = new_arena(0)  # the old bytes go before the new ones come
            self._array = new_arena(size)
        return self._array

    @property
    def nbytes(self) -> int:
        return self._array.size


_shared_arena: Callable[[], Arena | None] = lambda: None  # a weak reference, once made


def shared_arena() -> Arena:
    """The Arena of this process's compiled steps: alive while one of them is (each
    holds it), freed with the last."""
    global _shared_arena
    arena = _shared_arena()
    if arena is None:
        arena = Arena()
        _shared_arena = weakref.ref(arena)
    return arena


def _arena_views(layout: Layouts) -> list[str]:
    """The lines making each arena buffer's view (its recorded shape and dtype)."""
    lines = []
    for slot, offset in layout.arena.items():
        shape, dtype = layout(slot).shape, layout(slot).dtype
        size = dtype.itemsize * math.prod(shape)
        lines.append(f"    {arena_name(slot)} = arena[{offset}:{offset + size}]"
                     f".view(np.{dtype.name}).reshape({shape!r})")
    return lines


def _passing_arena(function: Callable, arena: Arena, size: int) -> Callable:
    """``function`` called with ``arena`` (at least ``size`` bytes) first, under the
    arena's lock."""
    lock = arena.lock

    def step(*args):
        with lock:
            return function(arena.at_least(size), *args)
    return step


def _typeof(value: Any) -> Any:
    import numba
    return numba.typeof(value)


def cache_dir() -> Path:
    """Where compiled steps' sources live (Numba caches their machine code beside them):
    ``$GRADKIT_CACHE_DIR/plans``, else ``~/.cache/gradkit/plans``."""
    root = os.environ.get("GRADKIT_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "gradkit")
    return Path(root) / "plans"


def _load(source: str) -> Any:
    """Write ``source`` to the cache directory (named by a hash of it and of the loops
    it calls: Numba does not notice a change in those) and import its ``step``."""
    here = Path(__file__).parent
    digest = hashlib.sha256(source.encode())
    for name in ("kernels.py", "step_kernels.py"):
        digest.update((here / name).read_bytes())
    import numba
    digest.update(numba.__version__.encode())
    name = f"gradkit_step_{digest.hexdigest()[:20]}"
    if name in sys.modules:
        return sys.modules[name].step
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(source)
        os.replace(temporary, path)  # atomic: another process may be reading it
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module.step
