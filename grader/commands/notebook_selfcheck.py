"""`selfcheck()` in a notebook cell: the checks of `grader selfcheck NOTEBOOK` on the `Net` and
`training_loop` the running kernel defined, shown as a table (HTML in Jupyter, text elsewhere).

The kernel's objects never reach the grader: like the command, this grades source code, so the
checks, the reasons and the sandbox are the command's. The source is the kernel's executed
cells in the order they ran (the last definition run wins, as in the kernel), or outside IPython
the calling script's file. It is written to a temporary notebook or script and graded by
`check_submission`. Extraction never keeps top-level calls, so the `selfcheck()` call in the
graded cells does not run again.

Hidden checks are graded, but only the summary (public results, the number of hidden checks)
is kept, shown or returned.
"""

from __future__ import annotations

import ast
import atexit
import inspect
import io
import os
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from rich.console import Console

from grader.assignment import Assignment, find_assignment
from grader.child.cells import read_cells
from grader.commands.selfcheck import SelfcheckWorkers, check_submission
from grader.errors import GraderError
from grader.load import Submission
from grader.report.selfcheck_html import selfcheck_html
from grader.report.selfcheck_summary import SelfcheckSummary, summarize
from grader.report.terminal import selfcheck_report


@dataclass(frozen=True, repr=False)
class SelfcheckReport:
    """What `selfcheck()` shows. Holds a summary, which has only the public checks' results, so
    nothing a student can inspect in the kernel reveals a hidden check."""

    summary: SelfcheckSummary
    assignment: str

    @property
    def full_marks(self) -> bool:
        return self.summary.full_marks

    def _repr_html_(self) -> str:
        return selfcheck_html(self.summary)

    def __str__(self) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=100, color_system=None, force_terminal=False, force_jupyter=False)
        selfcheck_report(self.summary, console)
        return buffer.getvalue()

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


@dataclass(frozen=True)
class ProgramSource:
    """The code to grade: cells in the order they ran, and where they came from."""

    name: str  # the notebook's or script's name without extension, for the table title
    cells: list[str]
    file: Path | None  # the notebook or script, to pick the assignment by its notebook name
    from_kernel: bool  # cells are the kernel's inputs In[1], In[2], ...


def selfcheck(
    Net: type | None = None,  # noqa: N803 (named as the student's class: selfcheck(Net, training_loop))
    training_loop: Any = None,
    *,
    assignment: str | Assignment | None = None,
    sandbox: str = "auto",
) -> None:
    """Run the public checks on this notebook's `Net` and `training_loop` and show the table.

    Checks what the kernel ran, saved or not. `Net=` and `training_loop=` check other
    definitions under those names; `assignment=` names the assignment (a name, or a folder with
    assignment.toml) when the notebook's name and the current folder do not tell. Shows the
    table instead of returning it, so it appears wherever the call is in the cell.
    """
    caller = sys._getframe(1).f_globals
    try:
        report = check_definitions(Net, training_loop, assignment=assignment, sandbox=sandbox, caller_globals=caller)
    except GraderError as exc:  # no assignment, stale fixtures, a failed worker: a message, not a traceback
        report = SelfcheckReport(SelfcheckSummary("selfcheck", (), (), (), problem=str(exc)), "")
    show(report)


def check_definitions(
    Net: type | None = None,  # noqa: N803 (named as the student's class: selfcheck(Net, training_loop))
    training_loop: Any = None,
    *,
    assignment: str | Assignment | None = None,
    sandbox: str = "auto",
    caller_globals: dict[str, Any] | None = None,
) -> SelfcheckReport:
    """Grade the caller's program (kernel history or script) plus any definitions passed in."""
    source = program_source(sys._getframe(1).f_globals if caller_globals is None else caller_globals)
    chosen = assignment if isinstance(assignment, Assignment) else find_assignment(assignment, notebook=source.file)
    extra = definition_cells(Net, chosen.model_class, is_class=True)
    extra += definition_cells(training_loop, chosen.loop_function, is_class=False)
    with tempfile.TemporaryDirectory(prefix="grader-selfcheck-") as folder:
        path = write_program(source, extra, Path(folder))
        submission = Submission(f"{source.name} ({chosen.name})", path)
        result = check_submission(chosen, submission, sandbox=sandbox, workers=kept_workers(chosen, sandbox))
    return SelfcheckReport(summarize(result), chosen.name)


# The kernel's pair of selfcheck workers, kept between calls: students call selfcheck() again
# after each fix, and only the first call should pay the torch import (seconds). One pair at a
# time (the checks worker holds torch, about 0.7 GB); both die with the kernel.
_kept: dict[tuple[str, str, str], SelfcheckWorkers] = {}


def kept_workers(assignment: Assignment, sandbox: str) -> SelfcheckWorkers:
    """The kept pair for this assignment, its fixtures as they are now, and this sandbox mode;
    a new pair when any of them changed or a process has died."""
    fixtures = assignment.fixtures_path
    try:
        status = fixtures.stat()
        stamp = f"{status.st_mtime_ns}:{status.st_size}"
    except OSError:
        stamp = "missing"  # load_fixtures says why
    key = (str(assignment.folder.resolve()), stamp, sandbox)
    pair = _kept.get(key)
    if pair is not None and pair.alive():
        return pair
    close_kept_workers()
    _kept[key] = pair = SelfcheckWorkers(assignment, sandbox)
    return pair


