"""A second assignment, `mnist_relu` (10 classes, 1x28x28, ReLU + BatchNorm), graded by exactly the
same code as cifar2: only `assignments/mnist_relu/assignment.toml` and `reference/mnist_relu.py`
describe it. Also checks both starter notebooks (made by `grader assign` from reference/*.ipynb): graded
as handed out they earn nothing, say why, and crash nothing; with their stubs filled in they earn full marks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import variants as v
from conftest import FULL, points

from grader.assignment import find_assignment, load_assignment

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "assignments" / "mnist_relu"
REFERENCE = ROOT / "reference" / "mnist_relu.py"
STARTER = FOLDER / "digits_cnn.ipynb"
CIFAR2_STARTER = ROOT / "assignments" / "cifar2" / "cifar2_cnn.ipynb"

NET = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(16 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        out = out.view(out.shape[0], -1)
        out = F.relu(self.fc1(out))
        return self.fc2(out)
"""

NET_SEQUENTIAL = """\
class Net(nn.Module):
    def __init__(self, n_chans=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, n_chans, 3, padding='same'), nn.BatchNorm2d(n_chans), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(n_chans, 2 * n_chans, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))
"""

LOOP = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        loss_train = 0.0
        for imgs, labels in train_loader:
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_train += loss.item()
        print('{} Epoch {}, Training loss {}'.format(
            datetime.datetime.now(), epoch, loss_train / len(train_loader)))
