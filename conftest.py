"""Collection rules for the whole run (tests/ and the doctests of gradkit/)."""
from __future__ import annotations

import pytest
from _pytest.doctest import DoctestItem

# gradkit/backends/numba/kernels.py imports numba at the top (the Numba backend loads
# it on first use); where numba is missing there is nothing in it to collect.
collect_ignore: list[str] = []
try:
    import numba  # noqa: F401
except ImportError:
    collect_ignore.append("gradkit/backends/numba/kernels.py")


# Docstring examples that need an optional extra (a GPU machine may lack them).
DOCTEST_NEEDS = {"gradkit.training.": ("matplotlib", "tqdm"),
                 "gradkit.serialization.save": ("safetensors",)}


def pytest_collection_modifyitems(config, items):
    import importlib.util
    for item in items:
        if not isinstance(item, DoctestItem):
            continue
        for prefix, modules in DOCTEST_NEEDS.items():
            missing = [m for m in modules if importlib.util.find_spec(m) is None]
            if item.name.startswith(prefix) and missing:
                item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(missing)}"))


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
