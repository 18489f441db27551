"""Collection rules for the whole run (tests/ and the doctests of gradkit/)."""
from __future__ import annotations

# gradkit/backends/numba_kernels.py imports numba at the top (the Numba backend loads
# it on first use); where numba is missing there is nothing in it to collect.
collect_ignore: list[str] = []
try:
    import numba  # noqa: F401
except ImportError:
    collect_ignore.append("gradkit/backends/numba_kernels.py")
