"""Record what a real worker observes of a set of CIFAR-2 submissions, for the fast tests.

tests/test_scoring_from_recorded_observations.py decides points from these recordings in
milliseconds, with no worker and no torch: they are what `grader.pipeline.observe` returned for
each variant, and the reference's expectations as `grader fixtures` writes them. Run by hand,
never by the suite:

    PYTHONPATH=. .venv/bin/python tests/recorded/record.py

Re-record when the probes change what they report, or when assignments/cifar2/assignment.toml
changes (the expectations carry its settings' fingerprint: load_fixtures refuses them after a
change, and the fast tests fail saying so). Review the diff: the points the fast tests pin must
still be the ones tests/test_grading_variants.py gets through real workers.

What is left out, to keep the files small (about 12 KB a variant, one observation a line):
- each child's stdout and stderr (`finish` shows them to the student; no check reads them);
- the expectations' forward inputs (1 MB for cifar2): the probes feed them to the student's Net in
  the child, and compare never reads them, so a 1-element stand-in keeps the fixtures format;
- the annotated notebook (no `annotate` asked for).
Everything else is kept exactly as the worker sent it, timings included.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))  # tests/: variants.py

import variants as v  # noqa: E402

from grader.assignment import load_assignment  # noqa: E402
from grader.load import Submission  # noqa: E402
from grader.pipeline import observe, open_worker, prepare  # noqa: E402
from grader.reference.check import verified_reference_expectations  # noqa: E402
from grader.reference.fixtures import write_fixtures  # noqa: E402
from grader.wire import encode_array  # noqa: E402

EXPECTATIONS = HERE / "cifar2_expectations.json"

# The wrong networks tests/test_feedback_findings.py uses, beside those of variants.py.
NET_ACTIVE_DROPOUT = v.NET.replace("out = self.fc2(out)", "out = self.fc2(F.dropout(out, 0.5))")
NET_DROPOUT_LAYER = v.NET.replace(
    "self.fc2 = nn.Linear(32, 2)", "self.drop = nn.Dropout(0.5)\n        self.fc2 = nn.Linear(32, 2)"
).replace("out = self.fc2(out)", "out = self.fc2(self.drop(out))")

# name -> (what the student did, the notebook's code cells)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "lecture_notebook": ("the lecture's Net and training_loop", v.notebook_cells()),
    "nn_sequential": ("the same Net written with nn.Sequential", v.notebook_cells(v.NET_SEQUENTIAL)),
    "relu_for_tanh": ("relu where the lecture uses tanh", v.notebook_cells(v.NET_RELU)),
    "wrong_channels": ("conv1 makes 32 channels instead of 16", v.notebook_cells(v.NET_WRONG_CHANNELS)),
    "no_padding": ("convolutions without padding=1 (fc1 sized to match)", v.notebook_cells(v.NET_NO_PADDING)),
    "extra_layer": ("an extra Linear(32, 32) before fc2", v.notebook_cells(v.NET_EXTRA_LAYER)),
    "missing_activation": ("no tanh after conv2", v.notebook_cells(v.NET_MISSING_ACTIVATION)),
    "hard_coded_batch_size": ("out.view(64, ...): forward crashes at batch sizes 1 and 7", v.notebook_cells(v.NET_HARDCODED_BATCH)),
    "active_dropout": ("F.dropout before fc2, active in eval mode too", v.notebook_cells(NET_ACTIVE_DROPOUT)),
    "dropout_layer": ("an nn.Dropout layer before fc2 (off in eval mode)", v.notebook_cells(NET_DROPOUT_LAYER)),
    "missing_zero_grad": ("no optimizer.zero_grad()", v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD)),
    "step_under_no_grad": ("the forward and loss under torch.no_grad()", v.notebook_cells(loop=v.LOOP_NO_GRAD)),
    "exception_mid_epoch": ("training_loop raises in epoch 2", v.notebook_cells(loop=v.LOOP_RAISES_MID_EPOCH)),
    "missing_net": ("no Net class at all", v.notebook_cells(net="# TODO: write Net\n")),
    "missing_training_loop": ("no training_loop function", v.notebook_cells(loop="# TODO: write training_loop\n")),
}


def slim(raw: dict) -> dict:
    """What `observe` returned, without the children's output streams."""
    groups = {name: {key: value for key, value in run.items() if key not in ("stdout", "stderr")} for name, run in raw["groups"].items()}
    return {"extraction": raw["extraction"], "groups": groups}


def write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def write_recording(path: Path, document: dict) -> None:
    """One observation a line: small, and a re-recording's diff shows which observations changed."""
    def one_line(value: object) -> str:
        return json.dumps(value, sort_keys=True)

    lines = ["{"]
    lines += [f" {one_line(key)}: {one_line(document[key])}," for key in ("variant", "description", "extraction")]
    lines.append(' "groups": {')
    for i, (group, run) in enumerate(sorted(document["groups"].items())):
        fields = {key: value for key, value in run.items() if key != "observations"}
        lines.append(f"  {one_line(group)}: {one_line(fields)[:-1]}, \"observations\": [")
        lines += [f"   {one_line(o)}," for o in run["observations"]]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("  ]}" + ("," if i < len(document["groups"]) - 1 else ""))
    lines += [" }", "}"]
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == document
    path.write_text(text, encoding="utf-8")


def main() -> None:
    assignment = load_assignment(ROOT / "assignments" / "cifar2")
    with open_worker(assignment) as worker, tempfile.TemporaryDirectory() as scratch:
        expected = verified_reference_expectations(assignment, worker, ROOT / "reference" / "cifar2.py")
        write_fixtures(expected, assignment, EXPECTATIONS)
        fixtures = json.loads(EXPECTATIONS.read_text(encoding="utf-8"))
        fixtures["forward_inputs"] = encode_array(np.zeros(1, dtype=np.float32))  # compare never reads them
        write_json(EXPECTATIONS, fixtures)
        for name, (description, cells) in VARIANTS.items():
            path = v.write_notebook(Path(scratch) / f"{name}.ipynb", cells)
            prepared = prepare(Submission(name, path), assignment)
            raw = observe(prepared, worker, assignment)
            if isinstance(raw, Exception):
                raise SystemExit(f"{name}: the worker failed: {raw}")
            write_recording(HERE / f"{name}.json", {"variant": name, "description": description, **slim(raw)})
            print(f"{name}: {(HERE / f'{name}.json').stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
