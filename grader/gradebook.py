"""The gradebook: every finished SubmissionResult, stored in an SQLite file the moment it is graded.

A stored result is keyed by what decided it: the student, the graded file (its path in the
submissions folder and the sha256 of its bytes) and a fingerprint of the assignment's settings,
limits and points, the reference solution's bytes and the grader's version and source. When any of these
changes, the stored result no longer applies and the submission is graded again.

Results are committed in batches (WAL journal, full sync): a result is durable at most
COMMIT_WITHIN_S after it was stored, together with every result stored in that time, in one
transaction. So storing costs a fraction of a millisecond however fast results arrive (a Dask
cluster may finish a hundred a second), a `grader run` that is interrupted loses nothing stored,
one that is killed loses at most the results of its last COMMIT_WITHIN_S, and the next run
grades only what is new, changed or lost.

Beside the results, it remembers the instructor's overrides that the last `grader run --overrides`
applied, each with the automatic points it was applied over: the results themselves stay the
grader's own, so a later run can say when the grader's points under an override changed, and
`grader.results.load` gives the gradebook with the same overrides as the report.

This module stores and returns plain results. It never grades, never imports torch or student
code, and never writes the CSV or feedback: the report writers do, from what it returns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from grader.errors import GradebookError
from grader.fingerprints import content_hash
from grader.load import Submission
from grader.results import Adjustment, SubmissionResult
from grader.version import __version__

GRADEBOOK_NAME = "gradebook.sqlite"  # default file, beside the CSV report

# `PRAGMA user_version` holds the schema version. To change the schema, add the statements that
# bring version N-1 to N under key N and raise SCHEMA_VERSION: older gradebooks are migrated on
# open, in one transaction.
SCHEMA_VERSION = 3
# The longest a stored result waits for its commit. A commit syncs the file: one per result
# would cost a few milliseconds each, the grading host's whole budget per submission on a cluster.
COMMIT_WITHIN_S = 0.5
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """
        CREATE TABLE results (
            student        TEXT NOT NULL,
            source         TEXT NOT NULL,  -- the graded file (or folder), relative to the submissions folder
            content_hash   TEXT NOT NULL,  -- sha256 of the graded bytes
            fingerprint    TEXT NOT NULL,  -- grading_fingerprint(): settings, points, reference, grader version
            status         TEXT NOT NULL,  -- copies of result fields, for people who query the file
            total          REAL NOT NULL,
            graded_at      TEXT NOT NULL,  -- UTC, ISO 8601
            grader_version TEXT NOT NULL,
            result         TEXT NOT NULL,  -- SubmissionResult.to_json() as JSON
            PRIMARY KEY (student, source, content_hash, fingerprint)
        )
        """,
    ],
    # The annotated notebook apart from the result (NULL: none, or, in rows stored before this
    # version, inside `result`): a report reads 10,000 results without parsing their notebooks,
    # then each notebook alone as it writes that student's page.
    2: ["ALTER TABLE results ADD COLUMN annotated_notebook TEXT"],
    # The overrides the last run applied (grader/overrides.py), replaced as a whole at each run.
    3: [
        """
        CREATE TABLE overrides (
            student    TEXT NOT NULL,
            check_name TEXT NOT NULL,  -- a check's name, or "total"
            points     REAL NOT NULL,  -- the instructor's
            comment    TEXT NOT NULL,
            automatic  REAL NOT NULL,  -- the grader's points it was applied over
            source     TEXT NOT NULL,  -- the overrides file, as given to --overrides
            applied_at TEXT NOT NULL,  -- UTC, ISO 8601
            PRIMARY KEY (student, check_name)
        )
        """,
    ],
}


def gradebook_timestamp() -> str:
    """Now, as the gradebook records it: UTC, ISO 8601 with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class GradebookKey:
    """What decided a result: change any part and the stored result no longer applies."""

    student: str
    source: str
    content_hash: str
    fingerprint: str


def submission_key(submission: Submission, submissions_dir: Path, fingerprint: str) -> GradebookKey:
    try:
        source = submission.path.relative_to(submissions_dir).as_posix()
    except ValueError:
        source = submission.path.as_posix()
    return GradebookKey(submission.student, source, content_hash(submission.path), fingerprint)


@dataclass(frozen=True)
class ResultDocument:
    """A result in the form the gradebook stores: its JSON text without the annotated notebook,
    the notebook ("" for none), and the fields the table copies beside them. A Dask task hands
    results back in this form, so the grading host stores them without parsing or serialising anything."""

    status: str
    total: float
    text: str
    notebook: str = ""

    @classmethod
    def of(cls, result: SubmissionResult) -> ResultDocument:
        data = result.to_json()
        notebook = data.pop("annotated_notebook")
        # Insertion order kept: feedback follows it.
        return cls(result.status, result.total, json.dumps(data, ensure_ascii=False), notebook)


