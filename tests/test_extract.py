"""Stage 2, extract: keep only the definitions `Net` and `training_loop` need, never top-level work.

Notebooks are written to tmp_path with tests/variants.py and read back with read_cells, as the
pipeline does. Only `test_extracted_program_runs` imports torch; everything else parses text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import variants
from variants import DATA, DEVICE_LOOP, IMPORTS, LOOP, NET, TRAIN, write_notebook

from grader.child.cells import SourceCell, read_cells
from grader.child.extract import ExtractedProgram, ProgramUnit, extract_definitions

ROOTS = ["Net", "training_loop"]


def extract_notebook(tmp_path: Path, cells: list[str], name: str = "nb.ipynb") -> ExtractedProgram:
    """Write `cells` as a notebook (a markdown cell first, so code cell i is "cell i+1") and extract."""
    path = write_notebook(tmp_path / name, cells)
    return extract_definitions(read_cells(path), ROOTS)


def extract_cells(*sources: str, roots: list[str] = ROOTS) -> ExtractedProgram:
    """Extract from hand-made cells labelled "cell 1", "cell 2", ..."""
    cells = [SourceCell(f"cell {i}", source) for i, source in enumerate(sources, start=1)]
    return extract_definitions(cells, roots)


def kept(program: ExtractedProgram) -> list[tuple[str, int, str]]:
    return [(u.filename, u.line, u.source) for u in program.units]


def all_source(program: ExtractedProgram) -> str:
    return "".join(u.source for u in program.units)


def run_units(units: list[ProgramUnit]) -> dict:
    namespace: dict = {"__name__": "extracted"}
    for unit in units:
        exec(compile(unit.source, unit.filename, "exec"), namespace)
    return namespace


# ---------------------------------------------------------------- the lecture notebook


def test_lecture_notebook_keeps_exactly_the_needed_imports_and_definitions(tmp_path: Path) -> None:
    program = extract_notebook(tmp_path, variants.notebook_cells())

    # cell 1 is markdown; IMPORTS is cell 2 (line 1 is `%matplotlib inline`), NET cell 4, LOOP cell 5.
    assert kept(program) == [
        ("cell 2", 5, "import datetime\n"),
        ("cell 2", 7, "import torch\n"),
        ("cell 2", 8, "import torch.nn as nn\n"),
        ("cell 2", 9, "import torch.nn.functional as F\n"),
        ("cell 4", 1, NET),
        ("cell 5", 1, LOOP),
    ]
    assert program.notes == []


def test_lecture_notebook_never_keeps_top_level_work(tmp_path: Path) -> None:
    program = extract_notebook(tmp_path, variants.notebook_cells())
    text = all_source(program)

    for forbidden in (
        "datasets.CIFAR10",
        "DataLoader",
        "model = Net()",
        "training_loop(n_epochs=100",
        "optim.SGD",
        "torch.manual_seed",
        "torch.set_printoptions",
        "from matplotlib import pyplot",
        "matplotlib",
        "import numpy",
        "import collections",
        "from torchvision",
        "cifar2 = ",
        "Accuracy",
    ):
        assert forbidden not in text, forbidden
    # the only `print` left is the one inside training_loop's body
    assert not any(u.source.lstrip().startswith("print") for u in program.units)
    assert text.count("print(") == LOOP.count("print(")


def test_source_text_labels_each_unit_with_its_location(tmp_path: Path) -> None:
    program = extract_notebook(tmp_path, variants.notebook_cells())

    text = program.source_text()

    assert "# --- cell 4, line 1\nclass Net(nn.Module):" in text
    assert "# --- cell 5, line 1\ndef training_loop(" in text
    assert program.to_json()[0] == {"source": "import datetime\n", "filename": "cell 2", "line": 5}


# ---------------------------------------------------------------- IPython syntax


def test_magics_do_not_break_parsing_and_time_cell_body_is_kept(tmp_path: Path) -> None:
    # MAGIC_CELLS: !pip/%load_ext (cell 2), IMPORTS with %matplotlib (cell 3), DATA (cell 4),
    # NET (cell 5), "%%time" + LOOP (cell 6), "%%time" + TRAIN (cell 7), `files = !ls` (cell 8).
    program = extract_notebook(tmp_path, variants.MAGIC_CELLS)

    assert program.notes == []
    assert kept(program) == [
        ("cell 3", 5, "import datetime\n"),
        ("cell 3", 7, "import torch\n"),
        ("cell 3", 8, "import torch.nn as nn\n"),
        ("cell 3", 9, "import torch.nn.functional as F\n"),
        ("cell 5", 1, NET),
        ("cell 6", 2, LOOP),  # line 1 of the cell is `%%time`
    ]
    text = all_source(program)
    assert "get_ipython" not in text
    assert "DataLoader" not in text
    assert "pip" not in text


def test_line_magics_and_shell_assignments_in_hand_made_cells() -> None:
    program = extract_cells(
        "%matplotlib inline\n!pip install torchvision\nimport torch\nfiles = !ls\n%load_ext autoreload",
        "%%capture captured\nimport torch.nn as nn\n\nclass Net(nn.Module):\n    pass\n",
        "%%time\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    return torch.zeros(1)\n",
    )

    assert program.notes == []
    assert kept(program) == [
        ("cell 1", 3, "import torch\n"),
        ("cell 2", 2, "import torch.nn as nn\n"),
        ("cell 2", 4, "class Net(nn.Module):\n    pass\n"),
        ("cell 3", 2, "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    return torch.zeros(1)\n"),
    ]


def test_non_python_cell_magic_body_is_not_treated_as_code() -> None:
    # %%writefile and %%bash bodies never run in the notebook's namespace.
    program = extract_cells(
        "%%writefile helper.py\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    pass\n",
        "%%bash\necho 'class Net: pass'\n",
    )

    assert program.units == []
    assert program.notes == []


def test_syntax_error_inside_time_cell_points_at_the_cell_line() -> None:
    program = extract_cells("%%time\nx = 1\ny = = 2\n")

    assert program.units == []
    assert len(program.notes) == 1
    assert program.notes[0].startswith("cell 1, line 3: SyntaxError")


def test_cell_with_leading_blank_lines_keeps_true_line_numbers() -> None:
    program = extract_cells("\n\nimport torch\n\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    return torch\n")

    assert [(u.filename, u.line) for u in program.units] == [("cell 1", 3), ("cell 1", 5)]


def test_syntax_error_after_leading_blank_lines_names_the_true_line() -> None:
    program = extract_cells("\n\nx = = 1\n")

    assert program.notes and program.notes[0].startswith("cell 1, line 3: SyntaxError")


def test_time_cell_body_with_leading_blank_line_keeps_true_line_numbers() -> None:
    program = extract_cells("%%time\n\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    pass\n")

    assert [(u.filename, u.line) for u in program.units] == [("cell 1", 3)]


# ---------------------------------------------------------------- syntax errors


def test_syntax_error_in_one_cell_is_a_note_and_other_cells_still_extract(tmp_path: Path) -> None:
    broken = "# a helper I never finished\nscale = 2\ndef helper(x:\n    return x * scale\n"
    cells = [IMPORTS, DATA, NET, broken, LOOP, TRAIN]
    program = extract_notebook(tmp_path, cells)

    # broken is code cell 4 -> notebook cell 5 (markdown first); the bad `def` is on its line 3.
    assert len(program.notes) == 1
    note = program.notes[0]
    assert note.startswith("cell 5, line 3: SyntaxError")
    assert "skipped" in note
    assert [(u.filename, u.line) for u in program.units][-2:] == [("cell 4", 1), ("cell 6", 1)]
    assert NET in all_source(program) and LOOP in all_source(program)


def test_indentation_error_in_net_cell_is_reported_and_loop_still_kept() -> None:
    bad_net = "class Net(nn.Module):\n  def f(self):\n      x = 1\n    y = 2\n"
    program = extract_cells("import torch.nn as nn", bad_net, LOOP)

    assert len(program.notes) == 1
    assert program.notes[0].startswith("cell 2, line 4: SyntaxError")
    assert [u.filename for u in program.units] == ["cell 3"]


# ---------------------------------------------------------------- which definitions are kept


def test_last_definition_wins() -> None:
    first = "class Net(nn.Module):\n    width = OLD_WIDTH\n"
    second = "class Net(nn.Module):\n    width = 32\n"
    program = extract_cells("import torch.nn as nn", "OLD_WIDTH = 8", first, second)

    assert kept(program) == [("cell 1", 1, "import torch.nn as nn\n"), ("cell 4", 1, second)]


def test_last_definition_wins_across_notebook_cells(tmp_path: Path) -> None:
    program = extract_notebook(tmp_path, [IMPORTS, variants.NET_RELU, LOOP, NET])

    nets = [u for u in program.units if u.source.startswith("class Net")]
    assert [(u.filename, u.source) for u in nets] == [("cell 5", NET)]
    assert "torch.relu" not in all_source(program)


def test_needed_constants_are_kept() -> None:
    net = (
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv1 = nn.Conv2d(3, N_CHANS, kernel_size=3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return self.conv1(x.to(device))\n"
    )
    device = "device = (torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu'))"
    program = extract_cells(
        "import torch\nimport torch.nn as nn",
        "N_CHANS = 16\nUNUSED = 99",
        device + "\nprint(f'Training on device {device}.')",
        net,
    )

    assert kept(program) == [
        ("cell 1", 1, "import torch\n"),
        ("cell 1", 2, "import torch.nn as nn\n"),
        ("cell 2", 1, "N_CHANS = 16\n"),
        ("cell 3", 1, device + "\n"),
        ("cell 4", 1, net),
    ]
    assert program.notes == []


def test_device_constant_used_by_training_loop_is_kept(tmp_path: Path) -> None:
    program = extract_notebook(tmp_path, [IMPORTS, DATA, NET, DEVICE_LOOP, TRAIN])

    units = [(u.filename, u.line, u.source.splitlines()[0]) for u in program.units]
    assert ("cell 5", 1, "device = (torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu'))") in units
    assert ("cell 5", 4, "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):") in units
    assert "Training on device" not in all_source(program)
    assert program.notes == []


def test_constants_are_kept_transitively() -> None:
    program = extract_cells(
        "import torch.nn as nn",
        "A = 2; B = A * 8\nC = 5",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(B, 2)\n",
    )

    assert [(u.filename, u.line, u.source) for u in program.units][:3] == [
        ("cell 1", 1, "import torch.nn as nn\n"),
        ("cell 2", 1, "A = 2\n"),
        ("cell 2", 1, "B = A * 8\n"),
    ]
    assert "C = 5" not in all_source(program)
    ns = run_units([u for u in program.units if not u.source.startswith(("import", "class"))])
    assert ns["B"] == 16


def test_across_cells_keeps_settings_helper_class_and_patch_in_order(tmp_path: Path) -> None:
    program = extract_notebook(tmp_path, variants.ACROSS_CELLS)

    firsts = [(u.filename, u.line, u.source.splitlines()[0]) for u in program.units]
    assert firsts == [
        ("cell 2", 5, "import datetime"),
        ("cell 2", 7, "import torch"),
        ("cell 2", 8, "import torch.nn as nn"),
        ("cell 2", 9, "import torch.nn.functional as F"),
        ("cell 3", 1, "N_CHANS = 16"),
        ("cell 3", 2, "HIDDEN = 32"),
        ("cell 3", 3, "n_out = 2"),
        ("cell 4", 1, "def conv_block(c_in, c_out):"),
        ("cell 6", 1, "class Net(nn.Module):"),
        ("cell 7", 1, "def forward(self, x):"),
        ("cell 7", 7, "Net.forward = forward"),
        ("cell 8", 1, "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):"),
    ]
    assert program.notes == []
    assert "datasets.CIFAR10" not in all_source(program)


def test_patch_before_the_class_is_not_kept_but_patch_after_is() -> None:
    program = extract_cells(
        "def f(self):\n    return 1",
        "Net.early = f",
        "class Net:\n    pass",
        "Net.late = f",
        roots=["Net"],
    )

    assert [u.source for u in program.units] == ["def f(self):\n    return 1\n", "class Net:\n    pass\n", "Net.late = f\n"]


def test_global_created_by_top_level_work_gives_a_note_and_is_not_kept(tmp_path: Path) -> None:
    loop_with_global = (
        "def training_loop(n_epochs, optimizer, model, loss_fn):\n"
        "    for epoch in range(n_epochs):\n"
        "        for imgs, labels in train_loader:\n"
        "            loss = loss_fn(model(imgs), labels)\n"
        "            optimizer.zero_grad()\n"
        "            loss.backward()\n"
        "            optimizer.step()\n"
    )
    loader = "from torch.utils.data import DataLoader\ntrain_loader = DataLoader(cifar2, batch_size=64, shuffle=True)"
    program = extract_notebook(tmp_path, [IMPORTS, DATA, NET, loader, loop_with_global])

    # loader is notebook cell 5 (line 2), the loop cell 6.
    assert len(program.notes) == 1
    note = program.notes[0]
    assert "'train_loader'" in note
    assert "'training_loop'" in note
    assert "cell 6, line 1" in note
    assert "cell 5, line 2" in note
    text = all_source(program)
    assert "DataLoader(" not in text
    assert "train_loader =" not in text
    assert "cifar2 =" not in text
    assert ("cell 6", 1, loop_with_global) in kept(program)


def test_global_assigned_by_an_unsafe_call_is_not_kept() -> None:
    program = extract_cells(
        "import torch.nn as nn",
        "WIDTH = int(open('width.txt').read())",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(WIDTH, 2)\n",
        roots=["Net"],
    )

    assert "open(" not in all_source(program)
    assert len(program.notes) == 1
    assert "'WIDTH'" in program.notes[0] and "'Net' (cell 3, line 1)" in program.notes[0]


def test_augmented_assignment_keeps_the_value_it_updates() -> None:
    program = extract_cells("H = 8\nH *= 2", "class Net:\n    hidden = H\n", roots=["Net"])

    ns = run_units(program.units)

    assert ns["Net"].hidden == 16


# ---------------------------------------------------------------- scripts


def test_script_units_carry_file_name_and_absolute_line_numbers(tmp_path: Path) -> None:
    text = (
        "import datetime\n"                     # 1
        "import torch\n"                        # 2
        "import torch.nn as nn\n"               # 3
        "import torch.nn.functional as F\n"     # 4
        "\n"                                    # 5
        "# %% the network\n"                    # 6
        + NET                                   # 7..21
        + "\n"                                  # 22
        "# %% training\n"                       # 23
        + LOOP                                  # 24..
        + "\n"
        "# %%\n"
        "model = Net()\n"
        "print(model)\n"
    )
    path = tmp_path / "solution.py"
    path.write_text(text, encoding="utf-8")

    program = extract_definitions(read_cells(path), ROOTS)

    assert kept(program) == [
        ("solution.py", 1, "import datetime\n"),
        ("solution.py", 2, "import torch\n"),
        ("solution.py", 3, "import torch.nn as nn\n"),
        ("solution.py", 4, "import torch.nn.functional as F\n"),
        ("solution.py", 7, NET),
        ("solution.py", 24, LOOP),
    ]
    lines = text.splitlines()
    assert lines[7 - 1].startswith("class Net") and lines[24 - 1].startswith("def training_loop")
    assert program.notes == []


def test_script_syntax_error_note_uses_absolute_line(tmp_path: Path) -> None:
    path = tmp_path / "solution.py"
    path.write_text(
        "import torch.nn as nn\n"  # 1
        "# %%\n"                   # 2
        "x = 1\n"                  # 3
        "y = = 2\n"                # 4
        "# %%\n"                   # 5
        "class Net(nn.Module):\n"  # 6
        "    pass\n",              # 7
        encoding="utf-8",
    )

    program = extract_definitions(read_cells(path), ROOTS)

    assert program.notes == ["solution.py, line 4: SyntaxError: invalid syntax; this cell was skipped"]
    assert kept(program) == [
        ("solution.py", 1, "import torch.nn as nn\n"),
        ("solution.py", 6, "class Net(nn.Module):\n    pass\n"),
    ]


# ---------------------------------------------------------------- the extracted program runs


class _PlainSGD:
    """A few lines of SGD: torch.optim's first step imports torch._dynamo, which costs a second."""

    def __init__(self, params, lr: float) -> None:
        self.params = list(params)
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.data.add_(p.grad, alpha=-self.lr)


@pytest.mark.parametrize(
    "cells",
    [variants.notebook_cells(), variants.ACROSS_CELLS, variants.MAGIC_CELLS],
    ids=["lecture", "across-cells", "magics"],
)
def test_extracted_program_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, cells: list[str]) -> None:
    torch = pytest.importorskip("torch")
    program = extract_notebook(tmp_path / "nb", cells)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # extracted code must not download or write anything

    ns = run_units(program.units)

    assert isinstance(ns["Net"], type) and callable(ns["training_loop"])
    model = ns["Net"]()
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 2)
    # one epoch on one tiny batch: exercises the kept `datetime` import in the epoch-1 print
    torch.manual_seed(0)
    loader = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]))]
    optimizer = _PlainSGD(model.parameters(), lr=1e-2)
    ns["training_loop"](
        n_epochs=1, optimizer=optimizer, model=model, loss_fn=torch.nn.CrossEntropyLoss(), train_loader=loader
    )
    assert "Epoch 1, Training loss" in capsys.readouterr().out
    assert list(work.iterdir()) == []
