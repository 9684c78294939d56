"""Reading an instructor's solution notebook, and what `grader assign` makes of it.

The notebook holds everything: the solution in marked regions (grader/authoring/regions.py), the
assignment's settings in a raw cell with the content of `assignment.toml` (or in the notebook's
metadata under "grader"), and cells only instructors see, tagged `hidden` (also nbgrader-style
`remove-cell` and Otter's `otter_ignore`). From it come:

- the student notebook: hidden cells and the config cell removed, each solution a stub, outputs
  cleared, and a final `selfcheck()` cell;
- the reference module: the solution's Net, training loop and what they need, kept by the same
  extraction that reads submissions;
- the config: the settings as written, plus what the solution shows (the class and loop names,
  the loop's parameters) where they are not given.

The instructor's code is read, never run, here; `grader assign` runs it in a worker to verify it.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from grader.authoring.regions import solution_text, student_text
from grader.child.cells import SourceCell
from grader.child.extract import extract_definitions, plain_python
from grader.errors import AuthoringError

HIDDEN_TAGS = frozenset({"hidden", "remove-cell", "otter_ignore"})
CONFIG_MARK = "# ASSIGNMENT CONFIG"  # Otter's first line of a config cell; optional here
_GENERATED_MARK = "derived from the solution by grader assign"


@dataclass
class SolutionNotebook:
    path: Path
    notebook: nbformat.NotebookNode
    config_text: str  # TOML, as the instructor wrote it
    config_cell: int | None  # index of the raw cell that holds it; None when it is in the metadata

    def kept_cells(self) -> list[tuple[int, nbformat.NotebookNode]]:
        """Every cell but the config cell, with its index."""
        return [(i, cell) for i, cell in enumerate(self.notebook.cells) if i != self.config_cell]

    def code_cells(self) -> list[SourceCell]:
        """The solution as the reference runs it: every code cell, hidden ones included, markers gone."""
        return [
            SourceCell(f"cell {i + 1}", solution_text(cell.source, f"{self.path}, cell {i + 1}"))
            for i, cell in self.kept_cells()
            if cell.cell_type == "code"
        ]


@dataclass(frozen=True)
class Derived:
    """What the solution shows about itself."""

    name: str
    title: str
    notebook: str  # the student notebook's file name
    class_name: str | None  # None: the assignment grades only the loop
    function_name: str | None  # None: the assignment grades only the network
    signature: list[str]  # the loop's parameters ([] without a loop)
    default: bool  # the course's default assignment: selfcheck() finds it without a name

    @property
    def graded(self) -> str:
        """The graded names as the student notebook's words put them: "`Net` and `training_loop`"."""
        return " and ".join(f"`{name}`" for name in (self.class_name, self.function_name) if name)


def read_solution(path: Path) -> SolutionNotebook:
    """The solution notebook at `path`, with its config found; AuthoringError naming what is wrong."""
    try:
        notebook = nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise AuthoringError(f"{path}: solution notebook not found") from None
    except Exception as exc:  # nbformat raises several kinds for a damaged file
        raise AuthoringError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None
    configs = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "raw" and _is_config(cell.source)]
    in_metadata = notebook.metadata.get("grader")
    if len(configs) > 1 or (configs and in_metadata):
        where = [f"cell {i + 1}" for i in configs] + (["the notebook metadata"] if in_metadata else [])
        raise AuthoringError(f"{path}: the assignment config is given more than once ({', '.join(where)}); keep one")
    if configs:
        text = notebook.cells[configs[0]].source
        _parse_config(text, f"{path}, cell {configs[0] + 1}")
        return SolutionNotebook(path, notebook, text, configs[0])
    if isinstance(in_metadata, dict):
        return SolutionNotebook(path, notebook, toml_text(in_metadata), None)
    raise AuthoringError(
        f"{path}: no assignment config: add a raw cell holding the content of assignment.toml, at least\n"
        "[model]\ninput_shape = [3, 32, 32]\nnum_classes = 2\n(see assignments/cifar2/assignment.toml for every setting)"
    )


def _is_config(text: str) -> bool:
    if text.lstrip().startswith(CONFIG_MARK):
        return True
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return bool({"assignment", "model"} & raw.keys())


