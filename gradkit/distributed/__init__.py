"""Data-parallel training across processes and machines: ``gk.distributed``.

Launch with MPI (``mpiexec -n 4 python train.py``); each process is a rank. MPI
(mpi4py) moves host arrays and launches the job; NCCL (CuPy) moves CUDA arrays.
A process not started by an MPI launcher is a world of one, and mpi4py is imported
only under a launcher, never by ``import gradkit``.

>>> import gradkit as gk
>>> gk.distributed.init().size, gk.distributed.rank(), gk.distributed.local_rank()
(1, 0, 0)
"""
from __future__ import annotations

from gradkit.distributed.world import (CollectiveTimeoutError, DistributedError, abort,
                                       finalize, init, launched_by_mpi)
from gradkit.distributed.world import ensure_init as _ensure_init
from gradkit.distributed.collectives import all_gather, all_reduce, barrier, broadcast
from gradkit.distributed.data_parallel import DataParallel
from gradkit.distributed.ops import RankRefused, capture


def rank() -> int:
    """This process's rank in the job, 0 .. world_size() - 1."""
    return _ensure_init().rank


def world_size() -> int:
    """How many ranks the job has (1 when not launched by MPI)."""
    return _ensure_init().size


def local_rank() -> int:
    """This process's rank among the ranks on its machine (its GPU index)."""
    return _ensure_init().local_rank


def is_main() -> bool:
    """Whether this is rank 0, the one that prints and writes files."""
    return rank() == 0


__all__ = ["DataParallel", "capture", "RankRefused", "init", "finalize", "abort", "rank", "world_size", "local_rank", "is_main",
           "all_reduce", "broadcast", "all_gather", "barrier", "launched_by_mpi",
           "DistributedError", "CollectiveTimeoutError"]
