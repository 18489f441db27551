"""The same MLP training step in gradkit (any backend) and in the peers a user
would otherwise pick (PyTorch eager, JAX jit), for the benchmark suite."""
from __future__ import annotations

from typing import Callable

import numpy as np

import gradkit as gk
from gradkit.nn import functional as F

# name -> (batch, layer widths)
SIZES = {
    "small": (32, [64, 64, 64, 10]),
    "medium": (128, [784, 512, 512, 10]),
    "large": (512, [1024, 2048, 2048, 10]),
}


def step_flops(batch: int, dims: list[int]) -> float:
    """Matmul FLOPs of one forward+backward step (2*m*n*k each; backward is twice forward)."""
    forward = sum(2 * batch * a * b for a, b in zip(dims[:-1], dims[1:]))
    return 3 * forward


def _data(dims: list[int], batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
               for a, b in zip(dims[:-1], dims[1:])]
    x = rng.standard_normal((batch, dims[0])).astype(np.float32)
    labels = rng.integers(0, dims[-1], size=batch)
    return weights, x, labels


def gradkit_step(dims: list[int], batch: int, backend: str, lr: float = 0.01,
                 captured: bool = False, compiled: bool = False) -> Callable[[], gk.Tensor]:
    """One SGD step of a ReLU MLP on ``backend``; hidden layers use the fused op.

    With ``captured`` the step is wrapped in :func:`gradkit.capture`: from its third
    call on it replays the recorded kernels instead of running the engine; with
    ``compiled`` too, the replay runs them as one compiled function where it can
    (``gk.capture(step, compile=True)``).
    """
    weights, x_host, labels_host = _data(dims, batch)
    with gk.use_backend(backend):
        ws = [gk.tensor(w, requires_grad=True) for w in weights]
        bs = [gk.zeros(w.shape[1], requires_grad=True) for w in weights]
        x = gk.tensor(x_host)
        labels = gk.tensor(labels_host)
    optimizer = gk.optim.SGD(ws + bs, lr=lr)

    def step(x: gk.Tensor, labels: gk.Tensor) -> gk.Tensor:
        h = x
        for w, b in zip(ws[:-1], bs[:-1]):
            h = gk.bias_activation(h @ w, b, activation="relu")
        loss = F.cross_entropy(gk.linear(h, ws[-1], bs[-1]), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss

    run = gk.capture(step, compile=compiled) if captured else step
    return lambda: run(x, labels)


def torch_step(dims: list[int], batch: int, device: str = "cpu", lr: float = 0.01
               ) -> Callable[[], object]:
    import torch
    weights, x_host, labels_host = _data(dims, batch)
    ws = [torch.tensor(w, device=device, requires_grad=True) for w in weights]
    bs = [torch.zeros(w.shape[1], device=device, requires_grad=True) for w in weights]
    x = torch.tensor(x_host, device=device)
    labels = torch.tensor(labels_host, device=device)

    def step():
        h = x
        for w, b in zip(ws[:-1], bs[:-1]):
            h = torch.relu(h @ w + b)
        loss = torch.nn.functional.cross_entropy(h @ ws[-1] + bs[-1], labels)
        loss.backward()
        with torch.no_grad():
            for p in ws + bs:
                p -= lr * p.grad
                p.grad = None
        return loss
    return step


def jax_step(dims: list[int], batch: int, lr: float = 0.01) -> Callable[[], object]:
    import jax
    import jax.numpy as jnp
    weights, x_host, labels_host = _data(dims, batch)
    params = [(jnp.asarray(w), jnp.zeros(w.shape[1], jnp.float32)) for w in weights]
    x, labels = jnp.asarray(x_host), jnp.asarray(labels_host)

    def loss_fn(params):
        h = x
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        logits = h @ params[-1][0] + params[-1][1]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(batch), labels])

    @jax.jit
    def update(params):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        return loss, [(w - lr * gw, b - lr * gb) for (w, b), (gw, gb) in zip(params, grads)]

    state = {"params": params}

    def step():
        loss, state["params"] = update(state["params"])
        return loss.block_until_ready()
    return step
