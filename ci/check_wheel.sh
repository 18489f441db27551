#!/usr/bin/env bash
# Builds the wheel and checks it holds the package, every kernels/*.cu and the digits data.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
python -m pip wheel --quiet --no-deps -w "$out" .
wheel=$(ls "$out"/gradkit-*.whl)
python - "$wheel" <<'PY'
import pathlib, sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [f"gradkit/kernels/{p.name}" for p in pathlib.Path("kernels").glob("*.cu")
           if f"gradkit/kernels/{p.name}" not in names]
missing += [n for n in ("gradkit/__init__.py", "gradkit/registry.py",
                          "gradkit/data/digits.csv.gz") if n not in names]
if missing:
    sys.exit(f"wheel {sys.argv[1]} lacks: {missing}")
print(f"wheel ok: {sys.argv[1]} ({len(names)} files)")
PY
