"""What ``gradkit demo`` and ``gradkit train`` do: fit, measure, plot and save.

Built only from the public API (``gk.nn``, ``gk.optim``, ``gk.data``, ``gk.save``).
matplotlib and tqdm come with ``pip install "gradkit[cli]"``; they are imported
when a command needs them, never when gradkit is imported.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

import gradkit as gk
from gradkit.errors import GradkitError
from gradkit.nn import functional as F
from gradkit.serialization import os_error, write_atomically


class MissingExtraError(GradkitError, ImportError):
    """A command needs a package of the ``cli`` extra that is not installed."""


def require_cli_extras(*modules: str) -> None:
    """Raise MissingExtraError naming what to install when one of ``modules`` is missing.

    >>> require_cli_extras("numpy")
    """
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"this command needs {' and '.join(missing)}: "
                                'pip install "gradkit[cli]"')


# -- pieces shared by demo and train -------------------------------------------------------
def predict(model: Any, X: Any) -> np.ndarray:
    """The class each row of ``X`` scores highest, in eval mode and without a tape.

    >>> model = gk.nn.MLP([2, 3], seed=0)
    >>> predict(model, np.zeros((4, 2), np.float32)).shape
    (4,)
    """
    was_training = getattr(model, "training", True)
    model.eval()
    with gk.no_grad():
        scores = model(X if isinstance(X, gk.Tensor) else gk.tensor(X))
    model.train(was_training)
    return scores.numpy().argmax(axis=1)


def accuracy(model: Any, X: Any, y: np.ndarray) -> float:
    """The fraction of rows of ``X`` that ``model`` classifies as ``y``.

    >>> model = gk.nn.MLP([2, 3], seed=0)
    >>> 0.0 <= accuracy(model, np.ones((5, 2), np.float32), np.zeros(5, np.int64)) <= 1.0
    True
    """
    return float((predict(model, X) == np.asarray(y)).mean())


def weights_filename() -> str:
    """``weights.safetensors`` where safetensors is installed, else ``weights.npz``.

    >>> weights_filename() in ("weights.safetensors", "weights.npz")
    True
    """
    return "weights.safetensors" if find_spec("safetensors") is not None else "weights.npz"


def optimizer_filename() -> str:
    """Where ``gradkit train`` saves the optimizer state, beside the weights."""
    return weights_filename().replace("weights", "optimizer")


def make_output_directory(path: Path) -> Path:
    """``path``, created with its parents if missing, where a file can be written; an
    OSError saying why not (a file is in the way, permission denied, read-only...).

    >>> import tempfile
    >>> make_output_directory(Path(tempfile.mkdtemp()) / "runs" / "1").is_dir()
    True
    """
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output directory {path} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, f"output directory {path}: cannot create it") from None
    probe = path / f".gradkit-write-test-{secrets.token_hex(6)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as exc:
        raise os_error(exc, f"output directory {path}: cannot write there") from None
    return path


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts and lists) replaced by None,
    so that it is strict JSON.

    >>> finite_or_none({"loss": [1.5, float("nan")], "lr": float("inf")})
    {'loss': [1.5, None], 'lr': None}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def write_json_atomically(data: dict, path: Path) -> None:
    """Write ``data`` as strict JSON (NaN and infinities as null) to ``path`` through a
    temporary file in the same directory, so readers never see half of it."""
    text = json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n"
    write_atomically(path, lambda file: file.write(text.encode()), action="write")


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block has run, then deliver it.

    Files written in the block are written together: an interrupt arrives before
    or after all of them. Outside the main thread (no signal handlers) it does nothing.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if previous is signal.default_int_handler:
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)  # to whatever handles it outside


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn with Agg, independent of pyplot and the display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


# -- gradkit demo: the cs231n case study ------------------------------------------------------
@dataclass
class DemoSettings:
    """The cs231n neural-network case study: full-batch gradient descent on the spiral.

    ``captured``: run each gradient-descent step through ``gk.capture`` (the default;
    ``gradkit demo --eager`` turns it off), see :func:`fit_full_batch`.
    """

    linear_steps: int = 200
    net_steps: int = 10000
    hidden: int = 100
    lr: float = 1.0
    reg: float = 1e-3
    captured: bool = True


def cs231n_init(model: Any, seed: int) -> None:
    """Weights ``0.01 * randn``, biases zero, as the case study initialises them.

    >>> model = gk.nn.MLP([2, 3], seed=0)
    >>> cs231n_init(model, seed=0)
    >>> float(abs(model.state_dict()["layers.0.weight"]).max()) < 0.05
    True
    """
    rng = np.random.default_rng(seed)
    state = {name: (0.01 * rng.standard_normal(value.shape) if value.ndim > 1
                    else np.zeros(value.shape)).astype(value.dtype)
             for name, value in model.state_dict().items()}
    model.load_state_dict(state)


def fit_full_batch(model: Any, X: gk.Tensor, y: gk.Tensor, lr: float, reg: float,
                   steps: int, captured: bool = True) -> float:
    """``steps`` of gradient descent on softmax loss + ``reg/2 * sum(W**2)``; the last data loss.

    The L2 term is SGD's weight decay on the weight matrices only (biases are not
    regularised), which is exactly its gradient ``reg * W``. ``captured``: run the
    step (zero_grad, forward, loss, backward, both optimizer steps) through
    ``gk.capture``, recorded on its first two steps and replayed after them, with
    the same results as ``captured=False`` (every op dispatched eagerly).

    >>> X, y = gk.data.spiral()
    >>> model = gk.nn.MLP([2, 3], seed=0)
    >>> cs231n_init(model, seed=0)
    >>> round(fit_full_batch(model, gk.tensor(X), gk.tensor(y), 1.0, 1e-3, steps=1), 2)
    1.1
    """
    params = list(model.parameters())
    optimizers = [gk.optim.SGD([p for p in params if p.ndim > 1], lr=lr, weight_decay=reg),
                  gk.optim.SGD([p for p in params if p.ndim <= 1], lr=lr)]

    def descent_step(X: gk.Tensor, y: gk.Tensor) -> gk.Tensor:
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        return loss

    step = gk.capture(descent_step) if captured else descent_step
    loss = None
    for _ in range(steps):
        loss = step(X, y)
    return float("nan") if loss is None else loss.item()


def decision_panel(axes: Any, model: Any, X: np.ndarray, y: np.ndarray, title: str) -> None:
    """Colour the plane by ``model``'s predicted class; the data points on top."""
    step = 0.02
    xs = np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, step)
    ys = np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, step)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.c_[grid_x.ravel(), grid_y.ravel()].astype(np.float32)
    classes = predict(model, grid).reshape(grid_x.shape)
    axes.contourf(grid_x, grid_y, classes, cmap="Spectral", alpha=0.8)
    axes.scatter(X[:, 0], X[:, 1], c=y, s=30, cmap="Spectral", edgecolors="k", linewidths=0.5)
    axes.set_xlim(grid_x.min(), grid_x.max())
    axes.set_ylim(grid_y.min(), grid_y.max())
    axes.set_title(title)


