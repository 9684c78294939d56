"""An assignment described as data: `assignments/<name>/assignment.toml` read into typed settings.

Nothing about any one assignment lives in `grader/`; this module only knows the shape of the
config. Every invalid value raises AssignmentConfigError naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import AssignmentConfigError, AssignmentNotFoundError
from grader.loop_roles import LECTURE_SIGNATURE, RolesError, assign_roles

CONFIG_NAME = "assignment.toml"
# How the student's training_loop is called: by keyword, as the lecture does, when every
# parameter it requires has one of the signature's names (else by position); or always by position.
LOOP_CALLS = ("keyword", "positional")
FIXTURES_NAME = "fixtures.json"

# Maximum points of each check when the config does not set them, and whether students see it
# in selfcheck. The order is the CSV column order.
DEFAULT_CHECKS: dict[str, float] = {
    "net.instantiate": 5,
    "net.layers": 15,
    "net.shapes": 15,
    "net.params": 15,
    "net.forward": 20,
    "net.trains": 10,
    "loop.trains": 20,
}
LOOP_CHECKS = ("loop.trains",)  # graded when the config names a loop; the others when it names a network


@dataclass(frozen=True)
class CheckSettings:
    points: float
    public: bool = True


@dataclass(frozen=True)
class DataSettings:
    """Where training images come from: generated, or read from disk (never downloaded)."""

    kind: str = "synthetic"  # synthetic | imagefolder | cifar10
    size: int = 512
    seed: int = 0
    noise: float = 0.6
    root: str | None = None
    classes: tuple[int, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 0.05
    min_loss_drop: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class ForwardSettings:
    batch_size: int = 16
    seed: int = 1234
    atol: float = 1e-4
    rtol: float = 1e-4


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 60.0
    check_timeout_s: float = 30.0
    memory_mb: int = 4096
    max_processes: int = 64
    read_timeout_s: float = 20.0  # reading and extracting one submission, in a child
    max_submission_mb: int = 64  # larger files are not read at all (notebooks with many plots run to tens of MB)
    max_cell_kb: int = 256  # longer code cells are skipped with a note (IPython reads ~100 KB a second)


# Packages student code may import beyond torch, torchvision, numpy and the standard library,
# when the assignment does not say: display only (progress bars, plots), which never decide a score.
DEFAULT_PACKAGES = ("tqdm", "matplotlib")


@dataclass(frozen=True)
class Assignment:
    name: str
    title: str
    folder: Path
    notebook: str
    default: bool
    model_class: str | None  # None: a loop-only assignment
    input_shape: tuple[int, ...]
    num_classes: int
    loop_function: str | None  # None: a network-only assignment
    loop_signature: tuple[str, ...]  # the solution loop's parameters, in order
    loop_call: str  # "keyword": as the lecture calls it, when the names allow; "positional": in signature order
    shape_batch_sizes: tuple[int, ...]
    data: DataSettings
    training: TrainingSettings
    forward: ForwardSettings
    limits: Limits
    checks: dict[str, CheckSettings] = field(default_factory=dict)
    packages: tuple[str, ...] = DEFAULT_PACKAGES  # [environment] packages
    loop_roles: dict[str, str] = field(default_factory=dict)  # each signature parameter's role (grader/loop_roles.py)

    @property
    def graded_by_group(self) -> dict[str, str]:
        """Each probe group this assignment runs, with the name its checks grade:
        {"net": "Net", "loop": "training_loop"}, less the one a network-only or loop-only
        assignment lacks."""
        named = {"net": self.model_class, "loop": self.loop_function}
        return {group: name for group, name in named.items() if name}

    @property
    def groups(self) -> list[str]:
        """The probe groups this assignment runs: "net" for a network, "loop" for a training loop."""
        return list(self.graded_by_group)

    @property
    def graded_names(self) -> list[str]:
        """The names students' programs must define: the network's class and the loop's function."""
        return list(self.graded_by_group.values())

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_NAME

    @property
    def fixtures_path(self) -> Path:
        return self.folder / FIXTURES_NAME

    def data_folders(self) -> tuple[Path, ...]:
        """Folders a worker's sandbox must show besides Python: the data read from disk, if any."""
        return (Path(self.data.root),) if self.data.root else ()

    def default_reference_path(self) -> Path:
        """`reference.py` in the assignment folder when `grader assign` put it there (a folder
        outside the `assignments/` layout), else `reference/<name>.py` beside `assignments/`,
        where instructors keep solutions."""
        inside = self.folder / "reference.py"
        return inside if inside.is_file() else self.folder.parent.parent / "reference" / f"{self.name}.py"

    @property
    def max_total(self) -> float:
        return sum(c.points for c in self.checks.values())

    def probe_settings(self) -> dict[str, Any]:
        """The plain-data settings a child process needs to observe a submission."""
        return {
            "model_class": self.model_class,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "loop_function": self.loop_function,
            "loop_signature": list(self.loop_signature),
            "loop_call": self.loop_call,
            "loop_roles": dict(self.loop_roles),
            "shape_batch_sizes": list(self.shape_batch_sizes),
            "data": _plain(asdict(self.data)),
            "training": asdict(self.training),
            "forward": asdict(self.forward),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- reading and validating


class _Section:
    """Reads typed keys out of one TOML table, naming `section.key` in every error."""

    def __init__(self, path: Path, raw: dict[str, Any], name: str, label: str | None = None) -> None:
        self.path = path
        self.name = label or name
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise AssignmentConfigError(path, "must be a table", key=self.name)
        self.table = dict(table)

    def _key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, minimum: float | None = None) -> Any:
        if key not in self.table:
            if default is ...:
                raise AssignmentConfigError(self.path, "is required", key=self._key(key))
            return default
        value = self.table.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise AssignmentConfigError(self.path, f"must be {names}, got {value!r}", key=self._key(key))
        if minimum is not None and isinstance(value, (int, float)) and value < minimum:
            raise AssignmentConfigError(self.path, f"must be at least {minimum}, got {value!r}", key=self._key(key))
        return value

    def ints(self, key: str, default: Any = ..., *, minimum: int = 1) -> tuple[int, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
            raise AssignmentConfigError(
                self.path, f"must be a list of integers >= {minimum}, got {value!r}", key=self._key(key)
            )
        return tuple(value)

    def floats(self, key: str, default: Any = ...) -> tuple[float, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise AssignmentConfigError(self.path, f"must be a list of numbers, got {value!r}", key=self._key(key))
        return tuple(float(v) for v in value)

    def finish(self) -> None:
        if self.table:
            unknown = sorted(self.table)[0]
            raise AssignmentConfigError(self.path, "is not a known setting", key=self._key(unknown))


def load_assignment(folder: Path | str) -> Assignment:
    """Read and validate `folder/assignment.toml`."""
    folder = Path(folder).resolve()
    path = folder / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AssignmentConfigError(path, "file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AssignmentConfigError(path, f"not valid TOML: {exc}") from None

    known = {"assignment", "model", "loop", "data", "training", "forward", "shapes", "limits", "checks", "environment"}
    for section in raw:
        if section not in known:
            raise AssignmentConfigError(path, "is not a known section", key=section)

    head = _Section(path, raw, "assignment")
    name = head.get("name", str, folder.name)
    title = head.get("title", str, name)
    notebook = head.get("notebook", str)
    default = head.get("default", bool, False)
    head.finish()

    # What is graded is what the config names: a network ([model] class_name), a training loop
    # (a [loop] section), or both. A config that names neither grades the lecture's pair.
    lecture_pair = "loop" not in raw and "class_name" not in raw.get("model", {})
    model = _Section(path, raw, "model")
    model_class = model.get("class_name", str, "Net" if lecture_pair else None)  # None: a loop-only assignment
    input_shape = model.ints("input_shape")
    num_classes = model.get("num_classes", int, minimum=2)
    model.finish()

    loop_function, loop_signature, loop_call, loop_roles = _read_loop(path, {"loop": {}} if lecture_pair else raw)

    data = _read_data(path, raw)

    training_section = _Section(path, raw, "training")
    training = TrainingSettings(
        epochs=training_section.get("epochs", int, TrainingSettings.epochs, minimum=1),
        batch_size=training_section.get("batch_size", int, TrainingSettings.batch_size, minimum=1),
        learning_rate=training_section.get("learning_rate", float, TrainingSettings.learning_rate, minimum=0),
        min_loss_drop=training_section.get("min_loss_drop", float, TrainingSettings.min_loss_drop, minimum=0),
        seed=training_section.get("seed", int, TrainingSettings.seed),
    )
    training_section.finish()
    if training.min_loss_drop >= 1:
        raise AssignmentConfigError(path, "is a fraction of the initial loss and must be below 1", key="training.min_loss_drop")

    forward_section = _Section(path, raw, "forward")
    forward = ForwardSettings(
        batch_size=forward_section.get("batch_size", int, ForwardSettings.batch_size, minimum=1),
        seed=forward_section.get("seed", int, ForwardSettings.seed),
        atol=forward_section.get("atol", float, ForwardSettings.atol, minimum=0),
        rtol=forward_section.get("rtol", float, ForwardSettings.rtol, minimum=0),
    )
    forward_section.finish()

    shapes = _Section(path, raw, "shapes")
    shape_batch_sizes = shapes.ints("batch_sizes", (1, 7))
    shapes.finish()

    limits_section = _Section(path, raw, "limits")
    limits = Limits(
        timeout_s=limits_section.get("timeout_s", float, Limits.timeout_s, minimum=1),
        check_timeout_s=limits_section.get("check_timeout_s", float, Limits.check_timeout_s, minimum=1),
        memory_mb=limits_section.get("memory_mb", int, Limits.memory_mb, minimum=256),
        max_processes=limits_section.get("max_processes", int, Limits.max_processes, minimum=1),
        read_timeout_s=limits_section.get("read_timeout_s", float, Limits.read_timeout_s, minimum=1),
        max_submission_mb=limits_section.get("max_submission_mb", int, Limits.max_submission_mb, minimum=1),
        max_cell_kb=limits_section.get("max_cell_kb", int, Limits.max_cell_kb, minimum=1),
    )
    limits_section.finish()

    environment = _Section(path, raw, "environment")
    packages = environment.get("packages", list, list(DEFAULT_PACKAGES))
    environment.finish()
    if not all(isinstance(p, str) and p.isidentifier() for p in packages):
        raise AssignmentConfigError(path, f"must be a list of importable top-level names, got {packages!r}", key="environment.packages")

    return Assignment(
        name=name,
        title=title,
        folder=folder,
        notebook=notebook,
        default=default,
        model_class=model_class,
        input_shape=input_shape,
        num_classes=num_classes,
        loop_function=loop_function,
        loop_signature=loop_signature,
        loop_call=loop_call,
        shape_batch_sizes=shape_batch_sizes,
        data=data,
        training=training,
        forward=forward,
        limits=limits,
        checks=_read_checks(path, raw, network=model_class is not None, loop=loop_function is not None),
        packages=tuple(packages),
        loop_roles=loop_roles,
    )


def _read_loop(path: Path, raw: dict[str, Any]) -> tuple[str | None, tuple[str, ...], str, dict[str, str]]:
    """The [loop] section: the function's name, its parameters in order, how students' loops are
    called and each parameter's role. No section: a network-only assignment."""
    if "loop" not in raw:
        return None, (), "keyword", {}
    loop = _Section(path, raw, "loop")
    function = loop.get("function_name", str, "training_loop")
    signature = tuple(loop.get("signature", list, list(LECTURE_SIGNATURE)))
    call = loop.get("call", str, "keyword")
    given = loop.get("roles", dict, {})
    loop.finish()
    if call not in LOOP_CALLS:
        raise AssignmentConfigError(path, f"must be one of {', '.join(map(repr, LOOP_CALLS))}, got {call!r}", key="loop.call")
    if not signature or not all(isinstance(name, str) and name.isidentifier() for name in signature):
        raise AssignmentConfigError(path, f"must list the loop's parameter names in order, got {list(signature)!r}", key="loop.signature")
    if not all(isinstance(name, str) for name in given.values()):
        raise AssignmentConfigError(path, f"must map each role to a parameter's name, got {given!r}", key="loop.roles")
    try:
        roles = assign_roles(signature, given, function)
    except RolesError as exc:
        raise AssignmentConfigError(path, str(exc), key=exc.key) from None
    return function, signature, call, roles


def _read_data(path: Path, raw: dict[str, Any]) -> DataSettings:
    section = _Section(path, raw, "data")
    kind = section.get("kind", str, DataSettings.kind)
    if kind not in ("synthetic", "imagefolder", "cifar10"):
        raise AssignmentConfigError(path, f"must be synthetic, imagefolder or cifar10, got {kind!r}", key="data.kind")
    data = DataSettings(
        kind=kind,
        size=section.get("size", int, DataSettings.size, minimum=2),
        seed=section.get("seed", int, DataSettings.seed),
        noise=section.get("noise", float, DataSettings.noise, minimum=0),
        root=section.get("root", str, None),
        classes=section.ints("classes", (), minimum=0),
        mean=section.floats("mean", ()),
        std=section.floats("std", ()),
    )
    section.finish()
    if kind != "synthetic":
        if not data.root:
            raise AssignmentConfigError(path, f"is required when data.kind = {kind!r}", key="data.root")
        root = Path(os.path.expandvars(data.root)).expanduser()
        if not root.is_absolute():
            root = path.parent / root
        if not root.is_dir():
            raise AssignmentConfigError(path, f"folder {root} does not exist (data is never downloaded)", key="data.root")
        data = DataSettings(**{**asdict(data), "root": str(root.resolve())})
    return data


def _read_checks(path: Path, raw: dict[str, Any], *, network: bool, loop: bool) -> dict[str, CheckSettings]:
    """The checks that apply (the network's when it names one, the loop's when it names one),
    with their points: those that cannot apply are neither counted nor shown."""
    table = raw.get("checks", {})
    if not isinstance(table, dict):
        raise AssignmentConfigError(path, "must be a table", key="checks")
    applies = {name: (loop if name in LOOP_CHECKS else network) for name in DEFAULT_CHECKS}
    for name in table:
        if name not in DEFAULT_CHECKS:
            raise AssignmentConfigError(
                path, f"is not a known check (known: {', '.join(DEFAULT_CHECKS)})", key=f"checks.{name}"
            )
        if not applies[name]:
            missing = "[loop] section" if name in LOOP_CHECKS else "[model] class_name"
            raise AssignmentConfigError(path, f"cannot apply: the assignment has no {missing}", key=f"checks.{name}")
    checks: dict[str, CheckSettings] = {}
    for name, default_points in DEFAULT_CHECKS.items():
        if not applies[name]:
            continue
        section = _Section(path, table, name, label=f"checks.{name}")
        checks[name] = CheckSettings(
            points=section.get("points", float, float(default_points), minimum=0),
            public=section.get("public", bool, True),
        )
        section.finish()
    return checks


# ---------------------------------------------------------------- finding assignments


BUNDLED_ASSIGNMENTS = "bundled_assignments"  # in the package: a link to assignments/, copied into a wheel


def assignments_root() -> Path:
    """`$GRADER_ASSIGNMENTS`, else the assignments shipped with the grader: the `assignments/`
    folder of this checkout, or their copy inside the installed package (`pip install` of a wheel
    or from git), so students can selfcheck without a clone."""
    env = os.environ.get("GRADER_ASSIGNMENTS")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parent / BUNDLED_ASSIGNMENTS).resolve()


def available_assignments(root: Path | None = None) -> list[Path]:
    root = root or assignments_root()
    if not root.is_dir():
        return []
    # (not hidden folders: `grader assign` stages a new assignment in `.<name>.assign` beside it)
    return sorted(p.parent for p in root.glob(f"*/{CONFIG_NAME}") if not p.parent.name.startswith("."))


def find_assignment(name_or_path: str | None, *, cwd: Path | None = None, notebook: Path | None = None) -> Assignment:
    """Resolve --assignment: a folder path, a name under the assignments root, or the default.

    Without a name: the assignment in the current folder (a student's copy), else the one whose
    notebook name is `notebook`'s, else the only one, else the one with `default = true`.
    """
    cwd = cwd or Path.cwd()
    if name_or_path:
        candidate = Path(name_or_path)
        if (candidate / CONFIG_NAME).is_file():
            return load_assignment(candidate)
        named = assignments_root() / name_or_path
        if (named / CONFIG_NAME).is_file():
            return load_assignment(named)
        known = ", ".join(p.name for p in available_assignments()) or "none"
        raise AssignmentNotFoundError(
            f"no assignment '{name_or_path}': not a folder with {CONFIG_NAME}, "
            f"and not one of the known assignments ({known}) in {assignments_root()}"
        )
    if (cwd / CONFIG_NAME).is_file():
        return load_assignment(cwd)
    folders = available_assignments()
    if len(folders) == 1:
        return load_assignment(folders[0])
    loaded = [load_assignment(f) for f in folders]
    if notebook is not None:
        by_notebook = [a for a in loaded if a.notebook == notebook.name]
        if len(by_notebook) == 1:
            return by_notebook[0]
    defaults = [a for a in loaded if a.default]
    if len(defaults) == 1:
        return defaults[0]
    known = ", ".join(a.name for a in loaded) or "none"
    raise AssignmentNotFoundError(f"choose an assignment with --assignment (known: {known})")
