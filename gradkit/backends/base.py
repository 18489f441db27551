"""The Backend class: an array module plus the kernels that replace reference forwards.

Every backend registers its kernels one way: a table from op name to a kernel factory,
``kernel_factories = {op_name: factory}``, where ::

    factory(backend, op, reference) -> kernel

``op`` is the registered op (``op.name``, ``op.forward``...), ``reference`` is its
reference forward bound to this backend's ``xp`` (``reference(*arrays, **params)``:
the answer for every case the kernel does not take), and ``kernel`` takes the same
arguments as ``reference``. A backend calls the factory on the op's first use, so
building a kernel may compile or import lazily, and keeps the kernel in ``resolved``;
dispatch runs ``backend.resolved.get(op.name) or backend.resolve(op)``. An op without a
factory runs ``reference``. Backends never look ops up: what a kernel needs from its op
comes through the factory's arguments. ``donating_kernel_factories = {op_name: (input
index, factory)}`` adds in-place variants (a kernel that may write its result into that
input; ``gk.capture`` replays use them where the input is read for the last time).

A backend with a faster exp of its own (float64 only; the reference does the rest):

>>> import numpy as np
>>> import gradkit as gk
>>> from gradkit.backends.numpy.backend import NumpyBackend
>>> def exp_kernel(backend, op, reference):
...     def exp(x):
...         if x.dtype != np.float64:
...             return reference(x)
...         return np.exp(x, out=np.empty_like(x))
...     return exp
>>> class FastExpBackend(NumpyBackend):
...     name = "fast_exp"
...     kernel_factories = {**NumpyBackend.kernel_factories, "exp": exp_kernel}
>>> gk.backends.register_backend("fast_exp", FastExpBackend)
>>> gk.exp(gk.tensor([0.0, 1.0], dtype="float64", backend="fast_exp")).numpy().tolist()
[1.0, 2.718281828459045]

A kernel that needs no reference is registered on one backend object as it is:

>>> backend = gk.backends.get("fast_exp")
>>> backend.register_kernel("negative", lambda x: 0 - x)
>>> gk.negative(gk.tensor([1.0, 2.0], backend="fast_exp")).numpy().tolist()
[-1.0, -2.0]
>>> gk.backends.unregister_backend("fast_exp")
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from gradkit.dtypes import native_dtype

Kernel = Callable[..., Any]
# factory(backend, op, reference) -> kernel: see the module docstring
KernelFactory = Callable[["Backend", Any, Kernel], Kernel]


class StepCall(NamedTuple):
    """One kernel call of a captured step, as :meth:`Backend.compile_step` sees it:
    call ``index`` of op ``op`` (its name) reads slots ``inputs`` and writes slot
    ``output``; ``params`` are its recorded params, ``live`` the names of those a
    replay reads afresh (arguments of the compiled function)."""
    index: int
    op: str
    inputs: tuple
    params: dict
    live: tuple
    output: int


class CompiledStep(NamedTuple):
    """What :meth:`Backend.compile_step` made: ``function`` (None when the step cannot be
    compiled, ``reasons`` saying why, one per call), its ``source``, the seconds
    compiling (or loading it from the disk cache) took, its live arguments after
    the arrays, as (name, "float" or "bool"), and the bytes of memory it keeps from
    call to call for its intermediates (its arena)."""
    function: Any
    source: str
    reasons: list
    compile_seconds: float
    live: tuple
    arena_bytes: int = 0


class Backend:
    """Where a tensor's array lives and which kernels run on it.

    A backend names an array module (``xp``) that every op's reference forward is
    written against, and may run any op with a faster kernel of its own, made by its
    ``kernel_factories`` table (see the module docstring).

    >>> from gradkit.backends.numpy.backend import NumpyBackend
    >>> NumpyBackend().name
    'numpy'
    """

    name: str = "abstract"
    # Whether np.asarray(tensor) may copy the data to the host silently. A backend
    # whose arrays live off the host (CUDA) says False: the copy must be asked for
    # with tensor.numpy(), so a stray host round trip never hides in a hot loop.
    host_conversion_allowed: bool = True
    # Where the arrays live, as a DLPack device type (1: CPU, 2: CUDA); gk.from_dlpack
    # picks the backend for a foreign array by it.
    dlpack_device_type: int = 1
    # A subclass declares its kernels here: op name -> factory(backend, op, reference).
    kernel_factories: Mapping[str, KernelFactory] = {}
    # op name -> (input index, factory) of a kernel that may write its result into that
    # input's memory (used by gk.capture replays where the input is read last there).
    donating_kernel_factories: Mapping[str, tuple[int, KernelFactory]] = {}

    def __init__(self) -> None:
        # This backend's own copies of its class's tables: register_kernel changes one
        # backend object, not its class.
        self.kernel_factories = dict(self.kernel_factories)
        self.donating_kernel_factories = dict(self.donating_kernel_factories)
        # op name -> the kernel that runs it here, made on first use (dispatch reads it)
        self.resolved: dict[str, Kernel] = {}
        # op name -> (input index, in-place kernel), for the ops resolved so far
        self.donating_kernels: dict[str, tuple[int, Kernel]] = {}

    # -- availability -------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """None when usable here, else why not and how to fix it."""
        return None

    # -- arrays ---------------------------------------------------------------
    @property
    def xp(self) -> Any:
        """The array module the reference forwards run on."""
        raise NotImplementedError

    @property
    def array_type(self) -> type:
        """The concrete array class of this backend."""
        raise NotImplementedError

    def asarray(self, data: Any, dtype: np.dtype | None = None) -> Any:
        """Copy or wrap ``data`` as this backend's array (``dtype`` a NumPy dtype)."""
        return self.xp.asarray(data, dtype=None if dtype is None else native_dtype(self.xp, dtype))

    def copy(self, array: Any) -> Any:
        """A new array with the same values (never a view of ``array``)."""
        return self.xp.asarray(array, copy=True)

    def is_writeable(self, array: Any) -> bool:
        """Whether gradkit may write into ``array`` (False for what :meth:`read_only`
        returned: a leaf that requires a gradient, a saved constant)."""
        flags = getattr(array, "flags", None)
        return flags is not None and bool(getattr(flags, "writeable", False))

    def read_only(self, array: Any, in_place: bool = False) -> Any:
        """A view of ``array`` that refuses writes, where the library can say so.

        ``in_place=True`` (the caller holds the only reference): flag ``array``
        itself, without making a view. A backend whose arrays have no writeable flag
        overrides this and :meth:`is_writeable` together.
        """
        if not self.is_writeable(array):
            return array
        view = array if in_place else array.view()
        if type(view) is np.ndarray:
            view.setflags(write=False)  # (twice as fast as setting flags.writeable)
        else:
            view.flags.writeable = False
        return view

    def overwrite(self, array: Any, values: Any) -> Any:
        """``array`` holding ``values`` (an in-place operator): the same memory when
        it is writable, else a new array (a read-only leaf is never written through)."""
        if self.is_writeable(array) and values.dtype == array.dtype:
            array[...] = values
            return array
        return self.xp.astype(values, array.dtype) if values.dtype != array.dtype else values

    def value_range(self, array: Any) -> tuple[int, int]:
        """The smallest and largest element of a non-empty integer ``array``, as Python
        ints (a device sync on a GPU)."""
        return int(self.xp.min(array)), int(self.xp.max(array))

    def to_numpy(self, array: Any) -> np.ndarray:
        """A NumPy array with the same values (a copy off the host)."""
        return np.asarray(array)

    def from_backend(self, array: Any, source: "Backend") -> Any:
        """``array`` of backend ``source`` as an array of this backend (through the host)."""
        return self.asarray(source.to_numpy(array))

    # -- dispatch -------------------------------------------------------------
    def register_kernel(self, op_name: str, kernel: Kernel) -> None:
        """Run ``kernel(*arrays, **params)`` instead of the op's reference forward (and of
        any kernel of this backend's own for it, its in-place variant included)."""
        def registered(backend: Backend, op: Any, reference: Kernel) -> Kernel:
            return kernel
        self.register_kernel_factory(op_name, registered)

    def register_kernel_factory(self, op_name: str, factory: KernelFactory,
                                donating: tuple[int, KernelFactory] | None = None) -> None:
        """Make ``op_name``'s kernel with ``factory(backend, op, reference)`` (and its
        in-place variant with ``donating``, an (input index, factory) pair), replacing
        what this backend had for it."""
        self.kernel_factories[op_name] = factory
        if donating is None:
            self.donating_kernel_factories.pop(op_name, None)
        else:
            self.donating_kernel_factories[op_name] = donating
        self.invalidate(op_name)

    def unregister_kernel(self, op_name: str) -> None:
        """Run ``op_name``'s reference forward here: forget this backend's kernel for it."""
        self.kernel_factories.pop(op_name, None)
        self.donating_kernel_factories.pop(op_name, None)
        self.invalidate(op_name)

    def invalidate(self, op_name: str) -> None:
        """Forget the kernel made for ``op_name``: its next call makes it anew (after the
        op's definition or this backend's table changed)."""
        self.resolved.pop(op_name, None)
        self.donating_kernels.pop(op_name, None)

    def resolve(self, op: Any) -> Kernel:
        """The kernel that runs ``op`` here: made by this backend's factory for it on first
        use, else the op's reference forward on ``xp``."""
        kernel = self.resolved.get(op.name)
        if kernel is not None:
            return kernel
        reference = partial(op.forward, self.xp)
        factory = self.kernel_factories.get(op.name)
        kernel = reference if factory is None else factory(self, op, reference)
        donating = self.donating_kernel_factories.get(op.name)
        if donating is not None:
            position, make = donating
            self.donating_kernels[op.name] = (position, make(self, op, reference))
        self.resolved[op.name] = kernel
        return kernel

    # -- whole-step compilation (gk.capture(..., compile=True)) -------------------
    compiles_steps = False  # whether compile_step can compile anything

    def compile_step(self, calls: list[StepCall], inputs: list[int], results: list[int],
                     examples: dict[int, Any], live_values: list[Any]) -> CompiledStep:
        """The captured step's kernel ``calls`` as one compiled function of the arrays of
        slots ``inputs`` (then the live params, ``live_values`` as recorded) returning
        those of ``results``; ``examples`` maps every slot to its recorded array. A
        backend that compiles no steps says so (``function`` None).

        >>> from gradkit.backends.numpy.backend import NumpyBackend
        >>> NumpyBackend().compile_step([], [], [], {}, []).reasons
        ['the numpy backend compiles no steps']
        """
        return CompiledStep(None, "", [f"the {self.name} backend compiles no steps"], 0.0, ())

    def uncompilable_calls(self, calls: list[StepCall], examples: dict[int, Any]
                           ) -> dict[int, str]:
        """Why each of ``calls`` (a captured step's calls on this backend) that has no
        compiled form here has none, by call index: gk.capture compiles the runs of
        calls in between and replays these in Python. A backend that compiles no steps
        names every call.

        >>> from gradkit.backends.numpy.backend import NumpyBackend
        >>> NumpyBackend().uncompilable_calls([StepCall(0, "exp", (0,), {}, (), 1)], {})
        {0: 'the numpy backend compiles no steps'}
        """
        return {call.index: f"the {self.name} backend compiles no steps" for call in calls}

    def __repr__(self) -> str:
        return f"<gradkit backend {self.name}>"
