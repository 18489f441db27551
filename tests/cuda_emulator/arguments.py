"""Checking kernel arguments against the kernel's C parameter types, and packing them.

Arrays: any object with ``__cuda_array_interface__`` (version 2 or 3) or a NumPy
ndarray, C-contiguous, of exactly the pointer's element type (``void*`` takes any),
writable unless the pointer is to const. Scalars: NumPy scalars of exactly the
parameter's type, or Python bool/int/float taken as CuPy takes them (bool, long long,
double) and then held to the same rule, so a Python float never reaches a float.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from cuda_emulator.errors import EmulatorLaunchError

# C type -> (NumPy dtype, ctypes type) for every parameter type the wrapper names.
SCALARS: dict[str, tuple[np.dtype, type]] = {
    "bool": (np.dtype(np.bool_), ctypes.c_bool),
    "char": (np.dtype(np.int8), ctypes.c_byte),
    "signed char": (np.dtype(np.int8), ctypes.c_byte),
    "unsigned char": (np.dtype(np.uint8), ctypes.c_ubyte),
    "short": (np.dtype(np.int16), ctypes.c_short),
    "unsigned short": (np.dtype(np.uint16), ctypes.c_ushort),
    "int": (np.dtype(np.int32), ctypes.c_int),
    "unsigned int": (np.dtype(np.uint32), ctypes.c_uint),
    "long": (np.dtype(np.int64), ctypes.c_long),
    "unsigned long": (np.dtype(np.uint64), ctypes.c_ulong),
    "long long": (np.dtype(np.int64), ctypes.c_longlong),
    "unsigned long long": (np.dtype(np.uint64), ctypes.c_ulonglong),
    "float": (np.dtype(np.float32), ctypes.c_float),
    "double": (np.dtype(np.float64), ctypes.c_double),
}

# How CuPy passes Python scalars (cupy/_core/_scalar.pyx).
_PYTHON_SCALARS = ((bool, np.dtype(np.bool_)), (int, np.dtype(np.int64)),
                   (float, np.dtype(np.float64)))


@dataclass
class ArrayArgument:
    """Where one array argument lies, for the guard pages (see guards.py)."""

    index: int  # position in args
    address: int
    nbytes: int
    itemsize: int
    written: bool  # passed through a pointer to non-const
    description: str  # "float*, 1000 elements of float32"


class Parameter:
    """One kernel parameter, from its C spelling ("const float*", "long long", "?")."""

    def __init__(self, ctype: str) -> None:
        self.ctype = ctype
        self.is_pointer = ctype.endswith("*")
        self.is_const = ctype.startswith("const ")
        base = ctype.removeprefix("const ").removesuffix("*")
        self.element = None if base in ("void", "?") else SCALARS[base][0]
        self.supported = ctype != "?"

    def wanted(self) -> str:
        """What a caller must pass, in words."""
        if self.is_pointer:
            kind = "any dtype" if self.element is None else f"dtype {self.element}"
            return f"{self.ctype}: a C-contiguous array of {kind}"
        dtype = self.element
        python = {"bool": " or a Python bool", "long long": " or a Python int",
                  "long": " or a Python int", "double": " or a Python float"}
        return f"{self.ctype}: np.{dtype.type.__name__}{python.get(self.ctype, '')}"


def pack(kernel: str, parameters: list[Parameter], args: Any
         ) -> tuple[list, ctypes.Array, list[ArrayArgument]]:
    """ctypes storage for each argument, the void* array pointing at them, the arrays."""
    if not isinstance(args, (tuple, list)):
        raise EmulatorLaunchError(f"{kernel}: args must be a tuple of kernel arguments, "
                                  f"got {type(args).__name__}")
    if len(args) != len(parameters):
        raise EmulatorLaunchError(
            f"{kernel}: takes {len(parameters)} arguments "
            f"({', '.join(p.ctype for p in parameters)}), got {len(args)}")
    values, arrays = [], []
    for index, (parameter, value) in enumerate(zip(parameters, args)):
        refuse = _refusal(kernel, index, parameter, value)
        if not parameter.supported:
            raise refuse("the emulator cannot pass this parameter type (only scalars and "
                         "pointers to scalars)")
        if parameter.is_pointer:
            array = _array(index, parameter, value, refuse)
            arrays.append(array)
            values.append(ctypes.c_void_p(array.address))
        else:
            values.append(_scalar(parameter, value, refuse))
    return values, pointer_array(values), arrays


def pointer_array(values: list) -> ctypes.Array:
    """The void* kernelParams array: one pointer to each argument's value."""
    pointers = (ctypes.c_void_p * max(1, len(values)))()
    for i, value in enumerate(values):
        pointers[i] = ctypes.cast(ctypes.pointer(value), ctypes.c_void_p)
    return pointers


