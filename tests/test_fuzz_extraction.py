"""Fuzzing the reading child: untrusted bytes in, one well-formed outcome out, in bounded time.

`read_and_extract` (grader/isolate/reading.py) turns a submission's bytes into cells and its
definitions into units in a forked, limited child, which runs `read_submission`'s body
(grader/child/reading.py). These property-based tests feed it what a student (or a broken
editor) can hand in. Most run that body in this process (`extract`): the same code and the same
JSON round trip as the report pipe, without a fork per example. Through the child itself
(`extract_in_child`) go the cases where its limits are what is tested: nesting 100,000 deep
and the named skipped cells (5,000 deep among them; read both ways), where a parser crash, a C
stack overflow, could only be survived in a child; the time bound on nested cell magics; the
big cases; and a sample of the properties' examples, which must come out of the child exactly
as out of this process. (A crash and a hang of the parser, staged, are pinned in
tests/test_unparsable_submissions.py.) They pin:

- every call returns one plain dict of the documented form, {"kind": "extracted", "units",
  "notes", "problems"} or {"kind": "invalid", "cause"}, that the grading host accepts
  (`ExtractedProgram.from_json`); no exception escapes, and it returns within BOUND_S;
- a correct `Net` and `training_loop` survive any pathological cell anywhere in a notebook, or
  part of a `# %%` script: deep nesting of every kind (brackets up to and past the tokenizer's
  200 levels, unary operators, `not`, chained comparisons and boolean operators, `**`, attribute,
  subscript and call chains, f-strings, comprehensions, lambdas, decorators, class, def and if
  bodies past 100 indentation levels), very long lines and literals, null bytes, lone
  surrogates and letterless junk; each kept unit is the cell's exact text at its true location,
  and every note names a pathological cell, never a correct one; a skipped cell gives no unit;
- markdown and raw cells are never parsed;
- arbitrary bytes, broken encodings, BOMs, truncated, deeply nested or wrongly shaped notebook
  JSON are "invalid" with a reason (or, where still a notebook, extracted), never a crash;
- deeply nested cell magics are read quickly (a cell that outlasts the reading timeout, costing
  that cell alone, is pinned in tests/test_unparsable_submissions.py);
- the big cases (marked `slow`, still run by .ci/run): 50,000 cells, a 50 MB cell, every kind
  of nesting 100,000 deep.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import nbformat
import pytest
import variants as v
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from grader.child.extract import ExtractedProgram
from grader.child.reading import read_submission
from grader.isolate.reading import ReadingLimits, read_and_extract
from grader.protocol import submission_request

# As an assignment's defaults give them (grader/assignment.py: read_timeout_s, max_cell_kb), with
# the memory cap of a small machine.
LIMITS = ReadingLimits(timeout_s=20.0, memory_mb=2048, max_cell_chars=1024 * 1024)
BOUND_S = 60.0  # wall time of one read_and_extract call on a pathological file
ROOTS = ["Net", "training_loop"]

FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ---------------------------------------------------------------- calling the reading child


class Overtime(BaseException):
    """Raised in this process when reading outlasts BOUND_S; a BaseException, so that neither the
    readers' `except Exception` nor the extractor's per-cell handlers take it for a parser failure."""


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """A reading done in this process stops with Overtime after `seconds`, instead of hanging the suite."""

    def overtime(signum: int, frame: object) -> None:
        raise Overtime(f"reading took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, overtime)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_here(request: dict[str, Any], raw: bytes, limits: ReadingLimits) -> dict[str, Any]:
    """What the reading child reports, read in this process: `read_submission`'s body, each
    observation passed through JSON as the report pipe passes it. No fork, no memory limit and
    no retry without a cell: an input that made the parser fail past its per-cell handlers would
    fail here, and belongs with the cases read through the child."""
    reported: list[dict[str, Any]] = []
    body = read_submission(request, raw, limits.max_cell_chars, {})
    with bounded(BOUND_S):
        body(lambda observation: reported.append(json.loads(json.dumps(observation))))
    outcome = next((o for o in reported if o["kind"] in ("extracted", "invalid")), None)
    assert outcome is not None, f"no outcome in this process, only {[o for o in reported if o['kind'] != 'parsing']}"
    return outcome


def extract(name: str, raw: bytes, roots: list[str] = ROOTS, limits: ReadingLimits = LIMITS) -> tuple[dict[str, Any], float]:
    """The reading child's outcome for these bytes, read in this process (`read_here`), checked
    for form, and how long it took."""
    started = time.monotonic()
    outcome = read_here(submission_request(name, raw, roots), raw, limits)
    seconds = time.monotonic() - started
    return _checked(name, raw, outcome, seconds), seconds


def extract_in_child(name: str, raw: bytes, roots: list[str] = ROOTS, limits: ReadingLimits = LIMITS) -> tuple[dict[str, Any], float]:
    """One read_and_extract call, in a forked, limited child: its outcome, checked for form, and
    how long it took."""
    started = time.monotonic()
    outcome = read_and_extract(submission_request(name, raw, roots), limits)
    seconds = time.monotonic() - started
    return _checked(name, raw, outcome, seconds), seconds


def _checked(name: str, raw: bytes, outcome: dict[str, Any], seconds: float) -> dict[str, Any]:
    assert seconds < BOUND_S, f"reading {name} ({len(raw)} bytes) took {seconds:.1f} s"
    assert_documented_form(outcome)
    return outcome


def assert_documented_form(outcome: Any) -> None:
    assert isinstance(outcome, dict), outcome
    assert outcome.get("kind") in ("extracted", "invalid"), outcome
    if outcome["kind"] == "invalid":
        assert set(outcome) == {"kind", "cause"}, outcome
        assert isinstance(outcome["cause"], str) and outcome["cause"].strip(), outcome
        return
    assert set(outcome) == {"kind", "units", "notes", "problems"}, sorted(outcome)
    assert isinstance(outcome["units"], list)
    for unit in outcome["units"]:
        assert isinstance(unit, dict) and set(unit) == {"source", "filename", "line"}, unit
        assert isinstance(unit["source"], str) and unit["source"].strip(), unit
        assert isinstance(unit["filename"], str) and unit["filename"], unit
        assert type(unit["line"]) is int and unit["line"] >= 1, unit
    for key in ("notes", "problems"):
        assert isinstance(outcome[key], list) and all(isinstance(n, str) and n for n in outcome[key]), outcome[key]
    assert all(p in outcome["notes"] for p in outcome["problems"]), "every problem is also a note"
    ExtractedProgram.from_json(outcome)  # what the grading host does with it; raises if malformed


# ---------------------------------------------------------------- pathological sources

# Builders: (depth, name bound by the cell) -> source. Each binds `name` where its form allows,
# so a test can ask for it as a root and make the extractor keep (unparse, symtable) it too.
QUOTES = ['"', "'", '"""', "'''"]  # the f-string quotes Python 3.11 lets nest, innermost first


