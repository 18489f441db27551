"""RawModule and kernels with CuPy's call signatures, run by the emulator.

    module = RawModule(code=source, options=("-std=c++14",),
                       name_expressions=["scale<float>"])
    kernel = module.get_function("scale<float>")
    kernel((blocks,), (threads,), (x, y, np.int64(n), np.float32(2)), shared_mem=0)

Launch limits are those of a compute capability 9.0 GPU: block x, y <= 1024, z <= 64,
at most 1024 threads per block; grid x <= 2**31 - 1, y, z <= 65535; every extent >= 1;
dynamic + static shared memory <= 48 KiB per block.

Tiny-grid mode (``GRADKIT_EMULATOR_TINY_GRID=1``, or ``tiny_grid=True`` given to
RawModule or to a launch) runs at most 2 blocks along each grid dimension, whatever the
launch asked for; gridDim says 2. A kernel that covers its data with a grid-stride loop
(or a rows-per-block loop) then goes round it more than once even at small sizes, and
one that assumes a grid at least as large as its data leaves part of it untouched.
"""
from __future__ import annotations

import ctypes
import operator
import os
import threading
from typing import Any, Sequence

from cuda_emulator import source as sources
from cuda_emulator import guards
from cuda_emulator.arguments import Parameter, pack
from cuda_emulator.build import build_library
from cuda_emulator.errors import EmulatorKernelError, EmulatorLaunchError

TINY_GRID_ENV = "GRADKIT_EMULATOR_TINY_GRID"
TINY_GRID_BLOCKS = 2

MAX_BLOCK = (1024, 1024, 64)
MAX_THREADS_PER_BLOCK = 1024
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED_BYTES = 48 * 1024

# One launch at a time in the whole process: each launch owns the SIGSEGV handler
# and the host thread's alternate signal stack while it runs.
_LAUNCH_LOCK = threading.Lock()


