#!/usr/bin/env bash
# The checks besides the tests (sets up .venv first if needed): style (ruff), types (mypy), the
# architecture's import contracts (import-linter, pyproject.toml) and the documentation site.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
status=0
run() { echo "+ $*" >&2; "$@" || status=1; }
run .venv/bin/ruff check --no-cache --quiet
run .venv/bin/mypy
run .venv/bin/lint-imports --no-cache
# NO_MKDOCS_2_WARNING: mkdocs-material's banner about MkDocs 2, printed on every build.
run env NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
exit $status
