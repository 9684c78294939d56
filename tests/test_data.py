"""Training data: the built-in synthetic set, and real images read from disk via the config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT


def test_synthetic_data_is_deterministic_and_balanced():
    torch = pytest.importorskip("torch")
    from grader.child.observe.data import synthetic_dataset

    first = synthetic_dataset([3, 32, 32], 2, size=64, seed=3, noise=0.6)
    second = synthetic_dataset([3, 32, 32], 2, size=64, seed=3, noise=0.6)
    other = synthetic_dataset([3, 32, 32], 2, size=64, seed=4, noise=0.6)
    assert torch.equal(first.tensors[0], second.tensors[0]) and torch.equal(first.tensors[1], second.tensors[1])
    assert not torch.equal(first.tensors[0], other.tensors[0])
    assert first.tensors[0].shape == (64, 3, 32, 32)
    assert torch.bincount(first.tensors[1]).tolist() == [32, 32]


def _assignment_with_data(tmp_path: Path, data: str) -> Path:
    copy = tmp_path / "cifar2_disk"
    shutil.copytree(ROOT / "assignments" / "cifar2", copy)
    config = copy / "assignment.toml"
    text = config.read_text()
    start, end = text.index("[data]"), text.index("[training]")
    config.write_text(text[:start] + data + "\n" + text[end:])
    return copy


def _grade(assignment: Path, submissions: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grader", "run", str(submissions), "-o", str(out), "--assignment", str(assignment),
         "--reference", str(ROOT / "reference" / "cifar2.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )


def test_images_from_an_image_folder_train_the_reference_and_grade_students(tmp_path):
    image = pytest.importorskip("PIL.Image")
    root = tmp_path / "images"
    for label, (colour, stripe) in enumerate([((40, 90, 200), (230, 230, 230)), ((60, 140, 50), (120, 70, 30))]):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(64):
            picture = image.new("RGB", (32, 32), colour)
            for x in range(32):
                picture.putpixel((x, (7 * i + 5) % 32), stripe)
            picture.save(folder / f"{i}.png")
    data = f'[data]\nkind = "imagefolder"\nroot = "{root}"\nsize = 128\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n'
    assignment = _assignment_with_data(tmp_path, data)
    submissions = tmp_path / "subs"
    v.write_notebook(submissions / "alice.ipynb", v.notebook_cells())
    v.write_notebook(submissions / "bob.ipynb", v.notebook_cells(v.NET_RELU))
    done = _grade(assignment, submissions, tmp_path / "report.csv")
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(tmp_path / "report.csv").set_index("student")
    assert rows.loc["alice", list(FULL)].tolist() == list(FULL.values())
    assert rows.loc["bob", "net.forward"] == 0


def test_a_cifar10_root_without_the_data_says_where_it_looked(tmp_path):
    empty = tmp_path / "no_cifar_here"
    empty.mkdir()
    assignment = _assignment_with_data(tmp_path, f'[data]\nkind = "cifar10"\nroot = "{empty}"\nclasses = [0, 2]\n')
    submissions = tmp_path / "subs"
    v.write_notebook(submissions / "alice.ipynb", v.notebook_cells())
    done = _grade(assignment, submissions, tmp_path / "report.csv")
    assert done.returncode == 2
    assert f"could not load the training data (cifar10, {empty})" in done.stderr
    assert "Traceback" not in done.stderr
