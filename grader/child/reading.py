"""What a reading child does with a submission's bytes: cells, then the graded definitions.

Runs only in a child forked with limits by grader/isolate/reading.py, which retries without a
cell that crashed or hung the parser. The imports are made in the child, where a failure costs
this one submission.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from grader.protocol import SubmissionRequest

Emit = Callable[[dict[str, Any]], None]


def read_submission(request: SubmissionRequest, raw: bytes, max_cell_chars: int, skip: dict[str, str]) -> Callable[[Emit], None]:
    """The body of a reading child: parse the submission's bytes into cells, extract the roots'
    definitions (skipping the cells in `skip`, which broke an earlier attempt), and emit the
    outcome; then, when asked, the annotated notebook."""
    def body(emit: Emit) -> None:
        from grader.child.cells import cells_from_bytes
        from grader.child.extract import extract_definitions
        from grader.errors import SubmissionError

        name = str(request.get("name", "submission"))
        try:
            cells = cells_from_bytes(Path(name), raw)
        except SubmissionError as exc:
            emit({"kind": "invalid", "cause": exc.cause})
            return
        except Exception as exc:  # the readers' own failure modes on crafted files
            emit({"kind": "invalid", "cause": f"not readable as a notebook or script ({type(exc).__name__})"})
            return
        try:
            program = extract_definitions(
                cells,
                [str(root) for root in request.get("roots", [])],
                max_cell_chars=max_cell_chars,
                skip=skip,
                progress=lambda title: emit({"kind": "parsing", "cell": title}),
            )
        except BaseException as exc:  # blamed on the cell in progress; the supervisor retries without it
            emit({"kind": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        emit(
            {
                "kind": "extracted",
                "units": program.to_json(),
                "notes": program.notes,
                "problems": program.problems,
            }
        )
        annotate = request.get("annotate")
        if isinstance(annotate, dict):  # after the grade's input is out: a failure here costs the page only
            from grader.child.notebook_render import annotation_observation

            emit(annotation_observation(Path(name), raw, cells, program.defined_in, str(annotate.get("nonce"))))

    return body