"""

NET_TANH = NET.replace("F.relu", "torch.tanh")
NET_NARROW_FC = NET.replace("nn.Linear(16 * 7 * 7, 64)", "nn.Linear(16 * 7 * 7, 32)").replace(
    "nn.Linear(64, 10)", "nn.Linear(32, 10)"
)
NET_NO_BATCHNORM = NET.replace("        self.bn1 = nn.BatchNorm2d(8)\n", "").replace("self.bn1(self.conv1(x))", "self.conv1(x)")
LOOP_NO_STEP = LOOP.replace("            optimizer.step()\n", "")
NET_BATCHNORM_AFTER_RELU = NET.replace("F.relu(self.bn1(self.conv1(x)))", "self.bn1(F.relu(self.conv1(x)))")

# student: (Net cell, loop cell, points per check that differ from full marks)
WRONG = {
    # Same layers and shapes; only the outputs differ once the reference weights are loaded.
    "tanh_instead_of_relu": (NET_TANH, LOOP, {"net.forward": 0}),
    # fc1 and fc2 have the wrong size: 3 of 5 layers match, 3 of 5 parameter counts, no weights load.
    "narrow_fc1": (NET_NARROW_FC, LOOP, {"net.layers": 9, "net.shapes": 0, "net.params": 6, "net.forward": 0}),
    # Layers are aligned, so the missing BatchNorm2d costs only itself: 4 of 5 layers and 4 of 5
    # parameter counts match; the total is 16 short.
    "no_batchnorm": (NET_NO_BATCHNORM, LOOP, {"net.layers": 12, "net.shapes": 0, "net.params": 8, "net.forward": 0}),
    # Same layers; the reference's BatchNorm statistics are drawn away from 0 and 1, so applying
    # it after ReLU changes the output (with fresh statistics it earned full marks).
    "batchnorm_after_relu": (NET_BATCHNORM_AFTER_RELU, LOOP, {"net.forward": 0}),
    # Runs, clears and back-propagates every batch, but never steps: 3 of 5 criteria.
    "loop_without_step": (NET, LOOP_NO_STEP, {"loop.trains": 12}),
}


def filled_starter(source: Path, net: str, loop: str) -> nbformat.NotebookNode:
    """The starter notebook with its two stubbed code cells replaced, as a student hands it in."""
    notebook = nbformat.read(str(source), as_version=4)
    replaced = {"net": 0, "loop": 0}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.startswith("class Net(nn.Module):"):
            cell.source, replaced["net"] = net, replaced["net"] + 1
        elif cell.source.startswith("def training_loop("):
            cell.source, replaced["loop"] = loop, replaced["loop"] + 1
    assert replaced == {"net": 1, "loop": 1}, f"{source} should have one Net cell and one training_loop cell"
    return notebook


def write(notebook: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """One `grader run --assignment mnist_relu` over the whole class below."""
    base = tmp_path_factory.mktemp("mnist_relu")
    submissions = base / "submissions"
    write(filled_starter(STARTER, NET, LOOP), submissions / "correct.ipynb")
    write(filled_starter(STARTER, NET_SEQUENTIAL, LOOP), submissions / "sequential.ipynb")
    shutil.copy(STARTER, submissions / "starter.ipynb")
    for student, (net, loop, _) in WRONG.items():
        write(filled_starter(STARTER, net, loop), submissions / f"{student}.ipynb")
    csv = base / "out" / "grades.csv"
    completed = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(submissions), "-o", str(csv), "--assignment", "mnist_relu"],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    return pd.read_csv(csv, keep_default_na=False).set_index("student"), submissions


def row_points(report: pd.DataFrame, student: str) -> dict[str, float]:
    return {name: float(report.loc[student, name]) for name in FULL}


# ---------------------------------------------------------------- the config


def test_mnist_relu_is_described_by_its_config_and_reference_alone():
    assignment = load_assignment(FOLDER)
    assert (assignment.name, assignment.notebook, assignment.default) == ("mnist_relu", "digits_cnn.ipynb", False)
    assert (assignment.input_shape, assignment.num_classes) == ((1, 28, 28), 10)
    assert assignment.data.kind == "synthetic"
    assert assignment.default_reference_path() == REFERENCE
    assert {name: c.points for name, c in assignment.checks.items()} == FULL
    assert STARTER.is_file() and CIFAR2_STARTER.is_file()


def test_cifar2_stays_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADER_ASSIGNMENTS", raising=False)
    assert find_assignment(None, cwd=tmp_path).name == "cifar2"
    assert find_assignment("mnist_relu", cwd=tmp_path).name == "mnist_relu"
    # A student's copy of the assignment folder picks its own config.
    assert find_assignment(None, cwd=FOLDER).name == "mnist_relu"


# ---------------------------------------------------------------- grading through `grader run`


def test_reference_style_notebooks_get_full_marks(graded):
    report, _ = graded
    for student in ("correct", "sequential"):
        assert row_points(report, student) == FULL, report.loc[student].to_dict()
        assert report.loc[student, "status"] == "graded"
        assert report.loc[student, "error"] == ""
        assert (report.loc[student, "total"], report.loc[student, "max_total"]) == (100, 100)


@pytest.mark.parametrize("student", WRONG)
def test_wrong_variant_loses_exact_points(graded, student):
    report, _ = graded
    assert row_points(report, student) == {**FULL, **WRONG[student][2]}, report.loc[student].to_dict()
    assert report.loc[student, "total"] == sum({**FULL, **WRONG[student][2]}.values())


def test_batchnorm_after_relu_is_named_in_the_feedback(graded):
    _, submissions = graded
    feedback = (submissions.parent / "out" / "feedback" / "batchnorm_after_relu.md").read_text()
    assert "your forward applies relu before batch_norm; the reference applies batch_norm first, then relu" in feedback


def test_starter_notebook_as_handed_out_earns_nothing_and_says_it_is_not_implemented_yet(graded):
    report, submissions = graded
    assert row_points(report, "starter") == dict.fromkeys(FULL, 0)
    assert report.loc["starter", "status"] == "graded"
    assert "NotImplementedError" in report.loc["starter", "error"]
    feedback = (submissions.parent / "out" / "feedback" / "starter.md").read_text()
    assert "Digits: a 10-class CNN with ReLU and BatchNorm" in feedback
    assert "Not implemented yet" in feedback


def test_report_columns_are_the_shared_checks(graded):
    report, _ = graded
    assert list(report.columns) == ["lms_id", "late", "status", "error", "total", "max_total", "adjusted", *FULL]
    assert sorted(report.index) == sorted(["correct", "sequential", "starter", *WRONG])


# ---------------------------------------------------------------- fixtures and selfcheck


def test_selfcheck_exit_status(graded):
    _, submissions = graded
    commands = {
        name: subprocess.Popen(
            [sys.executable, "-m", "grader", "selfcheck", str(submissions / f"{name}.ipynb"), "--assignment", "mnist_relu"],
            cwd=submissions,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("correct", "tanh_instead_of_relu")
    }
    outputs = {name: process.communicate(timeout=120) for name, process in commands.items()}
    codes = {name: process.returncode for name, process in commands.items()}
    assert codes == {"correct": 0, "tanh_instead_of_relu": 1}, outputs
    assert "100 / 100" in outputs["correct"][0]
    assert "net.forward" in outputs["tanh_instead_of_relu"][0]


# ---------------------------------------------------------------- the cifar2 starter notebook


def test_cifar2_starter_as_handed_out_and_filled_in(grade, tmp_path):
    as_handed_out = grade(CIFAR2_STARTER, "starter")
    assert as_handed_out.status == "graded"
    assert points(as_handed_out) == dict.fromkeys(FULL, 0)
    assert all(c.reasons for c in as_handed_out.checks)
    filled = write(filled_starter(CIFAR2_STARTER, v.NET, v.LOOP), tmp_path / "cifar2_cnn.ipynb")
    assert points(grade(filled)) == FULL


@pytest.mark.parametrize("starter", [STARTER, CIFAR2_STARTER], ids=["digits", "cifar2"])
def test_starter_notebooks_read_like_course_notebooks(starter):
    notebook = nbformat.read(str(starter), as_version=4)
    nbformat.validate(notebook)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and kinds[-1] == "code"
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "# YOUR CODE HERE" in code and "raise NotImplementedError()" in code
    assert notebook.cells[-1].source.startswith("from grader import selfcheck\nselfcheck(")
    assert "grader selfcheck" in notebook.cells[-2].source and notebook.cells[-2].cell_type == "markdown"
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
