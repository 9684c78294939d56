"""Solution regions in an instructor's cell, marked as nbgrader and Otter-Grader users write them.

    ### BEGIN SOLUTION          (nbgrader)        # BEGIN SOLUTION   (Otter)
    ...solution lines...                          ...
    ### END SOLUTION                              # END SOLUTION

    lr = 1e-2  # SOLUTION       (Otter: one line)

`student_text` replaces each region with a stub at the solution's indentation: `# YOUR CODE HERE` and
`raise NotImplementedError()`, or `...` where the code around needs an expression (a region inside
a call's parentheses); a `# SOLUTION` line keeps what it assigns to (`lr = ...`, `return ...`).
`solution_text` keeps the solution and drops the markers. Markdown cells get nbgrader's
"YOUR ANSWER HERE" instead of code stubs.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable

from grader.errors import AuthoringError

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#{1,3}[ \t]*BEGIN SOLUTION\b.*$")
_END = re.compile(r"^[ \t]*#{1,3}[ \t]*END SOLUTION\b.*$")
_SUFFIX = re.compile(r"^(?P<code>[ \t]*\S.*?)[ \t]*#[ \t]*SOLUTION[ \t]*$")

STATEMENT_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
ANSWER_STUB = "YOUR ANSWER HERE"


class RegionError(AuthoringError):
    """A solution region that is not closed, or closed without being opened."""


def solution_text(text: str, where: str) -> str:
    """The cell as the reference runs it: every solution kept, the markers gone."""
    lines = text.splitlines()
    _regions(lines, where)  # every region closed
    kept: list[str] = []
    for line in lines:
        if _BEGIN.match(line) or _END.match(line):
            continue
        suffix = _SUFFIX.match(line)
        kept.append(suffix.group("code") if suffix else line)
    return "\n".join(kept)


def student_text(text: str, where: str, *, markdown: bool = False, parses: Callable[[str], bool] | None = None) -> str:
    """The cell as students get it: each solution replaced by a stub (see the module docstring).
    `parses(code)` says whether a whole cell is valid code; it decides between the two stubs."""
    lines = text.splitlines()
    regions = _regions(lines, where)
    out: list[str] = []
    position = 0
    for start, end in regions:
        out += [_stub_suffix(line, markdown) if _SUFFIX.match(line) else line for line in lines[position:start]]
        indent = _region_indent(lines, start, end)
        if markdown:
            out.append(indent + ANSWER_STUB)
        else:
            statement = [indent + stub for stub in STATEMENT_STUB]
            trial = [*out, *statement, *lines[end + 1 :]]
            needs_expression = parses is not None and not parses("\n".join(trial)) and parses("\n".join([*out, indent + "...", *lines[end + 1 :]]))
            out += [indent + "..."] if needs_expression else statement
        position = end + 1
    out += [_stub_suffix(line, markdown) if _SUFFIX.match(line) else line for line in lines[position:]]
    return "\n".join(out)


def _regions(lines: list[str], where: str) -> list[tuple[int, int]]:
    """Each region's first and last line (the markers), after checking that all are closed."""
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for index, line in enumerate(lines):
        if _BEGIN.match(line):
            if start is not None:
                raise RegionError(f"{where}, line {index + 1}: BEGIN SOLUTION inside the region opened on line {start + 1}")
            start = index
        elif _END.match(line):
            if start is None:
                raise RegionError(f"{where}, line {index + 1}: END SOLUTION without a BEGIN SOLUTION above it")
            regions.append((start, index))
            start = None
    if start is not None:
        raise RegionError(f"{where}, line {start + 1}: BEGIN SOLUTION is never closed by an END SOLUTION")
    return regions


def _region_indent(lines: list[str], start: int, end: int) -> str:
    """The solution's own indentation (its first line), else the BEGIN marker's: a marker written
    at the margin inside a function must not put the stub outside it."""
    for line in lines[start + 1 : end]:
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    begin = _BEGIN.match(lines[start])
    assert begin is not None  # `start` was found by matching it
    return begin.group("indent")


def _stub_suffix(line: str, markdown: bool) -> str:
    """`x = 2  # SOLUTION` -> `x = ...`; `return x  # SOLUTION` -> `return ...`; else `...`."""
    suffix = _SUFFIX.match(line)
    assert suffix is not None  # called only on lines it matches
    code = suffix.group("code")
    indent = code[: len(code) - len(code.lstrip())]
    if markdown:
        return indent + ANSWER_STUB
    statement = code.strip()
    try:
        node = ast.parse(textwrap.dedent(statement)).body[0]
    except (SyntaxError, IndexError):
        return indent + "..."  # a line of a longer statement: nothing to keep of it
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        return indent + statement[: node.value.col_offset] + "..."
    if isinstance(node, ast.Return):
        return indent + "return ..."
    return indent + "..."
