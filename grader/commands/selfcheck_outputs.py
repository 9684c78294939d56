"""Where `grader selfcheck` writes its results besides the terminal table, for CI: a JUnit XML
file (`--junit`), the JSON results document (`--format json`, to stdout or `--output`), and,
under GitHub Actions, the step summary table and `::error` annotations on the notebook.

Every output shows the public checks only, and how many hidden checks are graded later.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment
from grader.errors import GraderError
from grader.files import write_atomically
from grader.report.github import append_step_summary, check_annotations, definition_line, step_summary_markdown
from grader.report.json_report import results_json_text
from grader.report.junit import junit_xml
from grader.report.selfcheck_summary import summarize
from grader.results import SubmissionResult


@dataclass(frozen=True)
class SelfcheckOutputs:
    junit: Path | None = None
    json_file: Path | None = None
    json_to_stdout: bool = False
    step_summary: Path | None = None  # $GITHUB_STEP_SUMMARY: appended to, as every step does
    annotate: bool = False  # GITHUB_ACTIONS=true: workflow commands on stdout
    workspace: Path | None = None  # $GITHUB_WORKSPACE: annotation paths are relative to it

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ, *, junit: Path | None = None, json_format: bool = False, output: Path | None = None
    ) -> SelfcheckOutputs:
        summary = environ.get("GITHUB_STEP_SUMMARY")
        workspace = environ.get("GITHUB_WORKSPACE")
        return cls(
            junit=junit,
            json_file=output if json_format else None,
            json_to_stdout=json_format and output is None,
            step_summary=Path(summary) if summary else None,
            annotate=environ.get("GITHUB_ACTIONS") == "true",
            workspace=Path(workspace) if workspace else None,
        )

    def write(self, result: SubmissionResult, assignment: Assignment, notebook: Path, *, requirement: str = "") -> None:
        """`result` holds every check; what is written comes from its public view. `requirement`
        is the sentence about --min-score, for the step summary."""
        view = result.public_view()
        hidden = result.hidden_checks
        shown_path = annotation_path(notebook, self.workspace)
        try:
            if self.junit:
                write_atomically(self.junit, junit_xml(view, assignment.name, hidden_checks=hidden))
            if self.json_file:
                write_atomically(self.json_file, results_json_text([view], assignment.name, hidden_checks=hidden))
        except OSError as exc:
            raise GraderError(f"cannot write {exc.filename}: {exc.strerror}") from None
        if self.json_to_stdout:
            sys.stdout.write(results_json_text([view], assignment.name, hidden_checks=hidden))
        if self.step_summary:
            markdown = step_summary_markdown(summarize(result), notebook=shown_path, assignment=assignment.name, requirement=requirement)
            try:
                append_step_summary(self.step_summary, markdown)
            except OSError as exc:
                Console(stderr=True).print(f"[yellow]warning:[/yellow] step summary not written: {escape(str(exc))}", highlight=False)
        if self.annotate:
            # Workflow commands are read from stdout and stderr alike; stdout may hold the JSON.
            stream = sys.stderr if self.json_to_stdout else sys.stdout
            lines = check_lines(notebook, assignment, [c.name for c in view.checks])
            for command in check_annotations(view, shown_path, lines, hidden_checks=hidden):
                print(command, file=stream)
        sys.stdout.flush()


def annotation_path(notebook: Path, workspace: Path | None) -> str:
    """The notebook as GitHub names it in a pull request: relative to the repository root."""
    absolute = notebook.resolve()
    for root in (workspace, Path.cwd()):
        if root is not None and absolute.is_relative_to(root.resolve()):
            return absolute.relative_to(root.resolve()).as_posix()
    return notebook.as_posix()


def check_lines(notebook: Path, assignment: Assignment, check_names: list[str]) -> dict[str, int]:
    """For each check, the line of the notebook file where the definition it grades begins: the
    Net checks point at `class Net`, the training_loop check at `def training_loop`."""
    keywords = {"net": "class", "loop": "def"}
    try:
        text = notebook.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    lines = {}
    for name in check_names:
        group = name.split(".", 1)[0]
        defined = assignment.graded_by_group.get(group)
        if defined:
            line = definition_line(text, keywords[group], defined, notebook=notebook.suffix == ".ipynb")
            if line:
                lines[name] = line
    return lines
