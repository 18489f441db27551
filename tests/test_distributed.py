"""gk.distributed in one process: the world of one, sharded loading, the NCCL engine's
Python logic on a fake communicator, and (where mpi4py and mpiexec are installed) jobs
launched with mpiexec that must stop together when one rank fails.

The multi-rank tests live in tests/mpi/ and run under ``mpiexec -n 2`` and ``-n 3``
(ci/distributed_tests.sh)."""
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gradkit as gk
import gradkit.distributed as dist


def test_world_of_one_without_mpi():
    code = ("import sys, gradkit as gk; d = gk.distributed; d.init();"
            "print(d.rank(), d.world_size(), d.local_rank(), 'mpi4py' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not dist.world.launched_by_mpi({k: v})}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["0", "1", "0", "False"]


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "int64", "float16", "float32",
                                   "float64"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 2)])
def test_world_of_one_collectives_copy(dtype, shape):
    a = np.ones(shape, dtype=dtype)
    t = gk.tensor(a)
    for op in ("sum", "max") + (("mean",) if a.dtype.kind == "f" else ()):
        out = dist.all_reduce(t, op=op)
        assert out is not t and out.dtype == a.dtype and out.shape == shape
        np.testing.assert_array_equal(out.numpy(), a)
    np.testing.assert_array_equal(dist.broadcast(t).numpy(), a)
    gathered = dist.all_gather(t)
    assert gathered.shape == (1,) + shape and gathered.dtype == a.dtype
    dist.barrier()


def test_collective_errors_name_the_collective_and_tensor():
    with pytest.raises(dist.DistributedError, match=r"all_reduce on rank 0 of 1 \(\w+ int64 \(2,\)\).*mean"):
        dist.all_reduce(gk.tensor(np.arange(2)), op="mean")
    with pytest.raises(dist.DistributedError, match="op must be one of"):
        dist.all_reduce(gk.tensor([1.0]), op="prod")
    with pytest.raises(dist.DistributedError, match="root must be a rank"):
        dist.broadcast(gk.tensor([1.0]), root=1)
    with pytest.raises(TypeError, match="expected a gradkit Tensor"):
        dist.all_reduce(np.ones(2))


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("rows,batch", [(10, 2), (11, 2), (7, 4), (5, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sharded_loader_splits_the_batches_of_one_process(world, rows, batch, drop_last):
    X = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    y = np.arange(rows)
    single = gk.data.DataLoader(X, y, batch_size=batch * world, seed=3, drop_last=drop_last)
    shards = [gk.data.DataLoader(X, y, batch_size=batch, seed=3, drop_last=drop_last,
                                 shard=True, rank=r, world_size=world) for r in range(world)]
    assert all(len(s) == len(single) for s in shards)
    for epoch in range(2):
        for (xb, yb), *parts in zip(single, *shards):
            assert [p[1].shape[0] for p in parts] == \
                [len(a) for a in np.array_split(np.arange(yb.shape[0]), world)]
            np.testing.assert_array_equal(np.concatenate([p[1].numpy() for p in parts]),
                                          yb.numpy())
            np.testing.assert_array_equal(np.concatenate([p[0].numpy() for p in parts]),
                                          xb.numpy())


def test_sharded_loader_checks_its_rank():
    with pytest.raises(ValueError, match="rank must be in"):
        gk.data.DataLoader(np.ones((4, 1)), np.ones(4), shard=True, rank=2, world_size=2)
    with pytest.raises(ValueError, match="need shard=True"):
        gk.data.DataLoader(np.ones((4, 1)), np.ones(4), rank=0)
    assert gk.data.DataLoader(np.ones((4, 1)), np.ones(4), shard=True).world_size == 1


def test_gradient_ready_event_fires_once_per_leaf_with_the_final_grad():
    from gradkit.autodiff import on_gradient_ready
    w = gk.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = gk.tensor(np.array([0.5]), requires_grad=True)
    unused = gk.tensor(np.array([3.0]), requires_grad=True)
    events = []
    remove = on_gradient_ready(lambda leaf: events.append((id(leaf), leaf.grad.numpy().copy())))
    try:
        h = gk.tanh(w * b) * w          # w is used three times, b once
        (h.sum() + (w * w).sum() + b.sum()).backward()
    finally:
        remove()
    assert sorted(i for i, _ in events) == sorted([id(w), id(b)])
    final = {i: g for i, g in events}
    np.testing.assert_array_equal(final[id(w)], w.grad.numpy())
    np.testing.assert_array_equal(final[id(b)], b.grad.numpy())
    assert unused.grad is None


def test_gradients_are_the_same_with_a_gradient_ready_callback():
    from gradkit.autodiff import on_gradient_ready

    def grads():
        model = gk.nn.MLP([4, 6, 3], seed=0, dtype="float64")
        x = gk.tensor(np.linspace(-1, 1, 20).reshape(5, 4))
        loss = gk.nn.functional.cross_entropy(model(x), gk.tensor([0, 1, 2, 0, 1]))
        loss.backward(retain_graph=True)
        loss.backward()                  # accumulates into .grad
        return [p.grad.numpy() for p in model.parameters()]

    plain = grads()
    count = []
    remove = on_gradient_ready(lambda leaf: count.append(1))
    try:
        hooked = grads()
    finally:
        remove()
    assert len(count) == 2 * len(plain)
    for a, b in zip(plain, hooked):
        np.testing.assert_array_equal(a, b)


def test_data_parallel_in_a_world_of_one_is_the_module():
    model = gk.nn.MLP([4, 6, 3], seed=0, dtype="float64")
    dp = dist.DataParallel(model)
    x = gk.tensor(np.ones((5, 4)))
    np.testing.assert_array_equal(dp(x).numpy(), model(x).numpy())
    assert dp.buckets == [] and list(dp.state_dict()) == list(model.state_dict())
    with dp.no_sync():
        dp(x).sum().backward()
    dp.step_without_rows()
    with pytest.raises(ValueError, match="bucket_mb"):
        dist.DataParallel(model, bucket_mb=0)
