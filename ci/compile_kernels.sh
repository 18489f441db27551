#!/usr/bin/env bash
# Compiles every kernels/*.cu to PTX with nvcc (no GPU needed), so a kernel that
# does not build fails CI. Fails if nvcc is missing while kernels exist.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
sources=(kernels/*.cu)
if [ ${#sources[@]} -eq 0 ]; then
  echo "compile_kernels: no kernels/*.cu yet"
  exit 0
fi
command -v nvcc >/dev/null || { echo "compile_kernels: nvcc not found" >&2; exit 1; }
out=$(mktemp -d)
for src in "${sources[@]}"; do
  nvcc --ptx -arch=compute_80 -o "$out/$(basename "${src%.cu}").ptx" "$src"
  echo "compiled $src"
done
