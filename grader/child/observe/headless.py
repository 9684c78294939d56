"""Display-only packages as a grading child runs them: no screen, no Jupyter widgets.

Students wrap `train_loader` in a progress bar (`tqdm`, often `tqdm.notebook`) and draw live
loss plots (`matplotlib`, `IPython.display.clear_output`). None of it decides a score, and none
of it may cost one: the worker imports the allowed packages a program names the first time one
does, before it forks (so no child pays the import, about a second for matplotlib), with
matplotlib's file-only Agg backend, and points tqdm's notebook bars, which need ipywidgets, at its
text bars (they write to the captured stderr).

Runs in the worker before it forks; never in the grading host.
"""

from __future__ import annotations

import importlib
import re

_prepared: set[str] = set()


def prepare_packages(packages: list[str]) -> None:
    """Import the allowed packages that are installed, ready for children (each once per process)."""
    for package in packages:
        if package in _prepared:
            continue
        _prepared.add(package)
        try:
            importlib.import_module(package)
        except ImportError:
            continue  # the student whose code imports it reads why (grader/child/observe/program.py)
        prepare = _PREPARE.get(package)
        if prepare is not None:
            prepare()


def packages_used(packages: list[str], sources: list[str]) -> list[str]:
    """The packages a program's source names, so a child that loads it can prepare just those."""
    return [p for p in packages if any(re.search(rf"\b{re.escape(p)}\b", source) for source in sources)]


def _matplotlib() -> None:
    import matplotlib  # the worker's environment already says MPLBACKEND=Agg; use() makes sure

    matplotlib.use("Agg")
    import matplotlib.pyplot  # what students import; the slow part


def _tqdm() -> None:
    import tqdm.auto
    import tqdm.notebook
    import tqdm.std

    text_bars = {"tqdm": tqdm.std.tqdm, "trange": tqdm.std.trange, "tqdm_notebook": tqdm.std.tqdm, "tnrange": tqdm.std.trange}
    for module in (tqdm.notebook, tqdm.auto):
        for name, bar in text_bars.items():
            if hasattr(module, name):
                setattr(module, name, bar)


_PREPARE = {"matplotlib": _matplotlib, "tqdm": _tqdm}
