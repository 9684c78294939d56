"""`grader gradescope ASSIGNMENT -o autograder.zip`: the Gradescope autograder bundle.

The zip holds what Gradescope asks for at its root (`setup.sh`, `run_autograder`), the grader's
own source with its dependencies pinned to the versions installed here, the assignment folder,
and the reference solution, which ships only inside this bundle, never to students.
`run_autograder` grades the one uploaded submission with `grader run --format gradescope`, so a
Gradescope score is the score `grader run` gives the same file.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
import zipfile
from pathlib import Path

from rich.console import Console

import grader
from grader.assignment import BUNDLED_ASSIGNMENTS, Assignment
from grader.errors import GraderError, ReferenceSolutionError

SOURCE = "grader-src"  # the grader's source inside the bundle, installed by setup.sh

_PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

VENV = "/opt/grader"  # where setup.sh installs Python and grader: outside the source folder, readable by the children's uids

SETUP_SH = f"""\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image: install Python 3.11+,
# bubblewrap (the sandbox for student code) and grader with its pinned dependencies into a venv
# at {VENV} (GRADER_VENV moves it), where the unprivileged uids student code runs as can read
# it; the source folder, with the reference solution, is then closed to everyone but root.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
umask 022
cd "$(dirname "${{BASH_SOURCE[0]}}")"
run() {{ if [ -n "${{DRY_RUN:-}}" ]; then echo "+ $*"; else "$@"; fi; }}
venv=${{GRADER_VENV:-{VENV}}}

export DEBIAN_FRONTEND=noninteractive
run apt-get update
# bubblewrap cannot create its namespaces in most Docker containers; grader then isolates each
# child with Landlock, seccomp (libseccomp2) and an unprivileged uid instead.
run apt-get install -y --no-install-recommends bubblewrap libseccomp2 || echo "note: bubblewrap not installed" >&2
python=
for candidate in python3.13 python3.12 python3.11 python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    python=$candidate; break
  fi
done
if [ -z "$python" ]; then
  run apt-get install -y --no-install-recommends python3.11 python3.11-venv
  python=python3.11
fi
run apt-get install -y --no-install-recommends "$(basename "$python")-venv" || true

run "$python" -m venv "$venv"
run "$venv/bin/python" -m pip install --upgrade pip
# CPU wheels of torch: Gradescope has no GPU, and the default wheels carry gigabytes of CUDA.
run "$venv/bin/python" -m pip install --index-url {_PYTORCH_CPU_INDEX} $(grep -E '^(torch|torchvision)==' requirements.txt) \\
  || echo "note: no CPU wheel of torch; pip installs the default one next" >&2
# Not editable: grader is copied into the venv, so the children never need the source folder.
run "$venv/bin/python" -m pip install -r requirements.txt ./{SOURCE}
run chmod 700 .
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission, as root: grade /autograder/submission against the
# bundled reference and write /autograder/results/results.json. Student code runs in children
# that can neither read the source folder (0700, and Landlock) nor write the results, and the
# results are written only once every process it started is gone. AUTOGRADER_ROOT moves
# /autograder and GRADER_PYTHON names a Python that imports grader (default: the venv setup.sh
# made), for testing elsewhere. GRADER_SANDBOX=none grades without isolation, on purpose only:
# on a kernel without Landlock grader otherwise refuses to grade.
set -uo pipefail
umask 022
root=${AUTOGRADER_ROOT:-/autograder}
source_dir="$root/source"
python=${GRADER_PYTHON:-${GRADER_VENV:-@VENV@}/bin/python}
results="$root/results"
mkdir -p "$results"
chmod 700 "$source_dir"
chmod go-w "$results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The upload becomes one student's folder, found as `grader run` finds a notebook in a folder
# (--layout plain: however the student named the files, never read as an LMS download).
mkdir -p "$work/submissions/submission"
cp -R "$root/submission/." "$work/submissions/submission/" 2>/dev/null || true
"$python" -m grader run "$work/submissions" -o "$work/report/report.csv" --format gradescope --layout plain \\
  --assignment "$source_dir/assignments/@NAME@" --reference "$source_dir/reference/@NAME@.py" --workers 1 \\
  --sandbox "${GRADER_SANDBOX:-auto}"
