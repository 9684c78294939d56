"""Regenerate docs/feedback/: the feedback students get for typical wrong notebooks (from
tests/variants.py), graded by a real `grader run`, and screenshots of the feedback page and the
annotated notebook for the README (headless Chromium, when installed).

Run from the repository root: `.venv/bin/python scripts/feedback_examples.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import variants as v  # noqa: E402

EXAMPLES = {
    "relu_for_tanh": v.notebook_cells(v.NET_RELU),
    "no_padding": v.notebook_cells(v.NET_NO_PADDING),
    "hard_coded_batch_size": v.notebook_cells(v.NET.replace("out.view(-1, 8 * 8 * 8)", "out.view(64, -1)")),
    "step_under_no_grad": v.notebook_cells(loop=v.LOOP_NO_GRAD),
    "model_instead_of_net": v.notebook_cells(v.NET.replace("class Net(", "class Model(")),
    "extra_dropout": v.notebook_cells(
        v.NET.replace("self.fc2 = nn.Linear(32, 2)", "self.drop = nn.Dropout(0.5)\n        self.fc2 = nn.Linear(32, 2)").replace(
            "out = self.fc2(out)", "out = self.fc2(self.drop(out))"
        )
    ),
}
SCREENSHOTS = {"feedback-page.png": "no_padding.html", "annotated-notebook.png": "relu_for_tanh.notebook.html"}


def main() -> None:
    target = ROOT / "docs" / "feedback"
    with tempfile.TemporaryDirectory() as folder:
        submissions = Path(folder) / "submissions"
        for name, cells in EXAMPLES.items():
            v.write_notebook(submissions / f"{name}.ipynb", cells)
        report = Path(folder) / "out" / "report.csv"
        grader = [str(ROOT / ".venv" / "bin" / "grader"), "run", str(submissions), "-o", str(report), "--workers", "2"]
        subprocess.run(grader, check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in EXAMPLES:
            for suffix in (".md", ".html", ".notebook.html"):
                shutil.copy(report.parent / "feedback" / f"{name}{suffix}", target / f"{name}{suffix}")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if chromium is None:
        print("headless Chromium not found: screenshots not updated")
        return
    for picture, page in SCREENSHOTS.items():
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--hide-scrollbars",
                 f"--screenshot={ROOT / 'docs' / picture}", "--window-size=1100,1500", (target / page).as_uri()],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
    print(f"wrote {target} and the screenshots in docs/")


if __name__ == "__main__":
    main()
