"""The process group: who we are, how we were launched, and how every rank stops together.

A process started by ``mpiexec`` (MPICH's Hydra, Open MPI, Intel MPI, Slurm's PMI)
finds the launcher's variables in its environment; then, and only then, ``init()``
imports mpi4py (which initializes MPI) and the world is ``MPI.COMM_WORLD``. Any
other process is a world of one and never touches MPI, so ``import gradkit`` and
single-process training work without mpi4py.

Every blocking collective waits with a deadline (``timeout``, default 300 s,
``GRADKIT_DIST_TIMEOUT``) and raises :class:`CollectiveTimeoutError` naming the
collective, the rank and the tensor. An exception that leaves the program on any rank
calls ``MPI_Abort`` (installed by ``init``), which makes the launcher stop every rank
at once: a failing rank never leaves the others waiting in a collective.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any

from gradkit.distributed.errors import CollectiveTimeoutError, DistributedError  # noqa: F401

# Variables an MPI launcher sets in each rank's environment.
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                      "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")
DEFAULT_TIMEOUT = 300.0


class World:
    """This process's view of the job: rank, size, local rank, the communicators."""

    def __init__(self) -> None:
        self.initialized = False
        self.comm: Any = None          # mpi4py COMM_WORLD, or None for a world of one
        self.MPI: Any = None           # the mpi4py.MPI module once imported
        self.rank = 0
        self.size = 1
        self.local_rank = 0
        self.local_size = 1
        self.timeout = DEFAULT_TIMEOUT
        self.nccl: Any = None          # an NcclEngine once set up, else None
        self.nccl_reason: str | None = "not initialized"
        self.staging_warned = False
        self.finalized = False
        self._previous_excepthook: Any = None


world = World()


def launched_by_mpi(environ: Any = None) -> bool:
    """Whether this process was started by an MPI launcher (``mpiexec``, ``srun``)."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in LAUNCHER_VARIABLES)


def _timeout_from(timeout: float | None) -> float:
    if timeout is None:
        text = os.environ.get("GRADKIT_DIST_TIMEOUT")
        if not text:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(text)
        except ValueError:
            raise DistributedError(f"GRADKIT_DIST_TIMEOUT must be a number of seconds, "
                                   f"got {text!r}") from None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise DistributedError(f"init: timeout must be a positive number of seconds, "
                               f"got {timeout!r}")
    return float(timeout)


def init(timeout: float | None = None, nccl: bool | None = None) -> World:
    """Join the job: a world of N under ``mpiexec -n N``, else a world of one.

    Idempotent (a second call only updates ``timeout``). Under MPI it also installs
    the abort-on-exception hook, and when the current backend is CUDA (or
    ``nccl=True``) selects GPU ``local_rank()`` and sets up an NCCL communicator
    (see :mod:`gradkit.distributed.nccl`).

    >>> import gradkit as gk
    >>> w = gk.distributed.init()       # not launched by mpiexec: a world of one
    >>> gk.distributed.rank(), gk.distributed.world_size()
    (0, 1)
    """
    world.timeout = _timeout_from(timeout)
    if world.finalized:
        raise DistributedError("init: gk.distributed.finalize() was called; MPI cannot "
                               "start again in this process")
    if world.initialized:
        return world
    if launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError(
                "init: this process was started by an MPI launcher but mpi4py is not "
                f"installed ({exc}); every rank would train alone. Install the "
                "distributed extra: pip install 'gradkit[distributed]'") from exc
        world.MPI = MPI
        world.comm = MPI.COMM_WORLD
        world.rank = world.comm.Get_rank()
        world.size = world.comm.Get_size()
        local = world.comm.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
        world.local_rank, world.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        _install_abort_hook()
    world.initialized = True
    if world.size > 1:
        from gradkit.distributed.nccl import setup_nccl
        setup_nccl(world, wanted=nccl)
    return world


def ensure_init() -> World:
    """The world, initializing it on first use."""
    return world if world.initialized else init()


def _install_abort_hook() -> None:
    """On an uncaught exception: print it, then MPI_Abort, so no rank waits forever."""
    previous = sys.excepthook

    def abort_on_exception(kind: Any, value: Any, traceback: Any) -> None:
        previous(kind, value, traceback)
        if world.comm is not None and world.size > 1 and not issubclass(kind, SystemExit):
            abort(1, f"rank {world.rank} raised {kind.__name__}; stopping every rank")

    world._previous_excepthook = previous
    sys.excepthook = abort_on_exception


def abort(code: int = 1, message: str | None = None) -> None:
    """Stop every rank now with exit status ``code`` (``MPI_Abort``); in a world of
    one, exit this process."""
    if message:
        print(f"gradkit.distributed: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if world.comm is not None and world.size > 1:
        # the launcher forwards our output asynchronously and stops forwarding at the
        # abort: a moment's pause lets the message above reach the terminal
        time.sleep(0.3)
        world.comm.Abort(code)
    os._exit(code)


def finalize() -> None:
    """Leave the job: free the NCCL communicator and finalize MPI (after this, no
    collective works). Safe to call more than once, and in a world of one."""
    if world.nccl is not None:
        world.nccl.close()
        world.nccl = None
    if world.comm is not None and world.MPI is not None and not world.MPI.Is_finalized():
        world.MPI.Finalize()
    if world._previous_excepthook is not None:
        sys.excepthook = world._previous_excepthook
        world._previous_excepthook = None
    world.finalized = world.comm is not None
    world.comm = None
    world.initialized = False
    world.rank, world.size, world.local_rank, world.local_size = 0, 1, 0, 1


def warn_staging(reason: str) -> None:
    """Say once per process that CUDA tensors travel through the host."""
    if not world.staging_warned:
        world.staging_warned = True
        warnings.warn(f"gradkit.distributed: CUDA tensors go through host memory and MPI "
                      f"(slow): {reason}", RuntimeWarning, stacklevel=4)
