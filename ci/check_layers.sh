#!/usr/bin/env bash
# gradkit's import architecture (DESIGN.md "Layers"): the import-linter contracts of
# .importlinter (layers, forbidden) and no import cycle anywhere (ci/check_import_cycles.py,
# grimp), and no module reads another's private names (ci/check_private_names.py).
# Imports inside functions count in the first two. Installs import-linter (which brings
# grimp) when it is missing. The checkout's gradkit is analysed, not an installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import importlinter, grimp" 2>/dev/null; then
  python -m pip install --quiet "import-linter>=2.1"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
lint-imports --config .importlinter --no-cache
python ci/check_import_cycles.py gradkit
python ci/check_private_names.py gradkit
