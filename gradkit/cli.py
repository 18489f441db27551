"""The ``gradkit`` command (also ``python -m gradkit``).

``gradkit example`` trains nothing yet: it builds the cs231n two-layer network
on a small random batch, prints the softmax loss and the gradient of every
parameter, and checks one gradient against central differences.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def example(seed: int = 0) -> int:
    """Forward and backward through ``linear -> relu -> linear -> cross_entropy``."""
    import gradkit as gk
    from gradkit.nn import functional as F

    rng = np.random.default_rng(seed)
    x = gk.tensor(rng.standard_normal((8, 4)))
    labels = gk.tensor(rng.integers(0, 3, size=8))
    w1 = gk.tensor(rng.standard_normal((4, 16)) * 0.5, requires_grad=True)
    b1 = gk.tensor(np.zeros(16), requires_grad=True)
    w2 = gk.tensor(rng.standard_normal((16, 3)) * 0.5, requires_grad=True)
    b2 = gk.tensor(np.zeros(3), requires_grad=True)

    def loss_fn(w1, b1, w2, b2):
        hidden = F.relu(F.linear(x, w1, b1))
        return F.cross_entropy(F.linear(hidden, w2, b2), labels)

    loss = loss_fn(w1, b1, w2, b2)
    loss.backward()
    print(f"gradkit {gk.__version__} on backend {gk.get_backend().name}")
    print(f"loss = {loss.item():.6f}  (a random 3-class guess is ln 3 = {np.log(3):.6f})")
    for name, p in [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]:
        print(f"d loss / d {name}: shape {p.grad.shape}, norm {np.linalg.norm(p.grad.numpy()):.6f}")
    print(f"d loss / d b2 = {np.round(b2.grad.numpy(), 6).tolist()}")
    as64 = [gk.tensor(p.numpy().astype(np.float64)) for p in (w1, b1, w2, b2)]
    x64 = gk.tensor(x.numpy().astype(np.float64))

    def loss64(w1, b1, w2, b2):
        return F.cross_entropy(F.linear(F.relu(F.linear(x64, w1, b1)), w2, b2), labels)

    gk.testing.gradcheck(loss64, *as64)
    print("gradcheck (float64, central differences): ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    run_example = commands.add_parser("example", help="print a loss and its gradients")
    run_example.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "example":
        return example(args.seed)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
