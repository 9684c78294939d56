"""What runs inside a limited child, next to a student's text or code: reading a submission into
cells (`cells`, `reading`), extracting the graded definitions (`extract`, stage 2), rendering the
annotated notebook (`notebook_render`) and the probes (`observe`, stage 4).

The children are forked by grader/isolate/; nothing here starts processes, decides points or
imports the grading host's modules (import-linter checks it: pyproject.toml).
"""
