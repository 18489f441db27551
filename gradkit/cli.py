"""The ``gradkit`` command (also ``python -m gradkit``).

``gradkit demo`` trains the cs231n case study (a softmax linear classifier and a
two-layer ReLU net on the spiral), prints both training accuracies and draws their
decision boundaries to demo.png. ``gradkit train`` trains an MLP on spiral, digits,
a .npz file or a directory of MNIST IDX files, with a progress bar, and writes
metrics.json, curves.png and the weights (after every epoch) to --out.
``gradkit example`` prints the cs231n two-layer network's softmax loss and
gradients on a small random batch and checks one against central differences.
``gradkit info`` lists the backends, whether each is usable here (and why not),
the devices and library versions.

Bad arguments and unreadable data end with one line on stderr,
``gradkit: error: ...``, and exit status 2; training that fails (the loss
diverges, memory runs out) ends with such a line and exit status 1; Ctrl-C
exits 130.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

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
        import gradkit as gk
        return "; ".join(gk.backends.get("cuda").report())
    if name == "numba":
        import numba

        import gradkit as gk
        from gradkit.backends.numba.backend import SERIAL_ONLY
        threshold = gk.backends.get("numba").parallel_threshold
        loops = ("loops serial: on 2 cores or fewer BLAS's threads need them"
                 if threshold == SERIAL_ONLY
                 else f"parallel loops from {threshold} elements of work")
        return f"CPU, {numba.config.NUMBA_NUM_THREADS} threads, {loops}"
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
    from gradkit.benchmarks.blas import describe
    blas = describe()
    print("BLAS: " + ("; ".join(blas) if blas else
                      "unknown (pip install threadpoolctl to see which one runs matmul)"))
    return 0


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


class CommandParser(argparse.ArgumentParser):
    """argparse, but an error is one line (``gradkit: error: ...``) instead of usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that must be > 0 (and finite)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative_int(text: str) -> int:
    """An argparse type for seeds: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def hidden_sizes(text: str) -> list[int]:
    """``--hidden 100,50`` as ``[100, 50]``; ``--hidden ""`` (no hidden layer) as ``[]``.

    >>> hidden_sizes("100, 50")
    [100, 50]
    """
    if not text.strip():
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive layer widths "
                                         f"like 100,100, got {text!r}")
    return sizes


BACKEND_HELP = "numpy, numba, cuda... (default: GRADKIT_BACKEND, else numpy)"
EAGER_HELP = ("run the training step op by op instead of through gk.capture (by default it "
              "is recorded on its first calls, then replayed; the results are the same)")


def add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser("demo", help="the cs231n spiral case study: accuracies and demo.png")
    demo.add_argument("--seed", type=non_negative_int, default=0)
    demo.add_argument("--out", default=".", help="directory for demo.png (default: here)")
    demo.add_argument("--backend", help=BACKEND_HELP)
    demo.add_argument("--steps", type=positive(int), help=argparse.SUPPRESS)  # the net's steps
    demo.add_argument("--eager", action="store_true", help=EAGER_HELP)


def add_train_parser(commands: Any) -> None:
    train = commands.add_parser("train", help="train an MLP; metrics.json, curves.png, weights")
    train.add_argument("--dataset", default="spiral",
                       help="spiral, digits, a .npz file or a directory of MNIST IDX files")
    train.add_argument("--hidden", type=hidden_sizes, default=[100],
                       help="hidden layer widths, comma-separated (default: 100)")
    train.add_argument("--activation", default="relu", help="relu (default), tanh, sigmoid, "
                       "leaky_relu, elu, gelu, softplus, maxout, identity")
    train.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    train.add_argument("--lr", type=positive(float),
                       help="learning rate (default: 0.01 for adam, 0.1 for sgd)")
    train.add_argument("--momentum", type=float, default=0.0,
                       help="SGD momentum, in [0, 1) (default 0)")
    train.add_argument("--epochs", type=positive(int), default=20)
    train.add_argument("--batch-size", type=positive(int), default=32)
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--backend", help=BACKEND_HELP)
    train.add_argument("--out", default=".", help="directory for the outputs (default: here)")
    train.add_argument("--resume", metavar="DIR",
                       help="continue the run saved in DIR (its weights, optimizer state and "
                            "epochs) up to --epochs in all")
    train.add_argument("--keep-going", action="store_true",
                       help="go on when the loss becomes NaN or infinite (default: stop, exit 1)")
    train.add_argument("--eager", action="store_true", help=EAGER_HELP)


def build_parser() -> CommandParser:
    parser = CommandParser(prog="gradkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    add_demo_parser(commands)
    add_train_parser(commands)
    run_example = commands.add_parser("example", help="print a loss and its gradients")
    run_example.add_argument("--seed", type=non_negative_int, default=0)
    commands.add_parser("info", help="version, backends and devices")
    add_bench_parser(commands)
    return parser


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="run the benchmark suite (bench/) or report a JSON result: "
                      "ms/step, GFLOP/s, ratio to the NumPy floor, and a PNG")
    bench.add_argument("--json", help="report this pytest-benchmark JSON instead of running")
    bench.add_argument("--quick", action="store_true",
                       help="the short suite CI uses (small and medium sizes)")
    bench.add_argument("--out", default=".", help="where bench.json and bench.png go")


def _bench_dir() -> Path:
    """bench/ of a source checkout: here, or beside the gradkit package."""
    for candidate in (Path.cwd() / "bench", Path(__file__).resolve().parents[1] / "bench"):
        if (candidate / "test_mlp_step.py").is_file():
            return candidate
    raise UsageError("the benchmark suite (bench/) is not here: run from a gradkit source "
                     "checkout, or pass --json RESULTS.json to report a saved run")


def bench(args: argparse.Namespace) -> int:
    """Run bench/ with pytest-benchmark (unless --json), print the table, draw bench.png."""
    import os
    import subprocess
    from gradkit.benchmarks.report import load, plot, table
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = Path(args.json) if args.json else out / "bench.json"
    if not args.json:
        env = {**os.environ, **({"GRADKIT_BENCH_QUICK": "1"} if args.quick else {})}
        command = [sys.executable, "-m", "pytest", str(_bench_dir()), "-q", "-p", "no:cacheprovider",
                   f"--benchmark-json={results}", "--benchmark-columns=median,iqr,rounds"]
        if subprocess.run(command, env=env).returncode != 0:
            raise UsageError(f"the benchmark run failed (see above); command: {' '.join(command)}")
    data = load(results)
    print(table(data))
    try:
        plot(data, out / "bench.png")
        print(f"wrote {results} and {out / 'bench.png'}")
    except ImportError:
        print(f"wrote {results} (pip install matplotlib for bench.png)")
    return 0


def check_backend(name: str | None) -> None:
    """Fail early (one line) on an unknown or unusable backend."""
    if name is not None:
        import gradkit as gk
        gk.backends.get(name)


def demo(args: argparse.Namespace) -> int:
    """Run the case study and print what the lecture prints (~49% and ~98%)."""
    from gradkit.training import DemoSettings, run_demo
    check_backend(args.backend)
    settings = DemoSettings(net_steps=args.steps or DemoSettings.net_steps,
                            captured=not args.eager)
    result = run_demo(seed=args.seed, out=args.out, backend=args.backend, settings=settings)
    print(f"spiral: 300 points, 3 classes (seed {args.seed}); backend {result['backend']}")
    print(f"softmax linear classifier ({settings.linear_steps} steps): training accuracy "
          f"{100 * result['linear_accuracy']:.2f}% (data loss {result['losses']['linear']:.3f})")
    print(f"2-layer net, {settings.hidden} ReLU ({settings.net_steps} steps): training accuracy "
          f"{100 * result['net_accuracy']:.2f}% (data loss {result['losses']['net']:.3f})")
    print(f"decision boundaries: {result['png']}  ({result['seconds']:.1f} s of training)")
    return 0


def train(args: argparse.Namespace) -> int:
    """Train, print the final accuracy and where the outputs are; 1 when training fails
    (diverged, out of memory), 130 on Ctrl-C."""
    from gradkit.training import TrainingFailed, TrainingInterrupted, TrainSettings, run_train
    check_backend(args.backend)
    if not 0 <= args.momentum < 1:
        raise UsageError(f"argument --momentum: must be in [0, 1), got {args.momentum}")
    if args.momentum and args.optimizer != "sgd":
        raise UsageError("argument --momentum: applies to --optimizer sgd only")
    settings = TrainSettings(dataset=args.dataset, hidden=args.hidden, activation=args.activation,
                             optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                             epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                             backend=args.backend, out=args.out, keep_going=args.keep_going,
                             resume=args.resume, captured=not args.eager)
    try:
        metrics = run_train(settings)
    except TrainingInterrupted as stop:
        print(f"gradkit: {stop.message}", file=sys.stderr)
        return 130
    except TrainingFailed as failure:
        print(f"gradkit: error: {one_line(failure)}", file=sys.stderr)
        return 1
    if gk_rank() != 0:
        return 0
    out = Path(args.out)
    world = metrics.get("world_size", 1)
    if world > 1:
        print(f"data-parallel on {world} ranks (global batch "
              f"{metrics['global_batch_size']})")
    print(f"final training accuracy {100 * metrics['final_accuracy']:.2f}% after "
          f"{args.epochs} epochs on backend {metrics['backend']} "
          f"({metrics['timings']['total_seconds']:.1f} s)")
    print(f"wrote {out / 'metrics.json'}, {out / 'curves.png'}, {out / metrics['weights']}")
    return 0


def gk_rank() -> int:
    """This process's rank when gk.distributed is running (0 otherwise)."""
    from gradkit.distributed.world import world
    return world.rank if world.initialized else 0


