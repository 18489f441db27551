"""The gradkit command: example and info (issue 4 adds demo/train/bench)."""
from __future__ import annotations

import os
import subprocess
import sys

from gradkit import cli


def test_example_prints_a_loss_and_its_gradients(capsys):
    assert cli.main(["example"]) == 0
    out = capsys.readouterr().out
    assert "loss = " in out and "d loss / d w1: shape (4, 16)" in out
    assert "gradcheck (float64, central differences): ok" in out


def test_info_lists_every_backend_with_its_state(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy    available" in out
    assert "cuda " in out and ("unavailable: " in out or "cuda:0" in out)
    assert "libraries: numpy " in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: gradkit" in capsys.readouterr().out


def test_python_dash_m_gradkit_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "gradkit", "info"], capture_output=True,
                            text=True, env={**os.environ, "GRADKIT_BACKEND": "numpy"})
    assert result.returncode == 0, result.stderr
    assert "default backend: numpy" in result.stdout