def run_demo(seed: int = 0, out: str | os.PathLike = ".", backend: str | None = None,
             settings: DemoSettings | None = None) -> dict[str, Any]:
    """Train the case study's linear classifier and 2-layer net; write ``demo.png``.

    Returns the backend, the accuracies, the last data losses, the settings, the
    seconds of training and the PNG's path.

    >>> import tempfile
    >>> result = run_demo(out=tempfile.mkdtemp(), settings=DemoSettings(10, 10))
    >>> sorted(result)  # doctest: +NORMALIZE_WHITESPACE
    ['backend', 'linear_accuracy', 'losses', 'net_accuracy', 'png', 'seconds', 'settings']
    """
    require_cli_extras("matplotlib")
    settings = settings or DemoSettings()
    out = make_output_directory(Path(out))
    X, y = gk.data.spiral(n_per_class=100, classes=3, seed=seed)
    with gk.use_backend(backend or gk.get_backend()) as chosen:
        start = time.perf_counter()
        Xt, yt = gk.tensor(X), gk.tensor(y)
        models = {"linear": gk.nn.MLP([2, 3], seed=seed),
                  "net": gk.nn.MLP([2, settings.hidden, 3], activation="relu", seed=seed)}
        losses = {}
        for name, steps in (("linear", settings.linear_steps), ("net", settings.net_steps)):
            cs231n_init(models[name], seed)
            losses[name] = fit_full_batch(models[name], Xt, yt, settings.lr, settings.reg, steps,
                                          captured=settings.captured)
        result = {"backend": chosen.name, "seconds": time.perf_counter() - start,
                  "losses": losses, "settings": asdict(settings), "png": str(out / "demo.png"),
                  **{f"{name}_accuracy": accuracy(model, Xt, y) for name, model in models.items()}}
        draw_demo(models, X, y, result)
    return result