def _refusal(kernel: str, index: int, parameter: Parameter, value: Any) -> Any:
    def refuse(problem: str) -> EmulatorLaunchError:
        return EmulatorLaunchError(
            f"{kernel}: argument {index + 1} (index {index}) is {parameter.ctype}; expected "
            f"{parameter.wanted()}; got {_describe(value)}: {problem}")
    return refuse


def _scalar(parameter: Parameter, value: Any, refuse: Any) -> Any:
    dtype, ctype = SCALARS[parameter.ctype]
    if isinstance(value, np.generic):
        given = value.dtype
    else:
        given = next((d for t, d in _PYTHON_SCALARS if isinstance(value, t)), None)
        if given is None:
            raise refuse("not a scalar")
        if given == np.int64 and not -2**63 <= value < 2**63:
            raise refuse("the Python int does not fit in long long")
    if given != dtype:
        raise refuse(f"its type is {given}, the parameter's is {dtype}; pass "
                     f"np.{dtype.type.__name__}(...)")
    return ctype(value.item() if isinstance(value, np.generic) else value)


def _array(index: int, parameter: Parameter, value: Any, refuse: Any) -> ArrayArgument:
    if isinstance(value, np.ndarray):
        dtype, shape, contiguous = value.dtype, value.shape, value.flags.c_contiguous
        address, readonly = value.ctypes.data, not value.flags.writeable
    elif hasattr(value, "__cuda_array_interface__"):
        dtype, shape, contiguous, address, readonly = _read_interface(value, refuse)
    else:
        raise refuse("not an array (no __cuda_array_interface__)")
    if parameter.element is not None and dtype != parameter.element:
        raise refuse(f"its dtype is {dtype}")
    if not contiguous:
        raise refuse("it is not C-contiguous")
    if readonly and not parameter.is_const:
        raise refuse("it is read-only and the pointer is not to const")
    size = int(np.prod(shape, dtype=np.int64))
    return ArrayArgument(index, address, size * dtype.itemsize, dtype.itemsize,
                         written=not parameter.is_const,
                         description=f"{parameter.ctype}, {size} elements of {dtype}")


def _read_interface(value: Any, refuse: Any) -> tuple[np.dtype, tuple, bool, int, bool]:
    interface = value.__cuda_array_interface__
    if interface.get("version", 0) < 2:
        raise refuse(f"__cuda_array_interface__ version {interface.get('version')} "
                     "(2 or 3 supported)")
    if interface.get("mask") is not None:
        raise refuse("masked arrays are not supported")
    dtype = np.dtype(interface["typestr"])
    shape = tuple(interface["shape"])
    address, readonly = interface["data"]
    contiguous = _c_contiguous(shape, interface.get("strides"), dtype.itemsize)
    return dtype, shape, contiguous, address or 0, bool(readonly)


def _c_contiguous(shape: tuple[int, ...], strides: Any, itemsize: int) -> bool:
    """Row-major and dense (extents of 1 may have any stride), as NumPy's flag."""
    if strides is None or 0 in shape:
        return True
    expected = itemsize
    for extent, stride in reversed(list(zip(shape, strides))):
        if extent != 1 and stride != expected:
            return False
        expected *= extent
    return True


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
        dtype = getattr(value, "dtype", None)
        return f"{type(value).__name__} of dtype {dtype}"
    if isinstance(value, np.generic):
        return f"np.{type(value).__name__}"
    return f"{type(value).__name__} {value!r}"
