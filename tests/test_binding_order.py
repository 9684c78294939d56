"""Definitions see the notebook as it runs top to bottom: a class statement, a decorator, a
default argument or a setting reads the names bound where it stands; a function body reads them
when it is called. And a script's `if __name__ == "__main__":` block counts as top level, so the
settings it assigns are found while its training never runs."""

from __future__ import annotations

from pathlib import Path

import variants as v
from conftest import FULL, points

from grader.child.cells import SourceCell, read_cells
from grader.child.extract import extract_definitions

ROOTS = ["Net", "training_loop"]

# The book's own notebook imports again after Net, before NetWidth: the last binding of `nn`
# stands after `class Net(nn.Module)`, which needs it when it runs.
NET_WIDTH = """\
import torch.nn as nn
import torch.nn.functional as F

class NetWidth(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
"""


def run_units(cells: list[str], roots: list[str]) -> dict:
    """Extract `roots` from `cells` and run what was kept, as a child would (trusted test code)."""
    program = extract_definitions([SourceCell(f"cell {i}", c) for i, c in enumerate(cells, 1)], roots)
    namespace: dict = {"__name__": "__submission__"}
    for unit in program.units:
        exec(compile(unit.source, unit.filename, "exec"), namespace)
    return namespace


def test_a_later_import_of_the_same_name_leaves_the_net_full_marks(grade, tmp_path):
    cells = v.notebook_cells()
    cells.insert(cells.index(v.NET) + 1, NET_WIDTH)
    result = grade(v.write_notebook(tmp_path / "book.ipynb", cells))
    assert points(result) == FULL, result.error


def test_definition_time_reads_the_binding_where_the_statement_stands():
    namespace = run_units(
        [
            "WIDTH = 16",
            "def make(width=WIDTH):\n    return width\n",
            "class Box:\n    size = WIDTH\n    def now(self):\n        return WIDTH\n",
            "WIDTH = 32",
            "def Net():\n    return make(), Box.size, Box().now()\n",
        ],
        ["Net"],
    )
    # Default argument and class body: 16, as when the notebook ran; the method body: the final 32.
    assert namespace["Net"]() == (16, 16, 32)


def test_a_setting_computed_from_its_own_earlier_value_is_kept_in_order():
    namespace = run_units(["H = 8", "H = H * 2", "def Net():\n    return H\n"], ["Net"])
    assert namespace["Net"]() == 16


def test_a_decorator_defined_later_than_its_use_is_not_borrowed_from_the_future():
    program = extract_definitions(
        [SourceCell("cell 1", "@register\nclass Net:\n    pass\n"), SourceCell("cell 2", "def register(c):\n    return c\n")], ["Net"]
    )
    # Run top to bottom, `register` is not bound yet where Net stands: the grader does not reorder.
    assert [u.filename for u in program.units] == ["cell 1"]


SCRIPT = f"""\
import datetime
import torch
import torch.nn as nn
import torch.nn.functional as F

{v.NET}

def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        for imgs, labels in train_loader:
            imgs, labels = imgs.to(device), labels.to(device)
            loss = loss_fn(model(imgs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


if __name__ == "__main__":
    device = torch.device("cpu")
    N_EPOCHS = 100
    raise SystemExit("the training in the main block must never run")
"""


def test_a_script_with_a_main_guard_gives_its_settings_and_never_runs_its_training(grade, tmp_path: Path):
    path = tmp_path / "carol.py"
    path.write_text(SCRIPT)
    program = extract_definitions(read_cells(path), ROOTS)
    assert 'device = torch.device("cpu")\n' in [u.source for u in program.units]
    assert "SystemExit" not in program.source_text() and "N_EPOCHS" not in program.source_text()
    device_line = SCRIPT.splitlines().index('    device = torch.device("cpu")') + 1
    assert [u.line for u in program.units if u.source.startswith("device")] == [device_line]
    result = grade(path)
    assert points(result) == FULL, result.error
    assert result.error == ""


def test_a_name_bound_only_further_down_is_named_with_where_it_is_bound(grade, tmp_path):
    cells = v.notebook_cells()
    cells.remove(v.IMPORTS)
    cells.insert(cells.index(v.NET) + 1, v.IMPORTS)
    result = grade(v.write_notebook(tmp_path / "late_imports.ipynb", cells))
    assert points(result)["net.instantiate"] == 0
    # Notebook cell 3 holds Net (a markdown title, then the data cell); the imports moved to cell 4.
    assert "cell 3, line 1: NameError: name 'nn' is not defined" in result.error
    assert "(cell 3, line 1)" not in result.error  # the place is said once
    assert any(
        "uses 'nn', which the notebook binds only further down (cell 4, line 8); it runs top to bottom, so move that line above" in note
        for note in map(str, result.notes)
    ), result.notes