def close_kept_workers() -> None:
    """Stop the kept selfcheck workers (also done at the kernel's exit)."""
    while _kept:
        _kept.popitem()[1].close()


atexit.register(close_kept_workers)


def show(report: SelfcheckReport) -> None:
    """HTML and text in a Jupyter kernel (the front end picks), the rich table in a terminal."""
    shell = _ipython()
    if shell is not None:
        from IPython.display import display

        display(report)
    else:
        selfcheck_report(report.summary, Console())


# ---------------------------------------------------------------- where the code comes from


def program_source(caller_globals: dict[str, Any]) -> ProgramSource:
    """The calling script's file when there is one, else the IPython kernel's executed cells."""
    file = caller_globals.get("__file__")
    if isinstance(file, str) and file.endswith(".py") and Path(file).is_file():
        path = Path(file)
        return ProgramSource(path.stem, ["".join(cell.source for cell in read_cells(path))], path, from_kernel=False)
    shell = _ipython()
    if shell is not None:
        return _kernel_source(shell)
    raise GraderError(
        "selfcheck() checks the notebook or script that calls it, and was called from neither; "
        "run `grader selfcheck NOTEBOOK` in a terminal instead"
    )


def _kernel_source(shell: Any) -> ProgramSource:
    # input_hist_raw[0] is always "", so cell N of the written notebook is the kernel's In[N].
    cells = [_ran(str(cell)) for cell in shell.history_manager.input_hist_raw[1:]]
    notebook = _kernel_notebook(shell)
    return ProgramSource(notebook.stem if notebook else "notebook", cells, notebook, from_kernel=True)


def _ran(cell: str) -> str:
    """The cell, or "" when it did not parse: the kernel never ran it, so nothing it defines
    exists there, and a typo the student has since fixed in a later run is no news to report.
    A cell too deep or too large for the parser did not run either."""
    from IPython.core.inputtransformer2 import TransformerManager

    from grader.child.extract import PARSER_FAILURES

    try:
        ast.parse(TransformerManager().transform_cell(cell))
    except (SyntaxError, *PARSER_FAILURES):
        return ""
    return cell


def _kernel_notebook(shell: Any) -> Path | None:
    """The notebook this kernel runs, where the front end says (Jupyter server, VS Code), else
    the only notebook in the kernel's folder: its name picks the assignment."""
    for named in (os.environ.get("JPY_SESSION_NAME"), shell.user_ns.get("__vsc_ipynb_file__")):
        if isinstance(named, str) and named.endswith(".ipynb"):
            return Path(named)
    notebooks = [p for p in Path.cwd().glob("*.ipynb") if not p.name.startswith(".")]
    return notebooks[0] if len(notebooks) == 1 else None


def definition_cells(value: Any, name: str | None, *, is_class: bool) -> list[str]:
    """Cells that make `name` mean `value`: its module's source, or its own source, or (for a
    class defined in a notebook cell, which `inspect` cannot find) the definition the kernel's
    cells already hold; then `name = value.__name__` when it was defined under another name."""
    if value is None:
        return []
    if name is None:
        what = "network" if is_class else "training loop"
        raise TypeError(f"this assignment grades no {what}: call selfcheck() without it")
    if is_class and not inspect.isclass(value):
        raise TypeError(f"selfcheck({name}=...) takes the class itself, e.g. selfcheck({name}={type(value).__name__}), not an instance")
    if not is_class and not inspect.isfunction(value):
        raise TypeError(f"selfcheck({name}=...) takes a function defined with def, got {type(value).__name__}")
    if not value.__name__.isidentifier():
        raise TypeError(f"selfcheck({name}=...) needs a {'class' if is_class else 'function'} with a name, got {value.__name__}")
    cells = []
    module = inspect.getmodule(value)
    module_file = getattr(module, "__file__", None)
    if module is not None and module.__name__ != "__main__" and isinstance(module_file, str) and module_file.endswith(".py"):
        # Defined in a .py file beside the notebook: the module brings the imports it needs.
        cells.append("".join(cell.source for cell in read_cells(Path(module_file))))
    else:
        try:
            cells.append(textwrap.dedent(inspect.getsource(value)))
        except (OSError, TypeError):
            pass  # a class from a notebook cell: the kernel's cells hold its definition
    if value.__name__ != name:
        cells.append(f"{name} = {value.__name__}\n")
    return cells


def write_program(source: ProgramSource, extra: list[str], folder: Path) -> Path:
    """A notebook for kernel cells (so `cell N` in a reason is In[N]), else the script with the
    extra definitions appended as `# %%` cells (so line numbers match the student's file)."""
    if source.from_kernel:
        notebook = new_notebook(cells=[new_code_cell(cell) for cell in source.cells + extra])
        path = folder / f"{source.name}.ipynb"
        nbformat.write(notebook, str(path))
        return path
    path = folder / f"{source.name}.py"
    cells = [cell if cell.endswith("\n") else cell + "\n" for cell in source.cells + extra]
    path.write_text("# %%\n".join(cells), encoding="utf-8")
    return path


def _ipython() -> Any:
    """The running IPython shell (a Jupyter kernel, or IPython in a terminal), or None."""
    from IPython import get_ipython

    return get_ipython()
