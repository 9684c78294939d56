"""A student's install (conftest's `student_python`: the grader built as a wheel and installed,
not editable, into a fresh virtual environment), then selfcheck from a folder that holds only
the student's notebook: `grader selfcheck` (table and JSON) and `selfcheck()` in a real Jupyter
kernel. The assignment comes from the package itself, or from a course's assignment.toml and
fixtures.json beside the notebook; no clone of the grader is involved."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nbformat
import variants as v
from conftest import FULL, ROOT

KERNEL_CELLS = ["import datetime\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F", v.NET_RELU, v.LOOP,
                "import grader\nprint(grader.__file__)", "from grader import selfcheck\nselfcheck()"]


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "GRADER_ASSIGNMENTS"}


def _selfcheck(python: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python.parent / "grader"), "selfcheck", *args], capture_output=True, text=True, cwd=folder, env=_environment(), timeout=300)


def _in_a_kernel(python: Path, folder: Path, notebook_name: str, kernels: Path) -> nbformat.NotebookNode:
    """KERNEL_CELLS run in a Jupyter kernel of the student's install, in `folder`."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    spec = kernels / "student"
    if not spec.exists():
        spec.mkdir(parents=True)
        argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "student", "language": "python", "env": _environment()}))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in KERNEL_CELLS])
    nbformat.write(notebook, str(folder / notebook_name))
    manager = KernelManager(kernel_name="student", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False))
    NotebookClient(notebook, km=manager, timeout=300, resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def _assert_graded_like_a_clone(python: Path, folder: Path, notebook_name: str, title: str, kernels: Path) -> None:
    """A notebook whose Net uses relu loses net.forward, as from a clone (test_cli pins it)."""
    v.write_notebook(folder / notebook_name, v.notebook_cells(v.NET_RELU))
    table = _selfcheck(python, folder)
    assert table.returncode == 1, table.stdout + table.stderr
    assert f"selfcheck: {title}" in table.stdout and "Score on the 7 checks above: 80 / 100" in table.stdout
    assert "no bubblewrap sandbox here" not in table.stderr  # torch, found through the .pth, is visible inside it
    document = _selfcheck(python, folder, notebook_name, "--format", "json")
    points = {check["name"]: check["points"] for check in json.loads(document.stdout)["submissions"][0]["checks"]}
    assert points == {**FULL, "net.forward": 0}

    executed = _in_a_kernel(python, folder, notebook_name, kernels)
    where = "".join(output.get("text", "") for output in executed.cells[3].outputs)
    assert where.strip() and not where.startswith(str(ROOT)), where  # the installed copy, not this checkout
    shown = [o["data"]["text/plain"] for o in executed.cells[4].outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1 and "Score on the 7 checks above: 80 / 100" in shown[0], executed.cells[4].outputs


def test_a_wheel_install_selfchecks_a_lone_notebook_against_the_bundled_assignment(student_python, tmp_path):
    folder = tmp_path / "homework"
    folder.mkdir()
    _assert_graded_like_a_clone(student_python, folder, "cifar2_cnn.ipynb", "cifar2_cnn", tmp_path / "kernels")


def test_a_wheel_install_uses_the_course_assignment_beside_the_notebook(student_python, tmp_path):
    """An instructor's own assignment reaches students as files in the course's template
    repository: assignment.toml and fixtures.json beside the starter notebook."""
    folder = tmp_path / "course-template"
    folder.mkdir()
    config = (ROOT / "assignments" / "cifar2" / "assignment.toml").read_text()
    config = config.replace('name = "cifar2"', 'name = "hw3"').replace('notebook = "cifar2_cnn.ipynb"', 'notebook = "hw3.ipynb"')
    (folder / "assignment.toml").write_text(config.replace("default = true", "default = false"))
    (folder / "fixtures.json").write_text((ROOT / "assignments" / "cifar2" / "fixtures.json").read_text())
    _assert_graded_like_a_clone(student_python, folder, "hw3.ipynb", "hw3", tmp_path / "kernels")
