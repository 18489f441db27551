"""Tensor: a backend array plus what the engine needs, and the operators.

>>> import gradkit as gk
>>> x = gk.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> y = (x @ x).sum()
>>> y.backward()
>>> x.grad.numpy().tolist()
[[7.0, 11.0], [9.0, 13.0]]
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from gradkit import backends as _backends
from gradkit.dtypes import as_dtype, get_default_dtype, is_floating, native_dtype, to_numpy_dtype
from gradkit.errors import BackendError, DTypeError, describe
from gradkit import interception as _interception
from gradkit.grad_mode import check_stays_in_graph, is_grad_enabled, no_grad

# The versions of the Array API standard ``x.__array_namespace__(api_version=...)``
# accepts; gradkit covers parts of each (see the README), the namespace is the same.
ARRAY_API_VERSIONS = ("2021.12", "2022.12", "2023.12", "2024.12")


# The ``gradkit`` package, which __array_namespace__ returns: gradkit/__init__.py binds it
# when it has loaded (the core does not import the package that re-exports everything).
_namespace: list[Any] = [None]


def bind_namespace(module: Any) -> None:
    """Make ``module`` what ``Tensor.__array_namespace__`` returns (gradkit/__init__.py)."""
    _namespace[0] = module


# What Tensor's operators and backward call, bound by the layers above when they load
# (gradkit.ops binds itself, gradkit.autodiff its backward): the core does not import them.
_ops: Any = None
_engine: dict[str, Any] = {}


def bind_ops(module: Any) -> None:
    """Make ``module`` (gradkit.ops) the namespace Tensor's operators and methods call."""
    global _ops
    _ops = module


def bound_ops() -> Any:
    """The ops namespace bound by :func:`bind_ops` (for the core's own op calls)."""
    return _ops


def bind_backward(function: Any) -> None:
    """Make ``function`` what ``Tensor.backward`` runs (gradkit.autodiff.backward)."""
    _engine["backward"] = function


class HostConversionError(BackendError, TypeError):
    """``np.asarray(t)`` of a tensor whose data is off the host: call ``t.numpy()``."""


_KEEP: Any = object()  # Tensor.write: "leave this one as it is"


