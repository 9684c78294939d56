"""Command-line entry point: `grader run`, `grader selfcheck`, `grader fixtures`, `grader assign`, ..."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from grader.assignment import find_assignment
from grader.errors import GraderError
from grader.isolate.client import SANDBOX_MODES
from grader.layouts import LAYOUT_CHOICES
from grader.report.formats import DEFAULT_FORMATS, FORMATS, parse_formats
from grader.version import __version__

_EPILOG = """\
examples:
  grader run submissions/                     grade every notebook into report.csv + feedback/
  grader run submissions/ -o out/grades.csv   choose where the report goes
  grader run submissions/ --format csv,json,gradescope   also report.json and gradescope/<student>.json
  grader run submissions/ --overrides overrides.csv    with grades changed by hand (student,check,points,comment)
  grader run submissions.zip                  grade an LMS's download as it comes (Canvas, Moodle, ...)
  grader selfcheck                            check my notebook before I submit
  grader fixtures --assignment cifar2         (instructors) refresh the selfcheck fixtures
  grader assign reference/cifar2.ipynb        (instructors) the assignment from its solution notebook
  grader doctor                               which isolation layers are active here
  grader gradescope cifar2 -o autograder.zip  (instructors) the Gradescope autograder bundle
  grader export canvas --report out/report.csv --roster gradebook.csv   (instructors) a file Canvas imports
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _workers_from_environment() -> int | None:
    """$GRADER_WORKERS: the default of --workers where a machine or a CI job shares its cores."""
    text = os.environ.get("GRADER_WORKERS", "").strip()
    if not text:
        return None
    try:
        return _positive_int(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise GraderError(f"GRADER_WORKERS must be a whole number of at least 1, not {text!r}") from None


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader",
        description="Autograder for PyTorch notebook assignments: checks a student's Net and "
        "training_loop against the instructor's reference, without running the notebook.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"grader {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sandbox_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--sandbox",
            choices=SANDBOX_MODES,
            default="auto",
            help="isolate student code: auto (default: bubblewrap when it works here, else Landlock when the "
            "kernel offers it; grader run refuses without either), bwrap or landlock (required), none (off, on purpose)",
        )

    def assignment_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--assignment",
            metavar="NAME",
            help="assignment name (a folder under assignments/) or path to a folder with assignment.toml; "
            "default: the one in the current folder, else the default assignment",
        )

    run = commands.add_parser(
        "run",
        help="grade a folder of submissions into a CSV report (instructors)",
        description="Grade every submission in SUBMISSIONS, a folder or a .zip: <student>.ipynb, <student>.py, or "
        "<student>/ holding one notebook, or the download of Canvas, Moodle, GitHub Classroom or nbgrader as it "
        "comes (see --layout). Writes the CSV report and feedback/<student>.md beside it. "
        "Results are kept in a gradebook as they are graded: after Ctrl-C or a crash, the same command "
        "resumes where it stopped.",
    )
    run.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="a folder of submissions, or an LMS's .zip download")
    run.add_argument("-o", "--output", type=Path, default=Path("report.csv"), help="CSV report path (default: report.csv)")
    run.add_argument("--reference", type=Path, metavar="PATH", help="reference solution (default: reference/<assignment>.py)")
    run.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="gradebook file where every result is stored as it is graded; a later run grades only new or "
        "changed submissions (default: gradebook.sqlite beside the CSV report)",
    )
    run.add_argument("--force", action="store_true", help="grade every submission again, even those already in the gradebook")
    run.add_argument(
        "--compare",
        action="store_true",
        help="after the report, list each student whose total differs from the gradebook's previous result, and why",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="submissions graded in parallel, each by a warm worker process (default: $GRADER_WORKERS, "
        "else the number of CPU cores)",
    )
    run.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="torch threads for each submission's checks (default: 1; workers use the cores better); "
        "keep workers x threads within the CPU cores",
    )
    run.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="grade on a Dask cluster: a scheduler address (tcp://host:8786), or local:N to start a local "
        "cluster of N workers (needs pip install 'grader[dask]')",
    )
    run.add_argument(
        "--format",
        action="append",
        metavar="FORMAT",
        help=f"reports to write beside the CSV path, repeatable or a comma list: {', '.join(FORMATS)} "
        f"(default: {','.join(DEFAULT_FORMATS)}); gradescope writes gradescope/<student>.json, Gradescope's results.json",
    )
    run.add_argument(
        "--overrides",
        type=Path,
        metavar="CSV",
        help="grades changed by hand: a CSV with the columns student,check,points,comment, each row setting one "
        "student's points for a check (or, with check 'total', the whole score). Checked before anything is graded "
        "(an unknown student or check, or points outside 0..max, stop the run) and applied to every report; the "
        "gradebook keeps the grader's own points, so give the same file on every rerun (resume and --force included)",
    )
    run.add_argument(
        "--layout",
        choices=LAYOUT_CHOICES,
        default="auto",
        help="how SUBMISSIONS names its students: canvas (Download Submissions), moodle (Download all submissions), "
        "classroom (GitHub Classroom repositories), nbgrader (submitted/<student>/<assignment>/), plain "
        "(<student>.ipynb, <student>/), or auto (default: the one that fits, printed at the start)",
    )
    sandbox_option(run)
    assignment_option(run)

    check = commands.add_parser(
        "selfcheck",
        help="check your own notebook before submitting (students)",
        description="Run the public checks on NOTEBOOK and explain every lost point. "
        "Exit status: 0 full marks (with --min-score: at least that score), 1 points lost, 2 the notebook "
        "could not be used. Under GitHub Actions it also appends the table to $GITHUB_STEP_SUMMARY and "
        "annotates the notebook with one ::error per failed check. Hidden checks are never shown, only counted.",
    )
    check.add_argument(
        "notebook",
        type=Path,
        nargs="?",
        metavar="NOTEBOOK",
        help="default: the assignment's notebook in this folder, else the only .ipynb here",
    )
    check.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default), or json: the results document on stdout (the table then goes to stderr)",
    )
    check.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="with --format json: write the document to PATH instead of stdout",
    )
    check.add_argument(
        "--junit", type=Path, metavar="PATH", help="also write JUnit XML, one test case per public check (for CI)"
    )
    check.add_argument(
        "--min-score",
        type=_non_negative_float,
        metavar="POINTS",
        help="exit 0 when the public checks' score is at least POINTS, else 1 (default: 0 only at full marks)",
    )
    sandbox_option(check)
    assignment_option(check)

    fixtures = commands.add_parser(
        "fixtures",
        help="write the assignment's selfcheck fixtures from the reference (instructors)",
        description="Observe the reference solution and write assignments/<name>/fixtures.json, which "
        "selfcheck uses. It holds expected observations, inputs and weights, never the reference's source.",
    )
    fixtures.add_argument(
        "--reference", type=Path, metavar="PATH", help="reference solution (default: reference/<assignment>.py)"
    )
    assignment_option(fixtures)

    assign = commands.add_parser(
        "assign",
        help="make an assignment from one solution notebook (instructors)",
        description="Read SOLUTION (a notebook with the solution in regions marked ### BEGIN SOLUTION / ### END "
        "SOLUTION, # BEGIN SOLUTION / # END SOLUTION, or a line ending in # SOLUTION, and the content of "
        "assignment.toml in a raw cell) and write the student notebook, assignment.toml and fixtures.json into "
        "the assignment folder, and the reference module to reference/<name>.py beside assignments/ (or, for a "
        "folder outside that layout, to reference.py inside it; --reference says where). Cells tagged hidden are left out of "
        "the student notebook. Nothing is written until the reference earns full marks against itself and the "
        "student notebook earns 0 with a reason for every check.",
    )
    assign.add_argument("solution", type=Path, metavar="SOLUTION", help="the instructor's notebook, solution included")
    assign.add_argument(
        "-o", "--output", type=Path, metavar="FOLDER",
        help="the assignment folder (default: assignments/<name> beside the reference/ folder that holds SOLUTION, "
        "else in the current folder; the name from the config, else the notebook's)",
    )  # fmt: skip
    assign.add_argument(
        "--reference", type=Path, metavar="PATH",
        help="where the reference module goes (default: reference/<name>.py beside assignments/, else reference.py in the folder)",
    )  # fmt: skip
    assign.add_argument(
        "--force", action="store_true", help="replace a student notebook that is already there and would change"
    )
    sandbox_option(assign)

    gradescope = commands.add_parser(
        "gradescope",
        help="build the Gradescope autograder bundle for an assignment (instructors)",
        description="Write a zip to upload as a Gradescope autograder: setup.sh, run_autograder, the grader's "
        "source, the assignment folder and the reference solution (which ships only in this bundle). Each "
        "submission is graded as `grader run` grades it, into Gradescope's results.json.",
    )
    gradescope.add_argument(
        "assignment",
        metavar="ASSIGNMENT",
        help="assignment name (a folder under assignments/) or path to a folder with assignment.toml",
    )
    gradescope.add_argument(
        "-o", "--output", type=Path, default=Path("autograder.zip"), help="bundle path (default: autograder.zip)"
    )
    gradescope.add_argument(
        "--reference", type=Path, metavar="PATH", help="reference solution (default: reference/<assignment>.py)"
    )

    export = commands.add_parser(
        "export",
        help="write a gradebook file that Canvas or Moodle imports (instructors)",
        description="Write the grades of a report as a file the LMS imports, using the course's own gradebook "
        "export (the roster) to find each student. Exit status: 0 every submission exported, 1 the file is written "
        "but the submissions named on stderr fit no roster row or several, 2 an input could not be used.",
    )
    lms_formats = export.add_subparsers(dest="lms", metavar="LMS", required=True)
    canvas = lms_formats.add_parser(
        "canvas",
        help="a CSV for Canvas's Grades > Import",
        description="Write a CSV for Canvas's Grades > Import: the roster's Student, ID, SIS User ID, SIS Login ID and "
        "Section columns, one assignment column with a Points Possible row, every roster student. A submission is "
        "matched by its Canvas ID (lms_id, from a Canvas download), else by SIS Login ID or SIS User ID equal to its "
        "name, else by name (case, accents and punctuation ignored; 'Roe, John' is 'roejohn' and 'John Roe'). A "
        "student without a submission keeps what the roster has.",
    )
    moodle = lms_formats.add_parser(
        "moodle",
        help="a CSV for Moodle's Grades > Import > CSV file",
        description="Write a CSV for Moodle's CSV grade import: the roster's First name, Last name, ID number and Email "
        "address, a grade column and a feedback column, one row per student with a submission (Moodle keeps the "
        "others' grades). A submission is matched by email address (or its part before the @) or ID number equal "
        "to its name, else by full name (case, accents and punctuation ignored).",
    )
    for lms, sub in (("canvas", canvas), ("moodle", moodle)):
        results = sub.add_mutually_exclusive_group(required=True)
        results.add_argument("--report", type=Path, metavar="CSV", help="the CSV report of grader run (instructor overrides included)")
        results.add_argument(
            "--db", type=Path, metavar="PATH",
            help="the gradebook of grader run instead (each student's newest result, with the overrides the last run applied)",
        )  # fmt: skip
        sub.add_argument(
            "--roster", type=Path, required=True, metavar="CSV",
            help="the course's gradebook exported from Canvas (Grades > Export > Export Entire Gradebook)" if lms == "canvas"
            else "the course's grades exported from Moodle (Grades > Export > Plain text file)",
        )  # fmt: skip
        sub.add_argument(
            "--column", metavar="NAME",
            help="the roster's assignment column to fill, as its header ('CIFAR-2 CNN (4242)') or title "
            "(default: the roster's only assignment column)" if lms == "canvas"
            else "the roster's grade item to fill, as its header ('Assignment: CIFAR-2 CNN (Real)') or without "
            "' (Real)' (default: the roster's only grade item)",
        )  # fmt: skip
        sub.add_argument(
            "-o", "--output", type=Path, default=Path(f"{lms}_import.csv"), help=f"the file to write (default: {lms}_import.csv)"
        )

    commands.add_parser(
        "doctor",
        help="show which isolation layers protect this machine from student code",
        description="Check each isolation layer for real (the bubblewrap sandbox is probed from inside) and "
        "say why a missing one is missing. Exit status: 0 all active, 1 otherwise.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        if args.command == "doctor":
            from grader.commands.doctor import doctor

            return doctor()
        if args.command == "export":
            from grader.commands.export import export

            return export(args.lms, args.report or args.db, args.roster, args.output, column=args.column, console=err)
        if args.command == "assign":
            from grader.commands.assign import assign

            assign(args.solution, args.output, force=args.force, sandbox=args.sandbox, console=err, reference_path=args.reference)
            return 0
        assignment = find_assignment(args.assignment, notebook=getattr(args, "notebook", None))
        if args.command == "run":
            from grader.commands.run import INTERRUPTED, resume_command, run

            # The options a resumed run must repeat (all but --force).
            options = {
                "reference_path": args.reference,
                "gradebook_path": args.db,
                "sandbox": args.sandbox,
                "workers": args.workers,
                "threads": args.threads,
                "dask": args.dask,
                "formats": parse_formats(args.format),
                "overrides_path": args.overrides,
                "layout": args.layout,
            }
            resume = resume_command(args.submissions, args.output, assignment=args.assignment, **options)
            options["workers"] = args.workers or _workers_from_environment()  # a resumed run reads it again
            summary = run(
                assignment, args.submissions, args.output, force=args.force, compare=args.compare, resume_command=resume,
                console=err, **options,
            )  # fmt: skip
            return INTERRUPTED if summary.interrupted else 0
        if args.command == "selfcheck":
            from grader.commands.selfcheck import find_notebook, selfcheck
            from grader.commands.selfcheck_outputs import SelfcheckOutputs

            if args.output and args.format != "json":
                raise GraderError("--output needs --format json (the table is printed; --junit writes XML)")
            notebook = args.notebook or find_notebook(assignment, Path.cwd())
            outputs = SelfcheckOutputs.from_environment(
                junit=args.junit, json_format=args.format == "json", output=args.output
            )
            console = Console(stderr=True) if outputs.json_to_stdout else Console()
            code, _ = selfcheck(
                assignment, notebook, console, sandbox=args.sandbox, min_score=args.min_score, outputs=outputs
            )
            return code
        if args.command == "fixtures":
            from grader.commands.fixtures import make_fixtures

            make_fixtures(assignment, args.reference, console=err)
            return 0
        if args.command == "gradescope":
            from grader.commands.gradescope import build_bundle

            build_bundle(assignment, args.output, args.reference, console=err)
            return 0
    except GraderError as exc:
        err.print(f"[red]grader: error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("[red]grader: interrupted[/red]")
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
