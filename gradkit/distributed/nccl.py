"""NCCL for CUDA tensors, through CuPy's ``cupy.cuda.nccl``.

NOT YET RUN ON A GPU: written against CuPy's documented NCCL API
(``get_unique_id``, ``NcclCommunicator(ndev, id, rank)``, ``allReduce``,
``broadcast``, ``allGather``, ``abort``) and unit-tested with a fake communicator
that reads and writes the raw pointers it is given (``tests/test_distributed.py``).

Each GPU rank uses device ``local_rank()`` (``cupy.cuda.Device(i).use()``, so the
CUDA backend allocates there); rank 0 draws the NCCL unique id and MPI broadcasts it.
NCCL has no bool and no 16-bit integers: bools reduce as uint8 with max (logical or),
int16/uint16 in int32/uint32. ``mean`` is a sum divided on the device. Broadcast and
all-gather move bytes, so every dtype works. A collective runs on the current CuPy
stream; waiting polls the stream with the collective timeout and aborts the
communicator when it passes.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from gradkit.distributed.errors import CollectiveTimeoutError, DistributedError


def _nccl_types(nccl: Any) -> dict[str, tuple[int, str | None]]:
    """dtype name -> (NCCL datatype, dtype to reduce in, or None for the same)."""
    return {"bool": (nccl.NCCL_UINT8, "uint8"), "int8": (nccl.NCCL_INT8, None),
            "uint8": (nccl.NCCL_UINT8, None), "int16": (nccl.NCCL_INT32, "int32"),
            "uint16": (nccl.NCCL_UINT32, "uint32"), "int32": (nccl.NCCL_INT32, None),
            "uint32": (nccl.NCCL_UINT32, None), "int64": (nccl.NCCL_INT64, None),
            "uint64": (nccl.NCCL_UINT64, None), "float16": (nccl.NCCL_FLOAT16, None),
            "float32": (nccl.NCCL_FLOAT32, None), "float64": (nccl.NCCL_FLOAT64, None)}


class NcclEngine:
    """Collectives on CuPy arrays with one NCCL communicator (one GPU per rank)."""

    def __init__(self, nccl: Any, comm: Any, cupy: Any, size: int, timeout: float,
                 pointer: Any = None) -> None:
        self.nccl, self.comm, self.cupy, self.size = nccl, comm, cupy, size
        self.timeout = timeout
        self.types = _nccl_types(nccl)
        # where an array's memory starts (tests pass one for NumPy arrays)
        self.pointer = pointer if pointer is not None else (lambda array: array.data.ptr)

    def _stream(self) -> Any:
        return self.cupy.cuda.get_current_stream()

    def wait(self, stream: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        pause = 2e-5
        while not stream.done:
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
            if time.monotonic() > deadline:
                self.comm.abort()
                raise CollectiveTimeoutError(
                    f"{what}: NCCL got no answer from the other ranks after "
                    f"{self.timeout:g} s; the communicator is aborted")

    def start_all_reduce(self, array: Any, op: str) -> Any:
        """Sum or max ``array`` (contiguous, an NCCL dtype) in place; returns the stream
        to wait on. What DataParallel's buckets use."""
        datatype, _ = self.types[array.dtype.name]
        nccl_op = self.nccl.NCCL_MAX if op == "max" else self.nccl.NCCL_SUM
        stream = self._stream()
        self.comm.allReduce(self.pointer(array), self.pointer(array), array.size, datatype,
                            nccl_op, stream.ptr)
        return stream

    def all_reduce(self, array: Any, op: str, what: str) -> Any:
        name = array.dtype.name
        datatype, work_dtype = self.types[name]
        work = self.cupy.array(array, dtype=work_dtype or array.dtype, copy=True, order="C")
        if name == "bool":
            op = "max"
        stream = self.start_all_reduce(work.reshape(-1), "max" if op == "max" else "sum")
        self.wait(stream, what)
        if op == "mean":
            work /= self.size
        return work.astype(array.dtype, copy=False)

    def broadcast(self, array: Any, root: int, what: str) -> Any:
        work = self.cupy.array(array, copy=True, order="C")
        flat = work.reshape(-1).view(np.uint8)
        stream = self._stream()
        self.comm.broadcast(self.pointer(flat), self.pointer(flat), flat.size,
                            self.nccl.NCCL_UINT8, root, stream.ptr)
        self.wait(stream, what)
        return work

    def all_gather(self, array: Any, what: str) -> Any:
        mine = self.cupy.asarray(array, order="C")
        every = self.cupy.empty((self.size,) + tuple(mine.shape), dtype=mine.dtype)
        send, receive = mine.reshape(-1).view(np.uint8), every.reshape(-1).view(np.uint8)
        stream = self._stream()
        self.comm.allGather(self.pointer(send), self.pointer(receive), send.size,
                            self.nccl.NCCL_UINT8, stream.ptr)
        self.wait(stream, what)
        return every

    def close(self) -> None:
        destroy = getattr(self.comm, "destroy", None)
        if destroy is not None:
            destroy()


def setup_nccl(world: Any, wanted: bool | None = None) -> None:
    """Pick this rank's GPU and build the NCCL communicator, or say why not.

    ``wanted=None``: when the current backend is CUDA. Every rank takes the same
    decision from the same information, and the unique id travels by MPI.
    """
    if wanted is None:
        from gradkit import backends
        try:
            wanted = backends.get_backend().dlpack_device_type == 2
        except Exception:
            wanted = False
    if not wanted:
        world.nccl_reason = "the current backend is not CUDA (init(nccl=True) to set up NCCL)"
        return
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as exc:
        world.nccl_reason = f"CuPy's NCCL bindings are not importable ({exc})"
        return
    count = cupy.cuda.runtime.getDeviceCount()
    if count == 0:
        raise DistributedError(f"init: rank {world.rank} sees no CUDA device")
    cupy.cuda.Device(world.local_rank % count).use()
    if not getattr(nccl, "available", True):
        world.nccl_reason = "this CuPy was built without NCCL"
        return
    unique_id = nccl.get_unique_id() if world.rank == 0 else None
    unique_id = world.comm.bcast(unique_id, root=0)
    comm = nccl.NcclCommunicator(world.size, unique_id, world.rank)
    world.nccl = NcclEngine(nccl, comm, cupy, world.size, world.timeout)
    world.nccl_reason = None