class Tensor:
    """An array on a backend, with an optional gradient and tape node.

    Make one with :func:`gradkit.tensor`. ``data`` is the raw backend array,
    ``array_backend`` the :class:`gradkit.backends.Backend` that holds it (``backend``
    is its name), ``node`` the tape node that produced it (None for leaves and
    constants).

    >>> import gradkit as gk
    >>> x = gk.tensor([1.0, 2.0])
    >>> x.backend, x.array_backend.name, type(x.data).__name__
    ('numpy', 'numpy', 'ndarray')
    """

    __slots__ = ("data", "array_backend", "_requires_grad", "_grad", "node", "_version",
                 "__weakref__")
    __array_priority__ = 1000.0  # NumPy defers `ndarray * Tensor` to Tensor.__rmul__
    _gradkit_tensor = True  # gradkit.errors.is_tensor: modules below the core ask this

    def __init__(self, data: Any, backend: Any, node: Any = None) -> None:
        self.data = data
        self.array_backend = backend
        self.node = node
        self._requires_grad = node is not None
        self._grad: Tensor | None = None
        self._version = 0  # bumped by in-place ops; nodes check it before their VJP
        if _interception.active_recordings:  # gk.capture tells tensors made during a call apart
            _interception.note_created(self)

    # -- what it is ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the data (whatever the backend's own dtype objects are)."""
        dtype = self.data.dtype
        return dtype if isinstance(dtype, np.dtype) else to_numpy_dtype(dtype)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def backend(self) -> str:
        """The name of the backend the data lives on, e.g. ``"numpy"``."""
        return self.array_backend.name

    @property
    def device(self) -> Any:
        """Where the data lives: a :class:`gradkit.Device` (one per backend).

        >>> import gradkit as gk
        >>> gk.tensor([1.0]).device
        Device('numpy')
        """
        from gradkit.device import Device
        return Device(self.array_backend)

    def to_device(self, device: Any, /, *, stream: Any = None) -> "Tensor":
        """This tensor on ``device`` (a Device or backend name); gradients flow back.

        >>> import gradkit as gk
        >>> x = gk.tensor([1.0])
        >>> x.to_device(x.device) is x
        True
        """
        from gradkit.device import resolve_backend
        return _ops.to_backend(self, resolve_backend(device))

    def __array_namespace__(self, /, *, api_version: str | None = None) -> Any:
        """The ``gradkit`` module: the Array API namespace of this tensor, so code
        written for the standard (``xp = x.__array_namespace__()``) runs on gradkit
        tensors, and ``gk.grad`` differentiates it.

        >>> import gradkit as gk
        >>> gk.tensor([1.0]).__array_namespace__() is gk
        True
        """
        if api_version is not None and api_version not in ARRAY_API_VERSIONS:
            raise ValueError(f"__array_namespace__: unsupported api_version {api_version!r}; "
                             f"gradkit answers for {list(ARRAY_API_VERSIONS)}")
        return _namespace[0]

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:
        """Export the data through DLPack (``np.from_dlpack(t)``, ``torch.from_dlpack(t)``,
        ``cupy.from_dlpack(t)``): the backend array's own ``__dlpack__``, no copy.

        A tensor that requires a gradient holds read-only data; consumers of DLPack
        1.0 get it flagged read-only, older ones are refused by NumPy.
        """
        self._leaving_graph("__dlpack__")
        kwargs = {name: value for name, value in (("stream", stream), ("max_version", max_version),
                                                  ("dl_device", dl_device), ("copy", copy))
                  if value is not None}
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[Any, int]:
        """``(device type, device id)`` of the data, as DLPack numbers them (1: CPU, 2: CUDA)."""
        return self.data.__dlpack_device__()

    @property
    def is_leaf(self) -> bool:
        """True unless an op recorded on the tape produced this tensor."""
        return self.node is None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    @property
    def grad(self) -> "Tensor | None":
        """The gradient ``backward`` accumulated here (a leaf's), or None."""
        return self._grad

    @grad.setter
    def grad(self, value: "Tensor | None") -> None:
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"grad: expected a gradkit Tensor or None, got "
                            f"{type(value).__name__}")
        self.write(grad=value)

    @property
    def version(self) -> int:
        """How many writes this tensor's array has had (in-place operators, setitem,
        optimizer updates, loads); the tape checks it before using a saved input.

        >>> import gradkit as gk
        >>> x = gk.zeros(2)
        >>> x += 1
        >>> x.version
        1
        """
        return self._version

    def write(self, data: Any = _KEEP, *, grad: Any = _KEEP, how: str = "assign",
              source: "Tensor | None" = None, versions: int = 1, report: bool = True,
              accumulated: bool = False) -> None:
        """The one writer of this tensor's array and ``.grad``: in-place operators,
        setitem, optimizer updates, both ``load_state_dict`` methods and gk.capture's
        replay all call it. It sets the array (``data``, a raw backend array) and/or
        the gradient (``grad``, a Tensor or None), bumps the version when the array
        changes, and reports the write to the interceptor installed in
        :mod:`gradkit.interception` (gk.capture's Recorder), if any.

        ``how`` says how the array is installed, as a replay must repeat it:
        ``"overwrite"`` writes the values into the current array (Backend.overwrite),
        ``"install"`` makes it read-only when this tensor requires a gradient (what
        optimizers do), ``"assign"`` takes it as it is. ``source`` is the tensor whose
        values were written (the interceptor's view of where they came from);
        ``versions`` is how many writes this one stands for; ``report=False`` is for
        a replay, which must not be heard as new writes. ``accumulated=True`` says
        the new ``grad`` is backward's sum into the previous one (None included).

        (``x.data = array`` still assigns the slot directly, unreported: ``data`` is
        read by every op, so it stays a plain slot.)

        >>> import gradkit as gk
        >>> x = gk.zeros(2)
        >>> x.write(gk.ones(2).data)
        >>> x.tolist()
        [1.0, 1.0]
        """
        recorder = _interception.current_interceptor.get() if report else None
        if recorder is not None:
            recorder.will_write(self, how if data is not _KEEP else None)
        if data is not _KEEP:
            if how == "overwrite":
                data = self.array_backend.overwrite(self.data, data)
            elif how == "install":
                if self._requires_grad:
                    data = self.array_backend.read_only(data)
            elif how != "assign":
                raise ValueError(f"write: how must be 'overwrite', 'install' or 'assign', "
                                 f"got {how!r}")
            self.data = data
            self._version += versions
            if recorder is not None:
                recorder.wrote_data(self, source if source is not None
                                    else Tensor(data, self.array_backend), how)
        if grad is not _KEEP:
            self._grad = grad
            if recorder is not None:
                recorder.wrote_grad(self, grad, accumulated)

    def requires_grad_(self, flag: bool = True, where: str = "requires_grad") -> "Tensor":
        """Mark this leaf as needing a gradient (in place); returns self."""
        if flag and not is_floating(self.dtype):
            raise DTypeError(f"{where}: only floating tensors can require a gradient, "
                             f"got {describe(self)}; convert with .astype('float32')")
        if not flag and self.node is not None:
            raise ValueError("requires_grad: cannot switch off a non-leaf tensor; "
                             "use .detach()")
        if flag and self.node is None:
            # The array a leaf's gradient is computed at must not change behind the
            # tape's back: writes go through in-place operators (which the tape
            # checks), not through x.data[...] = ...
            self.data = self.array_backend.read_only(self.data)
        if self._requires_grad != bool(flag):
            self._requires_grad = bool(flag)
            _interception.note_state_change()  # a captured step may have read the flag
        return self

    # -- conversion ---------------------------------------------------------------
    def _leaving_graph(self, where: str) -> None:
        """Inside gk.grad & co., a tensor being differentiated (or computed from one)
        refuses to be copied out of the graph: the copy would carry no gradient."""
        if self._requires_grad:
            check_stays_in_graph(self, where)

    def _host_data(self, where: str) -> Any:
        """The data as a NumPy array, for an explicit copy out of the graph."""
        self._leaving_graph(where)
        return self.array_backend.to_numpy(self.data)

    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data (safe to modify)."""
        return np.array(self._host_data("numpy"), copy=True)

    def item(self) -> Any:
        """The single element as a Python number."""
        if self.size != 1:
            raise ValueError(f"item: only size-1 tensors have an item, got {describe(self)}")
        return self._host_data("item").reshape(()).item()

    def tolist(self) -> Any:
        return self._host_data("tolist").tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """A NumPy copy (``np.asarray(x)``); with ``copy=False``, a read-only view.

        A tensor that requires a gradient refuses with :class:`HostConversionError`:
        the NumPy array would carry no gradient, so code falling back to NumPy would
        silently differentiate to zero. ``x.detach()`` converts (the user's choice to
        leave the graph), ``x.numpy()`` copies. On a backend off the host (CUDA) every
        tensor refuses: the copy to the host is asked for explicitly, with ``x.numpy()``.
        """
        if self._requires_grad:
            raise HostConversionError(
                f"__array__: this tensor ({describe(self)}) requires a gradient, and the "
                "NumPy array it would convert to carries none (a function falling back to "
                "NumPy would silently give zero gradients); compute it with gradkit ops, or "
                "convert x.detach() if leaving the graph is what you mean")
        if not self.array_backend.host_conversion_allowed:
            raise HostConversionError(
                f"__array__: this tensor ({describe(self)}) lives on the {self.backend} "
                "device; NumPy cannot convert it implicitly. Call .numpy() to copy it to "
                "the host, or use gk.from_dlpack / the backend's own arrays")
        array = self.array_backend.to_numpy(self.data)
        if copy is False:
            if array is not self.data and array.base is not self.data:
                raise ValueError("__array__: this tensor is not in host memory; a copy is "
                                 "needed (call .numpy())")
            view = array.view()
            view.flags.writeable = False
            return view if dtype is None else view.astype(dtype, copy=False)
        return np.array(array, dtype=dtype, copy=True)

    def __float__(self) -> float:
        return float(self.item())

    def __complex__(self) -> complex:
        return complex(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu":
            raise TypeError(f"__index__: only integer tensors can index, got {describe(self)}")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(f"bool: the truth value of a tensor with {self.size} elements is "
                             "ambiguous; use .any() or .all()")
        return bool(self.item())

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tensor"]:
        for i in range(len(self)):
            yield self[i]

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = np.array2string(self.array_backend.to_numpy(self.data), separator=", ",
                               prefix="tensor(")
        extras = [f"dtype={self.dtype}"]
        if self.array_backend.name != "numpy":
            extras.append(f"backend={self.array_backend.name!r}")
        if self.node is not None:
            extras.append(f"grad_fn={self.node.op.name}")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    # -- autodiff -----------------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False,
                 create_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into every leaf's ``.grad``.

        ``grad`` is the upstream gradient (needed unless this is a scalar). The
        graph is freed afterwards unless ``retain_graph``; ``create_graph``
        records the backward pass so the gradients can be differentiated again.
        """
        _engine["backward"](self, grad, retain_graph, create_graph)

    def _update_in_place(self, result: "Tensor", name: str) -> "Tensor":
        """Write ``result`` into this tensor (an in-place operator); bump its version."""
        from gradkit.errors import GraphError, ShapeError
        if self._requires_grad and is_grad_enabled():
            raise GraphError(f"{name}: in-place update of a tensor that requires a gradient "
                             f"({describe(self)}); do it inside `with gk.no_grad():` (e.g. an "
                             "optimizer step) or write x = x - ... to record it")
        if result.shape != self.shape:
            raise ShapeError(f"{name}: the result has shape {result.shape} but the tensor "
                             f"updated in place has shape {self.shape} ({describe(self)})")
        recorder = _interception.current_interceptor.get()
        if recorder is not None:
            if result.data.dtype != self.data.dtype:  # the cast as an op, so a replay has it
                with no_grad():
                    result = result.astype(self.dtype)
        self.write(result.data, how="overwrite", source=result)
        return self

    def __iadd__(self, other: Any) -> "Tensor": return self._update_in_place(_ops.add(self, other), "+=")
    def __isub__(self, other: Any) -> "Tensor": return self._update_in_place(_ops.subtract(self, other), "-=")
    def __imul__(self, other: Any) -> "Tensor": return self._update_in_place(_ops.multiply(self, other), "*=")
    def __itruediv__(self, other: Any) -> "Tensor": return self._update_in_place(_ops.divide(self, other), "/=")

    def detach(self) -> "Tensor":
        """The same data as a new leaf that does not require a gradient."""
        detached = Tensor(self.data, self.array_backend)
        recorder = _interception.current_interceptor.get()
        if recorder is not None:
            recorder.aliased(detached, self)
        return detached

    def to(self, backend: Any) -> "Tensor":
        """This tensor on ``backend`` (e.g. ``"numba"``, ``"cuda"``); gradients flow back."""
        return _ops.to_backend(self, backend)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    # -- operators (each calls one op from gradkit.ops) ---------------------------
    def __add__(self, other: Any) -> "Tensor": return _ops.add(self, other)
    def __radd__(self, other: Any) -> "Tensor": return _ops.add(other, self)
    def __sub__(self, other: Any) -> "Tensor": return _ops.subtract(self, other)
    def __rsub__(self, other: Any) -> "Tensor": return _ops.subtract(other, self)
    def __mul__(self, other: Any) -> "Tensor": return _ops.multiply(self, other)
    def __rmul__(self, other: Any) -> "Tensor": return _ops.multiply(other, self)
    def __truediv__(self, other: Any) -> "Tensor": return _ops.divide(self, other)
    def __rtruediv__(self, other: Any) -> "Tensor": return _ops.divide(other, self)
    def __pow__(self, other: Any) -> "Tensor": return _ops.power(self, other)
    def __rpow__(self, other: Any) -> "Tensor": return _ops.power(other, self)
    def __matmul__(self, other: Any) -> "Tensor": return _ops.matmul(self, other)
    def __rmatmul__(self, other: Any) -> "Tensor": return _ops.matmul(other, self)
    def __neg__(self) -> "Tensor": return _ops.negative(self)
    def __pos__(self) -> "Tensor": return self
    def __abs__(self) -> "Tensor": return _ops.abs(self)
    def __eq__(self, other: Any) -> "Tensor": return _ops.equal(self, other)  # type: ignore[override]
    def __ne__(self, other: Any) -> "Tensor": return _ops.not_equal(self, other)  # type: ignore[override]
    def __lt__(self, other: Any) -> "Tensor": return _ops.less(self, other)
    def __le__(self, other: Any) -> "Tensor": return _ops.less_equal(self, other)
    def __gt__(self, other: Any) -> "Tensor": return _ops.greater(self, other)
    def __ge__(self, other: Any) -> "Tensor": return _ops.greater_equal(self, other)
    def __floordiv__(self, other: Any) -> "Tensor": return _ops.floor_divide(self, other)
    def __rfloordiv__(self, other: Any) -> "Tensor": return _ops.floor_divide(other, self)
    def __mod__(self, other: Any) -> "Tensor": return _ops.remainder(self, other)
    def __rmod__(self, other: Any) -> "Tensor": return _ops.remainder(other, self)
    def __and__(self, other: Any) -> "Tensor": return _ops.bitwise_and(self, other)
    def __rand__(self, other: Any) -> "Tensor": return _ops.bitwise_and(other, self)
    def __or__(self, other: Any) -> "Tensor": return _ops.bitwise_or(self, other)
    def __ror__(self, other: Any) -> "Tensor": return _ops.bitwise_or(other, self)
    def __xor__(self, other: Any) -> "Tensor": return _ops.bitwise_xor(self, other)
    def __rxor__(self, other: Any) -> "Tensor": return _ops.bitwise_xor(other, self)
    def __lshift__(self, other: Any) -> "Tensor": return _ops.bitwise_left_shift(self, other)
    def __rlshift__(self, other: Any) -> "Tensor": return _ops.bitwise_left_shift(other, self)
    def __rshift__(self, other: Any) -> "Tensor": return _ops.bitwise_right_shift(self, other)
    def __rrshift__(self, other: Any) -> "Tensor": return _ops.bitwise_right_shift(other, self)
    def __invert__(self) -> "Tensor": return _ops.bitwise_invert(self)
    def __getitem__(self, index: Any) -> "Tensor": return _ops.getitem(self, index=index)

    def __setitem__(self, index: Any, value: Any) -> None:
        """``x[index] = value``.

        Outside a graph this writes into the data in place. When ``value`` or ``x``
        is part of a graph (and grad mode is on), ``x`` becomes the output of a
        ``setitem`` op on its old value, so gradients flow to ``value`` (inside
        ``index``) and to the old ``x`` (outside it); ops that used ``x`` before
        the write refuse to backpropagate (their input changed). A leaf that
        requires a gradient cannot be written (like ``+=``; use ``gk.no_grad()``).

        >>> import gradkit as gk
        >>> v = gk.tensor(2.0, requires_grad=True)
        >>> x = gk.zeros(3)
        >>> x[1] = v * 3
        >>> x.sum().backward()
        >>> v.grad.item()
        3.0
        """
        from gradkit.errors import GraphError
        tracked = is_grad_enabled() and (self._requires_grad or (
            isinstance(value, Tensor) and value._requires_grad))
        if not tracked:
            if _interception.current_interceptor.get() is not None:  # as an op, so a replay repeats it
                with no_grad():
                    self._update_in_place(_ops.setitem(self, value, index=index), "setitem")
                return
            self._write(index, value)
            return
        if self.node is None and self._requires_grad:
            raise GraphError(f"setitem: in-place write to a leaf that requires a gradient "
                             f"({describe(self)}); do it inside `with gk.no_grad():` or "
                             "build a new tensor (gk.setitem(x, value, index=...))")
        old = Tensor(self.data, self.array_backend, self.node)  # the value ops saw until now
        result = _ops.setitem(old, value, index=index)
        self.node, self._requires_grad = result.node, True
        self.write(result.data, source=result)

    def _write(self, index: Any, value: Any) -> None:
        """``self.data[index] = value`` without a graph (a copy first if read-only)."""
        from gradkit.indexing import raw_index
        xp = self.array_backend.xp
        if isinstance(value, Tensor):
            if value.array_backend is not self.array_backend:
                raise BackendError(f"setitem: value lives on {value.backend}, the tensor on "
                                   f"{self.backend}; move it with .to({self.backend!r})")
            value = value.data
            if value.dtype != self.data.dtype:
                value = xp.astype(value, self.data.dtype)
        data = self.data
        if not self.array_backend.is_writeable(data):
            data = self.array_backend.copy(data)  # a read-only leaf is never written through
        try:
            data[raw_index(index, xp)] = value
        except (ValueError, TypeError, IndexError) as exc:
            from gradkit.errors import IndexingError, ShapeError
            cls = (DTypeError if isinstance(exc, TypeError) else
                   IndexingError if isinstance(exc, IndexError) else ShapeError)
            raise cls(f"setitem: {exc} (tensor: {describe(self)})") from exc
        self.write(data)

    # -- methods (the same ops) ---------------------------------------------------
    def exp(self) -> "Tensor": return _ops.exp(self)
    def log(self) -> "Tensor": return _ops.log(self)
    def sqrt(self) -> "Tensor": return _ops.sqrt(self)
    def abs(self) -> "Tensor": return _ops.abs(self)
    def clip(self, min: Any = None, max: Any = None) -> "Tensor": return _ops.clip(self, min, max)
    def maximum(self, other: Any) -> "Tensor": return _ops.maximum(self, other)
    def minimum(self, other: Any) -> "Tensor": return _ops.minimum(self, other)
    def astype(self, dtype: Any) -> "Tensor":
        return _ops.astype(self, dtype=as_dtype(dtype, "astype", operand=self))
    def neg(self) -> "Tensor": return _ops.negative(self)
    def square(self) -> "Tensor": return _ops.square(self)
    def matmul(self, other: Any) -> "Tensor": return _ops.matmul(self, other)
    def split(self, indices_or_sections: Any, axis: int = 0) -> list["Tensor"]:
        return _ops.split(self, indices_or_sections, axis=axis)

    def sum(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.min(self, axis=axis, keepdims=keepdims)

    def var(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> "Tensor":
        return _ops.var(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.logsumexp(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> "Tensor":
        return _ops.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> "Tensor":
        return _ops.argmin(self, axis=axis, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.prod(self, axis=axis, keepdims=keepdims)

    def std(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> "Tensor":
        return _ops.std(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def any(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.any(self, axis=axis, keepdims=keepdims)

    def all(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return _ops.all(self, axis=axis, keepdims=keepdims)

    def sort(self, axis: int = -1, descending: bool = False) -> "Tensor":
        return _ops.sort(self, axis=axis, descending=descending)

    def argsort(self, axis: int = -1, descending: bool = False) -> "Tensor":
        return _ops.argsort(self, axis=axis, descending=descending)

    def cumsum(self, axis: int | None = None) -> "Tensor":
        """Running sums along ``axis`` (of the flattened tensor for None, as NumPy)."""
        x = self if axis is not None else _ops.reshape(self, shape=(-1,))
        return _ops.cumulative_sum(x, axis=axis)

    def flip(self, axis: Any = None) -> "Tensor": return _ops.flip(self, axis=axis)
    def round(self) -> "Tensor": return _ops.round(self)
    def floor(self) -> "Tensor": return _ops.floor(self)
    def ceil(self) -> "Tensor": return _ops.ceil(self)
    def sin(self) -> "Tensor": return _ops.sin(self)
    def cos(self) -> "Tensor": return _ops.cos(self)

    def reshape(self, *shape: Any) -> "Tensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape=shape)

    def transpose(self, *axes: Any) -> "Tensor":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.transpose(self, axes=axes or None)

    def permute(self, *axes: Any) -> "Tensor":
        return self.transpose(*axes)

    @property
    def T(self) -> "Tensor":
        return _ops.transpose(self, axes=None)

    @property
    def mT(self) -> "Tensor":
        return _ops.matrix_transpose(self)

    def broadcast_to(self, shape: Any) -> "Tensor": return _ops.broadcast_to(self, shape=shape)
    def squeeze(self, axis: Any = None) -> "Tensor": return _ops.squeeze(self, axis=axis)
    def expand_dims(self, axis: Any) -> "Tensor": return _ops.expand_dims(self, axis=axis)
    def flatten(self) -> "Tensor": return _ops.reshape(self, shape=(-1,))

    def sigmoid(self) -> "Tensor": return _ops.sigmoid(self)
    def tanh(self) -> "Tensor": return _ops.tanh(self)
    def relu(self) -> "Tensor": return _ops.relu(self)
    def leaky_relu(self, slope: float = 0.01) -> "Tensor": return _ops.leaky_relu(self, slope=slope)
    def elu(self, alpha: float = 1.0) -> "Tensor": return _ops.elu(self, alpha=alpha)
    def softplus(self) -> "Tensor": return _ops.softplus(self)
    def gelu(self) -> "Tensor": return _ops.gelu(self)
    def maxout(self, pieces: int) -> "Tensor": return _ops.maxout(self, pieces=pieces)
    def softmax(self, axis: int = -1) -> "Tensor": return _ops.softmax(self, axis=axis)
    def log_softmax(self, axis: int = -1) -> "Tensor": return _ops.log_softmax(self, axis=axis)


def _default_conversion(array: np.ndarray, data: Any) -> np.ndarray:
    """Python floats become the default float dtype; NumPy arrays keep theirs."""
    if isinstance(data, np.ndarray) or isinstance(data, np.generic):
        return array
    if array.dtype == np.float64:
        return array.astype(get_default_dtype())
    return array


def host_array(data: Any, dtype: Any = None) -> np.ndarray:
    """A new NumPy array of ``data`` (a scalar, a NumPy array, nested lists, which may
    hold tensors of any backend: each is copied to the host explicitly)."""
    try:
        return np.array(data, copy=True, dtype=dtype)
    except HostConversionError:  # tensors off the host, which NumPy cannot convert
        return np.array(_with_host_copies(data), copy=True, dtype=dtype)


def _with_host_copies(data: Any) -> Any:
    """Nested lists with each tensor in them as a NumPy copy (``gk.tensor([a, b])`` of
    tensors off the host, which NumPy cannot convert by itself). A tensor that requires a
    gradient still refuses, as its ``__array__`` does."""
    if isinstance(data, Tensor):
        if data._requires_grad:
            data.__array__()  # raises HostConversionError, naming x.detach()
        return data.numpy()
    if isinstance(data, (list, tuple)):
        return [_with_host_copies(item) for item in data]
    return data


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False,
           backend: Any = None) -> Tensor:
    """A new leaf tensor holding a copy of ``data``.

    ``data``: a Python scalar, a (nested) list, a NumPy array or a Tensor. NumPy
    arrays keep their dtype; Python floats become the default float dtype
    (float32; see ``gk.set_default_dtype``). ``backend``: a backend name, default
    ``gk.get_backend()``.

    >>> import gradkit as gk
    >>> gk.tensor([1.0, 2.0]).dtype
    dtype('float32')
    >>> gk.tensor(3, dtype="float64").dtype
    dtype('float64')
    """
    target = _backends.get(backend) if backend is not None else _backends.get_backend()
    wanted = None if dtype is None else as_dtype(dtype, "tensor")
    if isinstance(data, Tensor):
        data._leaving_graph("tensor")
        if data.array_backend is target:
            array = target.copy(data.data)
        else:
            array = target.from_backend(data.data, data.array_backend)
        if wanted is not None and to_numpy_dtype(array.dtype) != wanted:
            array = target.xp.astype(array, native_dtype(target.xp, wanted))
    elif isinstance(data, (np.ndarray, np.generic, list, tuple, int, float, bool)):
        try:
            # Python numbers convert straight to the dtype asked for: through a
            # guessed dtype first, large uint64 values would round through float64.
            direct = wanted if wanted is not None and isinstance(data, (list, tuple, int)) else None
            host = host_array(data, dtype=direct)
        except HostConversionError:  # a list holding a tensor that requires a gradient
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"tensor: cannot make a tensor from {type(data).__name__}: {exc}") from exc
        if host.dtype == object or host.dtype.kind in "USV":
            raise DTypeError(f"tensor: data of dtype {host.dtype} is not numeric")
        host = host.astype(wanted) if wanted is not None else _default_conversion(host, data)
        array = target.asarray(host)  # host is our own copy: sharing it is safe
    else:  # another library's array (CuPy, PyTorch, an Array API library...)
        array = target.copy(target.asarray(data, dtype=wanted))
    as_dtype(to_numpy_dtype(array.dtype), "tensor")
    t = Tensor(array, target)
    if requires_grad:
        t.requires_grad_(True, where="tensor")
    return t


