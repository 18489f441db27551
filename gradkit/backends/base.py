"""The Backend class: an array module plus the kernels that replace reference forwards."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np

from gradkit.dtypes import native_dtype


class Backend:
    """Where a tensor's array lives and which kernels run on it.

    A backend names an array module (``xp``) that every op's reference forward is
    written against, and may override any op with a faster kernel of its own
    (``kernels[op_name]``, same signature as the reference minus ``xp``).

    >>> from gradkit.backends.numpy_backend import NumpyBackend
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

    def __init__(self) -> None:
        self.kernels: dict[str, Callable[..., Any]] = {}
        self._resolved: dict[str, Callable[..., Any]] = {}
        # op name -> (input index, kernel): a kernel that may write its result into that
        # input's memory, used by gk.capture replays where the input is read last there
        self.donating_kernels: dict[str, tuple[int, Callable[..., Any]]] = {}

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
    def register_kernel(self, op_name: str, kernel: Callable[..., Any]) -> None:
        """Run ``kernel(*arrays, **params)`` instead of the op's reference forward.

        It replaces any in-place variant (``donating_kernels``) of the op as well.
        """
        self.kernels[op_name] = kernel
        self._resolved.pop(op_name, None)
        self.donating_kernels.pop(op_name, None)

    def resolve(self, op: Any) -> Callable[..., Any]:
        """The callable that runs ``op`` here: our kernel, else the reference on ``xp``."""
        fn = self.kernels.get(op.name)
        if fn is None:
            fn = partial(op.forward, self.xp)
        self._resolved[op.name] = fn
        return fn

    def __repr__(self) -> str:
        return f"<gradkit backend {self.name}>"