def draw_demo(models: dict[str, Any], X: np.ndarray, y: np.ndarray,
              result: dict[str, Any]) -> None:
    """Both decision boundaries side by side, saved to ``result["png"]``."""
    figure = new_figure(12, 5.5)
    left, right = figure.subplots(1, 2)
    hidden = result["settings"]["hidden"]
    decision_panel(left, models["linear"], X, y, "softmax linear classifier: "
                   f"{100 * result['linear_accuracy']:.1f}% training accuracy")
    decision_panel(right, models["net"], X, y, f"2-layer net ({hidden} ReLU): "
                   f"{100 * result['net_accuracy']:.1f}% training accuracy")
    figure.tight_layout()
    figure.savefig(result["png"])


# -- gradkit train -------------------------------------------------------------------------
@dataclass
class TrainSettings:
    """What ``gradkit train`` was asked to do (written to metrics.json as ``args``)."""

    dataset: str = "spiral"
    hidden: list[int] = field(default_factory=lambda: [100])
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float | None = None  # None: 1e-2 for adam, 0.1 for sgd
    momentum: float = 0.0
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    backend: str | None = None
    out: str = "."
    keep_going: bool = False  # go on when the loss or the weights become NaN or infinite
    resume: str | None = None  # a directory an earlier run wrote: continue from its last epoch
    captured: bool = True  # the training step through gk.capture (False: --eager)


DEFAULT_LR = {"sgd": 0.1, "adam": 1e-2}

# Sanity limits checked before a model is built: the class count (max label + 1) may
# be at most max(CLASSES_PER_SAMPLE * samples, MIN_CLASS_LIMIT) and never above MAX_CLASSES.
CLASSES_PER_SAMPLE = 10
MIN_CLASS_LIMIT = 1000
MAX_CLASSES = 1_000_000


class TrainingInterrupted(Exception):
    """Ctrl-C during ``gradkit train``; ``message`` says where the last weights are."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TrainingFailed(GradkitError, RuntimeError):
    """Training stopped: the loss diverged, memory ran out or the outputs could not be
    written (``gradkit train`` exits 1).
    The message says why, what to try, and where the last good weights are."""


def check_labels(y: np.ndarray, dataset: str) -> int:
    """The class count ``max(y) + 1``, after checking that it is sane for ``len(y)`` samples.

    >>> check_labels(np.array([0, 2, 1]), "toy")
    3
    """
    if y.dtype.kind not in "iu" or (y.size and int(y.min()) < 0):
        raise ValueError(f"dataset {dataset}: labels must be non-negative integers")
    if not y.size:
        raise ValueError(f"dataset {dataset}: no labels")
    where = int(y.argmax())
    classes = int(y[where]) + 1
    limit = min(max(CLASSES_PER_SAMPLE * len(y), MIN_CLASS_LIMIT), MAX_CLASSES)
    if classes > limit:
        raise ValueError(f"dataset {dataset}: label {int(y[where])} (sample {where}) would make "
                         f"{classes} classes for {len(y)} samples; labels must be class indices "
                         f"0..C-1 with C at most {limit} here")
    return classes


def _bytes(count: float) -> str:
    """``count`` bytes, readably.

    >>> _bytes(3 * 2**30)
    '3.0 GiB'
    """
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


def physical_memory() -> int | None:
    """This machine's memory in bytes, where the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_model_fits(widths: list[int], settings: TrainSettings, samples: int,
                     memory: int | None = None) -> None:
    """Refuse (ValueError) an MLP of layer ``widths`` whose training would need more than
    the machine's memory: float32 weights, gradients and optimizer state, and the
    activations of one batch, forward and backward.

    >>> check_model_fits([2, 100, 3], TrainSettings(), samples=300, memory=2**30)
    """
    params = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))
    states = 2 if settings.optimizer == "adam" else int(settings.momentum > 0)
    batch = min(settings.batch_size, samples)
    needed = 4 * (params * (2 + states) + 3 * batch * sum(widths))
    memory = physical_memory() if memory is None else memory
    if memory is not None and needed > memory:
        raise ValueError(f"a {' -> '.join(map(str, widths))} MLP has {params} parameters; "
                         f"training it would need about {needed} bytes ({_bytes(needed)}), more "
                         f"than this machine's memory ({_bytes(memory)}); use a smaller --hidden")


