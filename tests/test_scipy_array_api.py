"""SciPy's Array API mode on gradkit tensors: functions it computes with the namespace
differentiate; functions that fall back to NumPy are refused, never zero gradients.

SCIPY_ARRAY_API must be set before SciPy is imported, so each check runs in a fresh
interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk

pytest.importorskip("scipy")

SCRIPT = textwrap.dedent("""
    import json
    import scipy.special as sc
    import gradkit as gk

    x = gk.tensor([0.5, -1.0, 2.0], dtype="float64")
    weights = gk.tensor([1.0, 2.0, 3.0], dtype="float64")
    functions = {
        "expit": lambda v: sc.expit(v).sum(),
        "erf": lambda v: sc.erf(v).sum(),
        "logsumexp": lambda v: sc.logsumexp(v),
        "softmax": lambda v: (sc.softmax(v) * weights).sum(),
        "xlogy": lambda v: sc.xlogy(v, v * v).sum(),
    }
    results = {}
    for name, f in functions.items():
        try:
            results[name] = gk.grad(f)(x).tolist()
        except gk.GradkitError as exc:
            results[name] = [type(exc).__name__, isinstance(exc, TypeError), str(exc)]
    print(json.dumps(results))
""")


def test_gradients_through_scipy_in_array_api_mode(backend):
    root = str(Path(gk.__file__).resolve().parents[1])
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "GRADKIT_BACKEND": backend.name,
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.splitlines()[-1])

    x = np.array([0.5, -1.0, 2.0])
    softmax = np.exp(x) / np.exp(x).sum()
    weights = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(results["logsumexp"], softmax)
    np.testing.assert_allclose(results["softmax"], softmax * (weights - softmax @ weights))
    np.testing.assert_allclose(results["xlogy"], np.log(x * x) + 2)
    for falls_back_to_numpy in ("expit", "erf"):
        name, is_type_error, message = results[falls_back_to_numpy]
        assert name == "HostConversionError" and is_type_error
        assert "x.detach()" in message
