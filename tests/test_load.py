"""Stage 1, load: finding submissions in a folder and reading notebooks/scripts into code cells.

Everything here works on real files written to tmp_path; nothing is executed and torch is not
imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell
from variants import LOOP, NET, write_notebook

from grader.child.cells import SourceCell, read_cells
from grader.errors import AmbiguousSubmissionError, InvalidNotebookError, SubmissionError, UnreadableScriptError
from grader.load import Submission, discover_submissions, read_submission_bytes

PREFERRED = "cifar2_cnn.ipynb"

# ---------------------------------------------------------------- discovery


def test_notebook_file_is_a_submission_named_by_its_stem(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "alice.ipynb", [NET])

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("alice", path)]


def test_script_file_is_a_submission_named_by_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "bob.py"
    path.write_text(NET, encoding="utf-8")

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("bob", path)]


def test_folder_with_one_notebook_is_named_after_the_folder(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "carol" / "my_homework.ipynb", [NET])

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("carol", path)]


def test_folder_with_one_script_is_named_after_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "dave" / "solution.py"
    path.parent.mkdir()
    path.write_text(NET, encoding="utf-8")

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("dave", path)]


def test_folder_with_several_notebooks_chooses_the_assignment_notebook(tmp_path: Path) -> None:
    write_notebook(tmp_path / "erin" / "scratch.ipynb", [NET])
    chosen = write_notebook(tmp_path / "erin" / PREFERRED, [NET, LOOP])
    write_notebook(tmp_path / "erin" / "old_try.ipynb", [NET])

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("erin", chosen)]


def test_folder_with_several_notebooks_none_preferred_is_ambiguous(tmp_path: Path) -> None:
    write_notebook(tmp_path / "frank" / "try1.ipynb", [NET])
    write_notebook(tmp_path / "frank" / "try2.ipynb", [NET])

    rows = discover_submissions(tmp_path, PREFERRED)

    assert len(rows) == 1
    row = rows[0]
    assert row.student == "frank"
    assert row.path == tmp_path / "frank"
    assert isinstance(row.problem, AmbiguousSubmissionError)
    message = str(row.problem)
    assert "try1.ipynb" in message and "try2.ipynb" in message
    assert PREFERRED in message


def test_empty_folder_gives_a_row_with_a_problem(tmp_path: Path) -> None:
    (tmp_path / "gina").mkdir()

    rows = discover_submissions(tmp_path, PREFERRED)

    assert len(rows) == 1
    row = rows[0]
    assert row.student == "gina"
    assert isinstance(row.problem, SubmissionError)
    assert not isinstance(row.problem, AmbiguousSubmissionError)
    assert "gina" in str(row.problem)
    assert ".ipynb" in str(row.problem)


def test_non_submission_and_hidden_entries_give_no_row(tmp_path: Path) -> None:
    keep = write_notebook(tmp_path / "hank.ipynb", [NET])
    (tmp_path / "README.txt").write_text("submissions for week 8\n", encoding="utf-8")
    (tmp_path / "grades.csv").write_text("student,total\n", encoding="utf-8")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / ".hidden.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / ".secret.py").write_text("x = 1\n", encoding="utf-8")
    write_notebook(tmp_path / ".ipynb_checkpoints" / "hank-checkpoint.ipynb", [NET])
    (tmp_path / "__pycache__").mkdir()

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("hank", keep)]


def test_checkpoints_inside_a_student_folder_are_ignored(tmp_path: Path) -> None:
    real = write_notebook(tmp_path / "ivy" / "homework.ipynb", [NET])
    write_notebook(tmp_path / "ivy" / ".ipynb_checkpoints" / "homework-checkpoint.ipynb", [NET])
    (tmp_path / "ivy" / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "ivy" / "notes.txt").write_text("done", encoding="utf-8")
    write_notebook(tmp_path / "ivy" / "__MACOSX" / "._homework.ipynb", [NET])  # from a zip made on a Mac
    (tmp_path / "ivy" / "homework.py~").write_text(NET, encoding="utf-8")  # an editor backup

    rows = discover_submissions(tmp_path, PREFERRED)

    assert rows == [Submission("ivy", real)]


def test_folder_holding_only_checkpoints_is_a_problem_row(tmp_path: Path) -> None:
    write_notebook(tmp_path / "jack" / ".ipynb_checkpoints" / "homework-checkpoint.ipynb", [NET])

    rows = discover_submissions(tmp_path, PREFERRED)

    assert [row.student for row in rows] == ["jack"]
    assert isinstance(rows[0].problem, SubmissionError)


def test_result_is_sorted_by_student(tmp_path: Path) -> None:
    write_notebook(tmp_path / "zoe.ipynb", [NET])
    (tmp_path / "mia.py").write_text(NET, encoding="utf-8")
    write_notebook(tmp_path / "adam.ipynb", [NET])
    (tmp_path / "lena").mkdir()  # empty folder: a problem row, sorted with the rest

    rows = discover_submissions(tmp_path, PREFERRED)

    assert [row.student for row in rows] == ["adam", "lena", "mia", "zoe"]


def test_mixed_folder_is_sorted_by_student_and_rows_are_right(tmp_path: Path) -> None:
    write_notebook(tmp_path / "zoe.ipynb", [NET])
    write_notebook(tmp_path / "bea" / "nb.ipynb", [NET])
    (tmp_path / "carl.py").write_text(NET, encoding="utf-8")
    write_notebook(tmp_path / "abe" / "a.ipynb", [NET])
    write_notebook(tmp_path / "abe" / "b.ipynb", [NET])
    (tmp_path / "README.txt").write_text("x", encoding="utf-8")

    rows = discover_submissions(tmp_path, PREFERRED)

    assert [row.student for row in rows] == ["abe", "bea", "carl", "zoe"]
    problems = {row.student: type(row.problem) for row in rows}
    assert problems == {"abe": AmbiguousSubmissionError, "bea": type(None), "carl": type(None), "zoe": type(None)}


def test_missing_submissions_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="not found"):
        discover_submissions(tmp_path / "nope", PREFERRED)


# ---------------------------------------------------------------- reading notebooks


def test_v4_notebook_gives_code_cells_only_labelled_by_position(tmp_path: Path) -> None:
    notebook = new_notebook()
    notebook.cells = [
        new_markdown_cell("# Title"),
        new_code_cell("import torch"),
        new_raw_cell("raw text"),
        new_markdown_cell("Some explanation"),
        new_code_cell("x = 1\ny = 2"),
        new_code_cell(""),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, str(path))

    cells = read_cells(path)

    assert cells == [
        SourceCell("cell 2", "import torch"),
        SourceCell("cell 5", "x = 1\ny = 2"),
        SourceCell("cell 6", ""),
    ]
    assert all(c.is_notebook and c.first_line == 1 for c in cells)
    assert cells[1].where(2) == "cell 5, line 2"


def test_variants_notebook_cells_start_after_markdown(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [NET, LOOP])

    cells = read_cells(path)

    assert [(c.label, c.source) for c in cells] == [("cell 2", NET), ("cell 3", LOOP)]


def test_v4_notebook_with_source_as_list_of_lines(tmp_path: Path) -> None:
    raw = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "id": "a1", "metadata": {}, "outputs": [], "execution_count": None,
             "source": ["import torch\n", "x = torch.zeros(2)\n"]},
        ],
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(raw), encoding="utf-8")

    assert read_cells(path) == [SourceCell("cell 1", "import torch\nx = torch.zeros(2)\n")]


def test_v3_notebook_with_worksheets_is_upgraded_and_read(tmp_path: Path) -> None:
    v3 = {
        "metadata": {"name": "lecture"},
        "nbformat": 3,
        "nbformat_minor": 0,
        "worksheets": [
            {
                "metadata": {},
                "cells": [
                    {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["CIFAR-2"]},
                    {"cell_type": "code", "collapsed": False, "language": "python", "metadata": {},
                     "input": ["import torch\n", "import torch.nn as nn"], "outputs": [], "prompt_number": 1},
                    {"cell_type": "markdown", "metadata": {}, "source": ["The network:"]},
                    {"cell_type": "code", "collapsed": False, "language": "python", "metadata": {},
                     "input": "class Net(nn.Module):\n    pass", "outputs": []},
                ],
            }
        ],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3, indent=1), encoding="utf-8")

    cells = read_cells(path)

    assert cells == [
        SourceCell("cell 2", "import torch\nimport torch.nn as nn"),
        SourceCell("cell 4", "class Net(nn.Module):\n    pass"),
    ]


def test_invalid_json_names_file_and_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{\n  "cells": [\n    {"cell_type": "code",\n  }\n', encoding="utf-8")

    with pytest.raises(InvalidNotebookError) as info:
        read_cells(path)

    message = str(info.value)
    assert message.startswith("broken.ipynb: ")
    assert "invalid JSON" in message
    assert "line 4, column 3" in message
    assert info.value.path == path


def test_truncated_notebook_is_invalid_json(tmp_path: Path) -> None:
    good = write_notebook(tmp_path / "good.ipynb", [NET])
    path = tmp_path / "cut.ipynb"
    path.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])

    with pytest.raises(InvalidNotebookError, match=r"cut\.ipynb: .*invalid JSON at line \d+, column \d+"):
        read_cells(path)


@pytest.mark.parametrize("content", [b"", b"   \n\t\n"], ids=["empty", "whitespace"])
def test_empty_notebook_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.ipynb"
    path.write_bytes(content)

    with pytest.raises(InvalidNotebookError) as info:
        read_cells(path)

    assert str(info.value) == "empty.ipynb: file is empty"


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xfe\x00\x01garbage"],
    ids=["all-bytes", "png", "utf16ish"],
)
def test_binary_garbage_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.ipynb"
    path.write_bytes(content)

    with pytest.raises(InvalidNotebookError) as info:
        read_cells(path)

    message = str(info.value)
    assert message.startswith("garbage.ipynb: not a notebook")
    assert "UTF-8" in message


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", '{"a": 1}', '"just a string"', "42", "null", '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}'],
    ids=["list", "dict", "string", "number", "null", "v4-without-cells"],
)
def test_json_that_is_not_a_notebook(tmp_path: Path, text: str) -> None:
    path = tmp_path / "data.ipynb"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(InvalidNotebookError) as info:
        read_cells(path)

    assert str(info.value).startswith("data.ipynb: not a notebook")


def test_notebook_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.ipynb"
    path.write_text(json.dumps({"nbformat": 5, "nbformat_minor": 0, "metadata": {}, "cells": []}), encoding="utf-8")

    with pytest.raises(InvalidNotebookError, match=r"future\.ipynb: not a notebook"):
        read_cells(path)


def test_notebook_with_utf8_bom_is_read(tmp_path: Path) -> None:
    good = write_notebook(tmp_path / "good.ipynb", ["x = 'café'"])
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())

    assert read_cells(path) == [SourceCell("cell 2", "x = 'café'")]


# ---------------------------------------------------------------- reading scripts


def test_script_is_split_into_cells_at_percent_markers(tmp_path: Path) -> None:
    text = (
        "import torch\n"           # 1
        "import torch.nn as nn\n"  # 2
        "# %%\n"                   # 3
        "N = 16\n"                 # 4
        "\n"                       # 5
        "#%% [markdown]\n"         # 6
        "# Some prose\n"           # 7
        "# %% the net\n"           # 8
        "class Net(nn.Module):\n"  # 9
        "    pass\n"               # 10
    )
    path = tmp_path / "solution.py"
    path.write_text(text, encoding="utf-8")

    cells = read_cells(path)

    assert [(c.label, c.first_line, c.is_notebook) for c in cells] == [
        ("solution.py", 1, False),
        ("solution.py", 3, False),
        ("solution.py", 6, False),
        ("solution.py", 8, False),
    ]
    assert cells[0].source == "import torch\nimport torch.nn as nn\n"
    assert cells[1].source == "# %%\nN = 16\n\n"
    assert cells[3].source == "# %% the net\nclass Net(nn.Module):\n    pass\n"
    assert "".join(c.source for c in cells) == text
    # a cell's line 2 is the file's line first_line + 1
    assert cells[3].where(2) == "solution.py, line 9"


def test_script_starting_with_a_marker_has_no_empty_first_cell(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text("# %%\nimport torch\n# %%\nx = 1\n", encoding="utf-8")

    cells = read_cells(path)

    assert [(c.first_line, c.source) for c in cells] == [(1, "# %%\nimport torch\n"), (3, "# %%\nx = 1\n")]


def test_script_without_markers_is_one_cell(tmp_path: Path) -> None:
    path = tmp_path / "plain.py"
    path.write_text(NET, encoding="utf-8")

    assert read_cells(path) == [SourceCell("plain.py", NET, first_line=1, is_notebook=False)]


def test_script_with_latin1_coding_cookie_is_decoded(tmp_path: Path) -> None:
    text = "# -*- coding: latin-1 -*-\n# Auteur: Ren\u00e9\nname = 'caf\u00e9'\n"
    path = tmp_path / "rene.py"
    path.write_bytes(text.encode("latin-1"))

    cells = read_cells(path)

    assert len(cells) == 1
    assert cells[0].source == text
    assert "Ren\u00e9" in cells[0].source


def test_script_with_utf8_bom_drops_the_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbfx = 'caf\xc3\xa9'\n")

    assert read_cells(path)[0].source == "x = 'caf\u00e9'\n"


@pytest.mark.parametrize("line", [1, 4], ids=["first-line", "later-line"])
def test_non_utf8_script_without_cookie_is_unreadable(tmp_path: Path, line: int) -> None:
    lines = ["import torch\n", "\n", "# comment\n", "x = 1\n"]
    lines[line - 1] = "name = 'caf\u00e9'\n"
    path = tmp_path / "latin.py"
    path.write_bytes("".join(lines).encode("latin-1"))

    with pytest.raises(UnreadableScriptError) as info:
        read_cells(path)

    message = str(info.value)
    assert message.startswith("latin.py: ")
    assert "UTF-8" in message
    assert info.value.path == path


def test_script_with_unknown_coding_cookie_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "odd.py"
    path.write_text("# -*- coding: klingon -*-\nx = 1\n", encoding="utf-8")

    with pytest.raises(UnreadableScriptError, match=r"odd\.py: .*klingon"):
        read_cells(path)


def test_submission_bytes_are_read_whole_up_to_the_limit_even_from_a_file_that_understates_its_size(tmp_path):
    """The host reads a file sized to what fstat says, then on past it: a file that grew after
    fstat, or one whose size says 0 (as /proc's do), is still read whole, or refused past the limit."""
    exact = tmp_path / "exact.py"
    exact.write_bytes(b"x" * 1000)
    assert read_submission_bytes(exact, 1000) == b"x" * 1000
    with pytest.raises(UnreadableScriptError, match=r"over the .* limit for a submission"):
        read_submission_bytes(exact, 999)
    understated = Path("/proc/self/status")  # st_size 0, some hundreds of bytes to read
    assert understated.stat().st_size == 0
    whole = read_submission_bytes(understated, 2**20)
    assert whole.startswith(b"Name:") and b"\nvoluntary_ctxt_switches:" in whole  # near its end, past byte 1
    with pytest.raises(InvalidNotebookError, match=r"over the .* limit for a submission"):
        read_submission_bytes(understated, 50)