def make_optimizer(settings: TrainSettings, params: Iterable[gk.Tensor]) -> Any:
    """The optimizer ``settings`` names, at its learning rate (default: DEFAULT_LR).

    >>> model = gk.nn.MLP([2, 3], seed=0)
    >>> type(make_optimizer(TrainSettings(optimizer="sgd"), model.parameters())).__name__
    'SGD'
    """
    lr = settings.lr if settings.lr is not None else DEFAULT_LR.get(settings.optimizer)
    if settings.optimizer == "sgd":
        return gk.optim.SGD(list(params), lr=lr, momentum=settings.momentum)
    if settings.optimizer == "adam":
        return gk.optim.Adam(list(params), lr=lr)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}; choose sgd or adam")


# What trains on one batch: (X_batch, y_batch) -> [loss * rows, correct rows], or None
TrainingStep = Callable[[gk.Tensor, gk.Tensor], "gk.Tensor | None"]


def training_step(model: Any, optimizer: Any, captured: bool = True) -> TrainingStep:
    """What trains on one batch: zero_grad, forward, cross-entropy, backward, optimizer step.

    Called with ``(X_batch, y_batch)``, it returns the batch's ``[loss * rows, correct
    rows]`` as a float64 tensor where the batch lives (no value comes back to the host),
    or None for a data-parallel rank without rows (see :func:`train_epoch`).
    ``captured``: the step runs through ``gk.capture`` (``gk.distributed.capture`` for a
    ``DataParallel`` model), so after two recorded calls per batch shape it replays the
    recorded kernels, with the results of ``captured=False``. Build it once per training
    run: the plans recorded in the first epoch then replay in the later ones. A rank
    without rows is captured too, as one more batch shape: captured ranks reduce their
    gradients with recorded collectives, which an eager rank would not meet.

    >>> X, y = gk.data.spiral()
    >>> model = gk.nn.MLP([2, 16, 3], seed=0)
    >>> step = training_step(model, gk.optim.SGD(model.parameters(), lr=0.1))
    >>> sums = [step(gk.tensor(X[:50]), gk.tensor(y[:50])) for _ in range(3)]
    >>> sums[-1].shape, sums[-1].dtype.name, step.replays
    ((2,), 'float64', 1)
    """
    def train_on_batch(X_batch: gk.Tensor, y_batch: gk.Tensor) -> gk.Tensor | None:
        optimizer.zero_grad()
        rows = len(y_batch)
        if rows == 0 and hasattr(model, "step_without_rows"):
            model.step_without_rows()
            optimizer.step()
            return None
        logits = model(X_batch)
        loss = F.cross_entropy(logits, y_batch)
        loss.backward()
        optimizer.step()
        return _batch_sums(loss, logits, y_batch, rows)

    if not captured:
        return train_on_batch
    if isinstance(model, gk.distributed.DataParallel):  # every rank records and replays in step
        return gk.distributed.capture(train_on_batch)
    return gk.capture(train_on_batch)


