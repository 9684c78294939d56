"""A Dask worker preload for bench/bench_scale.py: the check step of every task becomes a fixed
delay that returns the observations recorded from a real worker for the same file.

Everything else a task does is the real code (grader/executors/cluster.py `grade_on_cluster`: the
result compared with the reference's expectations and scored in the Dask worker process), and
everything the grading host does is untouched. Only the warm grader worker, the part that needs
a core per task, is replaced, so a 2-core machine can stand for a cluster of 64 threads.

    dask worker SCHEDULER --nthreads 64 --preload bench/simulated_checks.py

Reads GRADER_SIM_RECORDED (the JSON file bench_scale.py records: {sha256 of a file's bytes:
{"nonce": ..., "raw": ...}}) and GRADER_SIM_DELAY_S (default 0.4).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

from grader.executors import cluster

# Each file's observations kept pickled: unpickling afresh per task is the cheapest deep copy.
_RECORDED: dict[str, tuple[str, bytes]] = {
    digest: (entry["nonce"], pickle.dumps(entry["raw"])) for digest, entry in json.loads(Path(os.environ["GRADER_SIM_RECORDED"]).read_text()).items()
}
_DELAY_S = float(os.environ.get("GRADER_SIM_DELAY_S", "0.4"))


class RecordedChecks:
    """Stands in for a warm grader worker: answers `grade` like one, after the delay."""

    def grade(self, submission: dict[str, Any], groups: list[str], limits: dict[str, Any]) -> dict[str, Any]:
        time.sleep(_DELAY_S)
        nonce, pickled = _RECORDED[hashlib.sha256(base64.b64decode(submission["data"])).hexdigest()]
        raw = pickle.loads(pickled)
        annotated = (raw.get("extraction") or {}).get("annotated")
        if isinstance(annotated, dict) and "html" in annotated:  # its placeholders carry the request's nonce
            annotated["html"] = annotated["html"].replace(nonce, submission["annotate"]["nonce"])
        return raw


def _recorded_checks(settings: cluster.RemoteSettings) -> RecordedChecks:
    return RecordedChecks()


def _no_prestart(*args: Any, **kwargs: Any) -> int:
    return 0


cluster.warm_worker = _recorded_checks
cluster.prestart_workers = _no_prestart  # no grader worker is ever started here


def dask_setup(worker: Any) -> None:  # the preload hook; the patch above is all it needs
    pass
