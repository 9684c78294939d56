#!/usr/bin/env bash
# Run the test suite (sets up .venv first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# The tests run on up to 4 cores at once (pytest-xdist), one test file per process so that a file's
# shared fixtures (a class graded once, then inspected by many tests) run once; `-n 0` runs them in
# this process.
parallel=()
case " $* " in
  *" -n"*|*" --numprocesses"*|*"no:xdist"*) ;;
  *) cores=$(nproc 2>/dev/null || echo 2); parallel=(-n "$(( cores < 4 ? cores : 4 ))" --dist loadfile) ;;
esac
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
