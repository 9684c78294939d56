"""grader: an autograder for deep-learning notebook assignments.

The pipeline, one module or package per stage: load -> extract -> isolate (run isolated) ->
observe (inside the child) -> compare -> score -> report. Commands live in grader.commands.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `from grader import selfcheck` in a notebook; imported on first use, so that importing
    # grader (the CLI, every worker) stays light.
    if name == "selfcheck":
        from grader.commands.notebook_selfcheck import selfcheck

        return selfcheck
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