def _parse_config(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AuthoringError(f"{where}: the config cell is not valid TOML (the content of assignment.toml): {exc}") from None


def derive(solution: SolutionNotebook, default_name: str) -> Derived:
    """The config's names and the loop's parameters: as the config gives them, else from the
    solution's code; stops naming what is missing."""
    raw = _parse_config(solution.config_text, config_where(solution))
    head, model, loop = (raw.get(section, {}) for section in ("assignment", "model", "loop"))
    missing = [f"[model] {key}" for key in ("input_shape", "num_classes") if key not in model]
    if missing:
        raise AuthoringError(
            f"{config_where(solution)}: the config does not give {' and '.join(missing)}; the grader does not guess "
            "the data's shape (for example input_shape = [3, 32, 32] and num_classes = 2)"
        )
    trees = _parsed_cells(solution)
    classes = _module_classes(trees)
    functions = _training_functions(trees)
    # What the config names, else what the solution shows: the one network class (no other class
    # uses it) and the one training function. A solution without either grades the other alone.
    class_name = model.get("class_name") or _one_or_none(_unused(classes), solution, "nn.Module class", "[model] class_name", every=sorted(classes))
    function_name = loop.get("function_name") or _one_or_none(
        sorted(functions), solution, "training function (one that calls backward() and step())", "[loop] function_name"
    )
    if class_name is None and function_name is None:
        raise AuthoringError(
            f"{solution.path}: the solution defines neither an nn.Module class nor a training function (one that calls "
            "backward() and step()): there is nothing to grade"
        )
    if class_name is not None and class_name not in classes:
        raise AuthoringError(f"{solution.path}: the solution defines no nn.Module class {class_name!r} (the config's [model] class_name)")
    every_function = {node.name: node for tree in trees for node in tree.body if isinstance(node, ast.FunctionDef)}
    if function_name is not None and function_name not in every_function:
        raise AuthoringError(f"{solution.path}: the solution defines no function {function_name!r} (the config's [loop] function_name)")
    signature = loop.get("signature") or ([a.arg for a in every_function[function_name].args.args] if function_name else [])
    name = head.get("name") or default_name
    return Derived(
        name=name,
        title=head.get("title") or _first_heading(solution) or name,
        notebook=head.get("notebook") or f"{name}.ipynb",
        class_name=class_name,
        function_name=function_name,
        signature=signature,
        default=head.get("default") is True,
    )


def config_text(solution: SolutionNotebook, derived: Derived) -> str:
    """assignment.toml: a header, the settings as written, then each derived key in its section."""
    raw = _parse_config(solution.config_text, config_where(solution))
    text = solution.config_text.strip("\n")
    if text.lstrip().startswith(CONFIG_MARK):
        text = text.lstrip()[len(CONFIG_MARK) :].lstrip("\n")
    additions = [
        ("assignment", "name", derived.name),
        ("assignment", "title", derived.title),
        ("assignment", "notebook", derived.notebook),
        ("model", "class_name", derived.class_name),
        ("loop", "function_name", derived.function_name),
        ("loop", "signature", derived.signature),
    ]
    for section, key, value in reversed(additions):  # each goes to the top of its section: keep their order
        if value and key not in raw.get(section, {}):  # (no class or loop: the assignment grades the other)
            text = _with_key(text, section, key, value)
    header = (
        f"# Generated by grader assign from the solution notebook {solution.path.name}: edit its config cell\n"
        "# and run grader assign again rather than editing this file.\n"
    )
    return header + text + "\n"


def student_notebook(solution: SolutionNotebook, derived: Derived) -> nbformat.NotebookNode:
    """What students get: no hidden or config cell, stubs for solutions, no outputs, a selfcheck cell."""
    parse = _cell_parser()

    def parses(code: str) -> bool:
        try:
            parse(code)
        except (SyntaxError, ValueError):
            return False
        return True

    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {k: copy.deepcopy(v) for k, v in solution.notebook.metadata.items() if k in ("kernelspec", "language_info")}
    for index, cell in solution.kept_cells():
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & HIDDEN_TAGS:
            continue
        where = f"{solution.path}, cell {index + 1}"
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(student_text(cell.source, where, parses=parses))
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(student_text(cell.source, where, markdown=True))
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        if tags:
            new.metadata["tags"] = sorted(tags)
        notebook.cells.append(new)
    if not any(cell.cell_type == "code" and re.search(r"\bselfcheck\(", cell.source) for cell in notebook.cells):
        notebook.cells += [
            nbformat.v4.new_markdown_cell(
                "## Check your work\n\n"
                f"Before you hand in, run your {derived.graded} cell{'s' if derived.function_name and derived.class_name else ''}, then the cell below: "
                "it runs the public checks and shows your points, with a reason for every lost point."
            ),
            nbformat.v4.new_code_cell(selfcheck_source(derived)),
        ]
    for cell in notebook.cells:
        cell.pop("id", None)  # ids are random; without them the file is the same on every run
    notebook.nbformat_minor = 4
    return notebook


def selfcheck_source(derived: Derived) -> str:
    """The student notebook's last cell; it names the assignment unless it is the course's default."""
    call = "selfcheck()" if derived.default else f"selfcheck(assignment={json.dumps(derived.name)})"
    return f"from grader import selfcheck\n{call}"


def reference_source(solution: SolutionNotebook, derived: Derived) -> str:
    """The reference module: what grading needs of the solution, kept by the submissions' extraction."""
    program = extract_definitions(solution.code_cells(), [name for name in (derived.class_name, derived.function_name) if name])
    if program.notes:
        raise AuthoringError(f"{solution.path}: " + "; ".join(program.notes))
    docstring = (
        f'"""Instructor solution for the {derived.name} assignment: {derived.title}.\n\n'
        f"Generated by grader assign from the solution notebook {solution.path.name}: edit that notebook and run\n"
        "grader assign again rather than editing this file. The grader derives every expected value from\n"
        f"this module at run time. Students never see it: selfcheck uses the assignment's fixtures.json.\n"
        '"""\n'
    )
    parts = [docstring]
    previous_import = False
    for unit in program.units:
        source = unit.source.strip("\n")
        is_import = bool(re.match(r"(import|from)\s", source)) and "\n" not in source
        parts.append(("\n" if previous_import and is_import else "\n\n\n" if parts[1:] else "\n") + source)
        previous_import = is_import
    return "".join(parts) + "\n"


# ---------------------------------------------------------------- reading the solution's code


def _cell_parser() -> Callable[[str], ast.Module]:
    """Parse a cell as extraction reads a submission's (grader.child.extract.plain_python: IPython's
    transformer for magics, `%%time`-style cells unwrapped); raises SyntaxError or ValueError."""
    from IPython.core.inputtransformer2 import TransformerManager

    transformer = TransformerManager()
    return lambda code: ast.parse(plain_python(code, transformer)[0])


def _parsed_cells(solution: SolutionNotebook) -> list[ast.Module]:
    parse = _cell_parser()
    trees = []
    for cell in solution.code_cells():
        try:
            trees.append(parse(cell.source))
        except (SyntaxError, ValueError) as exc:
            raise AuthoringError(f"{solution.path}, {cell.label}: the solution does not parse ({exc})") from None
    return trees


def _module_classes(trees: list[ast.Module]) -> dict[str, ast.ClassDef]:
    """Top-level classes that are nn.Modules: based on `Module` (any prefix) or on one of these."""
    classes = {node.name: node for tree in trees for node in tree.body if isinstance(node, ast.ClassDef)}
    modules: dict[str, ast.ClassDef] = {}
    grew = True
    while grew:
        grew = False
        for name, node in classes.items():
            if name not in modules and any(_last_name(base) in ("Module", *modules) for base in node.bases):
                modules[name] = node
                grew = True
    return modules


def _unused(classes: dict[str, ast.ClassDef]) -> list[str]:
    """The module classes no other one uses (as a layer or a base): the network, not its blocks."""
    used = {
        n.id if isinstance(n, ast.Name) else n.attr
        for name, node in classes.items()
        for n in ast.walk(node)
        if isinstance(n, (ast.Name, ast.Attribute)) and (n.id if isinstance(n, ast.Name) else n.attr) != name
    }
    return sorted(name for name in classes if name not in used)


def _training_functions(trees: list[ast.Module]) -> set[str]:
    """Top-level functions that call both `.backward()` and `.step()`."""
    found = set()
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                called = {n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
                if {"backward", "step"} <= called:
                    found.add(node.name)
    return found


def _one_or_none(candidates: list[str], solution: SolutionNotebook, what: str, key: str, every: list[str] | None = None) -> str | None:
    """The one candidate, None when there is none; several cannot be told apart."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    raise AuthoringError(
        f"{solution.path}: cannot tell which {what} students write (found: {', '.join(candidates)}); name it in the config as {key}"
    )


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _first_heading(solution: SolutionNotebook) -> str | None:
    for _, cell in solution.kept_cells():
        if cell.cell_type == "markdown":
            match = re.search(r"^#{1,2}\s+(.+?)\s*#*\s*$", cell.source, re.MULTILINE)
            if match:
                return match.group(1)
    return None


def config_where(solution: SolutionNotebook) -> str:
    """Where the solution's settings are edited: its config cell, or its metadata."""
    if solution.config_cell is None:
        return f"{solution.path}, notebook metadata 'grader'"
    return f"{solution.path}, cell {solution.config_cell + 1}"


# ---------------------------------------------------------------- writing TOML


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string uses the same escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise AuthoringError(f"cannot write {value!r} in assignment.toml (only text, numbers, true/false and lists)")


def toml_text(document: dict[str, Any]) -> str:
    """A config given as notebook metadata, written as assignment.toml (tables of tables: checks)."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if scalars or not values:
            lines.extend(["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in scalars.items())])
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{_key(key)}", value)

    for section, values in document.items():
        if not isinstance(values, dict):
            raise AuthoringError(f"notebook metadata 'grader': {section!r} must be a table of settings, like [{section}] in assignment.toml")
        table(_key(section), values)
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _with_key(text: str, section: str, key: str, value: Any) -> str:
    """`text` with `key = value` added at the top of [section] (the section appended if absent)."""
    entry = f"{key} = {toml_value(value)}  # {_GENERATED_MARK}"
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]\s*(#.*)?$")
    for index, line in enumerate(lines):
        if header.match(line):
            lines.insert(index + 1, entry)
            return "\n".join(lines)
    lines += ["", f"[{section}]"] if lines else [f"[{section}]"]
    return "\n".join([*lines, entry])
