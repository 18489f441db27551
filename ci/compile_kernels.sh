#!/usr/bin/env bash
# Compiles every kernels/*.cu exactly as cupy.RawModule will on a GPU: through NVRTC,
# with the backend's options and name expressions plus the options CuPy adds, for
# CUDA 12 and CUDA 13 (ci/nvrtc_compile.py; no GPU, no CuPy, no CUDA toolkit needed).
#
# NVRTC comes from NVIDIA's wheels, installed with pip --target into a cache folder
# (reused when present; about 220 MB each), never into the test environment:
#   nvidia-cuda-nvrtc-cu12  CUDA 12's NVRTC (12.9: the last CUDA 12 release)
#   nvidia-cuda-nvrtc       CUDA 13's NVRTC (13.0: the oldest CUDA 13 cupy-cuda13x runs on)
# nvcc is not used: CuPy never compiles gradkit's kernels with it, and nvcc adds
# cuda_runtime.h and host headers by itself, so it passes code NVRTC rejects (INFINITY).
#
#   bash ci/compile_kernels.sh               install if needed, then check both
#   bash ci/compile_kernels.sh --print-dirs  install if needed, print the NVRTC folders
#                                            joined by ':' (for GRADKIT_NVRTC)
# The checker needs a Python with numpy (it imports gradkit's CUDA backend module):
# PYTHON, else python3 when it has numpy, else a venv made once in the cache folder.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pins, in one place: one wheel==version per CUDA major.
NVRTC_CU12="nvidia-cuda-nvrtc-cu12==12.9.86"
NVRTC_CU13="nvidia-cuda-nvrtc==13.0.88"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/gradkit-ci"
mkdir -p "$cache"

python=${PYTHON:-python3}
if ! "$python" -c "import numpy" 2>/dev/null; then
  if [ ! -x "$cache/checker-venv/bin/python" ]; then
    python3 -m venv "$cache/checker-venv" >&2
    "$cache/checker-venv/bin/python" -m pip install --quiet "numpy>=2.1" >&2
  fi
  python="$cache/checker-venv/bin/python"
fi

# $1: requirement (name==version); prints the folder it is installed in.
install_nvrtc() {
  local requirement=$1 name=${1%%==*} version=${1##*==}
  local dir="$cache/$name-$version"
  if [ ! -f "$dir/.installed" ]; then
    rm -rf "$dir"
    "$python" -m pip install --quiet --no-deps --target "$dir" "$requirement" >&2
    touch "$dir/.installed"
  fi
  echo "$dir"
}

cu12=$(install_nvrtc "$NVRTC_CU12")
cu13=$(install_nvrtc "$NVRTC_CU13")

if [ "${1:-}" = "--print-dirs" ]; then
  echo "$cu12:$cu13"
  exit 0
fi
"$python" ci/nvrtc_compile.py "$cu12" "$cu13" --expect-major 12 --expect-major 13