def tiny_grid_from_env() -> bool:
    """True when GRADKIT_EMULATOR_TINY_GRID asks for tiny grids (1, true, yes, on)."""
    return os.environ.get(TINY_GRID_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class RawModule:
    """A CUDA C++ source compiled for the emulator (cupy.RawModule's signature).

    ``name_expressions`` are instantiated and exported, as NVRTC does; without any, the
    source's ``extern "C" __global__`` kernels are. ``tiny_grid``: True or False fixes
    the mode for every launch from this module; None follows the environment variable.
    ``guard_pages``: run each launch on copies of its arrays that end at a guard page,
    so reads and writes past an array's end are reported (guards.py).
    """

    def __init__(self, code: str, options: Sequence[str] = (),
                 name_expressions: Sequence[str] | None = None, *,
                 tiny_grid: bool | None = None, guard_pages: bool = True) -> None:
        self.code = code
        self.options = tuple(options)
        names = list(name_expressions or ()) or sources.extern_c_kernels(code)
        self.name_expressions = tuple(names)
        self.tiny_grid = tiny_grid
        self.guard_pages = guard_pages
        unit = sources.translation_unit(code, names)
        self.library_path = build_library(unit, self.options)
        self._library = ctypes.CDLL(str(self.library_path))
        guards.declare(self._library)
        self._kernels: dict[str, Kernel] = {}

    def get_function(self, name: str) -> Kernel:
        """The kernel of one name expression, e.g. ``"activation_forward<float>"``."""
        if name not in self._kernels:
            if name not in self.name_expressions:
                raise EmulatorLaunchError(
                    f"no kernel {name!r} in this module; its name expressions are "
                    f"{list(self.name_expressions)}")
            self._kernels[name] = Kernel(self, name, self.name_expressions.index(name))
        return self._kernels[name]


class Kernel:
    """One launchable kernel: ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, module: RawModule, name: str, index: int) -> None:
        self.module = module
        self.name = name
        self._launch = getattr(module._library, f"cuda_emu_launch_{index}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = (ctypes.POINTER(ctypes.c_uint), ctypes.c_ulong, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_int)
        signature = getattr(module._library, f"cuda_emu_signature_{index}")
        signature.restype = ctypes.POINTER(ctypes.c_char_p)
        self.parameters = [Parameter(t.decode()) for t in _until_null(signature())]
        self._last_error = module._library.cuda_emu_last_error
        self._last_error.restype = ctypes.c_char_p

    @property
    def signature(self) -> tuple[str, ...]:
        """The C types of the parameters, e.g. ``("const float*", "float*", "long long")``."""
        return tuple(p.ctype for p in self.parameters)

    def __call__(self, grid: Any, block: Any, args: Any, *, shared_mem: int = 0,
                 stream: Any = None, enable_cooperative_groups: bool = False,
                 tiny_grid: bool | None = None) -> None:
        """Checks the launch and runs it to completion (``stream`` is ignored)."""
        if enable_cooperative_groups:
            raise EmulatorLaunchError(f"{self.name}: cooperative launches are not emulated")
        grid3 = self._extents("grid", grid, MAX_GRID)
        block3 = self._extents("block", block, MAX_BLOCK)
        self._check_block_size(block3)
        shared = self._shared_bytes(shared_mem)
        values, pointers, arrays = pack(self.name, self.parameters, args)
        if self._tiny(tiny_grid):
            grid3 = tuple(min(extent, TINY_GRID_BLOCKS) for extent in grid3)
        dims = (ctypes.c_uint * 6)(*grid3, *block3)
        guarded = guards.GuardedArrays(self.module._library,
                                       arrays if self.module.guard_pages else [], values)
        with _LAUNCH_LOCK, guarded as (table, count):
            status = self._launch(dims, shared, ctypes.cast(pointers, ctypes.c_void_p),
                                  ctypes.cast(table, ctypes.c_void_p), count)
            problem = (self._last_error().decode() or "the launch failed") if status else ""
        if problem:
            raise EmulatorKernelError(f"{self.name}: {problem}")

    def _tiny(self, launch_choice: bool | None) -> bool:
        for choice in (launch_choice, self.module.tiny_grid):
            if choice is not None:
                return bool(choice)
        return tiny_grid_from_env()

    def _extents(self, what: str, value: Any, limits: tuple[int, int, int]
                 ) -> tuple[int, int, int]:
        """(x, y, z) from an int or a tuple of 1 to 3 ints, within the GPU's limits."""
        items = value if isinstance(value, (tuple, list)) else (value,)
        if not 1 <= len(items) <= 3:
            raise EmulatorLaunchError(f"{self.name}: {what} must be an int or a tuple of "
                                      f"1 to 3 ints, got {value!r}")
        try:
            extents = [operator.index(v) for v in items if not isinstance(v, bool)]
        except TypeError:
            extents = []
        if len(extents) != len(items):
            raise EmulatorLaunchError(f"{self.name}: {what} must be an int or a tuple of "
                                      f"1 to 3 ints, got {value!r}")
        extents += [1] * (3 - len(extents))
        for axis, extent, limit in zip("xyz", extents, limits):
            if not 1 <= extent <= limit:
                raise EmulatorLaunchError(
                    f"{self.name}: {what} {axis} = {extent} is outside 1..{limit} "
                    f"(a compute capability 9.0 GPU refuses the launch)")
        return tuple(extents)

    def _check_block_size(self, block: tuple[int, int, int]) -> None:
        threads = block[0] * block[1] * block[2]
        if threads > MAX_THREADS_PER_BLOCK:
            raise EmulatorLaunchError(
                f"{self.name}: a block of {block} has {threads} threads, more than "
                f"{MAX_THREADS_PER_BLOCK} (a GPU refuses the launch)")

    def _shared_bytes(self, shared_mem: Any) -> int:
        try:
            shared = operator.index(shared_mem)
        except TypeError:
            raise EmulatorLaunchError(f"{self.name}: shared_mem must be an int, "
                                      f"got {shared_mem!r}") from None
        if not 0 <= shared <= MAX_SHARED_BYTES:
            raise EmulatorLaunchError(
                f"{self.name}: shared_mem = {shared} bytes of dynamic shared memory is "
                f"outside 0..{MAX_SHARED_BYTES} (48 KiB per block without opting in)")
        return shared


def _until_null(pointer: Any) -> list[bytes]:
    items, i = [], 0
    while pointer[i] is not None:
        items.append(pointer[i])
        i += 1
    return items
