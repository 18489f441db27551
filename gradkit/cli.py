"""The ``gradkit`` command (also ``python -m gradkit``).

``gradkit info`` lists the backends, whether each is usable here (and why not),
the devices and library versions. ``gradkit example`` trains nothing yet: it builds the cs231n two-layer network
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


def _version_of(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def _devices(name: str) -> str:
    """What the backend runs on, when it is usable."""
    import os
    if name == "cuda":
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
        names = [cupy.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(count)]
        return ", ".join(f"cuda:{i} {n}" for i, n in enumerate(names))
    if name == "numba":
        import numba
        return f"CPU, {numba.config.NUMBA_NUM_THREADS} threads"
    return f"CPU, {os.cpu_count()} cores"


def info() -> int:
    """Version, backends (with the reason one is unavailable), devices, libraries."""
    import os
    import platform

    import gradkit as gk
    print(f"gradkit {gk.__version__} (Python {platform.python_version()}, {platform.machine()})")
    print(f"GRADKIT_BACKEND={os.environ.get('GRADKIT_BACKEND', '')!r}")
    try:
        print(f"default backend: {gk.get_backend().name}")
    except gk.BackendError as exc:
        print(f"default backend: none ({exc})")
    print("backends:")
    for name, reason in gk.backends.available().items():
        state = f"available ({_devices(name)})" if reason is None else f"unavailable: {reason}"
        print(f"  {name:8s} {state}")
    print("libraries: " + ", ".join(f"{m} {_version_of(m)}" for m in
                                    ("numpy", "numba", "cupy", "array-api-strict")))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    run_example = commands.add_parser("example", help="print a loss and its gradients")
    run_example.add_argument("--seed", type=int, default=0)
    commands.add_parser("info", help="version, backends and devices")
    args = parser.parse_args(argv)
    if args.command == "example":
        return example(args.seed)
    if args.command == "info":
        return info()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