class Gradebook:
    """An open gradebook file. Use as a context manager so it is always closed."""

    def __init__(self, path: Path, *, commit_within_s: float = COMMIT_WITHIN_S) -> None:
        self.path = Path(path)
        self.commit_within_s = commit_within_s
        # One connection, used by the caller's thread and by the timer that commits a batch.
        self._lock = threading.RLock()
        self._commit_timer: threading.Timer | None = None
        self._commit_failure: GradebookError | None = None
        if self.path.is_dir():
            raise GradebookError(self.path, "is a folder, not a gradebook file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GradebookError(self.path, f"cannot create its folder: {exc.strerror}") from None
        try:
            # isolation_level=None: transactions are opened and committed here, by store() and commit().
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        except sqlite3.Error as exc:
            raise GradebookError(self.path, f"cannot open the gradebook ({exc})") from None
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is stored and close the file."""
        try:
            self.commit()
        finally:
            with self._lock:
                self._db.close()

    def commit(self) -> None:
        """Make every result stored so far durable now."""
        with self._lock:
            if self._commit_timer is not None:
                self._commit_timer.cancel()
                self._commit_timer = None
            self._raise_commit_failure()
            self._commit_open_transaction()

    def _commit_in_background(self) -> None:
        with self._lock:
            self._commit_timer = None
            try:
                self._commit_open_transaction()
            except GradebookError as exc:  # said by the next store() or commit(), in the caller's thread
                self._commit_failure = exc

    def _commit_open_transaction(self) -> None:
        if self._db.in_transaction:
            with _sqlite_errors(self.path, "cannot store results"):
                self._db.execute("COMMIT")

    def _raise_commit_failure(self) -> None:
        failure, self._commit_failure = self._commit_failure, None
        if failure is not None:
            raise failure

    def lookup(self, key: GradebookKey, *, notebook: bool = True) -> SubmissionResult | None:
        """The stored result for `key`, or None when there is none (or it cannot be read back).
        `notebook=False` leaves its annotated notebook here (`annotated_notebook(key)` gives it):
        what a class-sized report holds for every student."""
        # typeof() tells whether the notebook is there without reading it from the file.
        column = "annotated_notebook" if notebook else "typeof(annotated_notebook) = 'text'"
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            row = self._db.execute(
                f"SELECT result, {column} FROM results WHERE student = ? AND source = ? AND content_hash = ? AND fingerprint = ?",
                (key.student, key.source, key.content_hash, key.fingerprint),
            ).fetchone()
        if row is None:
            return None
        result = _result(row[0], row[1] if notebook else None)
        if result is None or notebook:
            return result
        if result.annotated_notebook:  # stored before schema 2, inside the result
            return result.without_annotated_notebook()
        result.annotated_notebook_elsewhere = bool(row[1])
        return result

    def annotated_notebook(self, key: GradebookKey) -> str:
        """The annotated notebook of the result stored for `key`; "" when there is none."""
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            row = self._db.execute(
                "SELECT annotated_notebook, CASE WHEN annotated_notebook IS NULL THEN result END FROM results "
                "WHERE student = ? AND source = ? AND content_hash = ? AND fingerprint = ?",
                (key.student, key.source, key.content_hash, key.fingerprint),
            ).fetchone()
        if row is None:
            return ""
        if row[0] is not None:
            return row[0]
        result = _result(row[1], None)  # stored before schema 2: inside the result, if anywhere
        return result.annotated_notebook if result is not None else ""

    def previous_seconds(self, student: str) -> float | None:
        """How long the student's most recent stored result took to grade (any version of the
        file, any settings): the best guess of how long grading it again will take."""
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            row = self._db.execute(
                "SELECT result FROM results WHERE student = ? ORDER BY graded_at DESC LIMIT 1", (student,)
            ).fetchone()
        try:
            seconds = json.loads(row[0]).get("seconds") if row else None
        except (ValueError, AttributeError):
            return None
        return float(seconds) if isinstance(seconds, (int, float)) else None

    def stored_before(self, student: str, before: str) -> tuple[GradebookKey, SubmissionResult] | None:
        """The student's newest result stored before `before` (a gradebook_timestamp), any version
        of the file and any settings, with the key it was stored under; None when there is none
        (or it cannot be read back)."""
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            row = self._db.execute(
                "SELECT source, content_hash, fingerprint, result, annotated_notebook FROM results WHERE student = ? AND graded_at < ? "
                "ORDER BY graded_at DESC, rowid DESC LIMIT 1",
                (student, before),
            ).fetchone()
        result = _result(row[3], row[4]) if row is not None else None
        return (GradebookKey(student, row[0], row[1], row[2]), result) if result is not None else None

    def graded_since(self, key: GradebookKey, since: str) -> bool:
        """Whether the result for `key` was stored at `since` (a gradebook_timestamp) or later."""
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            row = self._db.execute(
                "SELECT graded_at FROM results WHERE student = ? AND source = ? AND content_hash = ? AND fingerprint = ?",
                (key.student, key.source, key.content_hash, key.fingerprint),
            ).fetchone()
        return row is not None and row[0] >= since

    def store(self, key: GradebookKey, result: SubmissionResult | ResultDocument) -> None:
        """Store (or replace) the result for `key`. Readable at once through this gradebook;
        committed and synced within `commit_within_s` with the results stored meanwhile, or
        at `commit()` or `close()`, whichever comes first."""
        graded_at = gradebook_timestamp()
        document = result if isinstance(result, ResultDocument) else ResultDocument.of(result)
        with self._lock, _sqlite_errors(self.path, "cannot store a result"):
            self._raise_commit_failure()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            if self._commit_timer is None:
                self._commit_timer = threading.Timer(self.commit_within_s, self._commit_in_background)
                self._commit_timer.daemon = True
                self._commit_timer.start()
            self._db.execute(
                "INSERT OR REPLACE INTO results "
                "(student, source, content_hash, fingerprint, status, total, graded_at, grader_version, result, annotated_notebook) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.student, key.source, key.content_hash, key.fingerprint, document.status, document.total,
                    graded_at, __version__, document.text, document.notebook or None,
                ),
            )

    def applied_overrides(self) -> dict[tuple[str, str], Adjustment]:
        """The overrides the last run applied, by (student, check), each with the automatic points
        it was applied over; empty when it applied none."""
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            rows = self._db.execute("SELECT student, check_name, points, automatic, comment FROM overrides ORDER BY rowid").fetchall()
        return {(student, check): Adjustment(check, points, automatic, comment) for student, check, points, automatic, comment in rows}

    def overrides_source(self) -> str | None:
        """The overrides file the last run applied its overrides from; None when it applied none."""
        with self._lock, _sqlite_errors(self.path, "cannot read the gradebook"):
            row = self._db.execute("SELECT source FROM overrides LIMIT 1").fetchone()
        return row[0] if row else None

    def record_overrides(self, applied: dict[tuple[str, str], Adjustment], source: str) -> None:
        """Replace the record of applied overrides with `applied` (from the file `source`), and
        commit it with every result stored so far."""
        applied_at = gradebook_timestamp()
        with self._lock, _sqlite_errors(self.path, "cannot store the overrides"):
            self._raise_commit_failure()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM overrides")
            self._db.executemany(
                "INSERT INTO overrides (student, check_name, points, comment, automatic, source, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(student, check, a.points, a.comment, a.automatic, source, applied_at) for (student, check), a in applied.items()],
            )
        self.commit()

    def _prepare(self) -> None:
        with _sqlite_errors(self.path, "not a usable SQLite gradebook"):
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = [row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        if version > SCHEMA_VERSION:
            raise GradebookError(
                self.path, f"made by a newer grader (gradebook schema {version}, this grader knows {SCHEMA_VERSION}); upgrade grader or choose another --db"
            )
        if version == 0 and tables:
            raise GradebookError(self.path, f"is an SQLite database but not a grader gradebook (it holds tables {', '.join(tables)}); choose another --db")
        with _sqlite_errors(self.path, "cannot prepare the gradebook"):
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            if version < SCHEMA_VERSION:
                self._migrate()

    def _migrate(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # another run may be creating the same file
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise


def _result(text: str, notebook: str | None) -> SubmissionResult | None:
    """A stored result from its row: the `result` JSON and, when stored apart, its notebook.
    None for a damaged row: the submission is graded again and replaces it."""
    try:
        result = SubmissionResult.from_json(json.loads(text))
    except (ValueError, TypeError, AttributeError):
        return None
    if notebook:
        result.annotated_notebook = notebook
    return result


@contextmanager
def _sqlite_errors(path: Path, what: str) -> Iterator[None]:
    """Turns an sqlite3 error into a GradebookError naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise GradebookError(path, f"{what} ({exc})") from None
