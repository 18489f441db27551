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


def _backends_under_test() -> list[str]:
    chosen = os.environ.get("GRADKIT_BACKEND")
    if chosen:
        return [backends.get(name.strip()).name for name in chosen.split(",")[:1]]
    return [name for name, reason in backends.available().items() if reason is None]


BACKENDS = _backends_under_test()


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request):
    """The backend this test runs on; it is the default backend inside the test."""
    with gk.use_backend(request.param) as chosen:
        yield chosen


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