def train_epoch(model: Any, optimizer: Any, loader: gk.data.DataLoader,
                step: TrainingStep | None = None) -> tuple[float, float]:
    """One pass over ``loader``; the mean loss and the accuracy on its batches.

    ``step``: what trains on one batch, from :func:`training_step`, captured by default:
    build it once and pass it to every epoch of a run, so that the plans ``gk.capture``
    recorded in the first epoch replay in the later ones. Without one the epoch runs
    eagerly, op by op (a step captured here would be recorded anew every epoch). The
    loss and accuracy stay on the batches' backend until the epoch ends: one read back
    to the host per epoch.

    Data-parallel (``model`` a ``gk.distributed.DataParallel``, ``loader`` sharded):
    a rank with an empty part of a last partial batch takes part in the gradient
    all-reduce with ``step_without_rows()``; the loss and accuracy are summed over the
    ranks' rows, so every rank returns those of the global batches.

    >>> X, y = gk.data.spiral()
    >>> model = gk.nn.MLP([2, 16, 3], seed=0)
    >>> optimizer = gk.optim.Adam(model.parameters(), lr=1e-2)
    >>> step = training_step(model, optimizer)
    >>> loader = gk.data.DataLoader(X, y, batch_size=50)
    >>> losses = [train_epoch(model, optimizer, loader, step)[0] for _ in range(2)]
    >>> 0 < losses[1] < losses[0] < 2, step.replays
    (True, 10)
    """
    step = training_step(model, optimizer, captured=False) if step is None else step
    model.train()
    sums, seen = None, 0  # (loss * rows, correct rows), summed where the data lives
    for X_batch, y_batch in loader:
        batch = step(X_batch, y_batch)
        if batch is not None:
            sums = batch if sums is None else sums + batch
            seen += len(y_batch)
    # one read back to the host per epoch (a sync on a GPU), not one per batch
    total_loss, correct = sums.numpy().tolist() if sums is not None else (0.0, 0.0)
    if getattr(loader, "world_size", 1) > 1:  # [distributed] sums over the ranks
        sums = gk.distributed.all_reduce(gk.tensor(np.array([total_loss, correct, seen],
                                                            dtype=np.float64), backend="numpy"))
        total_loss, correct, seen = sums.numpy().tolist()
    return total_loss / seen, correct / seen


