"""gradkit demo and gradkit train: results, outputs, Ctrl-C, and one-line errors."""
from __future__ import annotations

import errno
import gzip
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# the cli extra: where it is missing (a GPU machine), these commands cannot run
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

import gradkit as gk  # noqa: E402
from gradkit import cli, training  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    from matplotlib.image import imread
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def percentages(text: str) -> list[float]:
    return [float(p) for p in re.findall(r"training accuracy ([\d.]+)%", text)]


# -- demo ---------------------------------------------------------------------------------
def test_demo_reproduces_the_case_study(backend, tmp_path, capsys):
    """The real configuration: 200 linear steps, 10000 net steps (lecture: ~49% and ~98%)."""
    assert cli.main(["demo", "--out", str(tmp_path), "--backend", backend.name]) == 0
    out = capsys.readouterr().out
    linear, net = percentages(out)
    assert linear < 60.0, out
    assert net > 95.0, out
    assert f"backend {backend.name}" in out and "(10000 steps)" in out
    assert_valid_png(tmp_path / "demo.png")


def test_demo_creates_its_output_directory(backend, tmp_path, capsys):
    out_dir = tmp_path / "a" / "b"
    assert cli.main(["demo", "--out", str(out_dir), "--steps", "5", "--seed", "3"]) == 0
    assert "(5 steps)" in capsys.readouterr().out
    assert_valid_png(out_dir / "demo.png")


# -- train --------------------------------------------------------------------------------
def read_metrics(out_dir: Path) -> dict:
    return json.loads((out_dir / "metrics.json").read_text())


def train(out_dir: Path, backend_name: str, *extra: str) -> int:
    return cli.main(["train", "--dataset", "spiral", "--hidden", "16,8", "--epochs", "3",
                     "--batch-size", "50", "--out", str(out_dir), "--backend", backend_name,
                     *extra])


def test_train_writes_metrics_curves_and_weights_that_load_back(backend, tmp_path, capsys):
    assert train(tmp_path, backend.name) == 0
    captured = capsys.readouterr()
    assert "final training accuracy" in captured.out
    assert "train:" in captured.err  # the tqdm bar, with loss and accuracy
    assert "loss=" in captured.err and "acc=" in captured.err
    metrics = read_metrics(tmp_path)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert all(e["loss"] > 0 and 0 <= e["accuracy"] <= 1 for e in metrics["epochs"])
    assert metrics["backend"] == backend.name and metrics["completed"] is True
    assert metrics["args"]["hidden"] == [16, 8] and metrics["args"]["lr"] == 0.01
    assert metrics["dataset"] == {"samples": 300, "features": 2, "classes": 3}
    assert len(metrics["timings"]["epoch_seconds"]) == 3 and metrics["timings"]["total_seconds"] > 0
    assert_valid_png(tmp_path / "curves.png")
    weights = tmp_path / metrics["weights"]
    model = gk.nn.MLP([2, 16, 8, 3])
    model.load_state_dict(gk.load(weights))
    X, y = gk.data.spiral()
    assert training.accuracy(model, X, y) == pytest.approx(metrics["final_accuracy"])


def test_train_with_sgd_on_an_npz_file(backend, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", images=rng.integers(0, 256, (40, 3, 3), dtype=np.uint8),
             labels=np.arange(40) % 4)
    out_dir = tmp_path / "run"
    assert cli.main(["train", "--dataset", str(tmp_path / "toy.npz"), "--optimizer", "sgd",
                     "--lr", "0.5", "--momentum", "0.9", "--hidden", "", "--epochs", "2",
                     "--out", str(out_dir), "--backend", backend.name]) == 0
    metrics = read_metrics(out_dir)
    assert metrics["dataset"] == {"samples": 40, "features": 9, "classes": 4}
    assert metrics["args"]["optimizer"] == "sgd" and metrics["args"]["lr"] == 0.5
    assert set(gk.load(out_dir / metrics["weights"])) == {"layers.0.weight", "layers.0.bias"}


def test_train_on_a_directory_of_gzipped_idx_files(backend, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 4, 4), dtype=np.uint8)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (20, 4, 4))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    labels = (0x801).to_bytes(4, "big") + (20).to_bytes(4, "big") + bytes(i % 10 for i in range(20))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    assert cli.main(["train", "--dataset", str(tmp_path), "--epochs", "1", "--hidden", "8",
                     "--out", str(tmp_path / "run"), "--backend", backend.name]) == 0
    assert read_metrics(tmp_path / "run")["dataset"]["features"] == 16


