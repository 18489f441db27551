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


def _mpiexec():
    """The mpiexec next to this Python (the mpich wheel's), else on PATH; or skip."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install "
                        "'.[distributed]'; ci/distributed_tests.sh runs these)")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install mpich)")
    return found


def _launch(tmp_path, n, code, timeout=60):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(code))
    started = time.monotonic()
    done = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(script)],
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


@pytest.mark.parametrize("n", [2, 3])
def test_a_rank_that_raises_stops_every_rank(tmp_path, n):
    done, seconds = _launch(tmp_path, n, f"""
        import gradkit as gk
        d = gk.distributed
        d.init(timeout=600)              # the abort, not the timeout, must end the job
        d.barrier()
        if d.rank() == {n - 1}:
            raise RuntimeError("boom on the last rank")
        d.all_reduce(gk.tensor([1.0]))   # the other ranks wait here for the last one
        print("finished", flush=True)
        """)
    assert done.returncode != 0
    assert "boom on the last rank" in done.stderr
    assert f"rank {n - 1} raised RuntimeError; stopping every rank" in done.stderr
    assert "finished" not in done.stdout


def test_a_collective_times_out_with_a_clear_error(tmp_path):
    done, _ = _launch(tmp_path, 2, """
        import time, gradkit as gk
        d = gk.distributed
        d.init(timeout=1)
        if d.rank() == 0:
            d.all_reduce(gk.tensor([1.0, 2.0]))
        else:
            time.sleep(30)
        """)
    assert done.returncode != 0
    assert "CollectiveTimeoutError: all_reduce on rank 0 of 2" in done.stderr
    assert "no answer from the other ranks after 1 s" in done.stderr


def test_gradkit_train_under_mpiexec_matches_one_process(tmp_path):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    gradkit_cmd = [sys.executable, "-m", "gradkit"]
    common = ["train", "--dataset", "spiral", "--hidden", "16", "--epochs", "2",
              "--optimizer", "sgd", "--momentum", "0.9"]
    single = subprocess.run(gradkit_cmd + common + ["--batch-size", "22",
                                                    "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([_mpiexec(), "-n", "2"] + gradkit_cmd + common +
                           ["--batch-size", "11", "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, timeout=120)
    assert multi.returncode == 0, multi.stderr
    assert multi.stdout.count("final training accuracy") == 1   # rank 0 only
    assert "data-parallel on 2 ranks (global batch 22)" in multi.stdout
    import json
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2
    for a, b in zip(one["epochs"], two["epochs"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    w1 = gk.load(tmp_path / "one" / one["weights"])
    w2 = gk.load(tmp_path / "two" / two["weights"])
    for key in w1:
        np.testing.assert_allclose(w2[key], w1[key], rtol=1e-4, atol=1e-5)


def test_gradkit_train_stops_every_rank_when_one_fails(tmp_path):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should go")
    started = time.monotonic()
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "gradkit", "train",
                           "--dataset", "spiral", "--epochs", "50", "--out", str(blocker)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "gradkit: error:" in done.stderr
    assert time.monotonic() - started < 60
