"""Reading a notebook or script into code cells: JSON, nbformat and Python's own decoding.

For a submission this is untrusted work: it runs only in a limited child (grader/child/reading.py),
while the grading host reads the file's bytes and nothing more (grader/load.py). Trusted text (the
reference, an instructor's solution notebook, a student's own kernel) is read here directly.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import InvalidNotebookError, UnreadableScriptError
from grader.load import read_submission_bytes

# Jupytext / VS Code "percent" cell markers split a .py script into cells, so a syntax error in
# one part of a script does not hide the rest.
_PERCENT_CELL = re.compile(r"^# ?%%")


@dataclass(frozen=True)
class SourceCell:
    """A code cell, with where it came from so tracebacks and feedback can point at it."""

    label: str  # "cell 4" for notebooks, the file name for scripts
    source: str
    first_line: int = 1  # line of the file where this cell starts (scripts); 1 for notebooks
    is_notebook: bool = True

    @property
    def title(self) -> str:
        """The whole cell in a note: "cell 5", or "carol.py (from line 40)" for part of a script."""
        return self.label if self.is_notebook else f"{self.label} (from line {self.first_line})"

    def where(self, line: int) -> str:
        """Human location of `line` (1-based within this cell)."""
        if self.is_notebook:
            return f"{self.label}, line {line}"
        return f"{self.label}, line {self.first_line + line - 1}"


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def python_lines(text: str) -> list[str]:
    """The lines of `text` as Python's parser counts them (ends kept): only \\n, \\r\\n and \\r
    end a line, where str.splitlines also breaks at form feeds and Unicode separators."""
    return _LINE.findall(text)


def read_cells(path: Path) -> list[SourceCell]:
    """Code cells of a notebook (any nbformat version, upgraded to v4) or a script.

    For trusted text (the reference) and a student's own kernel. A submission's text is parsed
    only in a limited child: the grading host reads its bytes (`read_submission_bytes`) and a
    child turns them into cells (`cells_from_bytes`).
    """
    path = Path(path)
    return cells_from_bytes(path, read_submission_bytes(path))


def cells_from_bytes(path: Path, raw: bytes) -> list[SourceCell]:
    """Code cells of a notebook or script whose bytes are `raw`; `path` names it in messages."""
    path = Path(path)
    if path.suffix == ".py":
        return _script_cells(path, raw)
    return _notebook_cells(path, raw)


def _notebook_cells(path: Path, raw: bytes) -> list[SourceCell]:
    code: list[SourceCell] = []
    for number, cell in enumerate(notebook_from_bytes(path, raw).cells, start=1):
        if is_code_cell(cell):
            source = cell.get("source", "")
            if isinstance(source, list):
                source = "".join(source)
            code.append(SourceCell(f"cell {number}", str(source)))
    return code


def is_code_cell(cell: object) -> bool:
    """A notebook cell that `cells_from_bytes` turns into a SourceCell (in order)."""
    return isinstance(cell, dict) and cell.get("cell_type") == "code"


if TYPE_CHECKING:  # imported where used: the grading host reads bytes and never parses them
    import nbformat


def notebook_from_bytes(path: Path, raw: bytes) -> nbformat.NotebookNode:
    """The notebook whose bytes are `raw`, upgraded to nbformat v4, with a list of cells; raises
    InvalidNotebookError naming the cause. Untrusted text: call it only in a limited child."""
    import nbformat

    if not raw.strip():
        raise InvalidNotebookError(path, "file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidNotebookError(path, f"not a notebook: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidNotebookError(
            path, f"not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"
        ) from None
    except RecursionError:
        raise InvalidNotebookError(path, "not a notebook: its JSON is nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise InvalidNotebookError(path, f"not a notebook: unreadable JSON ({exc})") from None
    try:
        notebook = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
        major = int(notebook.get("nbformat", 0))
        if major < 4:
            notebook = nbformat.convert(notebook, 4)
        elif major > 4:
            raise ValueError(f"nbformat {major} is newer than this grader understands")
    except Exception as exc:  # nbformat raises many types for structurally wrong notebooks
        raise InvalidNotebookError(path, f"not a notebook: {str(exc) or type(exc).__name__}") from None
    if not isinstance(notebook.get("cells"), list):
        raise InvalidNotebookError(path, "not a notebook: it has no list of cells")
    return notebook


def _script_cells(path: Path, raw: bytes) -> list[SourceCell]:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (SyntaxError, UnicodeError, LookupError) as exc:
        detail = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc) or type(exc).__name__
        raise UnreadableScriptError(path, f"not readable as Python source ({detail}); save it as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = python_lines(text)
    cells: list[SourceCell] = []
    start = 0
    for i, line in enumerate(lines):
        if _PERCENT_CELL.match(line) and i > start:
            cells.append(SourceCell(path.name, "".join(lines[start:i]), first_line=start + 1, is_notebook=False))
            start = i
    cells.append(SourceCell(path.name, "".join(lines[start:]), first_line=start + 1, is_notebook=False))
    return cells