def test_train_saves_npz_weights_without_safetensors(backend, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert train(tmp_path, backend.name, "--epochs", "1") == 0
    assert read_metrics(tmp_path)["weights"] == "weights.npz"
    assert set(gk.load(tmp_path / "weights.npz")) == {f"layers.{i}.{p}" for i in range(3)
                                                      for p in ("weight", "bias")}


# -- the training step: captured by default, op by op with --eager --------------------------
def record_training_steps(monkeypatch) -> list:
    """Collect every step training.training_step builds (still the real ones)."""
    real, steps = training.training_step, []

    def training_step(*args, **kwargs):
        steps.append(real(*args, **kwargs))
        return steps[-1]
    monkeypatch.setattr(training, "training_step", training_step)
    return steps


def comparable(metrics: dict) -> dict:
    """metrics.json less what differs between equal runs: seconds, --out, --resume and
    --eager."""
    args = {**metrics["args"], "out": None, "resume": None, "captured": None}
    return {**metrics, "timings": None, "args": args,
            "epochs": [{**entry, "seconds": None} for entry in metrics["epochs"]]}


def assert_same_files(first: Path, second: Path) -> None:
    """The two runs wrote equal metrics (but timings), weights and optimizer state."""
    metrics = read_metrics(first)
    assert comparable(metrics) == comparable(read_metrics(second))
    for name in (metrics["weights"], metrics["optimizer_state"]):
        saved, other = gk.load(first / name), gk.load(second / name)
        assert saved.keys() == other.keys()
        for key in saved:
            np.testing.assert_array_equal(saved[key], other[key], err_msg=f"{name}: {key}")


@pytest.mark.parametrize("options", [("--optimizer", "adam"),
                                     ("--optimizer", "sgd", "--momentum", "0.9"),
                                     ("--optimizer", "sgd", "--lr", "1e30", "--keep-going")])
def test_train_captured_and_eager_write_equal_weights_and_metrics(backend, tmp_path,
                                                                  monkeypatch, options):
    """300 rows in batches of 64: four full batches and one of 44 rows, each shape
    recorded twice in the first two epochs and replayed after; the same kernels on the
    same arrays, so the same bits as op by op (NaN included, with --keep-going)."""
    steps = record_training_steps(monkeypatch)
    common = ("--epochs", "4", "--batch-size", "64", *options)
    assert train(tmp_path / "captured", backend.name, *common) == 0
    assert train(tmp_path / "eager", backend.name, *common, "--eager") == 0
    captured, eager = steps
    assert (captured.recordings, captured.replays) == (2 + 2, 4 * 5 - 4)
    assert not hasattr(eager, "replays")
    assert read_metrics(tmp_path / "captured")["args"]["captured"] is True
    assert read_metrics(tmp_path / "eager")["args"]["captured"] is False
    assert_same_files(tmp_path / "captured", tmp_path / "eager")


def test_a_resumed_run_equals_one_that_went_straight_through(backend, tmp_path):
    """Resumed captured or --eager: the step of the new run records afresh, then replays."""
    assert train(tmp_path / "straight", backend.name, "--epochs", "4") == 0
    for way in ("captured", "eager"):
        eager = ("--eager",) if way == "eager" else ()
        assert train(tmp_path / way, backend.name, "--epochs", "2", *eager) == 0
        assert train(tmp_path / way, backend.name, "--epochs", "4", "--resume",
                     str(tmp_path / way), *eager) == 0
        assert_same_files(tmp_path / "straight", tmp_path / way)


def train_epochs(captured: bool, epochs: int = 3) -> tuple[list, dict, object]:
    """Each epoch's (loss, accuracy), the weights, and the step, from train_epoch with
    one step built for all the epochs."""
    X, y = gk.data.spiral()
    model = gk.nn.MLP([2, 16, 3], seed=0)
    optimizer = gk.optim.Adam(model.parameters(), lr=1e-2)
    step = training.training_step(model, optimizer, captured=captured)
    loader = gk.data.DataLoader(X, y, batch_size=64, seed=0)
    history = [training.train_epoch(model, optimizer, loader, step) for _ in range(epochs)]
    return history, model.state_dict(), step


def test_one_captured_step_serves_every_epoch_with_the_results_of_an_eager_one(backend):
    history, weights, step = train_epochs(captured=True)
    eager_history, eager_weights, _ = train_epochs(captured=False)
    assert history == eager_history
    for key in weights:
        np.testing.assert_array_equal(weights[key], eager_weights[key], err_msg=key)
    assert (step.recordings, step.replays) == (2 + 2, 3 * 5 - 4)  # two batch shapes


def test_train_epoch_without_a_step_trains_op_by_op(backend):
    X, y = gk.data.spiral()
    model = gk.nn.MLP([2, 16, 3], seed=0)
    optimizer = gk.optim.Adam(model.parameters(), lr=1e-2)
    loader = gk.data.DataLoader(X, y, batch_size=64, seed=0)
    history = [training.train_epoch(model, optimizer, loader) for _ in range(3)]
    assert history == train_epochs(captured=False)[0]


def test_fit_full_batch_captured_equals_eager(backend):
    X, y = gk.data.spiral()
    results = []
    for captured in (True, False):
        model = gk.nn.MLP([2, 20, 3], activation="relu", seed=0)
        training.cs231n_init(model, seed=0)
        loss = training.fit_full_batch(model, gk.tensor(X), gk.tensor(y), lr=1.0, reg=1e-3,
                                       steps=30, captured=captured)
        results.append((loss, model.state_dict()))
    (loss, weights), (eager_loss, eager_weights) = results
    assert loss == eager_loss
    for key in weights:
        np.testing.assert_array_equal(weights[key], eager_weights[key], err_msg=key)


def test_demo_captured_and_eager_reach_equal_accuracies_and_losses(backend, tmp_path):
    results = [training.run_demo(out=tmp_path / way, settings=training.DemoSettings(
                   linear_steps=20, net_steps=40, hidden=20, captured=way == "captured"))
               for way in ("captured", "eager")]
    captured, eager = [{key: result[key] for key in ("linear_accuracy", "net_accuracy", "losses")}
                       for result in results]
    assert captured == eager
    assert [result["settings"]["captured"] for result in results] == [True, False]


def test_demo_eager_prints_what_the_captured_demo_prints(backend, tmp_path, capsys):
    printed = []
    for way in ("captured", "eager"):
        eager = ["--eager"] if way == "eager" else []
        assert cli.main(["demo", "--steps", "30", "--out", str(tmp_path / way), *eager]) == 0
        printed.append(capsys.readouterr().out.splitlines()[:3])  # not the seconds and path
    assert printed[0] == printed[1]


# -- Ctrl-C ---------------------------------------------------------------------------------
def interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Make Ctrl-C arrive at the end of ``epoch``'s last step, before its weights are saved."""
    real = training.train_epoch
    calls = []

    def train_epoch(*args):
        calls.append(1)
        result = real(*args)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(training, "train_epoch", train_epoch)


def test_ctrl_c_keeps_the_last_saved_weights(backend, tmp_path, monkeypatch, capsys):
    assert train(tmp_path / "one", backend.name, "--epochs", "1") == 0
    assert train(tmp_path / "two", backend.name, "--epochs", "2") == 0
    capsys.readouterr()
    interrupt_in_epoch(monkeypatch, 2)
    assert train(tmp_path / "cut", backend.name, "--epochs", "5") == 130
    err = capsys.readouterr().err
    weights = tmp_path / "cut" / read_metrics(tmp_path / "cut")["weights"]
    assert f"interrupted during epoch 2: the weights after epoch 1 are in {weights}" in err
    assert "Traceback" not in err
    saved, after_one = gk.load(weights), gk.load(tmp_path / "one" / weights.name)
    after_two = gk.load(tmp_path / "two" / weights.name)
    for key in saved:
        np.testing.assert_allclose(saved[key], after_one[key], rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(saved[k], after_two[k]) for k in saved)
    metrics = read_metrics(tmp_path / "cut")
    assert metrics["completed"] is False and len(metrics["epochs"]) == 1


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved(backend, tmp_path, monkeypatch, capsys):
    interrupt_in_epoch(monkeypatch, 1)
    assert train(tmp_path, backend.name) == 130
    assert "interrupted during epoch 1: no weights saved yet" in capsys.readouterr().err


def test_ctrl_c_in_the_demo_exits_130(tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "fit_full_batch", stop)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "gradkit: interrupted"


# -- one-line errors ------------------------------------------------------------------------
def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gradkit: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err


@pytest.mark.parametrize("argv,fragments", [
    (["train", "--dataset", "mnist"], ["unknown dataset 'mnist'", "spiral, digits"]),
    (["train", "--hidden", "100,,x"], ["argument --hidden", "'100,,x'"]),
    (["train", "--hidden", "100,0"], ["argument --hidden"]),
    (["train", "--lr", "0"], ["argument --lr: must be positive"]),
    (["train", "--lr", "fast"], ["argument --lr: expected a positive float, got 'fast'"]),
    (["train", "--lr", "inf"], ["argument --lr: must be finite, got 'inf'"]),
    (["train", "--lr", "nan"], ["argument --lr: must be positive, got 'nan'"]),
    (["demo", "--steps", "0"], ["argument --steps: must be positive"]),
    (["train", "--epochs", "0"], ["argument --epochs: must be positive"]),
    (["train", "--epochs", "2.5"], ["argument --epochs: expected a positive int"]),
    (["train", "--batch-size", "-4"], ["argument --batch-size: must be positive"]),
    (["train", "--backend", "nope"], ["unknown backend 'nope'"]),
    (["demo", "--backend", "nope"], ["unknown backend 'nope'"]),
    (["demo", "--seed", "x"], ["argument --seed"]),
    (["train", "--seed", "-1"], ["argument --seed: expected an integer >= 0, got '-1'"]),
    (["train", "--optimizer", "sgd", "--momentum", "1.5"], ["--momentum: must be in [0, 1)"]),
    (["train", "--momentum", "0.9"], ["--momentum: applies to --optimizer sgd only"]),
    (["train", "--activation", "swish"], ["unknown activation 'swish'"]),
    (["train", "--optimizer", "rmsprop"], ["invalid choice: 'rmsprop'"]),
    (["train", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    (["launch"], ["invalid choice: 'launch'"]),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, fragments):
    assert cli.main([*argv, *(["--out", str(tmp_path)] if argv[0] != "launch" else [])]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, *fragments)
    assert not (tmp_path / "metrics.json").exists()


def test_missing_and_malformed_files_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x01" + bytes(8))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + bytes(4))
    (tmp_path / "a-file").write_text("")
    cases = [
        (["--dataset", str(tmp_path / "missing.npz")], "missing.npz: no such file"),
        (["--dataset", str(tmp_path / "junk.npz")], "junk.npz: not a readable .npz archive"),
        (["--dataset", str(tmp_path)], "train-images-idx3-ubyte: magic number 0x00000801"),
        (["--out", str(tmp_path / "a-file")], f"output directory {tmp_path / 'a-file'} is a file"),
    ]
    for extra, fragment in cases:
        argv = ["train", "--epochs", "1", "--out", str(tmp_path / "run"), *extra]
        assert cli.main(argv) == 2, extra
        assert_one_line_error(capsys.readouterr().err, fragment)


@pytest.mark.parametrize("command,missing", [("demo", "matplotlib"), ("train", "matplotlib"),
                                             ("train", "tqdm")])
def test_missing_cli_extras_say_what_to_install(tmp_path, monkeypatch, capsys, command, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    assert cli.main([command, "--out", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"needs {missing}", 'pip install "gradkit[cli]"')


@pytest.mark.parametrize("argv,fragment", [
    (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "--hidden", "ten"], "argument --hidden"),
])
def test_the_installed_command_reports_errors_in_one_line(tmp_path, argv, fragment):
    result = subprocess.run([sys.executable, "-m", "gradkit", *argv, "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1],
                            env={**os.environ, "GRADKIT_BACKEND": "numpy"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, fragment)


def test_example_names_a_bad_seed(capsys):
    assert cli.main(["example", "--seed", "-1"]) == 2
    assert_one_line_error(capsys.readouterr().err,
                          "argument --seed: expected an integer >= 0, got '-1'")


# -- checked before anything is allocated or trained ------------------------------------------
def count_epochs(monkeypatch) -> list[int]:
    """Record each call of train_epoch (which still trains)."""
    real, calls = training.train_epoch, []

    def train_epoch(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(training, "train_epoch", train_epoch)
    return calls


def test_a_model_too_big_for_this_machine_says_how_many_bytes(tmp_path, capsys):
    assert cli.main(["train", "--hidden", "1000000000000", "--out", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "2 -> 1000000000000 -> 3 MLP has "
                          "6000000000003 parameters", "bytes", "more than this machine's memory")
    assert list(tmp_path.iterdir()) == []


def test_the_memory_estimate_counts_weights_optimizer_state_and_activations():
    settings = training.TrainSettings(optimizer="adam", batch_size=32)
    training.check_model_fits([10, 1000, 10], settings, samples=300, memory=10**6)
    # 21010 parameters x 4 (weights, gradients, two Adam moments) + 3 x 32 x 1020 activations
    with pytest.raises(ValueError, match=r"21010 parameters; .* about 727840 bytes .*"
                                         r"more than this machine's memory \(683.6 KiB\)"):
        training.check_model_fits([10, 1000, 10], settings, samples=300, memory=700_000)


def test_a_label_far_above_the_sample_count_is_named(tmp_path, capsys):
    np.savez(tmp_path / "data.npz", x=np.zeros((5, 2)), y=np.array([0, 1, 2, 3, 10**12]))
    assert cli.main(["train", "--dataset", str(tmp_path / "data.npz"),
                     "--out", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys.readouterr().err, "label 1000000000000 (sample 4) would make "
                          "1000000000001 classes for 5 samples")


@pytest.mark.parametrize("labels,classes", [([0, 999, 1], 1000), ([0, 2999] + [1] * 298, 3000)])
def test_class_counts_up_to_the_limit_are_accepted(labels, classes):
    assert training.check_labels(np.array(labels), "toy") == classes
    with pytest.raises(ValueError, match=f"label {classes} .* at most {classes} here"):
        training.check_labels(np.array([*labels[:-1], classes]), "toy")


def test_an_unwritable_output_directory_is_found_before_training(backend, tmp_path, monkeypatch,
                                                                 capsys):
    out = tmp_path / "read-only"
    out.mkdir()
    real_open = os.open

    def open_read_only(path, flags, *args, **kwargs):
        if Path(path).parent == out and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", open_read_only)
    epochs = count_epochs(monkeypatch)
    assert train(out, backend.name) == 2
    assert_one_line_error(capsys.readouterr().err,
                          f"output directory {out}: cannot write there: read-only file system")
    assert epochs == [] and list(out.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="file permissions do not bind the superuser")
def test_an_output_directory_without_write_permission_is_found_before_training(
        backend, tmp_path, monkeypatch, capsys):
    out = tmp_path / "locked"
    out.mkdir(mode=0o500)
    epochs = count_epochs(monkeypatch)
    try:
        assert train(out, backend.name) == 2
    finally:
        out.chmod(0o700)
    assert_one_line_error(capsys.readouterr().err, f"{out}: cannot write there: permission denied")
    assert epochs == []


# -- training that fails: exit 1, one line, the last good weights kept -------------------------
def last_error_line(err: str) -> str:
    """The final line on stderr (the progress bar comes before it), checked to be an error."""
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("gradkit: error: "), err
    return line


def strict_json(path: Path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def fail_in_epoch(monkeypatch, epoch: int, failure) -> None:
    """Make epoch ``epoch`` end with ``failure()``: it returns (loss, accuracy) or raises."""
    real, calls = training.train_epoch, []

    def train_epoch(*args):
        calls.append(1)
        result = real(*args)
        return failure(result) if len(calls) == epoch else result
    monkeypatch.setattr(training, "train_epoch", train_epoch)


def test_a_loss_that_becomes_nan_stops_naming_the_epoch_and_keeps_the_weights(
        backend, tmp_path, monkeypatch, capsys):
    assert train(tmp_path / "one", backend.name, "--epochs", "1", "--optimizer", "sgd") == 0
    fail_in_epoch(monkeypatch, 2, lambda result: (float("nan"), result[1]))
    assert train(tmp_path / "run", backend.name, "--optimizer", "sgd") == 1
    line = last_error_line(capsys.readouterr().err)
    weights = tmp_path / "run" / training.weights_filename()
    assert "the loss became nan in epoch 2: training diverged at learning rate 0.1" in line
    assert "try a lower --lr (such as 0.01)" in line and "--keep-going" in line
    assert f"the weights after epoch 1 are in {weights}" in line
    metrics = strict_json(tmp_path / "run" / "metrics.json")
    assert [e["epoch"] for e in metrics["epochs"]] == [1] and metrics["completed"] is False
    saved, after_one = gk.load(weights), gk.load(tmp_path / "one" / weights.name)
    for key in saved:
        np.testing.assert_allclose(saved[key], after_one[key], rtol=1e-6, atol=1e-7)


def test_a_huge_learning_rate_exits_1_and_never_writes_nan(backend, tmp_path, capsys):
    assert train(tmp_path, backend.name, "--optimizer", "sgd", "--lr", "1e30") == 1
    line = last_error_line(capsys.readouterr().err)
    assert re.search(r"the (loss became \S+|weights became NaN or infinite) in epoch \d", line)
    if (tmp_path / "metrics.json").exists():
        strict_json(tmp_path / "metrics.json")


def test_keep_going_trains_on_and_writes_non_finite_values_as_null(backend, tmp_path, capsys):
    assert train(tmp_path, backend.name, "--optimizer", "sgd", "--lr", "1e30",
                 "--keep-going") == 0
    metrics = strict_json(tmp_path / "metrics.json")
    assert len(metrics["epochs"]) == 3 and metrics["completed"] is True
    assert any(entry["loss"] is None for entry in metrics["epochs"])


def test_running_out_of_memory_while_training_is_one_line_and_exit_1(backend, tmp_path,
                                                                     monkeypatch, capsys):
    def out_of_memory(result):
        raise MemoryError
    fail_in_epoch(monkeypatch, 2, out_of_memory)
    assert train(tmp_path, backend.name) == 1
    line = last_error_line(capsys.readouterr().err)
    assert "out of memory during epoch 2; the weights after epoch 1 are in" in line
    assert "smaller --hidden or --batch-size" in line



@pytest.mark.parametrize("writer", ["weights", "optimizer", "metrics"])
def test_a_disk_that_fills_up_stops_training_saying_what_each_file_holds(
        backend, tmp_path, monkeypatch, capsys, writer):
    owner, name = (gk, "save") if writer != "metrics" else (training, "write_json_atomically")
    real, calls = getattr(owner, name), []

    def write_until_full(*args, **kwargs):
        if not Path(args[1]).name.startswith(writer):  # (gk.save writes two files)
            return real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, write_until_full)
    assert train(tmp_path, backend.name) == 1
    line = last_error_line(capsys.readouterr().err)
    assert "No space left on device" in line
    weights = tmp_path / training.weights_filename()
    if writer == "weights":
        assert line.endswith(f"the weights after epoch 1 are in {weights} "
                             f"(metrics in {tmp_path / 'metrics.json'})")
    elif writer == "optimizer":
        assert line.endswith(f"the weights after epoch 2 are in {weights}, but "
                             f"{tmp_path / training.optimizer_filename()} and "
                             f"{tmp_path / 'metrics.json'} still describe epoch 1")
    else:
        assert line.endswith(f"the weights after epoch 2 are in {weights}, but "
                             f"{tmp_path / 'metrics.json'} still describes epoch 1")
    assert len(read_metrics(tmp_path)["epochs"]) == 1

# -- Ctrl-C while the files of an epoch are written ---------------------------------------------
@pytest.fixture
def ctrl_c_raises():
    """Python's Ctrl-C handler (KeyboardInterrupt) for the test, whatever the process
    inherited: a shell starts background jobs with SIGINT ignored, and then Python
    installs none, so a raised SIGINT would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("writer", ["weights", "metrics"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_ctrl_c_while_writing_leaves_the_files_and_the_message_in_agreement(
        backend, tmp_path, monkeypatch, capsys, writer, when, ctrl_c_raises):
    for epochs in (1, 2):
        assert train(tmp_path / f"after-{epochs}", backend.name, "--epochs", str(epochs)) == 0
    owner, name = (gk, "save") if writer == "weights" else (training, "write_json_atomically")
    real, calls = getattr(owner, name), []

    def write_with_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and when == "before":
            signal.raise_signal(signal.SIGINT)
        result = real(*args, **kwargs)
        if len(calls) == 2 and when == "after":
            signal.raise_signal(signal.SIGINT)
        return result
    monkeypatch.setattr(owner, name, write_with_ctrl_c)
    assert train(tmp_path / "cut", backend.name, "--epochs", "5") == 130
    err = capsys.readouterr().err
    done = int(re.search(r"the weights after epoch (\d+) are in", err).group(1))
    metrics = read_metrics(tmp_path / "cut")
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, done + 1))
    saved = gk.load(tmp_path / "cut" / metrics["weights"])
    expected = gk.load(tmp_path / f"after-{done}" / metrics["weights"])
    for key in saved:
        np.testing.assert_allclose(saved[key], expected[key], rtol=1e-6, atol=1e-7)
    assert not list((tmp_path / "cut").glob(".*.tmp"))
