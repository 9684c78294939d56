"""Execute an extracted program's units into a fresh namespace, one statement at a time."""

from __future__ import annotations

import ast
import builtins
import linecache
import traceback
from typing import Any

from grader.protocol import Unit

MAX_MESSAGE = 400


def load_program(units: list[Unit], module_name: str) -> tuple[dict[str, Any], list[str]]:
    """Run each kept statement; a failing one is noted and the rest still run."""
    namespace: dict[str, Any] = {"__name__": module_name, "__builtins__": builtins}
    notes: list[str] = []
    filenames = {u["filename"] for u in units}
    for unit in units:
        _register_source(unit)
        try:
            tree = ast.parse(unit["source"])
            ast.increment_lineno(tree, unit["line"] - 1)
            exec(compile(tree, unit["filename"], "exec"), namespace)
        except BaseException as exc:  # student code may raise anything, SystemExit included
            where = f"{unit['filename']}, line {unit['line']}"
            notes.append(f"{where}: {describe_exception(exc, filenames).removesuffix(f' ({where})')}")
    return namespace, notes


def _register_source(unit: Unit) -> None:
    """Let tracebacks show the student's lines although they never came from a real file."""
    padding = "\n" * (unit["line"] - 1)
    lines = (padding + unit["source"]).splitlines(keepends=True)
    existing = linecache.cache.get(unit["filename"])
    if existing:
        old = existing[2]  # type: ignore[misc]  # (size, mtime, lines, fullname); typeshed types the lazy 1-tuple form too
        merged = list(old) + [""] * max(0, len(lines) - len(old))
        for i, line in enumerate(lines):
            if line.strip():
                merged[i] = line
        lines = merged
    linecache.cache[unit["filename"]] = (sum(map(len, lines)), None, lines, unit["filename"])


def describe_exception(exc: BaseException, filenames: set[str]) -> str:
    """`Type: message (in forward, cell 5, line 14)`, pointing at the student's own code."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    summary = text[-1] if text else type(exc).__name__
    if isinstance(exc, SystemExit):
        summary = f"SystemExit({exc.code!r}): the code called sys.exit()/exit()"
    elif isinstance(exc, MemoryError) or "can't allocate memory" in summary:
        summary = f"out of memory (over the limit): {summary}"
    elif isinstance(exc, ModuleNotFoundError) and exc.name:
        package = exc.name.split(".")[0]
        summary = (
            f"the grading environment has no package '{package}' ({summary}): remove the import, or ask your "
            f"instructor to allow it (the assignment's [environment] packages; `grader doctor` lists what is missing)"
        )
    location = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in filenames:
            location = f" (in {frame.name}, {frame.filename}, line {frame.lineno})"
            if frame.name == "<module>":
                location = f" ({frame.filename}, line {frame.lineno})"
            break
    message = summary + location
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
