#!/usr/bin/env bash
# Grade the bundled example submissions: writes grader-report/report.csv and grader-report/feedback/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
.venv/bin/grader run examples/cifar2/submissions -o grader-report/report.csv "$@"
echo
cat grader-report/report.csv
