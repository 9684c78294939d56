"""`grader assign SOLUTION.ipynb`: an assignment from one instructor notebook.

Writes `assignments/<name>/` (assignment.toml, the student notebook, fixtures.json, and the
pull-request workflow github/grade.yml when there is none) and `reference/<name>.py` (see grader/authoring/solution.py for what each holds). Nothing final is
written until the outputs are verified, in a staging folder beside the assignment's: the
reference earns full marks against itself and against the fixtures, and the student notebook,
untouched, earns 0 with a reason for every check. A student notebook already in place is
replaced only with --force, unless it would stay the same.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from rich.console import Console
from rich.table import Table

from grader.assignment import Assignment, load_assignment
from grader.authoring.solution import (
    Derived,
    SolutionNotebook,
    config_text,
    config_where,
    derive,
    read_solution,
    reference_source,
    student_notebook,
)
from grader.commands.fixtures import write_verified_fixtures
from grader.errors import AssignmentConfigError, AuthoringError, ReferenceSolutionError
from grader.load import Submission
from grader.pipeline import grade_submission, open_worker
from grader.reference.check import verified_reference_expectations
from grader.results import GRADED, SubmissionResult

# The pull-request selfcheck workflow each assignment ships (README, "Pull requests (CI)").
WORKFLOW_TEMPLATE = Path(__file__).resolve().parent.parent / "authoring" / "grade.yml"
WORKFLOW_PLACEHOLDER = "__GRADER_ASSIGNMENT__"


@dataclass(frozen=True)
class AssignedFiles:
    folder: Path
    config: Path
    notebook: Path
    fixtures: Path
    reference: Path


def assign(
    solution_path: Path,
    output: Path | None = None,
    *,
    force: bool = False,
    sandbox: str = "auto",
    console: Console | None = None,
    reference_path: Path | None = None,
) -> AssignedFiles:
    """Turn the solution notebook into an assignment; AuthoringError (or the reference's own error)
    names what stops it, and then nothing is written. `reference_path`: where the reference module
    goes (see `_reference_path` for where it goes by default)."""
    console = console or Console(stderr=True)
    solution = read_solution(solution_path)
    default_name = output.name if output else re.sub(r"[-_.]?solutions?$", "", solution_path.stem) or solution_path.stem
    derived = derive(solution, default_name)
    folder = (output or _default_folder(solution_path, derived.name)).resolve()
    final = AssignedFiles(
        folder=folder,
        config=folder / "assignment.toml",
        notebook=folder / derived.notebook,
        fixtures=folder / "fixtures.json",
        reference=reference_path.resolve() if reference_path else _reference_path(folder, derived.name),
    )
    notebook = student_notebook(solution, derived)
    notebook_text = nbformat.writes(notebook) + "\n"
    _refuse_to_replace_a_handed_out_notebook(final.notebook, notebook, force)

    staging = folder.parent / f".{folder.name}.assign"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        staged = AssignedFiles(staging, staging / "assignment.toml", staging / derived.notebook, staging / "fixtures.json", staging / "reference.py")
        staged.config.write_text(config_text(solution, derived), encoding="utf-8")
        staged.notebook.write_text(notebook_text, encoding="utf-8")
        staged.reference.write_text(reference_source(solution, derived), encoding="utf-8")
        try:
            assignment = load_assignment(staging)
        except AssignmentConfigError as exc:
            raise AuthoringError(_refused_setting(solution, staged.config, exc)) from None
        try:
            reference, blank = _verify(assignment, staged, sandbox, settings_at=f"the config of {config_where(solution)}")
        except ReferenceSolutionError as exc:  # said of the solution, not of the temporary reference.py
            raise ReferenceSolutionError(str(exc).replace(str(staged.reference), f"the solution in {solution_path}")) from None
        console.print(_table(assignment, reference, blank, derived))
        earned = [c for c in blank.checks if c.points > 0]
        if earned:
            named = ", ".join(f"{c.name} ({c.points:g} of {c.max_points:g})" for c in earned)
            raise AuthoringError(
                f"{solution_path}: the student notebook earns points before any work is done: {named}. Put the code "
                "these checks grade in solution regions, or give those checks points = 0 in the config if the code is given"
            )
        _move_into_place(staged, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for path in (final.notebook, final.config, final.fixtures, final.reference):
        console.print(f"Wrote {_shown(path)}")
    if final.reference.parent == final.folder:
        console.print(f"[yellow]note:[/yellow] {_shown(final.reference)} is the solution: leave it out of what students get.")
    workflow = final.folder / "github" / "grade.yml"
    if not workflow.exists():  # one already there may carry the course's settings (GRADER_REPO)
        workflow.parent.mkdir(exist_ok=True)
        workflow.write_text(WORKFLOW_TEMPLATE.read_text(encoding="utf-8").replace(WORKFLOW_PLACEHOLDER, derived.name), encoding="utf-8")
        console.print(f"Wrote {_shown(workflow)} (selfcheck on pull requests: see the README)")
    return final


def _reference_path(folder: Path, name: str) -> Path:
    """`reference/<name>.py` beside `assignments/` when the folder is in that layout (this
    repository's, and grader run's default); else inside the assignment folder, never in a folder
    the instructor did not name (grader/assignment.py `default_reference_path` finds it there)."""
    if folder.parent.name == "assignments":
        return folder.parent.parent / "reference" / f"{name}.py"
    return folder / "reference.py"


def _default_folder(solution_path: Path, name: str) -> Path:
    """`assignments/<name>` beside the `reference/` folder that holds the solution, as in this
    repository; else under the current folder."""
    solution_path = solution_path.resolve()
    root = solution_path.parent.parent if solution_path.parent.name == "reference" else Path.cwd()
    return root / "assignments" / name


def _refused_setting(solution: SolutionNotebook, config: Path, error: AssignmentConfigError) -> str:
    """Why the config made from the notebook is refused, said where the instructor fixes it: the
    notebook's config cell (the config file is a temporary one), with the value it holds."""
    where = config_where(solution)
    if not error.key:
        return f"{where}: {error.cause}"
    section, _, name = error.key.rpartition(".")
    value: Any = tomllib.loads(config.read_text(encoding="utf-8"))
    for part in error.key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    made = f"; the config made from the notebook has {name} = {json.dumps(value)}" if value is not None else ""
    table = f" under [{section}]" if section else ""
    return f"{where}: key '{error.key}': {error.cause}{made}. Write the setting in the config{table} as `{name} = ...`"


def _verify(assignment: Assignment, staged: AssignedFiles, sandbox: str, *, settings_at: str) -> tuple[SubmissionResult, SubmissionResult]:
    """The reference against itself (it must earn full marks, or ReferenceSolutionError says which
    check fails and where the settings are changed), the fixtures proved by a selfcheck of the
    reference, and the untouched student notebook graded as `grader run` would grade it."""
    with open_worker(assignment, sandbox) as worker:
        expected = verified_reference_expectations(assignment, worker, staged.reference, settings_at=settings_at)
        reference = grade_submission(Submission("reference", staged.reference), assignment, worker, expected)
        blank = grade_submission(Submission("student notebook", staged.notebook), assignment, worker, expected)
        write_verified_fixtures(assignment, worker, expected, staged.reference)
    lost = [f"{c.name}: {c.message}" for c in reference.checks if not c.passed]
    if lost:
        raise AuthoringError(f"the solution's reference loses points when graded as a submission: {' | '.join(lost)}")
    if blank.status != GRADED or blank.grader_failed or not all(c.reasons for c in blank.checks if not c.passed):
        raise AuthoringError(f"the student notebook could not be graded as handed out ({blank.status}): {blank.error or 'a check gave no reason'}")
    return reference, blank


def _table(assignment: Assignment, reference: SubmissionResult, blank: SubmissionResult, derived: Derived) -> Table:
    table = Table(title=f"{assignment.name}: {derived.graded.replace('`', '')}, verified", title_justify="left")
    table.add_column("check")
    table.add_column("reference", justify="right")
    table.add_column("student notebook as handed out", justify="right")
    table.add_column("why the student notebook gets no points", overflow="fold")
    for mine, theirs in zip(reference.checks, blank.checks):
        table.add_row(
            mine.name + ("" if mine.public else " (hidden)"),
            f"{mine.points:g} / {mine.max_points:g}",
            f"{theirs.points:g} / {theirs.max_points:g}",
            theirs.message,
        )
    table.add_row("total", f"{reference.total:g} / {reference.max_total:g}", f"{blank.total:g} / {blank.max_total:g}", "", end_section=True)
    return table


def _refuse_to_replace_a_handed_out_notebook(path: Path, new: nbformat.NotebookNode, force: bool) -> None:
    if force or not path.exists():
        return
    try:
        old = nbformat.read(str(path), as_version=4)
    except Exception:  # unreadable: certainly not what this run writes
        old = None
    if old is not None and _cells(old) == _cells(new):
        return
    raise AuthoringError(
        f"{path} exists and would change: if it was handed out, students have the old one. Nothing was written; "
        "run again with --force to replace it"
    )


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def _move_into_place(staged: AssignedFiles, final: AssignedFiles) -> None:
    final.folder.mkdir(parents=True, exist_ok=True)
    final.reference.parent.mkdir(parents=True, exist_ok=True)
    for source, target in (
        (staged.reference, final.reference),
        (staged.config, final.config),
        (staged.fixtures, final.fixtures),
        (staged.notebook, final.notebook),
    ):
        shutil.move(source, target)  # a rename: the staging folder is beside the assignment's


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
