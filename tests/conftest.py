"""One suite, run once per backend.

The autouse ``backend`` fixture is parametrised by every backend this machine can
use (or by those named in GRADKIT_BACKEND when it is set, e.g. ``cuda``), so each
test runs on each of them with that backend as the default.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import gradkit as gk
from gradkit import backends
from emulated_cuda_backend import EmulatedCudaBackend
from strict_backend import ArrayApiStrictBackend

# A third-party backend, registered through the public API like a user would.
backends.register_backend("strict", ArrayApiStrictBackend)
# The CUDA backend's code on emulated CuPy arrays and kernels (GRADKIT_BACKEND=cuda_emulated).
backends.register_backend("cuda_emulated", EmulatedCudaBackend)
TEST_ONLY_BACKENDS = ("strict", "cuda_emulated")

# tests/mpi runs on several ranks, under mpiexec (ci/distributed_tests.sh); a plain run
# of the suite leaves it out rather than skipping it test by test.
from gradkit.distributed.world import launched_by_mpi  # noqa: E402

collect_ignore = [] if launched_by_mpi() else ["mpi"]


def _backends_under_test() -> list[str]:
    """GRADKIT_BACKEND's first choice when set, else every built-in backend usable here.

    The test-only backends run when named: "strict" is exercised by
    test_third_party_backend.py (its pure-Python array library is too slow to rerun
    the whole suite on); "cuda_emulated" by test_cuda_backend.py and by CI's run of
    the whole suite with GRADKIT_BACKEND=cuda_emulated.
    """
    chosen = os.environ.get("GRADKIT_BACKEND")
    if chosen:
        return [backends.get(name.strip()).name for name in chosen.split(",")[:1]]
    return [name for name, reason in backends.available().items()
            if reason is None and name not in TEST_ONLY_BACKENDS]


BACKENDS = _backends_under_test()


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request):
    """The backend this test runs on; it is the default backend inside the test."""
    with gk.use_backend(request.param) as chosen:
        yield chosen


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
