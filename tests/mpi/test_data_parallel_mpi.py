"""DataParallel across 2-3 ranks trains exactly like one process on the combined batch."""
import numpy as np
import pytest

import gradkit as gk
import gradkit.distributed as dist
from gradkit.distributed import DataParallel


def problem(dtype, rows=23):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(rows, 5)).astype(dtype)
    y = rng.integers(0, 3, size=rows)
    return X, y


def make_optimizer(name, params):
    if name == "sgd":
        return gk.optim.SGD(params, lr=0.1, momentum=0.9)
    return gk.optim.Adam(params, lr=0.01)


def run_epochs(model, opt, loader, epochs):
    """Train; a rank whose part of a global batch is empty still joins the step."""
    for _ in range(epochs):
        for xb, yb in loader:
            if xb.shape[0]:
                gk.nn.functional.cross_entropy(model(xb), yb).backward()
            else:
                model.step_without_rows()
            opt.step()
            opt.zero_grad()


def train_single(X, y, dtype, optimizer, batch, epochs):
    model = gk.nn.MLP([5, 7, 3], seed=0, dtype=dtype)
    opt = make_optimizer(optimizer, list(model.parameters()))
    run_epochs(model, opt, gk.data.DataLoader(X, y, batch_size=batch, seed=1), epochs)
    return model


def rtol(dtype):
    return 1e-12 if dtype == "float64" else 1e-5


def atol(dtype, want):
    """float64: elementwise 1e-12 relative (1e-15 absolute near zero); float32: 1e-5
    relative to the tensor's largest element (an element that nearly cancels carries the
    rounding of the tensor's scale)."""
    return 1e-15 if dtype == "float64" else 1e-5 * float(np.abs(want.numpy()).max())


@pytest.mark.parametrize("last_rows", [None, 1])
@pytest.mark.parametrize("bucket_mb", [1e-6, 2.0])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_one_process_on_the_combined_batch(dtype, optimizer, bucket_mb, last_rows):
    size, batch, epochs = dist.world_size(), 3, 2
    # 23 rows: the last global batch is partial; or it has 1 row: the other ranks get none
    X, y = problem(dtype, rows=23 if last_rows is None else 2 * batch * size + last_rows)
    # every rank starts from different weights: DataParallel broadcasts rank 0's
    model = DataParallel(gk.nn.MLP([5, 7, 3], seed=dist.rank(), dtype=dtype),
                         bucket_mb=bucket_mb)
    if bucket_mb < 1e-5:
        assert len(model.buckets) == 4     # one bucket per parameter
    opt = make_optimizer(optimizer, list(model.parameters()))
    run_epochs(model, opt, gk.data.DataLoader(X, y, batch_size=batch, seed=1, shard=True),
               epochs)
    reference = train_single(X, y, dtype, optimizer, batch * size, epochs)
    for (name, got), want in zip(model.module.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol(dtype),
                                   atol=atol(dtype, want), err_msg=name)
    model.close()


def test_a_rank_with_no_rows_contributes_zero():
    size = dist.world_size()
    X, y = problem("float64", rows=size - 1)   # one rank gets an empty batch
    model = DataParallel(gk.nn.MLP([5, 7, 3], seed=0, dtype="float64"))
    xb, yb = next(iter(gk.data.DataLoader(X, y, batch_size=1, shuffle=False, shard=True)))
    if xb.shape[0]:
        gk.nn.functional.cross_entropy(model(xb), yb).backward()
    else:
        model.step_without_rows()
    ref = gk.nn.MLP([5, 7, 3], seed=0, dtype="float64")
    gk.nn.functional.cross_entropy(ref(gk.tensor(X)), gk.tensor(y)).backward()
    for got, want in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(got.grad.numpy(), want.grad.numpy(), rtol=1e-12, atol=1e-15)
    model.close()


def test_no_sync_accumulates_then_synchronizes():
    size = dist.world_size()
    X, y = problem("float64", rows=6 * size)
    model = DataParallel(gk.nn.MLP([5, 7, 3], seed=0, dtype="float64"))
    parts = list(gk.data.DataLoader(X, y, batch_size=3, shuffle=False, shard=True))
    with model.no_sync():
        gk.nn.functional.cross_entropy(model(parts[0][0]), parts[0][1]).backward()
    local = [p.grad.numpy().copy() for p in model.parameters()]
    gk.nn.functional.cross_entropy(model(parts[1][0]), parts[1][1]).backward()
    ref = gk.nn.MLP([5, 7, 3], seed=0, dtype="float64")
    for batch in gk.data.DataLoader(X, y, batch_size=3 * size, shuffle=False):
        gk.nn.functional.cross_entropy(ref(batch[0]), batch[1]).backward()
    for got, want in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(got.grad.numpy(), want.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert local[0].shape == ref.parameters().__next__().shape
    model.close()


def test_unused_and_frozen_parameters_never_block():
    class TwoHeads(gk.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = gk.nn.Linear(5, 4, seed=0, dtype="float64")
            self.used = gk.nn.Linear(4, 3, seed=1, dtype="float64")
            self.unused = gk.nn.Linear(4, 3, seed=2, dtype="float64")
            self.frozen = gk.tensor(np.ones(4), requires_grad=False)

        def forward(self, x):
            return self.used(gk.relu(self.body(x) * self.frozen))

    X, y = problem("float64", rows=4 * dist.world_size())
    model = DataParallel(TwoHeads(), bucket_mb=1e-4)
    xb, yb = next(iter(gk.data.DataLoader(X, y, batch_size=4, shuffle=False, shard=True)))
    gk.nn.functional.cross_entropy(model(xb), yb).backward()
    assert model.module.unused.weight.grad is None
    assert model.module.used.weight.grad is not None
    model.close()


def test_buckets_start_while_backward_goes_on(monkeypatch):
    from gradkit.autodiff import on_gradient_ready
    from gradkit.distributed.data_parallel import Bucket
    X, y = problem("float64", rows=4 * dist.world_size())
    model = DataParallel(gk.nn.MLP([5, 7, 7, 3], seed=0, dtype="float64"), bucket_mb=1e-6)
    events = []
    real_start = Bucket.start
    monkeypatch.setattr(Bucket, "start", lambda b: (events.append(("start", b.index)),
                                                    real_start(b))[1])
    remove = on_gradient_ready(lambda leaf: events.append(("ready", None)))
    try:
        xb, yb = next(iter(gk.data.DataLoader(X, y, batch_size=4, shuffle=False, shard=True)))
        gk.nn.functional.cross_entropy(model(xb), yb).backward()
    finally:
        remove()
        model.close()
    kinds = [kind for kind, _ in events]
    assert [i for kind, i in events if kind == "start"] == list(range(6))   # in bucket order
    # the first bucket (the last layer's bias) starts before the first layer's gradients
    assert kinds.index("start") < len(kinds) - 1 - kinds[::-1].index("ready")