def _batch_sums(loss: gk.Tensor, logits: gk.Tensor, labels: gk.Tensor, rows: int) -> gk.Tensor:
    """[loss * rows, correct predictions] of one batch, float64, on the batch's backend."""
    with gk.no_grad():
        correct = (gk.argmax(logits, axis=1) == labels).astype("float64").sum()
        return gk.stack([loss.astype("float64") * rows, correct])


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, side by side, as a PNG."""
    from matplotlib.ticker import MaxNLocator
    epochs = [entry["epoch"] for entry in history]
    figure = new_figure(10, 4)
    for axes, key in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axes.plot(epochs, [entry[key] for entry in history], marker="o", markersize=3)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(f"training {key}")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    write_atomically(path, lambda file: figure.savefig(file, format="png"), action="write")


class TrainRun:
    """One ``gradkit train``: the data, the model, and what is written to ``out``.

    One training step (:func:`training_step`, captured unless ``settings.captured`` is
    False) serves every epoch, so the plans recorded in the first epoch replay after it.

    After each epoch the weights and then metrics.json are written atomically,
    together (Ctrl-C is held back while they are written), so both always describe
    the same epoch, ``saved_epoch``, and so does the message when training stops.
    """

    def __init__(self, settings: TrainSettings) -> None:
        if settings.lr is None:
            settings = replace(settings, lr=DEFAULT_LR.get(settings.optimizer))
        self.settings = settings
        self.out = Path(settings.out)
        self.weights = self.out / weights_filename()
        self.optimizer_state = self.out / optimizer_filename()
        self.resumed_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {}
        self.saved_epoch = 0

    def run(self) -> dict[str, Any]:
        """Train, saving weights and metrics after every epoch; the final metrics."""
        require_cli_extras("matplotlib", "tqdm")
        start = time.perf_counter()
        self.X, self.y = gk.data.load_dataset(self.settings.dataset)
        self.timings["load_seconds"] = time.perf_counter() - start
        self.classes = check_labels(self.y, self.settings.dataset)
        widths = [self.X.shape[1], *self.settings.hidden, self.classes]
        check_model_fits(widths, self.settings, len(self.X))
        self.world = gk.distributed.init()
        self.main = self.world.rank == 0      # only rank 0 prints and writes files
        if self.main:
            make_output_directory(self.out)
        try:
            with gk.use_backend(self.settings.backend or gk.get_backend()) as backend:
                self.backend = backend.name
                self._build(widths)
                self._epochs()
                final = accuracy(self.model, self.X, self.y)
            self.timings["total_seconds"] = time.perf_counter() - start
            with interrupts_deferred():
                metrics = self._metrics(final_accuracy=final, completed=True)
                if self.main:
                    plot_curves(self.history, self.out / "curves.png")
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._interrupted_message()) from None
        except MemoryError:
            raise TrainingFailed(f"out of memory {self._when()}; "
                                 f"{self._saved_note()}; try a smaller --hidden or "
                                 "--batch-size") from None
        return metrics

    def _build(self, widths: list[int]) -> None:
        s = self.settings
        self.model = gk.nn.MLP(widths, activation=s.activation, seed=s.seed)
        sharded = self.world.size > 1
        if sharded:  # [distributed] rank 0's weights everywhere; gradients averaged
            self.model = gk.distributed.DataParallel(self.model)
        self.optimizer = make_optimizer(s, self.model.parameters())
        self.loader = gk.data.DataLoader(self.X, self.y, batch_size=s.batch_size, seed=s.seed,
                                         shard=sharded)
        if s.resume is not None:
            self._resume(Path(s.resume))
        self.step = training_step(self.model, self.optimizer, captured=s.captured)  # one per run

    def _resume(self, directory: Path) -> None:
        """Continue the run saved in ``directory``: its weights, optimizer state, history
        and the loader's epoch (so the next shuffles are those the run would have drawn).
        Every rank loads the same files (they hold what every rank had)."""
        try:
            saved = json.loads((directory / "metrics.json").read_text())
            weights = directory / saved["weights"]
            optimizer = directory / saved["optimizer_state"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingFailed(f"--resume {directory}: no run to resume there (its "
                                 f"metrics.json, weights and optimizer state: {exc})") from None
        history = saved.get("epochs") or []
        if len(history) >= self.settings.epochs:
            raise TrainingFailed(f"--resume {directory}: that run has trained "
                                 f"{len(history)} epochs already; ask for more with --epochs")
        global_batch = self.settings.batch_size * self.world.size
        was = saved.get("global_batch_size", saved.get("args", {}).get("batch_size"))
        if was != global_batch and self.main:
            print(f"gradkit: note: resuming with global batch {global_batch} (the run used "
                  f"{was}): the batches differ from an uninterrupted run", file=sys.stderr)
        self.model.load_state_dict(gk.load(weights))
        self.optimizer.load_state_dict(gk.load(optimizer))
        self.history = list(history)
        self.resumed_epochs = self.loader.epoch = len(history)
        if directory.resolve() == self.out.resolve():
            self.saved_epoch = len(history)  # its files are this run's files

    def _epochs(self) -> None:
        from tqdm import tqdm
        # NumPy's overflow warnings are left out: _check_finite reports a divergence once
        first = len(self.history) + 1   # after the epochs of a resumed run
        with tqdm(range(first, self.settings.epochs + 1), desc="train", unit="epoch",
                  file=sys.stderr, disable=not self.main, initial=first - 1,
                  total=self.settings.epochs) as bar, np.errstate(over="ignore", invalid="ignore"):
            for epoch in bar:
                started = time.perf_counter()
                loss, acc = train_epoch(self.model, self.optimizer, self.loader, self.step)
                if not self.settings.keep_going:
                    self._check_finite(epoch, loss)
                self.history.append({"epoch": epoch, "loss": loss, "accuracy": acc,
                                     "seconds": time.perf_counter() - started})
                self._save_epoch(epoch)
                bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}")

    def _save_epoch(self, epoch: int) -> None:
        """Write the weights, then metrics.json, with Ctrl-C held back until both are
        written; a write that fails (disk full...) stops training with TrainingFailed
        saying what each file now holds."""
        if not self.main:  # [distributed] the other ranks hold the same weights
            self.saved_epoch = epoch
            return
        with interrupts_deferred():
            try:
                gk.save(self.model.state_dict(), self.weights)
            except OSError as exc:
                raise TrainingFailed(f"{exc}; {self._saved_note()}") from None
            behind = (f"still describe epoch {self.saved_epoch}" if self.saved_epoch
                      else "were not written")
            try:  # the optimizer state, for --resume
                gk.save(self.optimizer.state_dict(), self.optimizer_state)
            except OSError as exc:
                raise TrainingFailed(f"{exc}; the weights after epoch {epoch} are in "
                                     f"{self.weights}, but {self.optimizer_state} and "
                                     f"{self.out / 'metrics.json'} {behind}") from None
            try:
                self._metrics(final_accuracy=None, completed=False)
            except OSError as exc:
                metrics = (f"still describes epoch {self.saved_epoch}" if self.saved_epoch
                           else "was not written")
                raise TrainingFailed(f"{exc}; the weights after epoch {epoch} are in "
                                     f"{self.weights}, but {self.out / 'metrics.json'} "
                                     f"{metrics}") from None
            self.saved_epoch = epoch

    def _check_finite(self, epoch: int, loss: float) -> None:
        """Stop (TrainingFailed) when the loss or a weight has become NaN or infinite."""
        if math.isfinite(loss):
            if all(np.isfinite(value).all() for value in self.model.state_dict().values()):
                return
            what = "the weights became NaN or infinite"
        else:
            what = f"the loss became {loss}"
        lr = self.settings.lr
        raise TrainingFailed(f"{what} in epoch {epoch}: training diverged at learning rate "
                             f"{lr:g}; try a lower --lr (such as {lr / 10:g}), or --keep-going "
                             f"to continue anyway; {self._saved_note()}")

    def _saved_note(self) -> str:
        if not self.saved_epoch:
            return "no weights saved yet"
        return (f"the weights after epoch {self.saved_epoch} are in {self.weights} "
                f"(metrics in {self.out / 'metrics.json'})")

    def _when(self) -> str:
        done = max(self.saved_epoch, self.resumed_epochs)
        return ("after the last epoch" if done == self.settings.epochs
                else f"during epoch {done + 1}")

    def _interrupted_message(self) -> str:
        return f"interrupted {self._when()}: {self._saved_note()}"

    def _metrics(self, final_accuracy: float | None, completed: bool) -> dict[str, Any]:
        metrics = {
            "args": asdict(self.settings), "backend": self.backend, "completed": completed,
            "dataset": {"samples": int(len(self.X)), "features": int(self.X.shape[1]),
                        "classes": self.classes},
            "epochs": self.history, "final_accuracy": final_accuracy,
            "weights": self.weights.name,
            "optimizer_state": self.optimizer_state.name,
            "world_size": self.world.size,
            "global_batch_size": self.settings.batch_size * self.world.size,
            "timings": {**self.timings,
                        "epoch_seconds": [entry["seconds"] for entry in self.history]},
        }
        if self.main:
            write_json_atomically(metrics, self.out / "metrics.json")
        return metrics


def run_train(settings: TrainSettings) -> dict[str, Any]:
    """Train an MLP as ``settings`` say; the metrics (also in metrics.json).

    Raises TrainingInterrupted on Ctrl-C, after the last completed epoch's weights
    and metrics are on disk.

    >>> import tempfile, contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
    ...     metrics = run_train(TrainSettings(hidden=[8], epochs=2, out=tempfile.mkdtemp()))
    >>> len(metrics["epochs"]), metrics["completed"]
    (2, True)
    """
    return TrainRun(settings).run()
