"""grader: an autograder for deep-learning notebook assignments.

The pipeline, one module or package per stage: load (`load`) -> extract (`child.extract`) ->
run isolated (`isolate`, fed by `executors`) -> observe (`child.observe`, inside the child) ->
compare (`compare`) -> score (`score`) -> report (`report`). `pipeline` runs one submission through
them; `reference` derives what a correct one does. Commands live in `commands`, one per command.
Student code runs only in the children: under `child`, started by `isolate`.
"""

from grader.version import __version__

__all__ = ["__version__", "selfcheck"]


def __getattr__(name: str) -> object:
    # `from grader import selfcheck` in a notebook; imported on first use, so that importing
    # grader (the CLI, every worker) stays light.
    if name == "selfcheck":
        from grader.commands.notebook_selfcheck import selfcheck

        return selfcheck
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
