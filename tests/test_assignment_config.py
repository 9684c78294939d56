"""assignment.toml: the real CIFAR-2 config loads, every invalid config is refused naming the file
and the exact key, and --assignment resolves folders, names and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.assignment import (
    DEFAULT_CHECKS,
    CheckSettings,
    DataSettings,
    ForwardSettings,
    Limits,
    TrainingSettings,
    find_assignment,
    load_assignment,
)
from grader.errors import AssignmentConfigError, AssignmentNotFoundError

ROOT = Path(__file__).resolve().parent.parent
CIFAR2 = ROOT / "assignments" / "cifar2"

MINIMAL = """\
[assignment]
notebook = "homework.ipynb"

[model]
input_shape = [3, 32, 32]
num_classes = 2
"""


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "assignment.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the real assignment


def test_real_cifar2_assignment_loads_with_expected_values() -> None:
    a = load_assignment(CIFAR2)

    assert a.name == "cifar2"
    assert a.folder == CIFAR2
    assert a.config_path == CIFAR2 / "assignment.toml"
    assert a.notebook == "cifar2_cnn.ipynb"
    assert a.default is True
    assert a.model_class == "Net"
    assert a.input_shape == (3, 32, 32)
    assert a.num_classes == 2
    assert a.loop_function == "training_loop"
    assert a.loop_signature == ("n_epochs", "optimizer", "model", "loss_fn", "train_loader")
    assert a.shape_batch_sizes == (1, 7)
    assert a.data == DataSettings(kind="synthetic", size=512, seed=0)
    assert a.training == TrainingSettings(epochs=4, batch_size=64, learning_rate=0.05, min_loss_drop=0.25, seed=0)
    assert a.forward == ForwardSettings(batch_size=64, seed=1234, atol=1e-4, rtol=1e-4)
    assert a.limits == Limits(timeout_s=60.0, check_timeout_s=30.0, memory_mb=4096)
    assert list(a.checks) == [
        "net.instantiate",
        "net.layers",
        "net.shapes",
        "net.params",
        "net.forward",
        "net.trains",
        "loop.trains",
    ]
    assert {name: c.points for name, c in a.checks.items()} == DEFAULT_CHECKS
    assert a.max_total == 100
    assert all(c.public for c in a.checks.values())


def test_real_assignment_probe_settings_are_plain_data() -> None:
    settings = load_assignment(CIFAR2).probe_settings()

    assert settings["input_shape"] == [3, 32, 32]
    assert settings["loop_signature"] == ["n_epochs", "optimizer", "model", "loss_fn", "train_loader"]
    assert settings["data"]["classes"] == []
    assert settings["training"]["epochs"] == 4


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    write_config(tmp_path / "week8", MINIMAL)

    a = load_assignment(tmp_path / "week8")

    assert a.name == "week8"  # the folder name when [assignment] name is absent
    assert a.title == "week8"
    assert a.default is False
    assert a.model_class == "Net"
    assert a.loop_function == "training_loop"
    assert a.data == DataSettings()
    assert a.training == TrainingSettings()
    assert a.checks == {name: CheckSettings(points=float(p)) for name, p in DEFAULT_CHECKS.items()}
    assert a.max_total == 100


def test_a_config_naming_only_the_network_grades_only_the_network(tmp_path: Path) -> None:
    write_config(tmp_path / "lenet", MINIMAL.replace("num_classes = 2", 'num_classes = 2\nclass_name = "LeNet"'))

    a = load_assignment(tmp_path / "lenet")

    assert (a.model_class, a.loop_function, a.groups) == ("LeNet", None, ["net"])
    assert list(a.checks) == [name for name in DEFAULT_CHECKS if name != "loop.trains"]
    assert a.max_total == 80  # loop.trains is neither counted nor shown


def test_a_config_naming_only_the_loop_grades_only_the_loop(tmp_path: Path) -> None:
    write_config(tmp_path / "loop", MINIMAL + '[loop]\nfunction_name = "fit"\n')

    a = load_assignment(tmp_path / "loop")

    assert (a.model_class, a.loop_function, a.groups) == (None, "fit", ["loop"])
    assert list(a.checks) == ["loop.trains"] and a.max_total == 20


@pytest.mark.parametrize(
    ("loop", "roles"),
    [
        # the PyTorch tutorial's loop, roles from the names alone
        ('signature = ["net", "trainloader", "criterion", "optimizer", "epochs"]',
         {"net": "model", "trainloader": "train_loader", "criterion": "loss_fn", "optimizer": "optimizer", "epochs": "n_epochs"}),
        # d2l's: the loop makes its own optimizer from the learning rate, and its own loss
        ('signature = ["net", "train_iter", "test_iter", "num_epochs", "lr", "device"]',
         {"net": "model", "train_iter": "train_loader", "test_iter": "val_loader", "num_epochs": "n_epochs", "lr": "learning_rate", "device": "device"}),
        # names of the course's own, given roles in the config
        ('signature = ["m", "batches", "rounds", "opt"]\nroles = { model = "m", train_loader = "batches", n_epochs = "rounds" }',
         {"m": "model", "batches": "train_loader", "rounds": "n_epochs", "opt": "optimizer"}),
    ],
    ids=["tutorial", "d2l", "given-in-config"],
)
def test_loop_parameters_get_their_roles_from_names_or_the_config(tmp_path: Path, loop: str, roles: dict[str, str]) -> None:
    write_config(tmp_path / "a", MINIMAL + f'[loop]\nfunction_name = "train"\n{loop}\n')

    a = load_assignment(tmp_path / "a")

    assert a.loop_roles == roles
    assert a.probe_settings()["loop_roles"] == roles


def test_check_points_and_visibility_can_be_set(tmp_path: Path) -> None:
    write_config(tmp_path / "a", MINIMAL + '[checks."net.forward"]\npoints = 50\npublic = false\n')

    a = load_assignment(tmp_path / "a")

    assert a.checks["net.forward"] == CheckSettings(points=50.0, public=False)
    assert list(a.checks) == list(DEFAULT_CHECKS)  # order stays the CSV column order
    assert a.max_total == 130


def test_relative_data_root_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "images").mkdir(parents=True)
    write_config(tmp_path / "a", MINIMAL + '[data]\nkind = "imagefolder"\nroot = "images"\n')

    a = load_assignment(tmp_path / "a")

    assert a.data.root == str((tmp_path / "a" / "images").resolve())


# ---------------------------------------------------------------- invalid configs


@pytest.mark.parametrize(
    ("text", "key", "cause"),
    [
        (MINIMAL + '[training]\nepochs = "four"\n', "training.epochs", "must be int"),
        (MINIMAL + "[training]\nepochs = true\n", "training.epochs", "must be int"),
        (MINIMAL + "[training]\nepochs = 0\n", "training.epochs", "at least"),
        (MINIMAL + "[training]\nepoch = 4\n", "training.epoch", "not a known setting"),
        (MINIMAL.replace("num_classes = 2", "num_classes = 2\nclasses = 2"), "model.classes", "not a known setting"),
        (MINIMAL + "[trainig]\nepochs = 4\n", "trainig", "not a known section"),
        (MINIMAL + '[checks."net.bogus"]\npoints = 5\n', "checks.net.bogus", "not a known check"),
        (MINIMAL + '[checks."net.layers"]\npointz = 5\n', "checks.net.layers.pointz", "not a known setting"),
        (MINIMAL.replace('notebook = "homework.ipynb"\n', ""), "assignment.notebook", "is required"),
        (MINIMAL.replace("num_classes = 2\n", ""), "model.num_classes", "is required"),
        (MINIMAL + '[checks."net.layers"]\npoints = -5\n', "checks.net.layers.points", "at least 0"),
        (MINIMAL + "[training]\nmin_loss_drop = 1.0\n", "training.min_loss_drop", "below 1"),
        (MINIMAL + "[training]\nmin_loss_drop = 1.5\n", "training.min_loss_drop", "below 1"),
        (MINIMAL + '[loop]\nsignature = ["model", "optimizer"]\n', "loop.signature",
         "takes no parameter for the training data or the number of epochs"),
        (MINIMAL + '[loop]\nsignature = ["n_epochs", "optimizer", "model", "loss_fn", "batches"]\n', "loop.roles",
         "training_loop's parameter 'batches' has no role: say what the grader passes there in the config, as "
         '[loop] roles = { <role> = "batches" }'),
        (MINIMAL + '[loop]\nsignature = ["n_epochs", "optimizer", "model", "loss_fn", "train_loader", "model"]\n',
         "loop.signature", "names a parameter twice"),
        (MINIMAL + '[loop]\nsignature = ["net", "loader", "epochs"]\nroles = { model = "net", data = "loader" }\n', "loop.roles",
         "'data' is not a role (roles: model, optimizer, loss_fn, train_loader, n_epochs, learning_rate, device, val_loader)"),
        (MINIMAL + '[loop]\nsignature = ["net", "loader", "epochs"]\nroles = { model = "network" }\n', "loop.roles",
         "gives model to 'network', which is not one of training_loop's parameters ['net', 'loader', 'epochs']"),
        (MINIMAL + '[loop]\nsignature = ["net", "loader", "model", "epochs"]\n', "loop.roles",
         "training_loop's parameter 'model' would be the model, which 'net' already is"),
        (MINIMAL.replace("num_classes = 2", 'num_classes = 2\nclass_name = "Net"') + '[checks."loop.trains"]\npoints = 10\n', "checks.loop.trains",
         "cannot apply: the assignment has no [loop] section"),
        (MINIMAL + '[loop]\nsignature = "n_epochs, optimizer"\n', "loop.signature", "must be list"),
        (MINIMAL + '[data]\nkind = "imagefolder"\n', "data.root", "required when data.kind = 'imagefolder'"),
        (MINIMAL + '[data]\nkind = "webdataset"\n', "data.kind", "synthetic, imagefolder or cifar10"),
        (MINIMAL.replace("[3, 32, 32]", "[3, 0, 32]"), "model.input_shape", "list of integers"),
        (MINIMAL + "[shapes]\nbatch_sizes = 7\n", "shapes.batch_sizes", "must be list"),
        (MINIMAL + "[limits]\nmemory_mb = 10\n", "limits.memory_mb", "at least 256"),
        ("training = 3\n" + MINIMAL, "training", "must be a table"),
    ],
    ids=[
        "wrong-type",
        "bool-for-int",
        "below-minimum",
        "unknown-key",
        "unknown-model-key",
        "unknown-section",
        "unknown-check",
        "unknown-check-key",
        "missing-notebook",
        "missing-num-classes",
        "negative-points",
        "min-loss-drop-one",
        "min-loss-drop-above-one",
        "signature-without-data-or-epochs",
        "signature-parameter-without-role",
        "signature-duplicate",
        "roles-unknown-role",
        "roles-unknown-parameter",
        "two-parameters-one-role",
        "loop-check-without-loop",
        "signature-not-list",
        "imagefolder-without-root",
        "unknown-data-kind",
        "zero-in-input-shape",
        "batch-sizes-not-list",
        "memory-too-small",
        "section-not-table",
    ],
)
def test_invalid_config_names_file_and_key(tmp_path: Path, text: str, key: str, cause: str) -> None:
    path = write_config(tmp_path / "bad", text)

    with pytest.raises(AssignmentConfigError) as info:
        load_assignment(tmp_path / "bad")

    error = info.value
    assert error.key == key
    assert error.path == path
    message = str(error)
    assert message.startswith(f"{path}: key '{key}': ")
    assert cause in message


def test_data_root_that_does_not_exist(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad", MINIMAL + '[data]\nkind = "cifar10"\nroot = "missing-data"\n')

    with pytest.raises(AssignmentConfigError) as info:
        load_assignment(tmp_path / "bad")

    assert info.value.key == "data.root"
    message = str(info.value)
    assert message.startswith(f"{path}: key 'data.root': ")
    assert str(tmp_path / "bad" / "missing-data") in message
    assert "does not exist" in message


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad", MINIMAL + "[training\nepochs = 4\n")

    with pytest.raises(AssignmentConfigError) as info:
        load_assignment(tmp_path / "bad")

    assert info.value.key is None
    message = str(info.value)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 7" in message


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad" / "assignment.toml"
    path.parent.mkdir()
    path.write_bytes(MINIMAL.replace("homework", "t\u00e2che").encode("latin-1"))

    with pytest.raises(AssignmentConfigError, match="not valid TOML") as info:
        load_assignment(tmp_path / "bad")

    assert info.value.path == path


def test_missing_config_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(AssignmentConfigError) as info:
        load_assignment(tmp_path / "empty")

    assert info.value.path == tmp_path / "empty" / "assignment.toml"
    assert str(info.value) == f"{tmp_path / 'empty' / 'assignment.toml'}: file not found"


# ---------------------------------------------------------------- find_assignment


@pytest.fixture
def assignments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GRADER_ASSIGNMENTS with two assignments, `beta` the default; cwd is an unrelated empty folder."""
    root = tmp_path / "assignments"
    write_config(root / "alpha", MINIMAL.replace("homework.ipynb", "alpha.ipynb"))
    write_config(root / "beta", MINIMAL.replace('notebook = "homework.ipynb"', 'notebook = "beta.ipynb"\ndefault = true'))
    (root / "notes").mkdir()  # a folder without assignment.toml is not an assignment
    monkeypatch.setenv("GRADER_ASSIGNMENTS", str(root))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def test_find_by_folder_path(tmp_path: Path, assignments: Path) -> None:
    folder = write_config(tmp_path / "my_copy", MINIMAL).parent

    a = find_assignment(str(folder))

    assert a.folder == folder.resolve()
    assert a.notebook == "homework.ipynb"


