"""Backends as a user meets them: selection, mixing, moving, and a third-party backend.

The third-party backend is built on array-api-strict (tests/strict_backend.py) and
registers no kernels, so every op runs its reference forward on that library.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

# the third-party backend is built on the test extra's array-api-strict
pytest.importorskip("array_api_strict")

import gradkit as gk  # noqa: E402
from gradkit import backends  # noqa: E402


def test_every_op_conforms_on_a_backend_without_kernels():
    """Forward and VJP of every op on array-api-strict agree with NumPy (1e-10 / 1e-5)."""
    assert gk.testing.check_backend("strict") > 1000


def test_conformance_check_reports_a_wrong_kernel():
    wrong = backends.get("strict")
    try:
        wrong.register_kernel("exp", lambda x: wrong.xp.exp(x) * 1.001)
        with pytest.raises(gk.testing.ConformanceError, match=r"exp sample 0 \(float64\): worst at"):
            gk.testing.check_backend("strict", ops=["exp"])
    finally:
        wrong.unregister_kernel("exp")
    assert gk.testing.check_backend("strict", ops=["exp"]) > 0  # the reference again


def test_a_kernel_factory_gets_the_op_and_its_reference_on_first_use():
    backend = backends.get("strict")
    seen = []

    def exp_factory(backend_, op, reference):
        seen.append((backend_, op.name))
        return lambda x: reference(x) * 2
    backend.register_kernel_factory("exp", exp_factory)
    try:
        assert seen == []  # made lazily
        for _ in range(2):
            y = gk.exp(gk.tensor([0.0, 1.0], backend="strict"))
            np.testing.assert_allclose(y.numpy(), 2 * np.exp([0.0, 1.0]), rtol=1e-6)
        assert seen == [(backend, "exp")]  # once per op
    finally:
        backend.unregister_kernel("exp")
    np.testing.assert_allclose(gk.exp(gk.tensor([1.0], backend="strict")).numpy(), np.e,
                               rtol=1e-6)


def test_training_step_on_the_third_party_backend():
    rng = np.random.default_rng(0)
    with gk.use_backend("strict"):
        w = gk.tensor(rng.standard_normal((4, 3)), requires_grad=True)
        x = gk.tensor(rng.standard_normal((8, 4)))
        labels = gk.tensor(rng.integers(0, 3, size=8))
        loss = gk.nn.functional.cross_entropy(gk.relu(x @ w), labels)
        loss.backward()
    assert w.backend == "strict" and w.grad.backend == "strict"
    expected = gk.grad(lambda w_: gk.nn.functional.cross_entropy(
        gk.relu(gk.tensor(x.numpy(), backend="numpy") @ w_), gk.tensor(labels.numpy(), backend="numpy"))
    )(gk.tensor(w.numpy(), backend="numpy"))
    np.testing.assert_allclose(w.grad.numpy(), expected.numpy(), rtol=1e-12)


def test_mixing_backends_names_both_and_the_fix():
    a = gk.tensor([1.0, 2.0], backend="numpy")
    b = gk.tensor([1.0, 2.0], backend="strict")
    with pytest.raises(gk.BackendError) as info:
        a + b
    message = str(info.value)
    assert message.startswith("add: operands live on different backends (numpy and strict)")
    assert "numpy float32 (2,)" in message and "strict float32 (2,)" in message
    assert ".to('numpy')" in message


def test_gradient_flows_back_across_a_move():
    x = gk.tensor([1.0, -2.0, 3.0], requires_grad=True, backend="numpy")
    y = x.to("strict")
    assert y.backend == "strict" and y.requires_grad
    (gk.exp(y) * 2).sum().backward()
    assert x.grad.backend == "numpy"
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([1.0, -2.0, 3.0]), rtol=1e-6)
    assert x.to("numpy") is x


def test_tensor_backend_argument_and_use_backend():
    assert gk.tensor([1.0], backend="strict").backend == "strict"
    with gk.use_backend("strict"):
        assert gk.get_backend().name == "strict"
        assert gk.zeros(3).backend == "strict" and gk.tensor([1.0]).backend == "strict"
    assert gk.tensor([1.0]).backend != "strict"


def test_use_backend_is_per_thread():
    seen = {}
    barrier = threading.Barrier(2, timeout=30)  # a thread that fails breaks it, never hangs

    def work(name):
        with gk.use_backend(name):
            barrier.wait()
            seen[name] = gk.zeros(1).backend

    threads = [threading.Thread(target=work, args=(n,)) for n in ("numpy", "strict")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"numpy": "numpy", "strict": "strict"}


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(gk.BackendError, match=r"unknown backend 'tpu'.*'numpy'"):
        gk.tensor([1.0], backend="tpu")


def test_an_unavailable_backend_says_why():
    class Missing(backends.Backend):
        name = "missing"

        def unavailable_reason(self):
            return "libmissing is not installed (pip install libmissing)"

    backends.register_backend("missing", Missing)
    try:
        with pytest.raises(gk.BackendError, match=r"'missing' is unavailable: libmissing .*pip install"):
            gk.set_backend("missing")
        assert "pip install libmissing" in backends.available()["missing"]
    finally:
        backends.unregister_backend("missing")


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, timeout=120)


def test_gradkit_backend_is_read_when_first_needed_not_at_import():
    result = _run_python("""
        import gradkit as gk
        print("imported")
        gk.tensor([1.0])
    """, GRADKIT_BACKEND="nonsense")
    assert result.stdout.startswith("imported")
    assert "unknown backend 'nonsense'" in result.stderr


def test_gradkit_backend_fallback_list_and_info_log():
    result = _run_python("""
        import logging
        logging.basicConfig(level=logging.INFO)
        import gradkit as gk
        print(gk.tensor([1.0]).backend, gk.zeros(1).backend)
    """, GRADKIT_BACKEND="nonsense,numpy")
    assert result.stdout.strip() == "numpy numpy", result.stderr
    assert result.stderr.count("gradkit backend: numpy") == 1


def test_entry_point_registers_a_backend(tmp_path):
    dist = tmp_path / "strictplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: strictplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[gradkit.backends]\nplugin = strict_backend:ArrayApiStrictBackend\n")
    tests_dir = os.path.dirname(__file__)
    result = _run_python("""
        import gradkit as gk
        x = gk.tensor([1.0, 2.0], backend="plugin")
        print(type(x.data).__module__.split(".")[0], gk.backends.available()["plugin"])
    """, PYTHONPATH=os.pathsep.join([str(tmp_path), tests_dir, os.environ.get("PYTHONPATH", "")]))
    assert result.stdout.split() == ["array_api_strict", "None"], result.stderr


@pytest.mark.parametrize("spec", [",", "numba,,numpy", "numpy,", " "])
def test_gradkit_backend_with_an_empty_entry_says_what_it_holds_and_what_is_allowed(
        monkeypatch, spec):
    monkeypatch.setenv("GRADKIT_BACKEND", spec)
    with pytest.raises(gk.BackendError) as info:
        backends._from_environment()
    message = str(info.value)
    assert f"GRADKIT_BACKEND={spec!r}" in message and "empty entry" in message
    assert "'numba'" in message and "'numpy'" in message
