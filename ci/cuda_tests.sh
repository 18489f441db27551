#!/usr/bin/env bash
# The CUDA backend without a GPU (run inside the test venv, GRADKIT_NVRTC exported):
#   1. -m cuda_kernels: every kernel against its op's reference in the CPU emulator, in
#      its normal and tiny-grid modes; the emulator's own checks; the NVRTC compile
#      (tests/test_cuda_compile.py). Fails if any of them skipped: a skip here means
#      no C++ compiler or no NVRTC, and then nothing above was proven.
#   2. the engine, optimizer, nn, capture and op-table tests on GRADKIT_BACKEND=cuda_emulated:
#      the CUDA backend's own Python code on emulated CuPy arrays (no writeable flag, no
#      implicit host conversion) and emulated kernels. Emulated, not GPU coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
timeout 600 python -m pytest -q -p no:cacheprovider -p no:randomly -rs -m cuda_kernels \
  tests/test_cuda_kernels.py tests/test_cuda_emulator.py tests/test_cuda_compile.py | tee "$log"
if grep -qE "^SKIPPED|[0-9]+ skipped" "$log"; then
  echo "cuda_tests: kernel tests were skipped (see the reasons above); CI needs them to run" >&2
  exit 1
fi
GRADKIT_BACKEND=cuda_emulated timeout 900 python -m pytest -q -p no:cacheprovider \
  -m "not cuda_kernels" tests/test_engine.py tests/test_optim.py tests/test_nn.py \
  tests/test_activations_losses.py tests/test_capture.py tests/test_transforms.py \
  tests/test_tensor.py tests/test_ops.py tests/test_cuda_backend.py tests/test_engine_edges.py \
  tests/test_errors.py
echo "cuda_tests: kernels emulated in both grid modes, NVRTC compile, backend code on emulated CuPy"