def test_find_by_name_under_grader_assignments(assignments: Path) -> None:
    a = find_assignment("alpha")

    assert a.name == "alpha"
    assert a.folder == (assignments / "alpha").resolve()
    assert a.notebook == "alpha.ipynb"
    assert a.default is False


def test_no_name_picks_the_one_default(assignments: Path) -> None:
    a = find_assignment(None)

    assert a.name == "beta"
    assert a.default is True


def test_no_name_and_only_one_assignment_picks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "only"
    write_config(root / "solo", MINIMAL)
    monkeypatch.setenv("GRADER_ASSIGNMENTS", str(root))
    monkeypatch.chdir(tmp_path)

    assert find_assignment(None).name == "solo"


def test_no_name_picks_the_assignment_whose_notebook_is_being_checked(assignments: Path) -> None:
    assert find_assignment(None, notebook=Path("somewhere/alpha.ipynb")).name == "alpha"
    assert find_assignment(None, notebook=Path("unrelated.ipynb")).name == "beta"


def test_no_name_and_no_default_asks_to_choose(assignments: Path) -> None:
    beta = assignments / "beta" / "assignment.toml"
    beta.write_text(beta.read_text().replace("default = true\n", ""))

    with pytest.raises(AssignmentNotFoundError, match=r"--assignment.*alpha, beta"):
        find_assignment(None)


def test_unknown_name_lists_known_assignments(assignments: Path) -> None:
    with pytest.raises(AssignmentNotFoundError) as info:
        find_assignment("gamma")

    message = str(info.value)
    assert "'gamma'" in message
    assert "alpha, beta" in message
    assert "notes" not in message
    assert str(assignments.resolve()) in message


def test_current_folder_assignment_wins_without_a_name(tmp_path: Path, assignments: Path, monkeypatch) -> None:
    student_copy = write_config(tmp_path / "student_copy", MINIMAL.replace("homework.ipynb", "mine.ipynb")).parent
    monkeypatch.chdir(student_copy)

    a = find_assignment(None)

    assert a.folder == student_copy.resolve()
    assert a.notebook == "mine.ipynb"
    # an explicit cwd argument works the same way
    assert find_assignment(None, cwd=student_copy).notebook == "mine.ipynb"


def test_name_wins_over_current_folder(tmp_path: Path, assignments: Path, monkeypatch) -> None:
    student_copy = write_config(tmp_path / "student_copy", MINIMAL).parent
    monkeypatch.chdir(student_copy)

    assert find_assignment("alpha").name == "alpha"
