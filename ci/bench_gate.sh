#!/usr/bin/env bash
# The short benchmark run (small and medium MLP steps, every CPU backend, the NumPy
# floor) and the regression gate on ratios to the floor (ci/bench_gate.py).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --quiet ".[bench]"
out=$(mktemp -d)
GRADKIT_BENCH_QUICK=1 python -m pytest bench/test_mlp_step.py -k paired -q -p no:cacheprovider \
  --benchmark-json="$out/bench-quick.json" --benchmark-columns=median,iqr,rounds
python ci/bench_gate.py "$out/bench-quick.json" bench/results/baseline-quick-cpu.json
