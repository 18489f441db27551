"""Out-of-bounds detection: array arguments copied to memory that ends at a guard.

For one launch, each array argument is copied into a buffer whose last byte sits right
before a 64 KiB PROT_NONE region (the start aligned to the element size, so the end is
exact); the kernel gets the copy, and what it may have written (pointers to non-const)
is copied back afterwards. An access past the end faults, and the runtime reports it
as an EmulatorKernelError naming the argument. A zero-size array gets a pointer into the
guard itself, so any access to it is reported.

Not caught: accesses before an array's start, and accesses that skip the whole guard.
Arguments that are the same array share one copy; arguments that partly overlap
(views of one buffer) are passed as they are, unguarded, to keep their aliasing.
"""
from __future__ import annotations

import ctypes
from typing import Any

from cuda_emulator.arguments import ArrayArgument


class GuardEntry(ctypes.Structure):
    """struct cuda_emu_guard of cuda_emulator_abi.h."""

    _fields_ = [("start", ctypes.c_void_p), ("size", ctypes.c_ulong), ("label", ctypes.c_char_p)]


class GuardedArrays:
    """The guarded copies of one launch's arrays: ``with GuardedArrays(...) as table:``."""

    def __init__(self, library: Any, arrays: list[ArrayArgument], values: list) -> None:
        self._library = library
        self._values = values
        self._groups = _shareable_groups(arrays)
        self._copies: list[tuple[int, list[ArrayArgument]]] = []
        self._labels: list[bytes] = []

    def __enter__(self) -> tuple[ctypes.Array, int]:
        entries = []
        for group in self._groups:
            first = group[0]
            start = self._library.cuda_emu_guarded_alloc(first.nbytes, first.itemsize)
            if not start:
                continue  # out of address space: this one runs unguarded
            self._copies.append((start, group))
            ctypes.memmove(start, first.address, first.nbytes)
            for array in group:
                self._values[array.index].value = start
            label = _label(group).encode()
            self._labels.append(label)
            entries.append(GuardEntry(start, first.nbytes, label))
        table = (GuardEntry * max(1, len(entries)))(*entries)
        return table, len(entries)

    def __exit__(self, *exc_info: Any) -> None:
        for start, group in self._copies:
            if any(array.written for array in group):
                ctypes.memmove(group[0].address, start, group[0].nbytes)
            self._library.cuda_emu_guarded_free(ctypes.c_void_p(start))
        self._copies.clear()


def declare(library: Any) -> None:
    """ctypes signatures of the runtime's guard functions."""
    library.cuda_emu_guarded_alloc.restype = ctypes.c_void_p
    library.cuda_emu_guarded_alloc.argtypes = (ctypes.c_ulong, ctypes.c_ulong)
    library.cuda_emu_guarded_free.restype = None
    library.cuda_emu_guarded_free.argtypes = (ctypes.c_void_p,)


def _shareable_groups(arrays: list[ArrayArgument]) -> list[list[ArrayArgument]]:
    """Arrays grouped by identical memory, leaving out groups that overlap another."""
    by_memory: dict[tuple[int, int], list[ArrayArgument]] = {}
    for array in arrays:
        by_memory.setdefault((array.address, array.nbytes), []).append(array)
    overlapping: set[tuple[int, int]] = set()
    cluster: list[tuple[int, int]] = []
    cluster_end = -1
    for span in sorted(s for s in by_memory if s[1] > 0):
        if span[0] >= cluster_end:  # a new run of memory starts
            cluster, cluster_end = [], span[0]
        cluster.append(span)
        cluster_end = max(cluster_end, span[0] + span[1])
        if len(cluster) > 1:
            overlapping.update(cluster)
    return [group for span, group in by_memory.items() if span not in overlapping]


def _label(group: list[ArrayArgument]) -> str:
    positions = " and ".join(str(array.index + 1) for array in group)
    noun = "argument" if len(group) == 1 else "arguments"
    return f"{noun} {positions} ({group[0].description})"