status=$?
# grader run has returned: every process student code started is gone (each child's run ends by
# killing what it started, and a stopped worker's uid is swept), so the results are final.
if [ -f "$work/report/gradescope/submission.json" ]; then
  cp "$work/report/gradescope/submission.json" "$results/results.json"
  exit 0
fi
cat > "$results/results.json" <<'EOF'
{"score": 0, "output": "The autograder failed before it could grade this submission. Please tell your instructor; \
the autograder output says why.", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
EOF
exit $(( status ? status : 1 ))
"""


def build_bundle(
    assignment: Assignment, output_zip: Path, reference_path: Path | None = None, console: Console | None = None
) -> Path:
    """Write the autograder zip for `assignment`; returns its path."""
    console = console or Console(stderr=True)
    reference_path = reference_path or assignment.default_reference_path()
    if not reference_path.is_file():
        raise ReferenceSolutionError(f"{reference_path}: reference solution not found (give one with --reference PATH)")
    _check_data_inside(assignment)
    checkout = Path(grader.__file__).resolve().parent.parent
    pyproject = checkout / "pyproject.toml"
    if not pyproject.is_file():
        raise GraderError(f"{pyproject} not found: build the bundle from a checkout of grader (pip install -e .)")
    run_autograder = RUN_AUTOGRADER.replace("@NAME@", assignment.name).replace("@VENV@", VENV)
    output_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output_zip, "w", zipfile.ZIP_DEFLATED) as bundle:
        _add_text(bundle, "setup.sh", SETUP_SH, executable=True)
        _add_text(bundle, "run_autograder", run_autograder, executable=True)
        _add_text(bundle, "requirements.txt", pinned_requirements(pyproject))
        for name in ("pyproject.toml", "README.md"):
            bundle.write(checkout / name, f"{SOURCE}/{name}")
        _add_tree(bundle, checkout / "grader", f"{SOURCE}/grader")
        _add_tree(bundle, assignment.folder, f"assignments/{assignment.name}")
        bundle.write(reference_path, f"reference/{assignment.name}.py")
    console.print(
        f"Wrote {output_zip}: upload it as the autograder of a Gradescope programming assignment worth "
        f"{assignment.max_total:g} points.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return output_zip


def pinned_requirements(pyproject: Path) -> str:
    """One `name==version` line per dependency of grader, at the version installed here (what
    the tests ran with); a dependency not installed keeps its range from pyproject.toml."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    lines = []
    for requirement in dependencies:
        name = re.split(r"[^A-Za-z0-9_.-]", requirement, maxsplit=1)[0]  # the distribution's name
        try:
            version = importlib.metadata.version(name).split("+")[0]  # 2.3.0+cpu: the local label is the index's
        except importlib.metadata.PackageNotFoundError:
            lines.append(requirement)
        else:
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def _check_data_inside(assignment: Assignment) -> None:
    if assignment.data.root is None:
        return
    root = (assignment.folder / assignment.data.root).resolve()
    if not root.is_relative_to(assignment.folder.resolve()):
        raise GraderError(
            f"{assignment.config_path}: data.root {assignment.data.root!r} lies outside the assignment folder; "
            "the bundle ships only that folder, so move the data into it"
        )


def _add_text(bundle: zipfile.ZipFile, name: str, text: str, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    bundle.writestr(info, text)


def _add_tree(bundle: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        # (not the package's link to every shipped assignment: the bundle carries its own)
        skipped = ("__pycache__", BUNDLED_ASSIGNMENTS)
        if path.is_file() and not any(part.startswith(".") or part in skipped for part in parts):
            bundle.write(path, f"{prefix}/{'/'.join(parts)}")
