"""A stand-in for CuPy with CuPy's traits, running on NumPy: emulation, not GPU coverage.

The CUDA backend's Python code (its namespace, its kernel wrappers and launch code,
the engine's and optimizers' handling of its arrays) can run on the CPU with this
module in the place of ``cupy``. Its arrays behave as CuPy's do where NumPy's differ,
so code that silently relies on NumPy-only behaviour fails here as it would on a GPU:

- ``flags`` has only ``c_contiguous``, ``f_contiguous`` and ``owndata`` (no
  ``writeable``: CuPy arrays cannot be made read-only);
- no implicit host conversion: ``np.asarray(a)`` raises ``TypeError``; ``a.get()``
  and ``asnumpy(a)`` copy to the host explicitly;
- functions refuse NumPy arrays as operands (CuPy raises ``TypeError``), except the
  explicit host-to-device copies ``asarray``/``array``;
- reductions and scalar indexing return 0-d arrays, never NumPy scalars;
- out-of-range integer indices wrap around (indexing, ``take``, ``scatter_add``),
  where NumPy raises;
- every device-to-host copy (``get``, ``asnumpy``, ``int(a)``, ``float(a)``,
  ``bool(a)``, ``item``...) is counted in ``HostReads.count``: each is a sync that
  stalls a GPU;
- ``RawModule`` is the CUDA emulator of ``tests/cuda_emulator`` (the .cu kernels
  compiled as host C++), with CuPy's call signature.

What it cannot show: cuBLAS, CuPy's own elementwise kernels, streams, device
memory limits, timing. Say "emulated" wherever this is what ran.
"""
from __future__ import annotations

import operator
import types
import weakref
from typing import Any

import numpy as np

# Functions that copy host data to the device: the only ones that take NumPy arrays.
HOST_TO_DEVICE = frozenset({"asarray", "array", "asanyarray", "ascontiguousarray",
                            "from_dlpack", "copy"})


class HostReads:
    """Counts device-to-host copies (each one a sync that stalls a real GPU)."""

    count = 0

    @classmethod
    def record(cls) -> None:
        cls.count += 1


# id of a NumPy array -> the device array that wraps it (for ``base``'s identity)
_WRAPPERS: dict[int, weakref.ref] = {}


def _remember(array: "ndarray") -> None:
    key = id(array._host)

    def forget(ref: weakref.ref) -> None:
        if _WRAPPERS.get(key) is ref:
            del _WRAPPERS[key]
    _WRAPPERS[key] = weakref.ref(array, forget)


class ndarray:  # noqa: N801  (CuPy's name)
    """A device array: a NumPy array behind CuPy's interface."""

    __slots__ = ("_host", "__weakref__")
    __array_priority__ = 100.0

    def __init__(self, host: np.ndarray) -> None:
        self._host = host
        _remember(self)

    # -- what CuPy has and NumPy does not ------------------------------------
    def get(self) -> np.ndarray:
        """The explicit device-to-host copy."""
        HostReads.record()
        return np.array(self._host, copy=True)

    @property
    def flags(self) -> "Flags":
        return Flags(self._host)

    @property
    def __cuda_array_interface__(self) -> dict:
        interface = self._host.__array_interface__
        return {"shape": self._host.shape, "typestr": self._host.dtype.str,
                "data": (interface["data"][0], False), "version": 3,
                "strides": None if self._host.flags.c_contiguous else self._host.strides}

    @property
    def device(self) -> "Device":
        return Device(0)

    # -- what NumPy has and CuPy refuses -------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # -- plain attributes ----------------------------------------------------
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    itemsize = property(lambda self: self._host.itemsize)
    nbytes = property(lambda self: self._host.nbytes)
    strides = property(lambda self: self._host.strides)
    T = property(lambda self: ndarray(self._host.T))
    mT = property(lambda self: ndarray(np.swapaxes(self._host, -1, -2)))

    @property
    def base(self) -> "ndarray | None":
        """The array whose memory this one views: the same object each time, as in CuPy."""
        owner = self._host.base
        if not isinstance(owner, np.ndarray):
            return None
        known = _WRAPPERS.get(id(owner))
        wrapper = known() if known is not None else None
        return wrapper if wrapper is not None and wrapper._host is owner else ndarray(owner)

    @property
    def data(self) -> types.SimpleNamespace:
        """CuPy's MemoryPointer: ``ptr`` is the address of the first element."""
        return types.SimpleNamespace(ptr=self._host.__array_interface__["data"][0])

    def __len__(self) -> int:
        return len(self._host)

    def __iter__(self):
        return (_to_device(row) for row in self._host)

    def __repr__(self) -> str:
        return f"emulated_cupy.{np.array_repr(self._host)}"

    def __bool__(self) -> bool:  # a device sync on CuPy, allowed
        HostReads.record()
        return bool(self._host)

    def __float__(self) -> float:
        HostReads.record()
        return float(self._host)

    def __int__(self) -> int:
        HostReads.record()
        return int(self._host)

    def __index__(self) -> int:
        HostReads.record()
        return operator.index(self._host)

    def __complex__(self) -> complex:
        HostReads.record()
        return complex(self._host)

    def item(self) -> Any:
        HostReads.record()
        return self._host.item()

    def tolist(self) -> Any:
        HostReads.record()
        return self._host.tolist()

    def __getitem__(self, index: Any) -> "ndarray":
        return _to_device(self._host[_wrapped(_to_host(index, "__getitem__"), self.shape)])

    def __setitem__(self, index: Any, value: Any) -> None:
        self._host[_to_host(index, "__setitem__")] = _to_host(value, "__setitem__")

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._host.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._host.__dlpack_device__()  # the memory is the host's: say so

    def __getattr__(self, name: str) -> Any:
        """Methods (``reshape``, ``astype``, ``sum``, ``view``...) of the NumPy array;
        never NumPy's protocols (``__array_interface__``...), which CuPy lacks."""
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(self._host, name)
        if not callable(attribute):
            return _to_device(attribute)
        return _on_device(attribute, name)