def _fstring(depth: int) -> str:
    text = "x"
    for i in range(depth):
        quote = QUOTES[i % len(QUOTES)]
        text = f"f{quote}{{{text}}}{quote}"
    return text


def _format_spec(depth: int) -> str:
    inner = "x"
    for _ in range(depth):
        inner = "x:{" + inner + "}"
    return "f'{" + inner + "}'"


def _wrap(depth: int, template: str, leaf: str) -> str:
    text = leaf
    for _ in range(depth):
        text = template.format(text)
    return text


def _indented(depth: int, header: Callable[[int], str], body: str) -> str:
    """`depth` nested blocks, one space of indentation per level (so 1,000 levels stay small)."""
    return "".join(" " * i + header(i) + "\n" for i in range(depth)) + " " * depth + body + "\n"


PATHOLOGIES: dict[str, Callable[[int, str], str]] = {
    # nesting the tokenizer counts (200 levels of brackets)
    "parentheses": lambda d, n: f"{n} = " + "(" * d + "1" + ")" * d,
    "brackets": lambda d, n: f"{n} = " + "[" * d + "1" + "]" * d,
    "braces": lambda d, n: f"{n} = " + "{" * d + "1" + "}" * d,
    "tuples": lambda d, n: f"{n} = " + "(" * d + "1," + ")," * (d - 1) + ")",
    "walrus": lambda d, n: f"{n} = " + "(y := " * d + "1" + ")" * d,
    "nested_comprehensions": lambda d, n: f"{n} = " + _wrap(d, "[{} for x in y]", "x"),
    "generator_in_iterable": lambda d, n: f"{n} = " + _wrap(d, "(x for x in {})", "y"),
    "fstrings": lambda d, n: f"{n} = " + _fstring(d),
    "format_specs": lambda d, n: f"{n} = " + _format_spec(d),
    # nesting only the parser sees (its own stack, then the extractor's unparse and symtable)
    "unary_minus": lambda d, n: f"{n} = " + "- " * d + "x",
    "not": lambda d, n: f"{n} = " + "not " * d + "x",
    "invert": lambda d, n: f"{n} = " + "~" * d + "x",
    "plus_chain": lambda d, n: f"{n} = " + "+".join(["a"] * (d + 1)),
    "power_chain": lambda d, n: f"{n} = " + "**".join(["a"] * (d + 1)),
    "ternaries": lambda d, n: f"{n} = " + "a if b else " * d + "c",
    "lambdas": lambda d, n: f"{n} = " + "lambda: " * d + "1",
    "attribute_chain": lambda d, n: f"{n} = a" + ".b" * d,
    "subscript_chain": lambda d, n: f"{n} = a" + "[0]" * d,
    "call_chain": lambda d, n: f"{n} = f" + "()" * d,
    "continued_lines": lambda d, n: f"{n} = 1" + " + \\\n1" * d,
    # long, flat: chained comparisons and boolean operators are one node with many operands
    "chained_comparison": lambda d, n: f"{n} = " + "<".join(["a"] * (d + 1)),
    "and_or_chain": lambda d, n: f"{n} = a" + "".join(f" {'and' if i % 2 else 'or'} a" for i in range(d)),
    "comprehension_clauses": lambda d, n: f"{n} = [x " + "for x in y " * d + "]",
    "decorators": lambda d, n: "@d\n" * d + f"def {n}():\n    pass",
    "with_items": lambda d, n: "with " + ", ".join(["a"] * d) + f":\n    {n} = 1",
    "statements_on_one_line": lambda d, n: f"{n} = 1; " * d,
    # indentation (100 levels)
    "class_bodies": lambda d, n: _indented(d, lambda i: f"class {n if i == 0 else f'C{i}'}:", "pass"),
    "def_bodies": lambda d, n: _indented(d, lambda i: f"def {n if i == 0 else f'f{i}'}():", "pass"),
    "if_blocks": lambda d, n: _indented(d, lambda i: "if a:", f"{n} = 1"),
    # IPython's cell magics, unwrapped one level at a time
    "time_magics": lambda d, n: "%%time\n" * d + f"{n} = 1",
    # long literals and lines
    "long_int": lambda d, n: f"{n} = " + "9" * d,
    "long_string": lambda d, n: f"{n} = '" + "a" * (10 * d) + "'",
    "long_name": lambda d, n: f"{n} = " + "a" * (10 * d),
    # text Python refuses
    "null_bytes": lambda d, n: f"{n} = 1\n" + "\x00" * d,
    "lone_surrogates": lambda d, n: f"{n} = '" + ("\ud800" if d % 2 else "\udc80") * d + "'",  # noqa: RUF034 (two surrogates ruff reads alike); never a pair
}

