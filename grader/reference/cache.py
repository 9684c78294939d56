"""What the reference was observed to do, kept on disk between runs, so a second `grader run`
does not put the reference through every probe again (a second or two of torch work before the
first submission).

An entry is keyed by everything that decides it: the gradebook's grading fingerprint (the probe
settings, limits, points, the reference's bytes, the grader's version and source) and the torch
version. It is read like any report from a child: validated observation by observation, and
dropped at the first doubt, so a damaged or foreign file costs one observation of the reference,
never a wrong expectation. The reference still passes its own checks on every run
(grader/reference/check.py); only the probes' work is saved.

Where: `$GRADER_CACHE_DIR`, else `$XDG_CACHE_HOME/grader`, else `~/.cache/grader`;
`GRADER_CACHE_DIR=off` turns it off. Every change of the settings, the reference or the grader
makes a new entry (about 0.5-1 MB): the MAX_ENTRIES used most recently are kept, the others
removed whenever an entry is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.files import write_atomically
from grader.fingerprints import grading_fingerprint
from grader.observations import GroupObservations
from grader.reference.expectations_file import FORMAT, expectations_document, read_expectations

ENVIRONMENT_VARIABLE = "GRADER_CACHE_DIR"
MAX_ENTRIES = 32  # of all assignments together


def cache_folder() -> Path | None:
    """Where entries live; None when caching is turned off."""
    chosen = os.environ.get(ENVIRONMENT_VARIABLE)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "no") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grader"


def entry_path(assignment: Assignment, reference_path: Path) -> Path | None:
    folder = cache_folder()
    if folder is None:
        return None
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "unknown"
    made_of = [FORMAT, grading_fingerprint(assignment, reference_path), torch_version, platform.machine()]
    key = hashlib.sha256(json.dumps(made_of).encode()).hexdigest()[:32]
    return folder / "expectations" / f"{assignment.name}-{key}.json"


def load(path: Path | None, assignment: Assignment, reference_path: Path) -> tuple[Expectations, GroupObservations] | None:
    """The entry at `path`, or None when there is none or it is not entirely sound."""
    if path is None:
        return None
    try:
        expectations, loop = read_expectations(json.loads(path.read_text(encoding="utf-8")), assignment, origin=str(reference_path))
        expectations.behaviour  # noqa: B018  (raises on an entry without the reference's output)
    except Exception:  # any doubt: observe the reference again
        return None
    if loop is None:
        return None
    try:
        os.utime(path)  # used now: the last to be removed
    except OSError:
        pass
    return expectations, loop


def cached(assignment: Assignment, reference_path: Path) -> tuple[Expectations, GroupObservations] | None:
    """An earlier run's observations of this very reference, when they are here and sound."""
    return load(entry_path(assignment, reference_path), assignment, reference_path) if reference_path.is_file() else None


def store(path: Path | None, assignment: Assignment, expectations: Expectations, loop: GroupObservations) -> None:
    """Keep an entry for the next run; a cache that cannot be written only costs that."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(expectations_document(expectations, assignment, loop=loop)))
    except OSError:
        return
    _remove_least_recently_used(path.parent)


def _remove_least_recently_used(folder: Path) -> None:
    """Keep the MAX_ENTRIES entries used most recently. Another run may be removing the same
    files: one that is gone already is no concern, and a removed entry costs one observation."""
    entries = []
    for entry in folder.glob("*.json"):
        try:
            entries.append((entry.stat().st_mtime, entry))
        except OSError:
            continue
    entries.sort(reverse=True)
    for _, entry in entries[MAX_ENTRIES:]:
        try:
            entry.unlink()
        except OSError:
            pass
