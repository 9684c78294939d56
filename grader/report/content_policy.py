"""Content-Security-Policy sources for the self-contained pages the grader writes."""

from __future__ import annotations

import base64
import hashlib


def csp_hash(text: str) -> str:
    """The CSP source that allows exactly this inline stylesheet or script: `'sha256-…'`."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