# Depth each builder is still cheap to build and parse at. Indented blocks grow as depth
# squared; nested `%%time` costs IPython's transformer time quadratic in depth (5,000 levels, a
# 35 KB cell, take ~10 s), so they stop where that stays a fraction of a second.
MAX_DEPTH = dict.fromkeys(PATHOLOGIES, 100000) | {
    "class_bodies": 1_000,
    "def_bodies": 1_000,
    "if_blocks": 1_000,
    "time_magics": 1_000,
}

# Across the limits: brackets (200), indentation (100), the extractor's unparse (~1,000 Python
# frames), the parser's own stack (~3,000), IPython's recursion for `%%time` (~990).
CRITICAL_DEPTHS = [1, 2, 3, 4, 5, 99, 100, 101, 199, 200, 201, 990, 1000, 1001, 2_500, 5_000]


def pathology(kind: str, depth: int, name: str) -> str:
    return PATHOLOGIES[kind](max(1, min(depth, MAX_DEPTH[kind])), name)


# Junk without letters: no name it could bind can shadow Net, training_loop or their imports.
letterless_junk = st.text(
    st.one_of(
        st.characters(exclude_categories=("L", "Cs")),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ufeff", "\t", "\n", "(", "[", "{", "\\", "'", '"', "%", "!"]),
    ),
    max_size=300,
)

depths = st.one_of(st.integers(1, 220), st.sampled_from([990, 999, 1000, 1001, 2_500, 5_000]))


@dataclass(frozen=True)
class Noise:
    description: str
    source: str


@st.composite
def noise_cells(draw: st.DrawFn, name: str) -> Noise:
    if draw(st.integers(0, 9)) == 0:
        junk = draw(letterless_junk)
        return Noise(f"junk {junk!r}"[:200], junk)
    kind, depth = draw(st.sampled_from(sorted(PATHOLOGIES))), draw(depths)
    return Noise(f"{kind} x {depth}", pathology(kind, depth, name))


# ---------------------------------------------------------------- notebooks


@dataclass(frozen=True)
class Cell:
    cell_type: str  # "code", "markdown" or "raw"
    source: str
    role: str = ""  # "net", "loop", "noise" or ""


def notebook_bytes(cells: list[Cell]) -> bytes:
    """The .ipynb file Jupyter would save (lone surrogates \\u-escaped, so it stays UTF-8)."""
    notebook = new_notebook()
    make = {"code": new_code_cell, "markdown": new_markdown_cell, "raw": new_raw_cell}
    notebook.cells = [make[c.cell_type](c.source) for c in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(notebook, ensure_ascii=True).encode("ascii")


def lecture_cells() -> list[Cell]:
    """The lecture's notebook (tests/variants.py): imports, data, Net, loop, training, evaluation."""
    roles = {v.NET: "net", v.LOOP: "loop"}
    return [Cell("code", source, roles.get(source, "")) for source in v.notebook_cells()]


def number_of(cells: list[Cell], role: str) -> int:
    """1-based number of the only cell with `role`, counting every cell as the notes do."""
    (number,) = [i for i, c in enumerate(cells, start=1) if c.role == role]
    return number


def cells_named(note: str) -> set[int]:
    return {int(n) for n in re.findall(r"\bcell (\d+)\b", note)}


def assert_net_and_loop_intact(outcome: dict[str, Any], net_at: str, loop_at: str, *, net_line: int = 1, loop_line: int = 1) -> None:
    assert outcome["kind"] == "extracted", outcome.get("cause")
    units = outcome["units"]
    assert {"source": v.NET, "filename": net_at, "line": net_line} in units, [u["filename"] for u in units]
    assert {"source": v.LOOP, "filename": loop_at, "line": loop_line} in units, [u["filename"] for u in units]


def assert_notes_only_name(outcome: dict[str, Any], cells: list[Cell], context: Any = None) -> None:
    """Every note names a noisy code cell; a cell skipped as a whole gives no unit."""
    noisy = {i for i, c in enumerate(cells, start=1) if c.role == "noise" and c.cell_type == "code"}
    for note in outcome["notes"]:
        assert cells_named(note) and cells_named(note) <= noisy, (note, sorted(noisy), context)
        skipped = re.match(r"cell (\d+)\b.*; this cell was skipped$", note)
        if skipped:
            assert note in outcome["problems"]
            assert not [u for u in outcome["units"] if u["filename"] == f"cell {skipped.group(1)}"], note


@st.composite
def noisy_notebooks(draw: st.DrawFn) -> tuple[list[Cell], list[str]]:
    """The lecture notebook with 1-3 pathological cells and some markdown at random places.

    Returns the cells and a description of the noise. The noise cells bind deep0, deep1, ...,
    asked for as roots too, so the extractor keeps what parses and has to unparse it."""
    cells = lecture_cells()
    described = []
    for i in range(draw(st.integers(1, 3))):
        noise = draw(noise_cells(f"deep{i}"))
        cell_type = draw(st.sampled_from(["code", "code", "code", "code", "markdown", "raw"]))
        at = draw(st.integers(0, len(cells)))
        cells.insert(at, Cell(cell_type, noise.source, "noise"))
        described.append(f"{cell_type} cell {at + 1}: {noise.description}")
    for _ in range(draw(st.integers(0, 2))):
        cells.insert(draw(st.integers(0, len(cells))), Cell("markdown", "# Notes\nSee **below**."))
    return cells, described


@settings(FUZZ, max_examples=50)  # for the suite's time; derandomized, so the same examples every run
@given(notebook=noisy_notebooks())
def test_deep_nesting_anywhere_leaves_net_and_loop_extracted(notebook: tuple[list[Cell], list[str]]) -> None:
    cells, described = notebook
    roots = ROOTS + [f"deep{i}" for i in range(3)]

    outcome, _ = extract("student.ipynb", notebook_bytes(cells), roots)

    assert_net_and_loop_intact(outcome, f"cell {number_of(cells, 'net')}", f"cell {number_of(cells, 'loop')}")
    assert_notes_only_name(outcome, cells, described)


@settings(FUZZ, max_examples=8)
@given(notebook=noisy_notebooks())
def test_the_reading_child_reads_a_noisy_notebook_as_this_process_does(notebook: tuple[list[Cell], list[str]]) -> None:
    # What makes the in-process properties stand for the child: the same outcome, to the letter.
    cells, described = notebook
    raw, roots = notebook_bytes(cells), ROOTS + [f"deep{i}" for i in range(3)]

    here, _ = extract("student.ipynb", raw, roots)
    there, _ = extract_in_child("student.ipynb", raw, roots)

    assert there == here, described


@pytest.mark.parametrize("kind", sorted(PATHOLOGIES))
def test_every_kind_of_nesting_across_the_parser_limits_costs_only_its_cells(kind: str) -> None:
    depths = sorted({max(1, min(d, MAX_DEPTH[kind])) for d in CRITICAL_DEPTHS})
    cells = [Cell("code", v.IMPORTS), Cell("code", v.NET, "net")]
    cells += [Cell("code", pathology(kind, d, f"deep{i}"), "noise") for i, d in enumerate(depths)]
    cells += [Cell("code", v.LOOP, "loop")]

    outcome, _ = extract("student.ipynb", notebook_bytes(cells), ROOTS + [f"deep{i}" for i in range(len(depths))])

    assert_net_and_loop_intact(outcome, "cell 2", f"cell {len(cells)}")
    assert_notes_only_name(outcome, cells)
    # the shallowest cell of every kind is ordinary code and is read (a note about it would mean the
    # builder, not the parser, is broken); null bytes and lone surrogates are refused at any depth
    if kind not in ("null_bytes", "lone_surrogates"):
        assert not [n for n in outcome["notes"] if re.match(r"cell 3\b", n)], outcome["notes"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(k for k in PATHOLOGIES if MAX_DEPTH[k] >= 100_000))
def test_nesting_100_000_deep_costs_only_its_cell(kind: str) -> None:
    cells = [Cell("code", v.IMPORTS), Cell("code", pathology(kind, 100_000, "deep"), "noise"), Cell("code", v.NET, "net"), Cell("code", v.LOOP, "loop")]

    outcome, seconds = extract_in_child("student.ipynb", notebook_bytes(cells), [*ROOTS, "deep"])

    assert_net_and_loop_intact(outcome, "cell 3", "cell 4")
    assert_notes_only_name(outcome, cells)
    assert seconds < 30


def test_a_line_of_20_000_statements_is_read_whole() -> None:
    # Each statement of a shared line is unparsed on its own, never read out of the whole line
    # again: that cost n² and left 20,000 statements past the reading time limit.
    noise = Cell("code", pathology("statements_on_one_line", 20_000, "deep"), "noise")
    cells = [Cell("code", v.IMPORTS), noise, Cell("code", v.NET, "net"), Cell("code", v.LOOP, "loop")]

    outcome, _ = extract("student.ipynb", notebook_bytes(cells), [*ROOTS, "deep"])

    assert_net_and_loop_intact(outcome, "cell 3", "cell 4")
    assert outcome["notes"] == []
    assert any(unit["source"].startswith("deep = 1") for unit in outcome["units"]), [
        u["source"][:40] for u in outcome["units"]
    ]


def test_markdown_and_raw_cells_are_never_parsed() -> None:
    poison = pathology("unary_minus", 100_000, "deep") + "\x00\ud800"
    cells = [
        Cell("markdown", poison),
        Cell("code", v.IMPORTS),
        Cell("raw", poison),
        Cell("code", v.NET, "net"),
        Cell("code", v.LOOP, "loop"),
    ]

    outcome, _ = extract("student.ipynb", notebook_bytes(cells), [*ROOTS, "deep"])

    assert_net_and_loop_intact(outcome, "cell 4", "cell 5")
    assert outcome["notes"] == []


@pytest.mark.parametrize(
    ("kind", "depth", "note"),
    [
        ("parentheses", 201, r"^cell 3, line 1: SyntaxError: too many nested parentheses; this cell was skipped$"),
        (
            "unary_minus",
            5_000,
            r"^cell 3 is nested too deeply for Python's parser \((RecursionError|MemoryError)\); this cell was skipped$",
        ),
        (
            "unary_minus",
            1_000,
            r"^cell 3, line 1: the definition of 'deep' is nested too deeply for Python's parser \(RecursionError\); it was skipped$",
        ),
        ("if_blocks", 101, r"^cell 3, line 101: SyntaxError: too many levels of indentation; this cell was skipped$"),
        (
            "null_bytes",
            1,
            r"^cell 3(, line 1: SyntaxError: source code string cannot contain null bytes"
            r"| cannot be parsed by Python \(ValueError: .*\)); this cell was skipped$",
        ),
        (
            "lone_surrogates",
            1,
            r"^cell 3 cannot be parsed by Python \(UnicodeEncodeError: .*surrogates not allowed\); this cell was skipped$",
        ),
    ],
)
@pytest.mark.parametrize("read", [extract, extract_in_child], ids=["here", "in_child"])
def test_a_skipped_cell_is_named_by_its_number_counting_markdown(kind: str, depth: int, note: str, read: Callable[..., Any]) -> None:
    cells = [
        Cell("markdown", "# Title"),
        Cell("code", v.IMPORTS),
        Cell("code", pathology(kind, depth, "deep"), "noise"),
        Cell("code", v.NET, "net"),
        Cell("code", v.LOOP, "loop"),
    ]

    outcome, _ = read("student.ipynb", notebook_bytes(cells), [*ROOTS, "deep"])

    assert_net_and_loop_intact(outcome, "cell 4", "cell 5")
    assert len(outcome["notes"]) == 1 and re.match(note, outcome["notes"][0]), outcome["notes"]
    assert outcome["problems"] == outcome["notes"]
    assert not [u for u in outcome["units"] if u["filename"] == "cell 3"]


# ---------------------------------------------------------------- scripts


@dataclass(frozen=True)
class Part:
    source: str
    role: str = ""


def script_text(parts: list[Part]) -> tuple[str, dict[str, int], list[tuple[int, int]]]:
    """The parts joined as `# %%` cells: the text, the file line each role's code starts on, and
    the (first, last) file lines of each noise part, its marker included."""
    text, line, starts, noise = "", 1, {}, []
    for part in parts:
        body = part.source if part.source.endswith("\n") else part.source + "\n"
        chunk = "# %%\n" + body
        count = chunk.count("\n")  # the test keeps \r and other line breaks out of the noise
        if part.role == "noise":
            noise.append((line, line + count - 1))
        elif part.role:
            starts[part.role] = line + 1
        text += chunk
        line += count
    return text, starts, noise


# Python counts only \n, \r\n and \r as line breaks; str.splitlines also splits at \v, \f,
# \x1c-\x1e, \x85, \u2028, \u2029. Those are kept out of the script noise here; see
# test_line_breaks_python_does_not_count_leave_units_intact for what they do.
script_junk = st.text(
    st.characters(exclude_categories=("L", "Cs"), exclude_characters="\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=300,
).map(lambda t: t + "\n")


@st.composite
def noisy_scripts(draw: st.DrawFn) -> tuple[list[Part], list[str]]:
    parts = [Part(v.IMPORTS.replace("%matplotlib inline\n", "")), Part(v.NET, "net"), Part(v.LOOP, "loop")]
    described = []
    for i in range(draw(st.integers(1, 2))):
        if draw(st.integers(0, 9)) == 0:
            source = draw(script_junk)
            description = repr(source)[:200]
        else:
            kind = draw(st.sampled_from(sorted(k for k in PATHOLOGIES if k not in ("lone_surrogates",))))
            depth = draw(depths)
            source, description = pathology(kind, depth, f"deep{i}"), f"{kind} x {depth}"
        parts.insert(draw(st.integers(0, len(parts))), Part(source, "noise"))
        described.append(description)
    return parts, described


@settings(FUZZ, max_examples=30)  # for the suite's time: each example reads a whole script, about 0.2 s
@given(script=noisy_scripts())
def test_a_pathological_part_of_a_script_leaves_net_and_loop_extracted(script: tuple[list[Part], list[str]]) -> None:
    parts, described = script
    text, starts, noise = script_text(parts)

    outcome, _ = extract("carol.py", text.encode("utf-8"), [*ROOTS, "deep0", "deep1"])

    assert_net_and_loop_intact(outcome, "carol.py", "carol.py", net_line=starts["net"], loop_line=starts["loop"])
    for note in outcome["notes"]:
        lines = [int(a or b) for a, b in re.findall(r"carol\.py, line (\d+)|carol\.py \(from line (\d+)\)", note)]
        assert lines, (note, described)
        assert all(any(first <= n <= last + 1 for first, last in noise) for n in lines), (note, noise, described)


def test_a_script_with_a_lone_surrogate_is_refused_as_not_utf8() -> None:
    text, _, _ = script_text([Part(v.NET, "net"), Part("s = '\ud800'", "noise"), Part(v.LOOP, "loop")])

    outcome, _ = extract("carol.py", text.encode("utf-8", "surrogatepass"))

    assert outcome["kind"] == "invalid" and "UTF-8" in outcome["cause"], outcome


@pytest.mark.parametrize("separator", ["\x0c", "\x1c", "\x85", "\u2028"], ids=["form-feed", "x1c", "NEL", "U+2028"])
def test_line_breaks_python_does_not_count_leave_units_intact(separator: str) -> None:
    comment = f"# section{separator} two\n"
    cells = [Cell("code", v.IMPORTS + comment + v.NET, "net"), Cell("code", v.LOOP, "loop")]
    outcome, _ = extract("student.ipynb", notebook_bytes(cells))
    net = [u for u in outcome["units"] if "class Net" in u["source"]]
    assert net == [{"source": v.NET, "filename": "cell 1", "line": v.IMPORTS.count("\n") + 2}]

    text, starts, _ = script_text([Part("import torch.nn as nn\n" + comment), Part(v.NET, "net"), Part(v.LOOP, "loop")])
    outcome, _ = extract("carol.py", text.encode("utf-8"), ["Net"])
    assert {"source": v.NET, "filename": "carol.py", "line": starts["net"]} in outcome["units"]


# ---------------------------------------------------------------- raw bytes

BOMS = [b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"]


def lecture_notebook_json() -> dict[str, Any]:
    return json.loads(notebook_bytes(lecture_cells()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def broken_notebooks(draw: st.DrawFn) -> bytes:
    """A notebook with one part of its JSON replaced by an arbitrary JSON value."""
    notebook = lecture_notebook_json()
    where = draw(
        st.sampled_from(["cells", "cell", "source", "cell_type", "nbformat", "nbformat_minor", "metadata", "outputs"])
    )
    value = draw(json_values)
    cell = notebook["cells"][draw(st.integers(0, len(notebook["cells"]) - 1))]
    if where in ("cells", "nbformat", "nbformat_minor", "metadata"):
        notebook[where] = value
    elif where == "cell":
        notebook["cells"][notebook["cells"].index(cell)] = value
    else:
        cell[where] = value
    return json.dumps(notebook).encode()


@st.composite
def deeply_nested_json(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([10, 100, 400, 1_000, 5_000, 100_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"cells":', "}")]))
    closed = draw(st.booleans())
    return (opener * depth + "1" + (closer * depth if closed else "")).encode()


raw_blobs = st.one_of(
    st.binary(max_size=3000),
    st.tuples(st.sampled_from(BOMS), st.binary(max_size=200)).map(b"".join),
    st.tuples(st.sampled_from(BOMS), st.text(max_size=300)).map(lambda t: t[0] + t[1].encode("utf-8", "surrogatepass")),
    st.text(st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udfff"])), max_size=300).map(
        lambda t: t.encode("utf-8", "surrogatepass")
    ),
    broken_notebooks(),
    deeply_nested_json(),
    st.sampled_from([b"", b" \n\t", b"null", b"0", b"[]", b"{}", b'"notebook"', b"\x00" * 64, b"\xff" * 64]),
)


@settings(FUZZ, max_examples=100)
@given(raw=raw_blobs, suffix=st.sampled_from([".ipynb", ".py"]))
def test_any_bytes_give_one_well_formed_outcome(raw: bytes, suffix: str) -> None:
    outcome, _ = extract("student" + suffix, raw)

    if suffix == ".ipynb" and raw.strip():
        try:
            raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            assert outcome["kind"] == "invalid" and "not UTF-8" in outcome["cause"], outcome
    if suffix == ".ipynb" and not raw.strip():
        assert outcome == {"kind": "invalid", "cause": "file is empty"}
    if suffix == ".py" and b"coding" not in raw:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            assert outcome["kind"] == "invalid" and "UTF-8" in outcome["cause"], outcome


@settings(FUZZ, max_examples=12)
@given(raw=raw_blobs, suffix=st.sampled_from([".ipynb", ".py"]))
def test_the_reading_child_reads_any_bytes_as_this_process_does(raw: bytes, suffix: str) -> None:
    here, _ = extract("student" + suffix, raw)
    there, _ = extract_in_child("student" + suffix, raw)

    assert there == here


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_a_truncated_notebook_is_invalid_json(data: st.DataObject) -> None:
    raw = notebook_bytes(lecture_cells())
    cut = data.draw(st.integers(1, len(raw.rstrip()) - 1))

    outcome, _ = extract("student.ipynb", raw[:cut])

    assert outcome["kind"] == "invalid" and outcome["cause"].startswith("not a notebook: invalid JSON at line"), outcome


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_json_nested_past_the_decoder_stack_is_invalid(depth: int) -> None:
    notebook = json.dumps(lecture_notebook_json())
    raw = (notebook[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}").encode()

    outcome, _ = extract("student.ipynb", raw)

    assert outcome["kind"] == "invalid" and "nested too deeply" in outcome["cause"], outcome


@pytest.mark.parametrize("depth", [10, 100, 300])
def test_metadata_nested_a_little_is_still_a_notebook(depth: int) -> None:
    notebook = lecture_notebook_json()
    notebook["metadata"]["deep"] = json.loads("[" * depth + "]" * depth)

    outcome, _ = extract("student.ipynb", json.dumps(notebook).encode())

    assert_net_and_loop_intact(outcome, "cell 3", "cell 4")


@pytest.mark.parametrize(
    "cells", [5, None, {}, {"a": 1}, "cells", [5], [None], [[1]]], ids=lambda c: f"cells={json.dumps(c)}"
)
def test_a_notebook_whose_cells_are_not_a_list_of_cells_is_invalid(cells: Any) -> None:
    notebook = lecture_notebook_json()
    notebook["cells"] = cells

    outcome, _ = extract("student.ipynb", json.dumps(notebook).encode())

    assert outcome["kind"] == "invalid" and outcome["cause"].startswith("not a notebook:"), outcome


@pytest.mark.parametrize("source", [5, 1.5, None, True, {"a": 1}, [], ""], ids=lambda s: f"source={json.dumps(s)}")
def test_a_cell_whose_source_is_not_text_costs_at_most_that_cell(source: Any) -> None:
    notebook = lecture_notebook_json()
    notebook["cells"][1]["source"] = source  # the data download cell

    outcome, _ = extract("student.ipynb", json.dumps(notebook).encode())

    assert_net_and_loop_intact(outcome, "cell 3", "cell 4")
    assert outcome["notes"] == []


# ---------------------------------------------------------------- big cases


def code_cell_json(source: str, number: int) -> dict[str, Any]:
    # new_code_cell validates every cell it makes: 50,000 of them take ~20 s, the file ~4 s
    return nbformat.from_dict(
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{number}",
            "metadata": {},
            "outputs": [],
            "source": source,
        }
    )


@pytest.mark.slow
def test_50_000_cells_are_read_within_the_timeout() -> None:
    sources = ["x = 1"] * 50_000
    sources[0] = v.IMPORTS
    sources[31_415] = v.NET
    sources[49_000] = v.LOOP
    notebook = new_notebook()
    notebook.cells = [code_cell_json(s, i) for i, s in enumerate(sources)]
    raw = nbformat.writes(notebook).encode()

    outcome, seconds = extract_in_child("student.ipynb", raw)

    assert_net_and_loop_intact(outcome, "cell 31416", "cell 49001")
    assert outcome["notes"] == []
    assert seconds < LIMITS.timeout_s, "read in one attempt"


def fifty_megabytes_of_code() -> str:
    line = "weights = [" + ", ".join(["0.5"] * 200) + "]\n"  # 1 KB lines keep the .ipynb close to 50 MB
    return line * (50 * 2**20 // len(line) + 1)


@pytest.mark.slow
def test_a_50_mb_cell_is_skipped_with_a_note_and_net_and_loop_survive() -> None:
    cells = [
        Cell("code", v.IMPORTS),
        Cell("code", v.NET, "net"),
        Cell("code", fifty_megabytes_of_code(), "noise"),
        Cell("code", v.LOOP, "loop"),
    ]
    raw = notebook_bytes(cells)
    assert len(raw) < 64 * 2**20, "under the default max_submission_mb, so the host would read it"

    outcome, _ = extract_in_child("student.ipynb", raw)

    assert_net_and_loop_intact(outcome, "cell 2", "cell 4")
    assert outcome["notes"] == [
        "cell 3 holds 50.0 MB of code, over the 1.0 MB limit for one cell; this cell was skipped"
    ]


@pytest.mark.slow
def test_a_huge_skipped_cell_does_not_cost_a_correct_cell() -> None:
    # A Net reading 60 module-level settings, as notebooks with a hyperparameter cell do.
    settings_cell = "".join(f"H{i} = {i}\n" for i in range(60))
    net = v.NET.replace(
        "        self.fc2 = nn.Linear(32, 2)\n",
        "        self.fc2 = nn.Linear(32, 2)\n        self.scale = " + " + ".join(f"H{i}" for i in range(60)) + "\n",
    )
    cells = [
        Cell("code", v.IMPORTS),
        Cell("code", settings_cell),
        Cell("code", "x = 1\n" * (20 * 2**20 // 6), "noise"),
        Cell("code", net),
        Cell("code", v.LOOP, "loop"),
    ]
    limits = ReadingLimits(timeout_s=6.0, memory_mb=2048, max_cell_chars=1024 * 1024)

    outcome, _ = extract_in_child("student.ipynb", notebook_bytes(cells), limits=limits)

    assert outcome["kind"] == "extracted", outcome
    assert {"source": net, "filename": "cell 4", "line": 1} in outcome["units"]
    assert {"source": v.LOOP, "filename": "cell 5", "line": 1} in outcome["units"]
    assert outcome["notes"] == [
        "cell 3 holds 20.0 MB of code, over the 1.0 MB limit for one cell; this cell was skipped"
    ]


def test_deeply_nested_cell_magics_are_read_quickly_and_cost_nothing_else() -> None:
    # 10,000 nested %%time (70 KB): IPython's transformer would spend ~40 s unwrapping them one
    # level at a time; the extractor unwraps a few levels only, and the rest is not a definition.
    cells = [
        Cell("code", v.IMPORTS),
        Cell("code", v.NET, "net"),
        Cell("code", "%%time\n" * 10_000 + "x = 1\n", "noise"),
        Cell("code", v.LOOP, "loop"),
    ]
    limits = ReadingLimits(timeout_s=3.0, memory_mb=2048, max_cell_chars=1024 * 1024)

    outcome, seconds = extract_in_child("student.ipynb", notebook_bytes(cells), limits=limits)

    assert_net_and_loop_intact(outcome, "cell 2", "cell 4")
    assert outcome["notes"] == []
    assert seconds < limits.timeout_s
