"""grader: an autograder for deep-learning notebook assignments.

The pipeline, one module or package per stage: load -> extract -> isolate (run isolated) ->
observe (inside the child) -> compare -> score -> report. Commands live in grader.commands.
"""

__version__ = "0.1.0"