class Device:
    """``cupy.cuda.Device``: an id, and a context that makes it current."""

    def __init__(self, device_id: int = 0) -> None:
        self.id = device_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return self.id

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<emulated CUDA Device {self.id}>"


class Flags:
    """CuPy's ``ndarray.flags``: three read-only booleans, nothing else."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, host: np.ndarray) -> None:
        self.c_contiguous = bool(host.flags.c_contiguous)
        self.f_contiguous = bool(host.flags.f_contiguous)
        self.owndata = host.base is None

    def __getitem__(self, key: str) -> bool:
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[key]


def _to_host(value: Any, where: str, host_allowed: bool = False) -> Any:
    """The NumPy arrays inside ``value``; a NumPy array operand is CuPy's TypeError."""
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, np.ndarray) and not host_allowed:
        raise TypeError(f"{where}: Unsupported type {type(value)} (a host NumPy array "
                        "given to a device function; copy it with cupy.asarray first)")
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v, where, host_allowed) for v in value)
    if isinstance(value, dict):
        return {k: _to_host(v, where, host_allowed) for k, v in value.items()}
    return value


def _to_device(value: Any) -> Any:
    """Results as device arrays: NumPy scalars become 0-d arrays, as CuPy returns them."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, (list, tuple)) and any(isinstance(v, (np.ndarray, np.generic))
                                                for v in value):
        # plain tuples (CuPy's linalg.slogdet returns one, not NumPy's named tuple)
        return (list if isinstance(value, list) else tuple)(_to_device(v) for v in value)
    return value


def _on_device(function: Any, name: str, host_allowed: bool = False) -> Any:
    def device_function(*args: Any, **kwargs: Any) -> Any:
        return _to_device(function(*_to_host(args, name, host_allowed),
                                   **_to_host(kwargs, name, host_allowed)))
    device_function.__name__ = name
    return device_function


class _Ufunc:
    """A ufunc whose call and methods (``reduce``, ``at``...) work on device arrays."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _on_device(self._ufunc, self.__name__)(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._ufunc, name)
        return _on_device(attribute, f"{self.__name__}.{name}") if callable(attribute) else attribute


def _binary(name: str, reflected: bool = False):
    op = getattr(operator, name)

    def method(self: ndarray, other: Any) -> Any:
        other = _to_host(other, f"__{name}__")
        return _to_device(op(other, self._host) if reflected else op(self._host, other))
    return method


