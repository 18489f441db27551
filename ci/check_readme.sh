#!/usr/bin/env bash
# Fails when the test command in .ci/run is not, verbatim, a line of README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command=$(grep -A1 "^# The README's test command, exactly:" .ci/run | tail -n 1)
if ! grep -qxF "$command" README.md; then
  echo "README.md does not contain the test command CI runs: $command" >&2
  exit 1
fi
echo "README test command: $command"
