"""Every way grading can fail, as a named exception carrying what a person needs to act.

Messages are written for the reader who will see them: the instructor running `grader run`
or the student running `grader selfcheck`. Each names the file and the cause.
"""

from __future__ import annotations

from pathlib import Path


class GraderError(Exception):
    """Base class: an error the grader explains to its user instead of a traceback."""


class AssignmentConfigError(GraderError):
    """assignment.toml is missing, unreadable, or has an invalid key."""

    def __init__(self, path: Path | str, cause: str, key: str | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.cause = cause
        where = f"{self.path}: key '{key}'" if key else str(self.path)
        super().__init__(f"{where}: {cause}")


class AssignmentNotFoundError(GraderError):
    """--assignment names no known assignment, or none can be chosen by default."""


class ReferenceSolutionError(GraderError):
    """The instructor's reference solution cannot be loaded or fails its own checks."""


class AuthoringError(GraderError):
    """`grader assign` cannot turn a solution notebook into an assignment (names the notebook and why)."""


class FixturesError(GraderError):
    """The selfcheck fixtures file is missing, unreadable, or stale."""


class SubmissionError(GraderError):
    """A submission cannot be used at all; its CSV row gets status `invalid`."""

    def __init__(self, path: Path | str, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{self.path.name}: {cause}")


class InvalidNotebookError(SubmissionError):
    """The file is not a readable notebook (bad JSON, unknown format, empty)."""


class UnreadableScriptError(SubmissionError):
    """A `.py` submission could not be decoded as text."""


class AmbiguousSubmissionError(SubmissionError):
    """A student folder holds several notebooks and none has the assignment's name."""


class LayoutError(GraderError):
    """`--layout` names a layout the submissions folder does not have (the message names the
    first entry that does not fit), or no layout at all."""


class SubmissionsZipError(GraderError):
    """A zip given to `grader run` cannot be read safely: a member whose path would leave the
    folder it is extracted into, a link, more bytes or files than the limits, a damaged zip. The
    message names the zip and the member; nothing is graded."""

    def __init__(self, path: Path | str, cause: str, member: str | None = None) -> None:
        self.path = Path(path)
        self.cause = cause
        self.member = member
        where = f"{self.path}: member {member!r}" if member is not None else str(self.path)
        super().__init__(f"{where}: {cause}")


class WorkerError(GraderError):
    """The isolated worker process that runs student code died or broke the protocol."""


class NoIsolationError(GraderError):
    """`grader run` was about to grade student code with neither bubblewrap nor Landlock, and no
    one asked for that with --sandbox none."""


class ObservationError(GraderError):
    """A child reported an observation that does not have the expected form."""


class GradebookError(GraderError):
    """The gradebook file cannot be opened, is not a gradebook, or cannot be written."""

    def __init__(self, path: Path | str, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class RosterError(GraderError):
    """A roster (the gradebook CSV Canvas or Moodle exports) cannot be read, or is not in that
    LMS's format; or the assignment column to fill cannot be chosen from it."""

    def __init__(self, path: Path | str, cause: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.cause = cause
        where = f"{self.path}, line {line}" if line else str(self.path)
        super().__init__(f"{where}: {cause}")


class OverridesError(GraderError):
    """The instructor's overrides file (`grader run --overrides`) cannot be used as it is. Raised
    before anything is graded, with every problem found, each with its line (None: the whole file)."""

    def __init__(self, path: Path | str, problems: list[tuple[int | None, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}:{line}: {cause}" if line is not None else f"{self.path}: {cause}" for line, cause in problems]
        super().__init__("\n".join([*lines, "Nothing was graded: correct the overrides file and run again."]))
