"""tests/mpi: run by every rank of ``mpiexec -n N python -m pytest tests/mpi -p no:randomly``
(ci/distributed_tests.sh). Every rank must run the same tests in the same order, so
pytest-randomly is off (-p no:randomly); outside mpiexec the whole folder skips."""
from pathlib import Path

import pytest

try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # (this hook sees the whole session's items: touch only those of tests/mpi)
    items = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not items:
        return
    import gradkit.distributed as dist
    if not HAVE_MPI4PY:
        reason = "mpi4py is not installed (pip install '.[distributed]'; ci/distributed_tests.sh)"
    elif not dist.launched_by_mpi():
        reason = ("multi-rank test: run under mpiexec -n 2 or -n 3 "
                  "(bash ci/distributed_tests.sh)")
    else:
        dist.init(timeout=20)
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))
