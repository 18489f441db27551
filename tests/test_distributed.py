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


@pytest.fixture
def launches(backend):
    """Tests that launch processes run once, in the numpy pass of the suite (the launched
    processes use the default backend, whatever the suite's pass)."""
    if backend.name != "numpy":
        pytest.skip("launches mpiexec jobs: runs in the numpy pass only")


def _environment():
    return {k: v for k, v in os.environ.items() if k != "GRADKIT_BACKEND"}


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
    return subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(script)],
                          capture_output=True, text=True, timeout=timeout, env=_environment())


@pytest.mark.parametrize("n", [2, 3])
def test_a_rank_that_raises_stops_every_rank(launches, tmp_path, n):
    done = _launch(tmp_path, n, f"""
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


def test_a_collective_times_out_with_a_clear_error(launches, tmp_path):
    done = _launch(tmp_path, 2, """
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


def test_gradkit_train_under_mpiexec_matches_one_process(launches, tmp_path):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    gradkit_cmd = [sys.executable, "-m", "gradkit"]
    common = ["train", "--dataset", "spiral", "--hidden", "16", "--epochs", "2",
              "--optimizer", "sgd", "--momentum", "0.9"]
    single = subprocess.run(gradkit_cmd + common + ["--batch-size", "22",
                                                    "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=120,
                            env=_environment())
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([_mpiexec(), "-n", "2"] + gradkit_cmd + common +
                           ["--batch-size", "11", "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, timeout=120,
                            env=_environment())
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


def test_gradkit_train_stops_every_rank_when_one_fails(launches, tmp_path):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should go")
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "gradkit", "train",
                           "--dataset", "spiral", "--epochs", "50", "--out", str(blocker)],
                          capture_output=True, text=True, timeout=120,
                            env=_environment())
    assert done.returncode != 0       # (a hang would end in the subprocess timeout)
    assert "gradkit: error:" in done.stderr


# -- the NCCL engine's Python logic, on a fake communicator -------------------------------
# NCCL's enum values (nccl.h): what cupy.cuda.nccl exposes as NCCL_*.
import ctypes
import types

NCCL_DTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64,
               6: np.float16, 7: np.float32, 8: np.float64}
FAKE_NCCL = types.SimpleNamespace(
    NCCL_INT8=0, NCCL_UINT8=1, NCCL_INT32=2, NCCL_UINT32=3, NCCL_INT64=4, NCCL_UINT64=5,
    NCCL_FLOAT16=6, NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0, NCCL_MAX=2)


def _memory(pointer, count, datatype):
    """``count`` elements of NCCL type ``datatype`` at ``pointer``, as a writable array."""
    dtype = np.dtype(NCCL_DTYPES[datatype])
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(pointer)
    return np.frombuffer(raw, dtype=dtype)


class FakeStream:
    def __init__(self, finishes=True):
        self.done, self.ptr = finishes, 1234


class FakeNcclComm:
    """This rank's end of a communicator whose other ranks' inputs are ``peers`` (host
    arrays). It reads and writes the raw pointers it is given, as NCCL would."""

    def __init__(self, rank, peers):
        self.rank, self.peers, self.calls, self.aborted = rank, peers, [], False

    def _peer_values(self, count, datatype):
        return [np.ascontiguousarray(p).reshape(-1).view(np.uint8)
                .view(NCCL_DTYPES[datatype])[:count] for p in self.peers]

    def allReduce(self, send, recv, count, datatype, op, stream):
        self.calls.append(("allReduce", count, datatype, op, stream))
        mine = _memory(send, count, datatype).copy()
        every = [mine] + self._peer_values(count, datatype)
        _memory(recv, count, datatype)[:] = (np.maximum.reduce(every) if op == 2
                                             else np.add.reduce(every))

    def broadcast(self, send, recv, count, datatype, root, stream):
        self.calls.append(("broadcast", count, datatype, root, stream))
        if root != self.rank:
            peer = self.peers[root if root < self.rank else root - 1]
            _memory(recv, count, datatype)[:] = np.ascontiguousarray(peer).reshape(-1).view(np.uint8)

    def allGather(self, send, recv, count, datatype, stream):
        self.calls.append(("allGather", count, datatype, stream))
        out = _memory(recv, count * (1 + len(self.peers)), datatype)
        mine = _memory(send, count, datatype).copy()
        every = self._peer_values(count, datatype)
        every.insert(self.rank, mine)
        for r, part in enumerate(every):
            out[r * count:(r + 1) * count] = part

    def abort(self):
        self.aborted = True


def _engine(rank, peers, finishes=True, timeout=5.0):
    from gradkit.distributed.nccl import NcclEngine
    fake_cupy = types.SimpleNamespace(
        array=np.array, asarray=np.asarray, empty=np.empty,
        cuda=types.SimpleNamespace(get_current_stream=lambda: FakeStream(finishes)))
    comm = FakeNcclComm(rank, peers)
    engine = NcclEngine(FAKE_NCCL, comm, fake_cupy, 1 + len(peers), timeout,
                        pointer=lambda array: array.ctypes.data)
    return engine, comm


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "uint16", "int32", "int64",
                                   "uint64", "float16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 2)])
