"""Collectives across 2-3 ranks: every dtype, empty and 0-d shapes, every op."""
import numpy as np
import pytest

import gradkit as gk
import gradkit.distributed as dist

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64"]
SHAPES = [(), (0,), (5,), (2, 3), (3, 0, 2)]


def values(rank, shape, dtype):
    base = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return ((base * 3 + rank) % 7 + (1 if dtype == "bool" else 0) * (rank % 2)).astype(dtype) \
        if dtype != "bool" else ((base + rank) % 2 == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_all_reduce_broadcast_all_gather(dtype, shape):
    rank, size = dist.rank(), dist.world_size()
    every = [values(r, shape, dtype) for r in range(size)]
    t = gk.tensor(every[rank])
    if dtype == "bool":
        expect_sum = np.logical_or.reduce(every, axis=0) if every[0].size else every[0]
        expect_max = expect_sum
    else:
        wide = np.float64 if dtype.startswith("float") else np.int64
        expect_sum = np.sum(np.array(every, dtype=wide), axis=0).astype(dtype)
        expect_max = np.max(np.array(every), axis=0) if every[0].size else every[0]
    got = dist.all_reduce(t, op="sum")
    assert got.dtype == np.dtype(dtype) and got.shape == shape and got.backend == t.backend
    np.testing.assert_array_equal(got.numpy(), expect_sum)
    np.testing.assert_array_equal(dist.all_reduce(t, op="max").numpy(), expect_max)
    if dtype.startswith("float"):
        mean = dist.all_reduce(t, op="mean").numpy()
        np.testing.assert_allclose(mean, np.mean(np.array(every, np.float64), axis=0)
                                   if every[0].size else every[0],
                                   rtol=1e-3 if dtype == "float16" else 1e-6)
    root = size - 1
    np.testing.assert_array_equal(dist.broadcast(t, root=root).numpy(), every[root])
    gathered = dist.all_gather(t)
    assert gathered.shape == (size,) + shape and gathered.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(gathered.numpy(), np.array(every).reshape((size,) + shape))


def test_disagreeing_ranks_all_raise_the_same_error():
    rank = dist.rank()
    with pytest.raises(dist.DistributedError, match="different dtypes/shapes: rank 0"):
        dist.all_reduce(gk.tensor(np.zeros(rank + 1)))
    with pytest.raises(dist.DistributedError, match="called different collectives"):
        if rank == 0:
            dist.broadcast(gk.tensor([1.0]))
        else:
            dist.all_reduce(gk.tensor([1.0]))
    dist.barrier()


def test_input_is_not_modified():
    t = gk.tensor(np.arange(4.0) + dist.rank())
    before = t.numpy().copy()
    dist.all_reduce(t)
    dist.broadcast(t)
    np.testing.assert_array_equal(t.numpy(), before)
