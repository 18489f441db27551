#!/usr/bin/env bash
# The multi-rank tests of gk.distributed, on this machine's CPUs (no GPU needed):
#   1. installs the test, cli and distributed extras (mpi4py + the mpich wheel, which
#      ships mpiexec) into the current Python environment when they are missing, and
#      puts this checkout first on PYTHONPATH, so the tests run this checkout's code
#      whatever gradkit the environment holds (an editable install stays editable)
#   2. tests/test_distributed.py in one process: world of one, sharded loading, the
#      NCCL engine on a fake communicator, and jobs it launches itself with mpiexec
#      (a raising rank stops all, timeouts, `gradkit train` on 2 ranks vs 1 process)
#   3. tests/mpi under `mpiexec -n 2` and `mpiexec -n 3`: collectives on every dtype and
#      shape, DataParallel equal to one process on the combined batch
# Each step runs under `timeout`, so a hang fails CI instead of stalling it. Idempotent;
# about 30 s on 2 cores once the packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYBIN="$(dirname "$(python -c 'import sys; print(sys.executable)')")"
if ! python -c "import mpi4py, pytest, hypothesis, tqdm, matplotlib" 2>/dev/null \
    || { [ ! -x "$PYBIN/mpiexec" ] && ! command -v mpiexec >/dev/null; }; then
  python -m pip install --quiet ".[test,cli,distributed]"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
MPIEXEC="$(dirname "$(python -c 'import sys; print(sys.executable)')")/mpiexec"
[ -x "$MPIEXEC" ] || MPIEXEC="$(command -v mpiexec)"
echo "distributed tests with $("$MPIEXEC" --version 2>/dev/null | head -n 1 || echo "$MPIEXEC")"

# pytest-randomly is off: every rank must run the same tests in the same order.
timeout 150 python -m pytest -q -p no:randomly tests/test_distributed.py
for ranks in 2 3; do
  echo "tests/mpi on $ranks ranks"
  timeout 120 "$MPIEXEC" -n "$ranks" python -m pytest -q -p no:randomly \
    -p no:cacheprovider tests/mpi
done
echo "distributed tests: all passed"