def stop_every_rank(status: int) -> int:
    """[distributed] A rank that ends with a failure status stops the whole job.

    Rank 0 prints the message and calls MPI_Abort at once; another rank waits a moment
    (so rank 0, which failed the same way in a symmetric failure, speaks first), then
    aborts itself, which also frees a rank 0 stuck in a collective.
    """
    from gradkit.distributed.world import abort, world
    if status == 0 or not world.initialized or world.size == 1:
        return status
    if world.rank != 0:
        time.sleep(1.0)
    abort(status, f"rank {world.rank} of {world.size} ended with exit status {status}; "
                  "stopping every rank")
    return status


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its type's name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


COMMANDS = {"demo": demo, "train": train, "bench": bench,
            "example": lambda args: example(args.seed), "info": lambda args: info()}


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; the exit status: 2 with one line on stderr for bad
    input, 1 when a command fails for lack of memory or (train) diverges, 130 on Ctrl-C."""
    from gradkit.errors import GradkitError
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return stop_every_rank(COMMANDS[args.command](args))
    except (UsageError, GradkitError, ValueError, OSError) as exc:
        print(f"gradkit: error: {one_line(exc)}", file=sys.stderr)
        return stop_every_rank(2)
    except MemoryError as exc:
        print(f"gradkit: error: out of memory ({one_line(exc)})", file=sys.stderr)
        return stop_every_rank(1)
    except KeyboardInterrupt:
        print("gradkit: interrupted", file=sys.stderr)
        return stop_every_rank(130)


if __name__ == "__main__":
    sys.exit(main())
