#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: what gradkit's CUDA backend does there.
#
#   bash ci/gpu_check.sh LOG_DIR
#
# Runs from the checkout (PYTHONPATH=$PWD; nothing is installed), in order of value,
# each step under a timeout, one summary line per step, each step's output in
# LOG_DIR/<step>.log and the summary in LOG_DIR/summary.txt. Under 8 minutes on one GPU.
# On a machine without a GPU it says so in one line and exits 0 after the CPU steps
# (versions; NVRTC compile where a libnvrtc is found; the kernel tests on the emulator).
# Packages the GPU machine may lack (hypothesis, array-api-strict, matplotlib,
# safetensors) make their tests skip with the reason; the log says which.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:?usage: bash ci/gpu_check.sh LOG_DIR}
mkdir -p "$logs"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
summary=$logs/summary.txt
: >"$summary"
failed=0

# step NAME SECONDS COMMAND...: run, log, and print "NAME: ok|FAILED (exit N)|TIMED OUT, Ns"
step() {
  local name=$1 limit=$2; shift 2
  local start=$SECONDS status
  timeout --kill-after=10 "$limit" "$@" >"$logs/$name.log" 2>&1
  status=$?
  local took=$((SECONDS - start)) verdict
  case $status in
    0) verdict="ok" ;;
    124|137) verdict="TIMED OUT after ${limit}s"; failed=1 ;;
    *) verdict="FAILED (exit $status)"; failed=1 ;;
  esac
  local last
  last=$(grep -E "passed|failed|error|PASS|FAIL|skipped" "$logs/$name.log" | tail -n 1)
  echo "$name: $verdict, ${took}s${last:+ -- $last}" | tee -a "$summary"
}

step versions 60 "$python" - <<'EOF'
import datetime, platform, subprocess, sys
print("date", datetime.datetime.now(datetime.timezone.utc).isoformat())
print("python", sys.version.split()[0], platform.machine())
for name in ("numpy", "cupy", "numba", "torch", "jax", "pytest", "hypothesis"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as exc:
        print(name, "missing:", type(exc).__name__, exc)
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
except FileNotFoundError:
    print("nvidia-smi: not found")
import gradkit as gk
from gradkit.cli import info
info()
EOF

has_gpu=$("$python" -c "import gradkit as gk; print(int(gk.backends.available()['cuda'] is None))" 2>/dev/null || echo 0)

# NVRTC with CuPy's options: GRADKIT_NVRTC, else a CUDA Toolkit's, else the pip wheels
nvrtc=${GRADKIT_NVRTC:-}
for dir in "${CUDA_PATH:-}" /usr/local/cuda; do
  if [ -z "$nvrtc" ] && [ -n "$dir" ] && ls "$dir"/lib64/libnvrtc.so* >/dev/null 2>&1; then
    nvrtc=$dir/lib64
  fi
done
if [ -n "$nvrtc" ] || "$python" -c "import sys; sys.path.insert(0, 'ci'); import nvrtc_compile as n; n.find_libraries()" 2>/dev/null; then
  step nvrtc_compile 120 "$python" ci/nvrtc_compile.py $nvrtc
else
  echo "nvrtc_compile: skipped, no libnvrtc found (set GRADKIT_NVRTC)" | tee -a "$summary"
fi
# every kernel against its op's reference: on CuPy with a GPU, else emulated
step kernel_tests 240 "$python" -m pytest -q -p no:cacheprovider -p no:randomly -m cuda_kernels \
  tests/test_cuda_kernels.py tests/test_cuda_backend.py tests/test_cuda_compile.py

if [ "$has_gpu" != 1 ]; then
  echo "no GPU here (gradkit's cuda backend is unavailable: see versions.log): the GPU steps did not run" \
    | tee -a "$summary"
  exit 0
fi

step suite_on_cuda 300 env GRADKIT_BACKEND=cuda "$python" -m pytest -q -p no:cacheprovider \
  -p no:randomly -x --maxfail=30 -m "not cuda_kernels" tests
step check_backend 120 "$python" -c \
  "import gradkit as gk; gk.testing.check_backend('cuda'); print('check_backend(cuda): ok')"
step benchmarks 240 "$python" -m pytest -q -p no:cacheprovider -p no:randomly bench/test_mlp_step.py \
  -k "cuda or torch or floor" --benchmark-json="$logs/bench.json" --benchmark-min-rounds=20
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    step "sanitizer_$tool" 180 compute-sanitizer --tool "$tool" --error-exitcode 1 \
      "$python" -m pytest -q -p no:cacheprovider -p no:randomly -m cuda_kernels tests/test_cuda_kernels.py \
      -k "float32 and (activation_forward or cross_entropy_forward or adam)"
  done
else
  echo "compute-sanitizer: not found, memcheck/racecheck skipped" | tee -a "$summary"
fi
exit $failed