def test_nccl_all_reduce_logic(dtype, shape):
    mine = (np.arange(int(np.prod(shape))).reshape(shape) % 3).astype(dtype)
    peer = (np.arange(int(np.prod(shape))).reshape(shape) % 2 + 1).astype(dtype)
    wide = {"bool": np.uint8, "int16": np.int32, "uint16": np.uint32}.get(dtype, dtype)
    engine, comm = _engine(0, [peer.astype(wide)])   # the peer sends the reduced dtype
    ops = ("sum", "max") + (("mean",) if dtype.startswith("float") else ())
    for op in ops:
        got = engine.all_reduce(mine, op, what="test")
        assert got.dtype == np.dtype(dtype) and got.shape == shape
        if dtype == "bool":
            want = mine | peer
        elif op == "max":
            want = np.maximum(mine, peer)
        else:
            want = (mine.astype(np.float64) + peer).astype(dtype)
            if op == "mean":
                want = ((mine.astype(np.float64) + peer) / 2).astype(dtype)
        np.testing.assert_array_equal(got, want)
    name, count, datatype, op_code, stream = comm.calls[0]
    assert count == mine.size and stream == 1234
    assert NCCL_DTYPES[datatype] == np.dtype(wide)
    if dtype == "bool":
        assert op_code == FAKE_NCCL.NCCL_MAX      # logical or
    np.testing.assert_array_equal(mine, (np.arange(mine.size).reshape(shape) % 3).astype(dtype))


@pytest.mark.parametrize("dtype", ["bool", "int16", "float16", "float64"])
@pytest.mark.parametrize("shape", [(), (0,), (2, 3)])
def test_nccl_broadcast_and_all_gather_move_bytes(dtype, shape):
    mine = np.ones(shape, dtype=dtype)
    peer = np.zeros(shape, dtype=dtype)
    engine, comm = _engine(1, [peer])
    np.testing.assert_array_equal(engine.broadcast(mine, 0, what="test"), peer)
    np.testing.assert_array_equal(engine.broadcast(mine, 1, what="test"), mine)
    gathered = engine.all_gather(mine, what="test")
    assert gathered.shape == (2,) + shape and gathered.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(gathered[0], peer)
    np.testing.assert_array_equal(gathered[1], mine)
    assert all(call[2] == FAKE_NCCL.NCCL_UINT8 for call in comm.calls)


def test_nccl_wait_times_out_and_aborts_the_communicator():
    engine, comm = _engine(0, [np.zeros(2)], finishes=False, timeout=0.05)
    with pytest.raises(dist.CollectiveTimeoutError, match="all_reduce on rank 0.*NCCL"):
        engine.all_reduce(np.ones(2), "sum", what="all_reduce on rank 0 of 2")
    assert comm.aborted


def test_nccl_setup_is_skipped_off_cuda():
    from gradkit.distributed.nccl import setup_nccl
    fake_world = types.SimpleNamespace(nccl=None, nccl_reason=None)
    setup_nccl(fake_world, wanted=False)
    assert fake_world.nccl is None and "not CUDA" in fake_world.nccl_reason


def test_gradkit_train_resumes_a_data_parallel_run(launches, tmp_path):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    gradkit_cmd = [sys.executable, "-m", "gradkit", "train", "--dataset", "spiral",
                   "--hidden", "16", "--optimizer", "adam"]
    run = tmp_path / "run"
    for epochs, extra in (("1", []), ("3", ["--resume", str(run)])):
        done = subprocess.run([_mpiexec(), "-n", "2"] + gradkit_cmd +
                              ["--epochs", epochs, "--batch-size", "16", "--out", str(run)]
                              + extra, capture_output=True, text=True, timeout=120,
                            env=_environment())
        assert done.returncode == 0, done.stderr
    single = subprocess.run(gradkit_cmd + ["--epochs", "3", "--batch-size", "32", "--out",
                                           str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=120,
                            env=_environment())
    assert single.returncode == 0, single.stderr
    import json
    resumed = json.loads((run / "metrics.json").read_text())
    straight = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert len(resumed["epochs"]) == 3
    for a, b in zip(straight["epochs"], resumed["epochs"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    w1 = gk.load(tmp_path / "one" / straight["weights"])
    w2 = gk.load(run / resumed["weights"])
    for key in w1:
        np.testing.assert_allclose(w2[key], w1[key], rtol=1e-4,
                                   atol=1e-5 * np.abs(w1[key]).max())


def test_launcher_detection_and_finalize_in_a_world_of_one():
    assert dist.launched_by_mpi({"PMI_RANK": "0"}) and dist.launched_by_mpi(
        {"OMPI_COMM_WORLD_SIZE": "2"})
    assert not dist.launched_by_mpi({"PATH": "/bin"})
    if dist.world_size() == 1:
        dist.finalize()                    # nothing to finalize: a later init() works
        assert dist.init().size == 1 and dist.rank() == 0
    with pytest.raises(dist.DistributedError, match="timeout must be a positive"):
        dist.init(timeout=0)
