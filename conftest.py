"""Collection rules for the whole run (tests/ and the doctests of gradkit/)."""
from __future__ import annotations

import pytest
from _pytest.doctest import DoctestItem

# gradkit/backends/numba_kernels.py imports numba at the top (the Numba backend loads
# it on first use); where numba is missing there is nothing in it to collect.
collect_ignore: list[str] = []
try:
    import numba  # noqa: F401
except ImportError:
    collect_ignore.append("gradkit/backends/numba_kernels.py")


@pytest.fixture(autouse=True)
def _doctests_run_on_numpy(request):
    """The docstrings' examples show the default backend, whatever GRADKIT_BACKEND
    names for the suite (which tests/conftest.py runs every test on)."""
    if isinstance(request.node, DoctestItem):
        import gradkit as gk
        with gk.use_backend("numpy"):
            yield
    else:
        yield
