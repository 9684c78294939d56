"""Results as plain, serialisable data. Every writer (CSV, feedback, terminal) consumes these,
and the gradebook stores them as JSON: `from_json(to_json())` gives back an equal result."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

GRADED = "graded"
INVALID = "invalid"
TOTAL = "total"  # what an instructor's override names to set the whole score rather than one check


@dataclass(frozen=True)
class Note:
    """Something the student should know that costs no points (a skipped cell, a finding that
    did not change the output). `check` says what it is about, as data: a check ("net.forward"),
    a group of checks ("loop": the child run that serves that group's checks), or None for the
    whole submission. Which outputs may show a note is decided by `check`, never by its words,
    so rewording a note cannot reveal a hidden check."""

    text: str
    check: str | None = None

    def __str__(self) -> str:
        """The note as every output shows it: "net.forward: <text>", or the text alone."""
        return f"{self.check}: {self.text}" if self.check else self.text

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "check": self.check}

    @classmethod
    def from_json(cls, data: dict[str, Any] | str, subjects: set[str] | frozenset[str] = frozenset()) -> Note:
        """The inverse of `to_json`. A plain string is a note as results stored before notes were
        typed ("net.forward: text"): read for backward compatibility, its prefix becomes `check`
        when it names one of `subjects` (the result's checks and groups), as the string's
        readers once decided, and the text shows exactly as before."""
        if isinstance(data, str):
            subject, separator, text = data.partition(": ")
            return cls(text, subject) if separator and subject in subjects else cls(data)
        return cls(**data)


@dataclass(frozen=True)
class Adjustment:
    """An instructor's override as applied to one result: `check` (a check's name, or TOTAL) was
    set to `points` where the grader gave `automatic`, for the reason in `comment`. The instructor
    decides it (grader/overrides.py reads the file); the grader's own points are kept beside it so
    that every output can say "adjusted from 12 to 20"."""

    check: str
    points: float
    automatic: float
    comment: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "points": self.points, "automatic": self.automatic, "comment": self.comment}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Adjustment:
        return cls(**data)


@dataclass
class CheckResult:
    name: str
    points: float
    max_points: float
    public: bool = True
    reasons: list[str] = field(default_factory=list)  # one per lost point, written for the student
    error: str | None = None  # set when something went wrong (exception, timeout), not for wrong values
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.points >= self.max_points

    @property
    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "passed"

    def to_json(self) -> dict[str, Any]:
        """Like `asdict`, sharing the nested values (`details`) instead of copying them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        """The inverse of `to_json`; an unknown field, or a missing required one, raises TypeError."""
        return cls(**data)


@dataclass
class SubmissionResult:
    student: str
    path: str
    status: str
    checks: list[CheckResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # short causes, for the CSV `error` column
    notes: list[Note] = field(default_factory=list)  # extraction and execution notes for feedback
    extracted_source: str = ""
    output: dict[str, str] = field(default_factory=dict)  # captured stdout/stderr, by child run
    seconds: float = 0.0
    grader_failed: bool = False  # the grader failed, not the submission: `grader run` grades it again next time
    # Instructors' overrides applied on top of the grader's points (`adjusted`): the checks' points
    # and the total are then the instructor's, and each Adjustment keeps the grader's own. The
    # gradebook stores results without them; `grader run --overrides` applies them at every run.
    adjustments: list[Adjustment] = field(default_factory=list)
    # The student's notebook as HTML with the grader's findings after the graded definitions
    # (grader/report/annotated_notebook.py); "" when not asked for (selfcheck) or not renderable.
    annotated_notebook: str = ""
    # The notebook above was left in the gradebook, where a class-sized report fetches each one as
    # it writes that student's page (each may be megabytes): `has_annotated_notebook` still holds.
    # Not part of the result's data (to_json leaves it out).
    annotated_notebook_elsewhere: bool = field(default=False, repr=False)
    # What the LMS download said of the student (grader/layouts/): the LMS's id for the student
    # (Canvas user id, Moodle participant id) and whether the submission was late; "" and None
    # where the layout does not say. Results stored before these existed read as "" and None.
    lms_id: str = ""
    late: bool | None = None

    @property
    def has_annotated_notebook(self) -> bool:
        return bool(self.annotated_notebook) or self.annotated_notebook_elsewhere

    def without_annotated_notebook(self) -> SubmissionResult:
        """This result less its notebook's text, still saying whether it has one."""
        return replace(self, annotated_notebook="", annotated_notebook_elsewhere=self.has_annotated_notebook)

    @property
    def total(self) -> float:
        """The checks' points added up, unless an instructor set the total itself (a TOTAL
        adjustment): then that, whatever the checks sum to."""
        total = self.adjustment(TOTAL)
        return total.points if total is not None else round(sum(c.points for c in self.checks), 2)

    @property
    def max_total(self) -> float:
        return round(sum(c.max_points for c in self.checks), 2)

    @property
    def error(self) -> str:
        return "; ".join(dict.fromkeys(self.errors))

    def adjustment(self, check_name: str) -> Adjustment | None:
        """The instructor's override of this check (or of the TOTAL), if one was applied."""
        return next((adjustment for adjustment in self.adjustments if adjustment.check == check_name), None)

    @property
    def adjusted_checks(self) -> list[str]:
        """The names of the overridden checks in check order, then TOTAL: the CSV's `adjusted` column."""
        names = {adjustment.check for adjustment in self.adjustments}
        return [c.name for c in self.checks if c.name in names] + ([TOTAL] if TOTAL in names else [])

    def adjusted(self, check_name: str, points: float, comment: str = "") -> SubmissionResult:
        """A copy of this result with an instructor's override applied: the check's points (for
        TOTAL, the total, whatever the checks sum to) become `points`, and an Adjustment records
        what the grader gave. Overriding an adjusted check again replaces the override, still
        over the grader's points. A check this result lacks raises KeyError."""
        earlier = self.adjustment(check_name)
        others = [adjustment for adjustment in self.adjustments if adjustment.check != check_name]
        checks = list(self.checks)
        if check_name == TOTAL:
            automatic = earlier.automatic if earlier is not None else self._automatic_total()
        else:
            index = next((i for i, check in enumerate(checks) if check.name == check_name), None)
            if index is None:
                raise KeyError(f"{self.student} has no check {check_name}")
            automatic = earlier.automatic if earlier is not None else checks[index].points
            checks[index] = replace(checks[index], points=points)
        return replace(self, checks=checks, adjustments=[*others, Adjustment(check_name, points, automatic, comment)])

    def _automatic_total(self) -> float:
        """The total the grader gave: each check's points before any override."""
        automatic = {adjustment.check: adjustment.automatic for adjustment in self.adjustments}
        return round(sum(automatic.get(c.name, c.points) for c in self.checks), 2)

    @property
    def hidden_checks(self) -> int:
        """How many checks are graded but not shown before submission (`public = false`)."""
        return sum(not c.public for c in self.checks)

    def public_view(self) -> SubmissionResult:
        """What a student may see before submitting: the public checks only, no error that only a
        hidden check gave, and no output of a child run that served hidden checks only, so totals
        and causes reveal nothing about hidden checks."""
        view = SubmissionResult.from_json(copy.deepcopy(self.to_json()))
        hidden_errors = {c.error for c in view.checks if not c.public and c.error}
        public_errors = {c.error for c in view.checks if c.public and c.error}
        view.checks = [c for c in view.checks if c.public]
        view.errors = [e for e in view.errors if e not in hidden_errors or e in public_errors]
        # Output is keyed "<group> stdout": a child run that served hidden checks only is withheld.
        hidden_groups = self._hidden_groups()
        view.output = {key: text for key, text in view.output.items() if key.split(" ", 1)[0] not in hidden_groups}
        hidden = hidden_groups | {c.name for c in self.checks if not c.public}
        view.notes = [note for note in view.notes if note.check not in hidden]
        # A hidden check's override is hidden with it; an overridden total counts the hidden checks.
        hidden_adjusted = hidden | ({TOTAL} if self.hidden_checks else set())
        view.adjustments = [adjustment for adjustment in view.adjustments if adjustment.check not in hidden_adjusted]
        view.annotated_notebook, view.annotated_notebook_elsewhere = "", False  # its findings boxes cover hidden checks too
        return view

    def notes_for(self, check_name: str) -> list[Note]:
        """The notes about one check (`note.check` is its name), not those about its group."""
        return [note for note in self.notes if note.check == check_name]

    def withheld_notes(self, check_name: str) -> list[Note]:
        """The notes `public_view` drops because of this check, to show with it once hidden
        checks are revealed: a hidden check's own notes, and its group's (`check` "loop") when every
        check of the group is hidden. None for a public check. Every note the public view drops is
        withheld for at least one hidden check, so nothing is lost."""
        check = next((c for c in self.checks if c.name == check_name), None)
        if check is None or check.public:
            return []
        subjects = {check_name} | ({_group(check_name)} & self._hidden_groups())
        return [note for note in self.notes if note.check in subjects]

    def _hidden_groups(self) -> set[str]:
        """Groups whose checks are all hidden: their child run, and its notes, serve hidden checks only."""
        return {_group(c.name) for c in self.checks} - {_group(c.name) for c in self.checks if c.public}

    def to_json(self) -> dict[str, Any]:
        """As plain data, what the gradebook stores. It shares the nested lists and dicts with this
        result instead of copying them (a copy cost more than the rest of storing a result):
        serialise it, do not change it."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "annotated_notebook_elsewhere"}
        data["checks"] = [check.to_json() for check in self.checks]
        data["notes"] = [note.to_json() for note in self.notes]
        data["adjustments"] = [adjustment.to_json() for adjustment in self.adjustments]
        data.update(total=self.total, max_total=self.max_total, error=self.error)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmissionResult:
        """The inverse of `to_json`. The derived fields it adds (total, max_total, error) are
        recomputed, not read; an unknown field, or a missing required one, raises TypeError."""
        fields = {key: value for key, value in data.items() if key not in _DERIVED}
        fields["checks"] = checks = [CheckResult.from_json(check) for check in fields.get("checks", [])]
        # Results stored before notes were typed hold each note as one string, "net.forward: text":
        # read once here, naming the check only where the prefix is one of this result's.
        subjects = {check.name for check in checks} | {_group(check.name) for check in checks}
        fields["notes"] = [Note.from_json(note, subjects) for note in fields.get("notes", [])]
        # Results stored before overrides existed have none.
        fields["adjustments"] = [Adjustment.from_json(adjustment) for adjustment in fields.get("adjustments", [])]
        return cls(**fields)


_DERIVED = ("total", "max_total", "error")


def _group(check_name: str) -> str:
    """A check's group is its name's prefix: "loop" for "loop.trains"; one group, one child run."""
    return check_name.split(".", 1)[0]


# ---------------------------------------------------------------- a run as a pandas DataFrame

FRAME_COLUMNS = ["student", "lms_id", "late", "status", "error", "total", "max_total", "adjusted"]  # then one column per check
# Text, never points: the report's own text columns and those an LMS download layout (lms_id) or an
# instructor's override (adjusted) adds; `late` is read apart, as a nullable boolean.
TEXT_COLUMNS = ("student", "lms_id", "status", "error", "adjusted")
# Columns a report written before them lacks: filled in, so every frame has the same columns.
_ADDED_COLUMNS = {"lms_id": "", "late": "", "adjusted": ""}
_SQLITE_MAGIC = b"SQLite format 3\x00"


def load(path: str | Path) -> pandas.DataFrame:
    """A run's results as a pandas DataFrame, for instructors working in Jupyter: one row per
    student (sorted by name), the columns of the CSV report (student, lms_id, late, status, error,
    total, max_total, adjusted, then each check's points; `late` is a nullable boolean, missing
    where the layout says nothing). `path` is the CSV report, or a gradebook (SQLite), from which
    each student's newest result is taken, with the instructor's overrides that the last
    `grader run --overrides` applied; from a gradebook, `frame.attrs["max_points"]` also gives
    each check's points, for pass rates. Points are the adjusted ones; `adjusted` names the
    overridden checks ("net.forward;total"), empty where there are none."""
    import pandas as pd

    from grader.errors import GraderError

    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise GraderError(f"{path}: cannot read the results ({exc.strerror or exc})") from None
    if head == _SQLITE_MAGIC:
        frame = results_frame(_newest_results(path))
    else:
        try:
            frame = pd.read_csv(path, keep_default_na=False, dtype={**dict.fromkeys(TEXT_COLUMNS, str), "late": str})
        except (ValueError, UnicodeDecodeError) as exc:
            raise GraderError(f"{path}: neither a grader CSV report nor a gradebook ({exc})") from None
        missing = [column for column in FRAME_COLUMNS if column not in frame.columns and column not in _ADDED_COLUMNS]
        if missing:
            raise GraderError(f"{path}: not a grader CSV report (no column {', '.join(missing)})")
        for position, column in enumerate(FRAME_COLUMNS):
            if column not in frame.columns:
                frame.insert(position, column, _ADDED_COLUMNS[column])
        frame["late"] = _late_column(frame["late"], path)
    numbers = [column for column in frame.columns if column not in (*TEXT_COLUMNS, "late")]
    try:
        frame[numbers] = frame[numbers].astype(float)
    except ValueError as exc:
        raise GraderError(f"{path}: a points column holds something other than a number ({exc})") from None
    max_points = frame.attrs.get("max_points", {})  # each check's points, known from a gradebook only
    frame = frame.sort_values("student", kind="stable").reset_index(drop=True)
    frame.attrs["max_points"] = max_points
    return frame


def results_frame(results: list[SubmissionResult], checks: list[str] | None = None) -> pandas.DataFrame:
    """`results` as the CSV's frame (one row per result, in their order; a check a result lacks
    counts 0), with each check's points in `attrs["max_points"]`. `checks`: the check columns, in
    order (default: every check the results have, in the order they appear)."""
    import pandas as pd

    rows = [_frame_row(result) for result in results]
    if checks is None:
        checks = list(dict.fromkeys(check.name for result in results for check in result.checks))
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS + checks)
    frame[checks] = frame[checks].fillna(0.0).astype(float)
    frame["late"] = frame["late"].astype("boolean")
    max_points: dict[str, float] = {}
    for check in (check for result in results for check in result.checks):
        max_points[check.name] = max(max_points.get(check.name, 0.0), check.max_points)
    frame.attrs["max_points"] = max_points
    return frame


def _late_column(texts: pandas.Series, path: Path) -> pandas.Series:
    """The CSV's `late` ("true", "false", or empty where the layout does not say) as a nullable boolean."""
    from grader.errors import GraderError

    values = {"true": True, "false": False, "": None}
    odd = sorted(set(texts) - set(values))
    if odd:
        raise GraderError(f"{path}: the late column holds {odd[0]!r}, not true, false or nothing")
    return texts.map(values).astype("boolean")


def _newest_results(path: Path) -> list[SubmissionResult]:
    import sqlite3

    from grader.errors import GraderError

    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute("SELECT student, result FROM results ORDER BY graded_at, rowid").fetchall()
            # The overrides the last `grader run --overrides` applied (grader/gradebook.py; a gradebook
            # made before they existed has no such table). Checks first: TOTAL is applied last.
            has_overrides = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'overrides'").fetchone()
            query = "SELECT student, check_name, points, comment FROM overrides ORDER BY student, check_name = ?, rowid"
            overrides = connection.execute(query, (TOTAL,)).fetchall() if has_overrides else []
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise GraderError(f"{path}: not a grader gradebook ({exc})") from None
    newest = {student: SubmissionResult.from_json(json.loads(text)) for student, text in dict(rows).items()}  # later rows replace earlier ones
    for student, check, points, comment in overrides:
        if student in newest and (check == TOTAL or any(c.name == check for c in newest[student].checks)):
            newest[student] = newest[student].adjusted(check, points, comment)
    return list(newest.values())


def _frame_row(result: SubmissionResult) -> dict[str, Any]:
    row: dict[str, Any] = {
        "student": result.student, "lms_id": result.lms_id, "late": result.late, "status": result.status, "error": result.error,
        "total": result.total, "max_total": result.max_total, "adjusted": ";".join(result.adjusted_checks),
    }  # fmt: skip
    row.update({check.name: check.points for check in result.checks})
    return row
