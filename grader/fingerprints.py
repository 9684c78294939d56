"""Fingerprints: what decides a stored result or expectation, reduced to one hash.

The gradebook keys each result by `grading_fingerprint` and the file's `content_hash`; the
expectations cache and the fixtures file key the reference's observations by the same
fingerprints, so a change of settings, points, reference or grader is seen the same way by all.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from grader.assignment import Assignment
from grader.errors import ReferenceSolutionError
from grader.protocol import worker_limits
from grader.version import __version__


def settings_fingerprint(assignment: Assignment) -> str:
    """Changes when anything that decides expected values changes (points do not)."""
    return hashlib.sha256(json.dumps(assignment.probe_settings(), sort_keys=True).encode()).hexdigest()[:16]


def grading_fingerprint(assignment: Assignment, reference_path: Path) -> str:
    """Changes when anything that decides a score changes: the settings the probes use, the
    limits, each check's points and visibility, the reference's bytes, the grader's version and
    its source."""
    try:
        reference = hashlib.sha256(reference_path.read_bytes()).hexdigest()
    except OSError:
        raise ReferenceSolutionError(f"{reference_path}: reference solution not found (use --reference PATH)") from None
    made_of = {
        "settings": settings_fingerprint(assignment),
        "limits": worker_limits(assignment),
        "checks": [[name, check.points, check.public] for name, check in assignment.checks.items()],
        "reference": reference,
        "grader": __version__,
        "grader_source": grader_source_hash(),
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:32]


@functools.cache
def grader_source_hash() -> str:
    """sha256 of this grader's own source: an upgrade, or a local fix, regrades what the old
    code decided; an unchanged grader reuses. Read once per process."""
    return source_digest(Path(__file__).resolve().parent)


def source_digest(package: Path) -> str:
    """sha256 of every .py file of a package folder, by relative name."""
    return _files_digest(package, sorted(package.rglob("*.py")))


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes (what `sha256sum` prints). For a folder that gave no file to
    grade (none, or several): of every file's relative name and bytes, so any change there counts."""
    try:
        if not path.is_dir():
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest()
        return _files_digest(path, sorted(p for p in path.rglob("*") if p.is_file()))
    except OSError as exc:  # graded as unreadable; a file that becomes readable hashes differently
        return f"unreadable: {exc.strerror}"


def _files_digest(root: Path, files: list[Path]) -> str:
    """sha256 over each file's name relative to `root` and its bytes, length-prefixed."""
    digest = hashlib.sha256()
    for file in files:
        name = file.relative_to(root).as_posix().encode()
        data = file.read_bytes()
        digest.update(b"%d:%s%d:" % (len(name), name, len(data)) + data)
    return digest.hexdigest()
