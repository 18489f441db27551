"""DataParallel steps under gk.distributed.capture: recorded, replayed with their
collectives, equal to one process on the combined batch; refusals stop every rank."""
import numpy as np
import pytest

import gradkit as gk
import gradkit.distributed as dist
from gradkit.distributed import DataParallel

from test_data_parallel_mpi import atol, make_optimizer, problem, rtol, train_single


@pytest.mark.parametrize("last_rows", [None, 1])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_captured_matches_one_process(dtype, optimizer, last_rows):
    size, batch, epochs = dist.world_size(), 3, 3
    X, y = problem(dtype, rows=23 if last_rows is None else 2 * batch * size + last_rows)
    model = DataParallel(gk.nn.MLP([5, 7, 3], seed=dist.rank(), dtype=dtype), bucket_mb=1e-6)
    opt = make_optimizer(optimizer, list(model.parameters()))

    @dist.capture
    def step(xb, yb):
        opt.zero_grad()
        if xb.shape[0] == 0:
            model.step_without_rows()
            opt.step()
            return None
        loss = gk.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    loader = gk.data.DataLoader(X, y, batch_size=batch, seed=1, shard=True)
    for _ in range(epochs):
        for xb, yb in loader:
            step(xb, yb)
    assert step.replays > 0
    assert "distributed_all_reduce_sum" in step.source
    reference = train_single(X, y, dtype, optimizer, batch * size, epochs)
    for (name, got), want in zip(model.module.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol(dtype),
                                   atol=atol(dtype, want), err_msg=name)
    model.close()


@pytest.mark.parametrize("when", ["before the collectives", "after them"])
def test_a_rank_that_refuses_stops_every_rank_together(when):
    X, y = problem("float64", rows=4 * dist.world_size())
    model = DataParallel(gk.nn.MLP([5, 7, 3], seed=0, dtype="float64"))
    opt = gk.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    @dist.capture
    def step(xb, yb):
        calls.append(1)
        refuse = dist.rank() == dist.world_size() - 1 and len(calls) == 2
        if refuse and when == "before the collectives":
            raise gk.CaptureError("this rank refuses")
        loss = gk.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        if refuse:
            raise gk.CaptureError("this rank refuses")
        opt.step()
        opt.zero_grad()
        return loss

    xb, yb = next(iter(gk.data.DataLoader(X, y, batch_size=4, shuffle=False, shard=True)))
    step(xb, yb)
    with pytest.raises(gk.CaptureError):
        step(xb, yb)
    dist.barrier()     # every rank got here: nobody waits in a collective
    model.close()


@pytest.mark.parametrize("captured", [True, False])
def test_training_epochs_match_one_process(captured):
    """gradkit train's loop (train_epoch, one training_step for every epoch) on a last
    global batch of one row, where the other ranks have none: the losses, accuracies and
    weights of one process on the combined batches, captured or op by op."""
    from gradkit.training import train_epoch, training_step
    size, batch, epochs = dist.world_size(), 3, 3
    X, y = problem("float64", rows=2 * batch * size + 1)
    model = DataParallel(gk.nn.MLP([5, 7, 3], seed=dist.rank(), dtype="float64"), bucket_mb=1e-6)
    opt = make_optimizer("adam", list(model.parameters()))
    step = training_step(model, opt, captured=captured)
    loader = gk.data.DataLoader(X, y, batch_size=batch, seed=1, shard=True)
    history = [train_epoch(model, opt, loader, step) for _ in range(epochs)]
    single = gk.nn.MLP([5, 7, 3], seed=0, dtype="float64")
    single_opt = make_optimizer("adam", list(single.parameters()))
    single_loader = gk.data.DataLoader(X, y, batch_size=batch * size, seed=1)
    reference = [train_epoch(single, single_opt, single_loader) for _ in range(epochs)]
    assert history == [pytest.approx(entry, rel=1e-12) for entry in reference]
    for (name, got), want in zip(model.module.named_parameters(), single.parameters()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol("float64"),
                                   atol=atol("float64", want), err_msg=name)
    if captured:  # every batch shape (the empty one too) recorded twice, then replayed
        assert step.replays == epochs * 3 - 2 * 2
    model.close()
