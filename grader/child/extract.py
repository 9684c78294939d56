"""Stage 2, extract: pull the definitions a check needs out of a notebook, without running it.

From the code cells we keep imports, class and function definitions and the top-level
assignments those definitions read (`device = torch.device(...)`, `N_CHANS = 16`), found by
following names from the roots (`Net`, `training_loop`) as the notebook would bind them running
top to bottom: a name read as a statement runs (a base class, a decorator, a default argument,
a class body, a setting's value) is the binding in force where that statement stands; a name
read in a function body, and a root, is the last binding. Statements of an
`if __name__ == "__main__":` block count as top level. Top-level work — dataset downloads, training, plotting, printing — is
never kept. An assignment is kept only if evaluating it is cheap and harmless: literals,
arithmetic, and calls on an allow-list (`torch.device`, `torch.nn.*`, `int`, ...).

This module parses text; it never executes student code. A submission's text is untrusted and
Python's parser has failure modes of its own (RecursionError, MemoryError, even a crash on deep
nesting), so for submissions it runs only in a limited child (grader/isolate/reading.py); a
cell the parser cannot take is skipped with a note, like a cell with a syntax error.
"""

from __future__ import annotations

import ast
import bisect
import builtins
import math
import re
import symtable
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grader.child.cells import SourceCell, python_lines
from grader.protocol import Unit

if TYPE_CHECKING:  # imported where used: the grading host imports this module but never parses
    from IPython.core.inputtransformer2 import TransformerManager

# Cell magics whose body is ordinary Python that runs in the notebook's namespace.
_PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}

_BUILTIN_NAMES = set(dir(builtins))

# Calls allowed on the right-hand side of a kept top-level assignment. Dotted names are
# resolved through the notebook's imports (`nn.Conv2d` -> `torch.nn.Conv2d`).
_SAFE_CALLS = {
    *(f"builtins.{n}" for n in (
        "int", "float", "str", "bool", "tuple", "list", "dict", "set", "frozenset", "range", "len",
        "min", "max", "abs", "round", "sum", "sorted", "enumerate", "zip", "pow", "divmod", "reversed",
    )),
    "torch.device", "torch.cuda.is_available", "torch.cuda.device_count", "torch.backends.mps.is_available",
    "torch.get_default_dtype", "torch.tensor", "torch.zeros", "torch.ones", "torch.arange", "torch.full",
    "torch.linspace", "torch.eye",
    # mixed precision on Colab: a scaler made once at top level; on the CPU it disables itself
    "torch.cuda.amp.GradScaler", "torch.amp.GradScaler",
}
_SAFE_CALL_PREFIXES = ("math.", "torch.nn.")


@dataclass(frozen=True)
class ProgramUnit:
    """One kept top-level statement, compiled by the child with its original location."""

    source: str
    filename: str  # "cell 4", or the script's file name
    line: int  # first line of the statement within `filename`

    def to_json(self) -> Unit:
        return {"source": self.source, "filename": self.filename, "line": self.line}


