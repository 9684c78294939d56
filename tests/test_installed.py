"""A student's install (conftest's `student_python`: the grader built as a wheel and installed,
not editable, into a fresh virtual environment), then `grader selfcheck` run from a folder that
holds only the student's notebook. The assignment comes from the package itself, no clone of the
grader is involved."""

from __future__ import annotations

import json
import os
import subprocess

import nbformat

import variants as v
from conftest import FULL, ROOT


def test_a_wheel_install_selfchecks_a_lone_notebook_against_the_bundled_assignment(student_python, tmp_path):
    where = subprocess.run([str(student_python), "-c", "import grader; print(grader.__file__)"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert not where.stdout.startswith(str(ROOT)), where.stdout  # the installed copy, not this checkout
    folder = tmp_path / "homework"
    v.write_notebook(folder / "cifar2_cnn.ipynb", v.notebook_cells(v.NET_RELU))  # relu: net.forward lost
    env = {key: value for key, value in os.environ.items() if key != "GRADER_ASSIGNMENTS"}
    grader = student_python.parent / "grader"
    table = subprocess.run([str(grader), "selfcheck"], capture_output=True, text=True, cwd=folder, env=env, timeout=300)
    assert table.returncode == 1, table.stdout + table.stderr
    assert "Score on the 7 checks above: 80 / 100" in table.stdout
    assert "no bubblewrap sandbox here" not in table.stderr  # torch, found through the .pth, is visible inside it
    document = subprocess.run(
        [str(grader), "selfcheck", "cifar2_cnn.ipynb", "--format", "json"], capture_output=True, text=True, cwd=folder, env=env, timeout=300,
    )  # fmt: skip
    points = {check["name"]: check["points"] for check in json.loads(document.stdout)["submissions"][0]["checks"]}
    assert points == {**FULL, "net.forward": 0}


def test_a_wheel_install_runs_selfcheck_in_a_jupyter_kernel(student_python, tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    spec = tmp_path / "kernels" / "student"
    spec.mkdir(parents=True)
    argv = [str(student_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "student", "language": "python"}))
    folder = tmp_path / "homework"  # the kernel's folder: the student's notebook alone
    folder.mkdir()
    cells = ["import datetime\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F", v.NET, v.LOOP,
             "import grader\nprint(grader.__file__)", "from grader import selfcheck\nselfcheck()"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(notebook, str(folder / "cifar2_cnn.ipynb"))
    manager = KernelManager(kernel_name="student", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False))
    NotebookClient(notebook, km=manager, timeout=300, resources={"metadata": {"path": str(folder)}}).execute()
    where = "".join(o.get("text", "") for o in notebook.cells[3].outputs)
    assert not where.startswith(str(ROOT)), where  # the installed copy, not this checkout
    shown = [o["data"]["text/plain"] for o in notebook.cells[4].outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1 and "Score on the 7 checks above: 100 / 100" in shown[0], notebook.cells[4].outputs


def test_a_wheel_install_uses_the_course_assignment_beside_the_notebook(student_python, tmp_path):
    """An instructor's own assignment reaches students as files in the course's template
    repository: assignment.toml and fixtures.json beside the starter notebook."""
    folder = tmp_path / "course-template"
    folder.mkdir()
    config = (ROOT / "assignments" / "cifar2" / "assignment.toml").read_text()
    config = config.replace('name = "cifar2"', 'name = "hw3"').replace('notebook = "cifar2_cnn.ipynb"', 'notebook = "hw3.ipynb"')
    (folder / "assignment.toml").write_text(config.replace("default = true", "default = false"))
    (folder / "fixtures.json").write_text((ROOT / "assignments" / "cifar2" / "fixtures.json").read_text())
    v.write_notebook(folder / "hw3.ipynb", v.notebook_cells())
    done = subprocess.run([str(student_python.parent / "grader"), "selfcheck"], capture_output=True, text=True, cwd=folder, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "selfcheck: hw3" in done.stdout and "Score on the 7 checks above: 100 / 100" in done.stdout
