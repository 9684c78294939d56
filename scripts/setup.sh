#!/usr/bin/env bash
# Create .venv and install grader with its test, lint and docs dependencies; re-installs when pyproject.toml changes.
# Sourced by demo.sh and test.sh, so each of them sets itself up on a fresh machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# System packages: bubblewrap (the sandbox for student code; its tests need it), procps
# (pgrep, used by the tests) and chromium (headless, the HTML report's browser tests). Installed
# when we may (root with apt-get); otherwise said plainly.
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-liberation)  # fonts: only recommended, and we skip recommends
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${need[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >/dev/null \
      || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
  else
    echo "note: ${need[*]} missing; install it (Debian/Ubuntu: sudo apt-get install ${need[*]}). Without bubblewrap" \
      "student code runs with process limits only, and the sandbox tests fail; without chromium the browser tests are skipped." >&2
  fi
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
  echo "grader needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$python" --version) ..." >&2
  "$python" -m venv .venv
fi
stamp=.venv/.grader-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing grader and its dependencies into .venv (torch takes a minute or two) ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test,lint,docs]'
  echo "$wanted" > "$stamp"
fi
