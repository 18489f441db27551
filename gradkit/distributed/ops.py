"""Collectives as gradkit ops, so that ``gk.capture`` records them and replays them.

A captured step replays its recorded kernel calls without running the Python that
made them; DataParallel's collectives must therefore be kernel calls too. Under
capture it reduces each gradient bucket with ``distributed.all_reduce_sum`` (a
blocking all-reduce whose kernel is the collective) and, before the first one,
runs ``distributed.agree``: every rank says whether it got this far without an
error, so a rank that refused the capture (or failed) before the collectives makes
every rank raise together instead of leaving them waiting.

In a world of one both ops are the identity (so the op table's gradient checks run).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradkit.capture import CaptureError
from gradkit.distributed import collectives
from gradkit.distributed.world import DistributedError, warn_staging, world
from gradkit.registry import Sample, primitive


def _on_cupy(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


def _identity_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(rng.normal(size=(3,))), Sample(rng.normal(size=(2, 3)))]


def _all_reduce_sum_vjp(ctx: Any, g: Any) -> tuple:
    return (all_reduce_sum(g),)  # the sum over ranks is linear and symmetric


@primitive("distributed.all_reduce_sum", vjp=_all_reduce_sum_vjp, samples=_identity_samples,
           family="distributed")
def all_reduce_sum(xp: Any, x: Any) -> Any:
    """The sum of ``x`` over all ranks (float arrays), blocking, with the timeout."""
    if world.size == 1:
        return x * 1
    what = f"all-reduce of a gradient bucket ({x.dtype} {tuple(x.shape)}) on rank {world.rank}"
    if _on_cupy(x) and world.nccl is not None:
        work = x.copy()
        world.nccl.wait(world.nccl.start_all_reduce(work.reshape(-1), "sum"), what)
        return work
    if _on_cupy(x):
        warn_staging(world.nccl_reason or "no NCCL communicator")
        host = np.array(x.get(), copy=True)
    else:
        host = np.array(x, copy=True)
    collectives.wait(collectives.host_iallreduce(host.reshape(-1), "sum"), what)
    return xp.asarray(host)


class RankRefused(CaptureError, DistributedError):
    """Another rank failed or refused the captured step; this rank stops with it (a
    CaptureError, so code that handles a refused capture handles this one too)."""


# What this rank contributes to the next agreement: 0 fine, 1 it failed.
_FLAG = np.zeros(1, dtype=np.int64)


def agreement(failed: bool) -> int:
    """Every rank's flag combined (max); called by the agree op and by gk.distributed.capture."""
    if world.size == 1:
        return int(failed)
    flag = np.array([int(failed)], dtype=np.int64)
    ranks = np.zeros(world.size, dtype=np.int64)
    request = world.comm.Iallgather([flag, world.MPI.INT64_T], [ranks, world.MPI.INT64_T])
    collectives.wait(request, f"capture agreement on rank {world.rank}")
    return int(ranks.max())


def _agree_vjp(ctx: Any, g: Any) -> tuple:
    return (g,)


@primitive("distributed.agree", vjp=_agree_vjp, samples=_identity_samples, family="distributed")
def agree(xp: Any, x: Any) -> Any:
    """``x`` itself, after checking that no rank failed before this point of the step."""
    if agreement(False):
        raise RankRefused(f"rank {world.rank}: another rank failed or refused this captured "
                          "data-parallel step before its collectives; stopping with it")
    return x * 1


class DistributedCapture:
    """``gk.capture(step)`` for data-parallel steps: every rank records and replays in
    step, and when one rank's call raises (a refused capture, any error), every rank
    raises with it instead of waiting in a collective.

    After each call the ranks agree (one tiny collective) that all of them finished;
    a rank that raised before the step's collectives meets the others at the
    ``distributed.agree`` op that DataParallel runs before them.
    """

    def __init__(self, function: Any) -> None:
        from gradkit.capture import capture as gk_capture
        self.captured = gk_capture(function)
        self.__wrapped__ = function

    def __call__(self, *args: Any) -> Any:
        try:
            out = self.captured(*args)
        except RankRefused:
            raise                  # the agreement already told every rank
        except BaseException:
            agreement(True)        # meet the others at their next agreement point
            raise
        if agreement(False):
            raise RankRefused(f"capture: rank {world.rank}: another rank failed or refused "
                               "this captured data-parallel step; every rank stops it")
        return out

    @property
    def replays(self) -> int:
        return self.captured.replays

    @property
    def source(self) -> str:
        return self.captured.source

    def reset(self) -> None:
        self.captured.reset()


def capture(function: Any) -> DistributedCapture:
    """``gk.capture`` for a data-parallel training step (see :class:`DistributedCapture`).

    >>> import gradkit as gk
    >>> model = gk.distributed.DataParallel(gk.nn.Linear(2, 1, seed=0))
    >>> opt = gk.optim.SGD(model.parameters(), lr=0.1)
    >>> @gk.distributed.capture
    ... def step(x):
    ...     loss = (model(x) ** 2).mean()
    ...     loss.backward()
    ...     opt.step()
    ...     opt.zero_grad()
    ...     return loss
    >>> _ = [step(gk.ones((4, 2))) for _ in range(3)]
    >>> step.replays
    1
    """
    return DistributedCapture(function)
