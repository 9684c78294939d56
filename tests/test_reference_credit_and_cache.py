"""The same verdicts at a fraction of the cost: a Net that behaves like the reference with the
reference's weights (same output, same gradient for every parameter) is credited with the
reference's own training run instead of being trained again, the grader checks that claim
itself, a Net that only looks the same is still trained, the training loop trains a stand-in
linear model, and the reference's expectations are kept on disk between runs."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import variants as v
from conftest import FULL, ROOT, points

from grader.compare.net_checks import check_net_trains
from grader.errors import ReferenceSolutionError
from grader.fingerprints import settings_fingerprint
from grader.isolate.client import Worker
from grader.reference import cache as expectations_cache
from grader.reference.check import verified_reference_expectations
from grader.reference.fixtures import load_fixtures


def _check(result, name: str):
    return next(c for c in result.checks if c.name == name)


@pytest.mark.parametrize("net", [v.NET, v.NET_SEQUENTIAL, v.NET_MODULES, v.NET_DEFAULTS], ids=["lecture", "sequential", "modules", "defaults"])
def test_a_net_that_behaves_like_the_reference_is_credited_with_its_training(net, grade, tmp_path, reference_worker):
    result = grade(v.write_notebook(tmp_path / "student.ipynb", v.notebook_cells(net)))
    assert points(result) == FULL
    trains = _check(result, "net.trains")
    _, expected = reference_worker
    reference = expected.net.get("train")
    assert trains.details["trained_like_reference"] is True
    assert trains.details["losses"] == reference["losses"] and trains.details["final_loss"] == reference["final_loss"]


def test_a_net_whose_gradients_do_not_flow_is_trained_and_judged_by_its_own_run(grade, tmp_path):
    # The same outputs as the reference, but no gradient reaches the convolutions: not the same
    # training, so it is trained for real (and its loss still falls, through fc1 and fc2).
    detached = v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "out = out.view(-1, 8 * 8 * 8).detach()")
    result = grade(v.write_notebook(tmp_path / "detached.ipynb", v.notebook_cells(detached)))
    trains = _check(result, "net.trains")
    assert "trained_like_reference" not in trains.details
    assert len(trains.details["losses"]) == 32  # 4 epochs of 8 batches, its own run
    assert points(result)["net.forward"] == 20


def test_the_grader_does_not_take_the_probes_word_for_it(reference_worker, cifar2):
    """A child that says "equivalent" for a Net whose gradients differ gets no credit."""
    _, expected = reference_worker
    group = copy.deepcopy(expected.net)
    group.by_kind["train"] = {**group.by_kind["train"], "equivalent": True, "losses": [], "initial_loss": None, "final_loss": None}
    assert check_net_trains({"net": group}, expected, cifar2).fraction == 1.0  # the reference itself: credited
    forward = group.by_kind["forward"]
    forward["gradients"] = [[g[0] * 2, g[1] * 2, g[2] * 2] if g else g for g in forward["gradients"]]
    outcome = check_net_trains({"net": group}, expected, cifar2)
    assert outcome.fraction == 0 and "gradients differ from the reference's" in outcome.reasons[0]


def test_the_loop_check_trains_a_stand_in_model_beside_the_reference_loop(grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "student.ipynb", v.notebook_cells()))
    loop = _check(result, "loop.trains")
    assert loop.passed and len(loop.details["losses"]) == 32
    assert loop.details["losses"] == pytest.approx(loop.details["reference_losses"])  # the reference loop, same stand-in


# ---------------------------------------------------------------- the reference's expectations, cached


def test_a_second_run_takes_the_reference_from_the_cache(cifar2, tmp_path, monkeypatch):
    monkeypatch.setenv(expectations_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "cache"))
    reference = ROOT / "reference" / "cifar2.py"
    with Worker() as worker:
        first = verified_reference_expectations(cifar2, worker, reference)
    entries = list((tmp_path / "cache" / "expectations").glob("cifar2-*.json"))
    assert len(entries) == 1

    def never(*args, **kwargs):
        raise AssertionError("the reference was observed again")

    monkeypatch.setattr("grader.reference.observing._observed_reference", never)
    with Worker() as worker:
        second = verified_reference_expectations(cifar2, worker, reference)
        assert second.weights[0].tolist() == first.weights[0].tolist()
        assert second.behaviour == first.behaviour
    # Another reference is another entry: the changed one is observed (and fails here, on purpose).
    changed = tmp_path / "changed.py"
    changed.write_text(reference.read_text() + "\n# a comment changes the bytes\n")
    with Worker() as worker, pytest.raises(AssertionError, match="observed again"):
        verified_reference_expectations(cifar2, worker, changed)


def test_a_damaged_cache_entry_is_observed_again(cifar2, tmp_path, monkeypatch):
    monkeypatch.setenv(expectations_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "cache"))
    reference = ROOT / "reference" / "cifar2.py"
    entry = expectations_cache.entry_path(cifar2, reference)
    assert entry is not None
    entry.parent.mkdir(parents=True)
    damaged = {"format": expectations_cache.FORMAT, "settings_fingerprint": settings_fingerprint(cifar2), "net": [{"kind": "forward"}]}
    entry.write_text(json.dumps(damaged))
    assert expectations_cache.load(entry, cifar2, reference) is None
    with Worker() as worker:
        verified_reference_expectations(cifar2, worker, reference)
    assert expectations_cache.load(entry, cifar2, reference) is not None  # rewritten, sound


def test_the_cache_keeps_the_entries_used_most_recently(cifar2, reference_worker, tmp_path, monkeypatch):
    monkeypatch.setenv(expectations_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(expectations_cache, "MAX_ENTRIES", 4)
    reference = ROOT / "reference" / "cifar2.py"
    verified_reference_expectations(cifar2, reference_worker[0], reference)  # the same configuration again
    entry = expectations_cache.entry_path(cifar2, reference)
    assert entry is not None
    folder = entry.parent
    old = [folder / f"other-{i}.json" for i in range(5)]
    for age, path in enumerate(old):
        path.write_text(entry.read_text())
        os.utime(path, (1_000_000 + age, 1_000_000 + age))  # long ago, other-4 the least long
    os.utime(entry, (0, 0))  # this one the longest ago, until it is used
    assert expectations_cache.load(entry, cifar2, reference) is not None
    expectations_cache.store(folder / "new.json", cifar2, *expectations_cache.load(entry, cifar2, reference))
    assert sorted(p.name for p in folder.glob("*.json")) == sorted([entry.name, "new.json", "other-4.json", "other-3.json"])


def test_the_fixtures_are_the_caches_format_with_only_what_students_may_see(cifar2, tmp_path, monkeypatch):
    monkeypatch.setenv(expectations_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "cache"))
    reference = ROOT / "reference" / "cifar2.py"
    with Worker() as worker:
        verified_reference_expectations(cifar2, worker, reference)
    entry = expectations_cache.entry_path(cifar2, reference)
    assert entry is not None
    cached = json.loads(entry.read_text())
    fixtures = json.loads(cifar2.fixtures_path.read_text())
    assert cached.keys() == fixtures.keys() and cached["format"] == fixtures["format"] == expectations_cache.FORMAT
    assert cached["loop"] and fixtures["loop"] is None  # the reference loop's run stays on the instructor's machine
    kinds = {o["kind"] for o in fixtures["net"]}
    assert kinds == {"instantiate", "structure", "trace", "forward", "train", "operations"} < {o["kind"] for o in cached["net"]} | kinds
    assert all(o["weights"] is None for o in cached["net"] + fixtures["net"] if o["kind"] == "forward")  # stored once
    # Either file gives the same expectations to compare with.
    from_cache, _ = expectations_cache.load(entry, cifar2, reference)
    from_fixtures = load_fixtures(cifar2)
    assert from_cache.layers == from_fixtures.layers
    np.testing.assert_allclose(from_cache.forward_output, from_fixtures.forward_output, rtol=1e-5, atol=1e-6)


def test_the_cache_can_be_turned_off(cifar2, monkeypatch):
    monkeypatch.setenv(expectations_cache.ENVIRONMENT_VARIABLE, "off")
    assert expectations_cache.entry_path(cifar2, ROOT / "reference" / "cifar2.py") is None


def test_a_broken_reference_fails_even_with_a_cache(cifar2, tmp_path, monkeypatch):
    monkeypatch.setenv(expectations_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "cache"))
    broken = tmp_path / "broken.py"
    broken.write_text((ROOT / "reference" / "cifar2.py").read_text().replace("torch.tanh(self.fc1(out))", "self.fc1(out).detach()"))
    for _ in range(2):  # nothing is cached for a reference that fails its own checks
        with Worker() as worker, pytest.raises(ReferenceSolutionError, match="fails its own check"):
            verified_reference_expectations(cifar2, worker, broken)
    assert not (tmp_path / "cache" / "expectations").exists() or not list((tmp_path / "cache" / "expectations").iterdir())


# ---------------------------------------------------------------- selfcheck: two processes start side by side


def test_a_reader_and_a_checks_worker_grade_like_one_worker(cifar2, tmp_path):
    """`grader selfcheck` reads in a torch-free reader and checks in a worker without IPython,
    started side by side; the result is the one a single worker gives, invalid files included."""
    from grader.load import Submission
    from grader.pipeline import conclude, observe, open_worker, prepare
    from grader.reference.fixtures import load_fixtures
    from grader.reference.observing import configure_for_selfcheck

    expected = load_fixtures(cifar2)
    wrong = v.write_notebook(tmp_path / "wrong.ipynb", v.notebook_cells(v.NET_RELU, v.LOOP_NO_ZERO_GRAD))
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    with open_worker(cifar2, wait=False, role="checks") as worker, open_worker(cifar2, wait=False, role="reader") as reader, open_worker(cifar2) as single:
        worker.wait_ready()
        reader.wait_ready()
        configure_for_selfcheck(worker, cifar2, expected)
        configure_for_selfcheck(single, cifar2, expected)
        for path in (wrong, broken):
            prepared = prepare(Submission(path.stem, path), cifar2)
            split = conclude(prepared, observe(prepared, worker, cifar2, reader=reader), cifar2, expected)
            prepared = prepare(Submission(path.stem, path), cifar2)
            whole = conclude(prepared, observe(prepared, single, cifar2), cifar2, expected)
            assert points(split) == points(whole) and split.status == whole.status and split.error == whole.error
    assert points(split)["net.forward"] == 0 or split.status == "invalid"