def _in_place(name: str):
    op = getattr(operator, f"i{name.rstrip('_')}")

    def method(self: ndarray, other: Any) -> ndarray:
        op(self._host, _to_host(other, f"__i{name}__"))
        return self
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
              "and_", "or_", "xor", "lshift", "rshift"):
    _dunder = _name.rstrip("_")
    setattr(ndarray, f"__{_dunder}__", _binary(_name))
    setattr(ndarray, f"__r{_dunder}__", _binary(_name, reflected=True))
    setattr(ndarray, f"__i{_dunder}__", _in_place(_name))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(_name))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__",
            lambda self, _op=getattr(operator, _name): _to_device(_op(self._host)))
ndarray.__hash__ = None  # type: ignore[assignment]


class _Namespace(types.ModuleType):
    """Module attributes: NumPy's, with functions that take and return device arrays."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(np, name)
        if isinstance(attribute, np.ufunc):
            wrapped: Any = _Ufunc(attribute)
        elif isinstance(attribute, types.ModuleType):
            wrapped = _Submodule(attribute)
        elif callable(attribute) and not isinstance(attribute, type):
            wrapped = _on_device(attribute, name, host_allowed=name in HOST_TO_DEVICE)
        else:
            wrapped = attribute
        setattr(self, name, wrapped)
        return wrapped


class _Submodule:
    """``linalg`` and friends: functions on device arrays."""

    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._module, name)
        return _on_device(attribute, name) if callable(attribute) else attribute


def asnumpy(array: Any) -> np.ndarray:
    """The explicit device-to-host copy (``cupy.asnumpy``), counted in HostReads."""
    return array.get() if isinstance(array, ndarray) else np.array(array, copy=True)


def _host_copy(data: Any, dtype: Any = None, copy: Any = None) -> ndarray:
    """``cupy.asarray``: host data (lists, NumPy arrays, scalars) copied to the device."""
    if isinstance(data, ndarray):
        if dtype is None or np.dtype(dtype) == data.dtype:
            return ndarray(np.array(data._host, copy=True)) if copy else data
        return ndarray(data._host.astype(dtype))
    return ndarray(np.array(data, dtype=dtype, copy=True))


def scatter_add(out: ndarray, index: Any, values: Any) -> None:
    """``cupyx.scatter_add``: accumulates repeated indices; out-of-range ones wrap around."""
    np.add.at(out._host, _wrapped(_to_host(index, "scatter_add"), out.shape),
              _to_host(values, "scatter_add"))


def _take(array: ndarray, indices: Any, axis: int | None = None) -> ndarray:
    """``cupy.take``: out-of-range indices wrap around (NumPy's mode="wrap")."""
    return _to_device(np.take(array._host, _to_host(indices, "take"), axis=axis, mode="wrap"))


def _wrapped(index: Any, shape: tuple) -> Any:
    """``index`` with its integer arrays taken modulo their axis, as CuPy's advanced
    indexing does (NumPy raises IndexError instead)."""
    items = index if isinstance(index, tuple) else (index,)
    if Ellipsis in [i for i in items if not isinstance(i, np.ndarray)]:
        return index  # axes counted from the end: left to NumPy's own checks
    out, axis = [], 0
    for item in items:
        if isinstance(item, np.ndarray) and item.dtype.kind in "iu" and item.ndim > 0 \
                and axis < len(shape) and shape[axis] > 0:
            item = item % shape[axis]
        out.append(item)
        axis += item is not None
    return tuple(out) if isinstance(index, tuple) else out[0]


def make_module(raw_module: Any) -> types.ModuleType:
    """A fresh ``cupy`` stand-in whose ``RawModule`` is ``raw_module``."""
    module = _Namespace("emulated_cupy")
    module.ndarray = ndarray
    module.asnumpy = asnumpy
    module.asarray = _host_copy
    module.array = lambda data, dtype=None, copy=True: _host_copy(data, dtype, copy=copy)
    module.RawModule = raw_module
    module.scatter_add = scatter_add
    module.take = _take
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, driverGetVersion=lambda: 12090,
        runtimeGetVersion=lambda: 12090,
        getDeviceProperties=lambda index: {"name": b"emulated CUDA device (CPU)", "major": 9,
                                           "minor": 0, "totalGlobalMem": 2**30})
    nvrtc = types.SimpleNamespace(getVersion=lambda: (12, 9))
    module.cuda = types.SimpleNamespace(Device=Device, runtime=runtime, nvrtc=nvrtc)
    module.__version__ = "emulated"
    return module
