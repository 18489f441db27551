"""Data-parallel benchmark: the medium MLP step (gradkit.benchmarks.mlp sizes), 1 process
vs N ranks, and all-reduce bandwidth beside mpi4py's own. Run by hand:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/distributed_mlp.py step
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python bench/distributed_mlp.py step
    mpiexec -n 2 python bench/distributed_mlp.py bandwidth

``step`` prints, per configuration, the median step time over the timed steps and the
samples per second of the whole job; for DataParallel also the time a rank spends
packing buckets and starting all-reduces, and waiting for them after backward (the
communication backward did not hide). Configurations on N ranks:
  local      each rank trains its own model, no communication (compute under the same
             contention as the data-parallel runs: the floor for them)
  dp-1bucket DataParallel with one bucket: its all-reduce starts when backward ends
  dp-Nmb     DataParallel with N MiB buckets: all-reduces start during backward
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

import gradkit as gk
import gradkit.distributed as dist
from gradkit.benchmarks.mlp import SIZES
from gradkit.distributed import data_parallel


def timed_steps(step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        dist.barrier()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


class BucketClock:
    """Accumulates the time DataParallel spends in its buckets (wrapping two methods)."""

    def __init__(self) -> None:
        self.start = self.finish = 0.0
        self._start, self._finish = data_parallel.Bucket.start, data_parallel.Bucket.finish
        clock = self

        def start(bucket):
            t = time.perf_counter()
            clock._start(bucket)
            clock.start += time.perf_counter() - t

        def finish(bucket, what):
            t = time.perf_counter()
            clock._finish(bucket, what)
            clock.finish += time.perf_counter() - t
        data_parallel.Bucket.start, data_parallel.Bucket.finish = start, finish

    def reset(self) -> None:
        self.start = self.finish = 0.0


def step_benchmark(batch_per_rank: int, warmup: int = 5, steps: int = 40) -> list[dict]:
    _, dims = SIZES["medium"]
    size = dist.world_size()
    rng = np.random.default_rng(dist.rank())
    x = gk.tensor(rng.standard_normal((batch_per_rank, dims[0])).astype(np.float32))
    labels = gk.tensor(rng.integers(0, dims[-1], size=batch_per_rank))
    configs = [("local", None)]
    if size > 1:
        configs += [("dp-1bucket", 1024.0), ("dp-1mb", 1.0), ("dp-0.25mb", 0.25)]
    clock = BucketClock()
    results = []
    for name, bucket_mb in configs:
        model = gk.nn.MLP(dims, seed=0, dtype="float32")
        if bucket_mb is not None:
            model = dist.DataParallel(model, bucket_mb=bucket_mb)
        opt = gk.optim.SGD(model.parameters(), lr=0.01)

        def step():
            loss = gk.nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            opt.zero_grad()

        for _ in range(warmup):
            step()
        clock.reset()
        times = timed_steps(step, 0, steps)
        median = statistics.median(times)
        every = dist.all_gather(gk.tensor(np.array([median, clock.start / steps,
                                                    clock.finish / steps]))).numpy()
        slowest = float(every[:, 0].max())
        results.append({
            "config": name, "ranks": size, "batch_per_rank": batch_per_rank,
            "median_step_ms": 1e3 * slowest,
            "samples_per_s": size * batch_per_rank / slowest,
            "pack_and_start_ms": 1e3 * float(every[:, 1].mean()),
            "wait_after_backward_ms": 1e3 * float(every[:, 2].mean()),
            "buckets": len(getattr(model, "buckets", [])),
        })
        if hasattr(model, "close"):
            model.close()
    return results


def bandwidth_benchmark(repeats: int = 20) -> list[dict]:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    size = dist.world_size()
    rows = []
    for nbytes in (4 << 10, 64 << 10, 1 << 20, 2_680_000, 16 << 20):
        n = nbytes // 4
        host = np.ones(n, dtype=np.float32)
        out = np.empty_like(host)
        t = gk.tensor(host)
        work = host.copy()
        timings = {}
        for label, fn in (
                ("mpi4py Allreduce", lambda: comm.Allreduce(host, out, op=MPI.SUM)),
                ("gradkit bucket (Iallreduce + polled wait)",
                 lambda: dist.collectives.wait(dist.collectives.host_iallreduce(work, "sum"),
                                               "bench")),
                ("gk.distributed.all_reduce (checks + copies)", lambda: dist.all_reduce(t))):
            fn()
            samples = []
            for _ in range(repeats):
                comm.Barrier()
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
            timings[label] = statistics.median(samples)
        for label, seconds in timings.items():
            slowest = comm.allreduce(seconds, op=MPI.MAX)
            rows.append({"bytes": nbytes, "engine": label, "ms": 1e3 * slowest,
                         "algbw_GBps": nbytes / slowest / 1e9,
                         "busbw_GBps": nbytes / slowest / 1e9 * 2 * (size - 1) / size})
    return rows


def main() -> None:
    dist.init(timeout=120)
    what = sys.argv[1] if len(sys.argv) > 1 else "step"
    if what == "step":
        results = step_benchmark(128) + (step_benchmark(64) if dist.world_size() > 1 else [])
    else:
        results = bandwidth_benchmark()
    if dist.rank() == 0:
        for row in results:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
