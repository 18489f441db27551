"""Collectives on gradkit tensors: all_reduce, broadcast, all_gather, barrier.

Each takes a Tensor on any backend and sends its array with the engine that fits
where it lives: MPI on host memory (NumPy, Numba and other CPU backends), NCCL on
CUDA memory when an NCCL communicator is set up, else CUDA memory staged through the
host and MPI (warned once). In a world of one every collective is a local copy.

Before the data moves, the ranks exchange a small description of the call
(collective, op or root, dtype, shape), so ranks that disagree all raise the same
:class:`DistributedError` instead of exchanging garbage or hanging. Every wait has a
deadline (``init(timeout=...)``). Results are new tensors that need no gradient:
collectives are not recorded on the tape.

>>> import gradkit as gk
>>> t = gk.tensor([1.0, 2.0])
>>> gk.distributed.all_reduce(t, op="mean").tolist()   # a world of one here
[1.0, 2.0]
>>> gk.distributed.all_gather(t).shape
(1, 2)
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from gradkit.distributed.world import (CollectiveTimeoutError, DistributedError, ensure_init,
                                       warn_staging, world)
from gradkit.errors import describe
from gradkit.tensor import Tensor

OPS = ("sum", "mean", "max")
KINDS = ("all_reduce", "broadcast", "all_gather")
MAX_NDIM = 64
SPIN_SECONDS = 0.05  # how long a wait polls without sleeping
# Dtypes a collective takes, by index in the description the ranks exchange.
DTYPES = tuple(np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64"))


def _where(kind: str, t: Any) -> str:
    return f"{kind} on rank {world.rank} of {world.size} ({describe(t)})"


def _check_tensor(kind: str, t: Any) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{kind}: expected a gradkit Tensor, got {type(t).__name__} on rank "
                        f"{world.rank}; wrap it with gk.tensor(...)")
    if t.dtype not in DTYPES:
        raise DistributedError(f"{_where(kind, t)}: dtype {t.dtype} is not supported "
                               f"(supported: {', '.join(str(d) for d in DTYPES)})")


# -- waiting with a deadline -----------------------------------------------------------

def wait(request: Any, what: str, timeout: float | None = None) -> None:
    """Wait for an MPI request, polling, and raise CollectiveTimeoutError at the deadline.

    Polling (rather than MPI's blocking Wait) is what makes a deadline possible. MPI
    advances a non-blocking collective only inside MPI calls, so the first
    ``SPIN_SECONDS`` poll without pause (as MPI's own Wait does); a wait that lasts
    longer (another rank still computing or gone) sleeps between polls, up to 1 ms,
    leaving the CPU to the ranks that work.
    """
    if request.Test():
        return
    timeout = world.timeout if timeout is None else timeout
    now = time.monotonic()
    spin_until, deadline = now + SPIN_SECONDS, now + timeout
    pause = 1e-5
    while not request.Test():
        now = time.monotonic()
        if now < spin_until:
            continue
        if now > deadline:
            raise CollectiveTimeoutError(
                f"{what}: no answer from the other ranks after {timeout:g} s (a rank "
                "failed, stopped, or called a different collective); raise the limit "
                "with gk.distributed.init(timeout=...) or GRADKIT_DIST_TIMEOUT")
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)


# -- the description every rank checks ------------------------------------------------

def _description(kind: str, arg: int, t: Tensor) -> np.ndarray:
    desc = np.full(4 + MAX_NDIM, -1, dtype=np.int64)
    desc[:4] = KINDS.index(kind), arg, DTYPES.index(t.dtype), t.ndim
    desc[4:4 + t.ndim] = t.shape
    return desc


def _read_description(desc: np.ndarray) -> str:
    kind, arg, dtype, ndim = (int(v) for v in desc[:4])
    shape = tuple(int(v) for v in desc[4:4 + ndim])
    what = KINDS[kind]
    extra = f"op={OPS[arg]!r}" if what == "all_reduce" else (
        f"root={arg}" if what == "broadcast" else "")
    return f"{what}({extra}) of {DTYPES[dtype]} {shape}".replace("()", "")


def check_agreement(kind: str, arg: int, t: Tensor) -> None:
    """Every rank must call the same collective on the same dtype and shape."""
    if t.ndim > MAX_NDIM:
        raise DistributedError(f"{_where(kind, t)}: at most {MAX_NDIM} dimensions")
    mine = _description(kind, arg, t)
    every = np.empty((world.size, mine.size), dtype=np.int64)
    request = world.comm.Iallgather([mine, world.MPI.INT64_T], [every, world.MPI.INT64_T])
    wait(request, _where(kind, t) + " (agreeing on what to exchange)")
    if not (every == mine).all():
        calls = "; ".join(f"rank {r}: {_read_description(row)}" for r, row in enumerate(every))
        raise DistributedError(f"{_where(kind, t)}: the ranks called different collectives "
                               f"or passed different dtypes/shapes: {calls}")


# -- MPI on host arrays ---------------------------------------------------------------

def mpi_type(dtype: np.dtype) -> Any:
    """The MPI datatype of a NumPy dtype that reductions take (not float16)."""
    MPI = world.MPI
    table = {"bool": MPI.C_BOOL, "int8": MPI.INT8_T, "int16": MPI.INT16_T,
             "int32": MPI.INT32_T, "int64": MPI.INT64_T, "uint8": MPI.UINT8_T,
             "uint16": MPI.UINT16_T, "uint32": MPI.UINT32_T, "uint64": MPI.UINT64_T,
             "float32": MPI.FLOAT, "float64": MPI.DOUBLE}
    return table[dtype.name]


def mpi_op(op: str, dtype: np.dtype) -> Any:
    """sum and max, as MPI ops; on bool both are logical or (as NumPy's add on bools)."""
    MPI = world.MPI
    if dtype == np.bool_:
        return MPI.LOR
    return MPI.MAX if op == "max" else MPI.SUM


def host_iallreduce(array: np.ndarray, op: str) -> Any:
    """Start an in-place all-reduce (sum or max) of a contiguous host array; returns
    the MPI request. float16 is not an MPI type: callers reduce it in float32."""
    return world.comm.Iallreduce(world.MPI.IN_PLACE, [array, mpi_type(array.dtype)],
                                 mpi_op(op, array.dtype))


_SCRATCH: dict[tuple, np.ndarray] = {}


def _scratch(dtype: np.dtype, size: int) -> np.ndarray:
    """A reused host buffer: MPI moves a buffer it has seen before much faster (measured:
    2.7 MB in 0.43 ms instead of 1.8 ms with a new allocation each time)."""
    key = (dtype, size)
    buffer = _SCRATCH.get(key)
    if buffer is None:
        if len(_SCRATCH) > 8:
            _SCRATCH.clear()
        buffer = _SCRATCH[key] = np.empty(size, dtype=dtype)
    return buffer


def _host_all_reduce(array: np.ndarray, op: str, what: str) -> np.ndarray:
    work = _scratch(np.dtype(np.float32 if array.dtype == np.float16 else array.dtype),
                    array.size)
    np.copyto(work, np.reshape(array, -1), casting="unsafe")
    wait(host_iallreduce(work, "max" if op == "max" else "sum"), what)
    if op == "mean":
        work /= world.size
    return work.reshape(array.shape).astype(array.dtype, copy=True)


def _host_broadcast(array: np.ndarray, root: int, what: str) -> np.ndarray:
    work = np.array(array, copy=True, order="C")
    request = world.comm.Ibcast([work.reshape(-1).view(np.uint8), world.MPI.BYTE], root=root)
    wait(request, what)
    return work


def _host_all_gather(array: np.ndarray, what: str) -> np.ndarray:
    mine = np.asarray(array, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    every = np.empty((world.size,) + mine.shape, dtype=mine.dtype)
    request = world.comm.Iallgather([mine.reshape(-1).view(np.uint8), world.MPI.BYTE],
                                    [every.reshape(-1).view(np.uint8), world.MPI.BYTE])
    wait(request, what)
    return every


_HOST = {"all_reduce": _host_all_reduce, "broadcast": _host_broadcast,
         "all_gather": _host_all_gather}


# -- choosing the engine ------------------------------------------------------------------

def on_cuda(t: Tensor) -> bool:
    return getattr(t.array_backend, "dlpack_device_type", 1) == 2


def run_collective(kind: str, t: Tensor, *args: Any) -> Tensor:
    """Collective ``kind`` ("all_reduce", "broadcast", "all_gather") of ``t``: through NCCL
    when ``t`` is on CUDA and a communicator exists, else staged through the host (MPI)."""
    backend = t.array_backend
    what = _where(kind, t)
    if on_cuda(t) and world.nccl is not None:
        return Tensor(getattr(world.nccl, kind)(t.data, *args, what=what), backend)
    if on_cuda(t):
        warn_staging(world.nccl_reason or "no NCCL communicator")
    host = backend.to_numpy(t.data)
    result = _HOST[kind](host, *args, what)
    return Tensor(backend.asarray(result), backend)


def _local_copy(t: Tensor) -> Tensor:
    return Tensor(t.array_backend.copy(t.data), t.array_backend)


# -- the public collectives -------------------------------------------------------------------

def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """The elementwise ``op`` ("sum", "mean" or "max") of ``t`` over all ranks, on
    every rank, as a new tensor on ``t``'s backend with ``t``'s dtype.

    Every rank passes the same dtype and shape (any shape, empty and 0-d too). On bool
    tensors "sum" and "max" are logical or; "mean" needs a floating dtype. float16 is
    summed in float32.
    """
    _check_tensor("all_reduce", t)
    if op not in OPS:
        raise DistributedError(f"{_where('all_reduce', t)}: op must be one of {OPS}, got {op!r}")
    if op == "mean" and t.dtype.kind != "f":
        raise DistributedError(f"{_where('all_reduce', t)}: op='mean' needs a floating dtype; "
                               "use op='sum' and divide")
    world_ = ensure_init()
    if world_.size == 1:
        return _local_copy(t)
    check_agreement("all_reduce", OPS.index(op), t)
    return run_collective("all_reduce", t, op)


def broadcast(t: Tensor, root: int = 0) -> Tensor:
    """Rank ``root``'s ``t`` on every rank (a new tensor; every rank passes a tensor of
    the same dtype and shape, whose values only the root's matter)."""
    _check_tensor("broadcast", t)
    world_ = ensure_init()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or \
            not 0 <= root < world_.size:
        raise DistributedError(f"{_where('broadcast', t)}: root must be a rank in "
                               f"[0, {world_.size}), got {root!r}")
    if world_.size == 1:
        return _local_copy(t)
    check_agreement("broadcast", int(root), t)
    return run_collective("broadcast", t, int(root))


def all_gather(t: Tensor) -> Tensor:
    """Every rank's ``t`` stacked along a new first axis: shape ``(world_size, *t.shape)``,
    row ``r`` from rank ``r`` (every rank passes the same dtype and shape)."""
    _check_tensor("all_gather", t)
    world_ = ensure_init()
    if world_.size == 1:
        return Tensor(t.array_backend.copy(t.data)[None], t.array_backend)
    check_agreement("all_gather", 0, t)
    return run_collective("all_gather", t)


def barrier() -> None:
    """Wait until every rank has called ``barrier()`` (with the collective timeout)."""
    world_ = ensure_init()
    if world_.size > 1:
        wait(world_.comm.Ibarrier(), f"barrier on rank {world_.rank} of {world_.size}")
