"""The grading environment: progress bars and live plots cost nothing; a package the environment
lacks is named in plain words; `grader doctor` lists what the assignments allow and what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import variants as v
from conftest import FULL, ROOT, points

TQDM_NOTEBOOK_LOOP = """\
from tqdm.notebook import tqdm
import matplotlib.pyplot as plt
from IPython.display import clear_output
import time

def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    history = []
    for epoch in range(1, n_epochs + 1):
        started = time.time()
        loss_train = 0.0
        for imgs, labels in tqdm(train_loader, desc=f"epoch {epoch}"):
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_train += loss.item()
        history.append(loss_train / len(train_loader))
        clear_output(wait=True)
        plt.figure(figsize=(4, 3))
        plt.plot(history)
        plt.title("training loss")
        plt.show()
        print(f"epoch {epoch}: {time.time() - started:.2f} s")
"""

TQDM_TEXT_LOOP = v.LOOP.replace("from tqdm", "").replace(
    "        for imgs, labels in train_loader:", "        for imgs, labels in tqdm(train_loader, leave=False):"
)


def test_a_notebook_progress_bar_and_a_live_plot_earn_full_marks(grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "colab.ipynb", v.notebook_cells(loop=TQDM_NOTEBOOK_LOOP)))
    assert points(result) == FULL, result.error
    assert result.error == ""
    assert "epoch 4:" in result.output.get("loop stdout", "")


def test_text_and_auto_progress_bars_earn_full_marks(grade, tmp_path):
    for name, imports in (("text", "from tqdm import tqdm"), ("auto", "from tqdm.auto import tqdm")):
        cells = v.notebook_cells(loop=TQDM_TEXT_LOOP, extra=[])
        cells.insert(1, imports)
        result = grade(v.write_notebook(tmp_path / f"{name}.ipynb", cells))
        assert points(result) == FULL, (name, result.error)
        assert result.error == "", name


def test_a_package_the_environment_lacks_is_named_in_plain_words(grade, tmp_path):
    loop = v.LOOP + "    sns.lineplot(x=[1, 2], y=[3, 4])\n"
    cells = v.notebook_cells(loop=loop)
    cells.insert(1, "import seaborn as sns")
    result = grade(v.write_notebook(tmp_path / "seaborn.ipynb", cells))
    assert "the grading environment has no package 'seaborn' (ModuleNotFoundError: No module named 'seaborn')" in result.error
    assert any("remove the import, or ask your instructor to allow it" in str(note) for note in result.notes)  # in full in the feedback
    # The Net does not need seaborn: only the loop, which reaches for it, loses points.
    assert {name: p for name, p in points(result).items() if name.startswith("net.")} == {n: p for n, p in FULL.items() if n.startswith("net.")}
    assert points(result)["loop.trains"] < FULL["loop.trains"]


def test_doctor_lists_the_allowed_packages_and_says_which_are_missing(tmp_path):
    folder = tmp_path / "assignments"
    shutil.copytree(ROOT / "assignments" / "cifar2", folder / "cifar2")
    config = folder / "cifar2" / "assignment.toml"
    config.write_text(config.read_text() + '\n[environment]\npackages = ["tqdm", "matplotlib", "no_such_package_for_students"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "grader", "doctor"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "GRADER_ASSIGNMENTS": str(folder), "COLUMNS": "200"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") >= 4}
    assert "installed" in lines["tqdm"] and "installed" in lines["matplotlib"]
    assert "missing" in lines["no_such_package_for_students"] and "cifar2" in lines["no_such_package_for_students"]
    assert "Missing: no_such_package_for_students." in done.stdout