@dataclass
class ExtractedProgram:
    """What survives extraction, plus notes the student should read."""

    units: list[ProgramUnit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the notes that are problems reading the file
    # root -> title of the cell (SourceCell.title) whose binding of it is graded: the last one.
    # Used in the reading child to annotate that cell; not part of the JSON sent to the host.
    defined_in: dict[str, str] = field(default_factory=dict)

    def source_text(self) -> str:
        """The extracted program as one readable file, for feedback and debugging."""
        parts = []
        for unit in self.units:
            parts.append(f"# --- {unit.filename}, line {unit.line}\n{unit.source.rstrip()}\n")
        return "\n".join(parts)

    def to_json(self) -> list[Unit]:
        return [u.to_json() for u in self.units]

    @classmethod
    def from_json(cls, document: Any, *, max_items: int = 100_000) -> ExtractedProgram:
        """The program a reading child reported (see grader/isolate/reading.py), checked for
        form before the grading host uses it; raises ValueError when it is malformed."""
        if not isinstance(document, dict):
            raise ValueError("the extraction result is not an object")
        units, notes, problems = document.get("units"), document.get("notes"), document.get("problems")
        if not (isinstance(units, list) and isinstance(notes, list) and isinstance(problems, list)):
            raise ValueError("the extraction result lacks its lists")
        if max(len(units), len(notes), len(problems)) > max_items:
            raise ValueError("the extraction result lacks its lists")
        if not all(isinstance(n, str) for n in [*notes, *problems]):
            raise ValueError("the extraction result has a note that is not text")
        program = cls(notes=list(notes), problems=list(problems))
        for unit in units:
            if not (
                isinstance(unit, dict)
                and isinstance(unit.get("source"), str)
                and isinstance(unit.get("filename"), str)
                and isinstance(unit.get("line"), int)
            ):
                raise ValueError("the extraction result has a malformed unit")
            program.units.append(ProgramUnit(unit["source"], unit["filename"], unit["line"]))
        return program

    def note_problem(self, note: str) -> None:
        self.notes.append(note)
        self.problems.append(note)


@dataclass
class _Statement:
    node: ast.stmt
    source: str
    filename: str
    line: int
    where: str
    order: int
    cell_title: str  # SourceCell.title of its cell, as `skip` names it


# What Python's parser and the standard library's AST tools raise, besides SyntaxError, on text
# they cannot take: deep nesting (RecursionError, or MemoryError from the parser's own stack),
# null bytes (ValueError), internal limits (SystemError, OverflowError).
PARSER_FAILURES = (RecursionError, MemoryError, ValueError, SystemError, OverflowError)

Progress = Callable[[str], None]


def parser_failure(exc: BaseException) -> str:
    """Why the parser could not take a piece of code, in words for the student."""
    if isinstance(exc, (RecursionError, MemoryError)):
        return f"is nested too deeply for Python's parser ({type(exc).__name__})"
    return f"cannot be parsed by Python ({type(exc).__name__}: {str(exc)[:120]})"


def extract_definitions(
    cells: Iterable[SourceCell],
    roots: Iterable[str],
    *,
    max_cell_chars: int | None = None,
    skip: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> ExtractedProgram:
    """Keep what `roots` need from `cells`, in notebook order; report what had to be left out.

    Cells longer than `max_cell_chars`, and cells whose `title` is a key of `skip` (the value
    says why, e.g. "made Python's parser crash"), are left out with a note. `progress(label)` is called before
    each cell and each kept statement is worked on, so a supervisor can tell which one a crash
    of the parsing process came from.
    """
    program = ExtractedProgram()
    skipped: dict[str, str] = {}  # title -> source of each cell that could not be used
    statements = _parse_cells(cells, program, max_cell_chars, skip or {}, progress or (lambda label: None), skipped)
    aliases = _import_aliases(statements)
    bindings = _Bindings(statements)
    roots = list(roots)
    for root in roots:
        graded = bindings.live(root, math.inf)
        if graded is not None:
            program.defined_in[root] = graded.cell_title
    kept: dict[int, _Statement] = {s.order: s for s in statements if _is_star_import(s.node)}
    # (name, position it is read at, who reads it): roots are read after the whole notebook ran.
    pending: list[tuple[str, float, str | None]] = [(name, math.inf, None) for name in roots]
    if any(not bindings.defines(name) and not bindings.patched(name) for name in roots):
        # A graded name the notebook never binds may be there under another (`class Model(nn.Module)`,
        # `def train(...)`): keep the other classes and functions, so the probes can say which.
        pending += [(name, math.inf, None) for name in _other_definitions(statements, roots)]
    unparsable: set[int] = set()

    def keep(stmt: _Statement, name: str) -> None:
        if stmt.order in unparsable:
            return
        if progress:
            progress(stmt.cell_title)
        try:
            at_definition, at_call = _global_references(stmt)
        except PARSER_FAILURES as exc:
            unparsable.add(stmt.order)
            program.note_problem(f"{stmt.where}: the definition of '{name}' {parser_failure(exc)}; it was skipped")
            return
        kept[stmt.order] = stmt
        user = f"'{name}' ({stmt.where})"
        # A class statement, a decorator, a default argument or a setting reads names as it runs,
        # where it stands in the notebook; a function body reads them when it is called.
        for refs, position in ((at_definition, stmt.order), (at_call, math.inf)):
            for ref in sorted(refs):
                if ref not in _BUILTIN_NAMES or bindings.defines(ref):
                    pending.append((ref, position, user))

    seen: set[tuple[str, int | None]] = set()
    while pending:
        name, position, user = pending.pop(0)
        stmt = bindings.live(name, position)
        order = stmt.order if stmt is not None else None
        if (name, order) in seen:
            continue
        seen.add((name, order))
        later = bindings.first(name)
        if stmt is None and user is not None and later is not None:
            program.notes.append(
                f"{user} uses '{name}', which the notebook binds only further down ({later.where}); it runs top to "
                f"bottom, so move that line above"
            )
        if stmt is None and user is not None and later is None and not bindings.patched(name):
            mentions = _mentioned_in(name, skipped)
            if mentions:
                program.notes.append(
                    f"{user} uses '{name}', which no cell the grader could read defines; "
                    f"the skipped {', '.join(mentions)} mentions it"
                )
        if stmt is not None:
            if not _is_definition_only(stmt.node, aliases):
                if user is not None:
                    program.notes.append(
                        f"{user} uses '{name}', which only top-level code creates ({stmt.where}); the grader "
                        f"does not run top-level code, so define '{name}' inside the function or pass it as an argument"
                    )
                continue
            keep(stmt, name)
        # `Net.forward = forward` after the class: part of the definition, as when run top to bottom.
        for patch in bindings.patches_after(name, stmt, position):
            if _is_definition_only(patch.node, aliases):
                keep(patch, name)

    program.units = [ProgramUnit(s.source, s.filename, s.line) for _, s in sorted(kept.items())]
    return program


MAX_OTHER_DEFINITIONS = 16


def _other_definitions(statements: list[_Statement], roots: list[str]) -> list[str]:
    """Top-level classes and functions besides the roots, the last ones first (at most 16)."""
    names: list[str] = []
    for stmt in reversed(statements):
        node = stmt.node
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in roots and node.name not in names:
            names.append(node.name)
    return names[:MAX_OTHER_DEFINITIONS]


def _mentioned_in(name: str, skipped: dict[str, str]) -> list[str]:
    """Titles of the skipped cells whose text has `name` as a word."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return [title for title, text in skipped.items() if name in text and word.search(text)]


class _Bindings:
    """Where each name is bound, and changed in place, in notebook order."""

    def __init__(self, statements: list[_Statement]) -> None:
        self._bound: dict[str, list[_Statement]] = {}
        self._patches: dict[str, list[_Statement]] = {}
        for stmt in statements:
            for name in _bound_names(stmt.node):
                self._bound.setdefault(name, []).append(stmt)
            for name in _patched_names(stmt.node):
                self._patches.setdefault(name, []).append(stmt)

    def defines(self, name: str) -> bool:
        return name in self._bound

    def first(self, name: str) -> _Statement | None:
        found = self._bound.get(name)
        return found[0] if found else None

    def patched(self, name: str) -> bool:
        return name in self._patches

    def live(self, name: str, position: float) -> _Statement | None:
        """The binding of `name` in force just before `position` (a statement's order), as when
        the notebook runs top to bottom; None when there is none yet."""
        found = self._bound.get(name, [])
        index = bisect.bisect_left([s.order for s in found], position)
        return found[index - 1] if index else None

    def patches_after(self, name: str, binding: _Statement | None, position: float) -> list[_Statement]:
        """Changes to `name` made after `binding` and before `position`."""
        start = binding.order if binding is not None else -1
        return [p for p in self._patches.get(name, []) if start < p.order < position]


def _is_star_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)


# ---------------------------------------------------------------- parsing cells


def _parse_cells(
    cells: Iterable[SourceCell],
    program: ExtractedProgram,
    max_cell_chars: int | None,
    skip: dict[str, str],
    progress: Progress,
    skipped: dict[str, str],
) -> list[_Statement]:
    """The top-level statements of every cell that parses; the others go to `skipped`."""
    from IPython.core.inputtransformer2 import TransformerManager

    transformer = TransformerManager()
    statements: list[_Statement] = []
    for cell in cells:
        label = cell.title
        if label in skip:
            program.note_problem(f"{label} {skip[label]}; this cell was skipped")
            skipped[label] = cell.source
            continue
        if max_cell_chars is not None and len(cell.source) > max_cell_chars:
            program.note_problem(
                f"{label} holds {_size(len(cell.source))} of code, over the {_size(max_cell_chars)} limit for one cell; this cell was skipped"
            )
            skipped[label] = ""  # too large to search for the names it might define
            continue
        progress(label)
        try:
            statements.extend(_cell_statements(cell, transformer, len(statements)))
        except SyntaxError as exc:
            line = (exc.lineno or 1) + getattr(exc, "line_shift", 0)
            program.note_problem(f"{cell.where(line)}: SyntaxError: {exc.msg}; this cell was skipped")
            skipped[label] = cell.source
        except PARSER_FAILURES as exc:
            program.note_problem(f"{label} {parser_failure(exc)}; this cell was skipped")
            skipped[label] = cell.source
    return statements


def _size(chars: int) -> str:
    return f"{chars / 2**20:.1f} MB" if chars >= 2**20 else f"{chars / 2**10:.0f} KB"


def _cell_statements(cell: SourceCell, transformer: TransformerManager, first_order: int) -> list[_Statement]:
    """The cell's top-level statements; raises what the parser raises."""
    source, line_shift = plain_python(cell.source, transformer)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        exc.line_shift = line_shift  # type: ignore[attr-defined]
        raise
    lines = python_lines(source)
    body = _top_level(tree.body)
    shared_lines = _lines_with_several_statements(body)
    statements: list[_Statement] = []
    for node in body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno or node.lineno
        if shared_lines & set(range(start, end + 1)):
            # Its line holds other statements too. Decided before anything reads the line: a line
            # of n statements read once per statement costs n² (100,000 took minutes).
            text = ast.unparse(node) + "\n"
        else:
            text = "".join(lines[start - 1 : end])
            if node.col_offset:  # from inside a main guard: its own text, dedented, where that parses
                text = textwrap.dedent(text)
                if not _parses(text):
                    text = ast.unparse(node) + "\n"
        line_in_cell = start + line_shift
        line = line_in_cell if cell.is_notebook else cell.first_line + line_in_cell - 1
        order = first_order + len(statements)
        statements.append(_Statement(node, text, cell.label, line, cell.where(line_in_cell), order, cell.title))
    return statements


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run at top level when the notebook or script runs: those of an
    `if __name__ == "__main__":` block count, as they run there too (`__name__` is "__main__"
    in a notebook and in a script run as one). Extraction then keeps its safe settings, like
    `device = ...`, and never its training."""
    statements: list[ast.stmt] = []
    for node in body:
        if _is_main_guard(node):
            statements.extend(_top_level(node.body))  # type: ignore[attr-defined]
        else:
            statements.append(node)
    return statements


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    sides = [node.test.left, *node.test.comparators]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return isinstance(node.test.ops[0], ast.Eq) and names == ["__name__"] and values == ["__main__"]


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


# `%%time` inside `%%capture` is real; deeper nesting is not, and each level costs a transform.
_MAX_NESTED_CELL_MAGICS = 8


def plain_python(source: str, transformer: TransformerManager, depth: int = 0) -> tuple[str, int]:
    """Turn IPython syntax into Python with IPython's own transformer; unwrap `%%time`-style cells.

    Returns the source and how many lines the cell's own numbering is ahead of it.
    """
    try:
        text = transformer.transform_cell(source)
    except Exception:  # IPython gives up on some malformed input; let ast report the error
        return source, 0
    # IPython drops a cell's leading blank lines; put them back so line numbers stay true.
    text = "\n" * (_leading_blank_lines(source) - _leading_blank_lines(text)) + text
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text, 0
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        call = tree.body[0].value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "run_cell_magic":
            texts = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if len(call.args) == len(texts) == 3 and texts[0] in _PYTHON_CELL_MAGICS and depth < _MAX_NESTED_CELL_MAGICS:
                body, shift = plain_python(texts[2], transformer, depth + 1)
                return body, shift + 1
    return text, 0


def _leading_blank_lines(text: str) -> int:
    count = 0
    for line in text.splitlines():
        if line.strip():
            break
        count += 1
    return count


def _lines_with_several_statements(body: list[ast.stmt]) -> set[int]:
    counts: dict[int, int] = {}
    for node in body:
        for line in {node.lineno, node.end_lineno or node.lineno}:
            counts[line] = counts.get(line, 0) + 1
    return {line for line, n in counts.items() if n > 1}


# ---------------------------------------------------------------- names


def _bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the module namespace."""
    if isinstance(node, ast.Import):
        return {(a.asname or a.name.split(".")[0]) for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {(a.asname or a.name) for a in node.names if a.name != "*"}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    names: set[str] = set()
    if isinstance(node, ast.AugAssign):
        return names  # `H *= 2` updates H; it is kept as a patch after H's own binding
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        for target in _targets(node):
            names |= _target_names(target)
        return names
    if isinstance(node, (ast.If, ast.Try, ast.For, ast.While, ast.With)):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                names |= _bound_names(child)
            elif isinstance(child, ast.ExceptHandler):
                for inner in child.body:
                    names |= _bound_names(inner)
        if isinstance(node, ast.For):
            names |= _target_names(node.target)
    return names


def _targets(node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> list[ast.expr]:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def _target_names(target: ast.expr) -> set[str]:
    """Names an assignment target rebinds: `a`, `a, b`, `*rest` — not `a.x` or `a[0]`."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def _patched_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement changes in place: `Net.forward = f`, `H *= 2`."""
    if not isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return set()
    found = set()
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        found.add(node.target.id)
    for target in _targets(node):
        while isinstance(target, (ast.Attribute, ast.Subscript)):
            target = target.value
            if isinstance(target, ast.Name):
                found.add(target.id)
    return found


def _global_references(stmt: _Statement) -> tuple[set[str], set[str]]:
    """Module-level names the statement reads (via symtable): as it runs (base classes,
    decorators, default arguments, class bodies, comprehensions, the value of a setting), and
    when its functions are called later (function and lambda bodies)."""
    try:
        table = symtable.symtable(ast.unparse(stmt.node), stmt.filename, "exec")
    except SyntaxError:
        return set(), set()
    at_definition: set[str] = set()
    at_call: set[str] = set()

    def visit(t: symtable.SymbolTable, top: bool, now: bool) -> None:
        for sym in t.get_symbols():
            if not sym.is_referenced():
                continue
            if (top and not sym.is_imported()) or (not top and sym.is_global()):
                (at_definition if now else at_call).add(sym.get_name())
        for child in t.get_children():
            runs_now = child.get_type() == "class" or child.get_name() in _COMPREHENSIONS
            visit(child, False, now and runs_now)

    visit(table, True, True)
    if isinstance(stmt.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        at_definition.discard(stmt.node.name)  # the name is bound by the statement itself, after it runs
    return at_definition, at_call


_COMPREHENSIONS = {"listcomp", "setcomp", "dictcomp", "genexpr"}


def _import_aliases(statements: list[_Statement]) -> dict[str, str]:
    """Local name -> dotted module path, e.g. nn -> torch.nn, F -> torch.nn.functional."""
    aliases: dict[str, str] = {}
    for stmt in statements:
        node = stmt.node
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    root = a.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


# ---------------------------------------------------------------- what is safe to keep


def _is_definition_only(node: ast.stmt, aliases: dict[str, str]) -> bool:
    """True for statements that only define things: running them does no real work."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return _is_cheap_expression(node.value, aliases)
    if isinstance(node, ast.AnnAssign):
        return node.value is None or _is_cheap_expression(node.value, aliases)
    if isinstance(node, ast.AugAssign):
        return _is_cheap_expression(node.value, aliases)
    if isinstance(node, ast.If):
        return _is_cheap_expression(node.test, aliases) and all(
            _is_definition_only(s, aliases) for s in node.body + node.orelse
        )
    if isinstance(node, ast.Try):
        handlers = [s for h in node.handlers for s in h.body]
        return all(_is_definition_only(s, aliases) for s in node.body + handlers + node.orelse + node.finalbody)
    return bool(isinstance(node, ast.Pass))


def _is_cheap_expression(expr: ast.expr, aliases: dict[str, str]) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        if isinstance(node, ast.Call) and not _is_safe_call(node.func, aliases):
            return False
    return True


def _is_safe_call(func: ast.expr, aliases: dict[str, str]) -> bool:
    dotted = _dotted_name(func)
    if dotted is None:
        return False
    head, _, rest = dotted.partition(".")
    if head in aliases:
        qualified = aliases[head] + (f".{rest}" if rest else "")
    elif head in _BUILTIN_NAMES and not rest:
        qualified = f"builtins.{head}"
    else:
        return False
    return qualified in _SAFE_CALLS or qualified.startswith(_SAFE_CALL_PREFIXES)


def _dotted_name(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None
