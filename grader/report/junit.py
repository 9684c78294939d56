"""JUnit XML for CI systems: one test case per check of a submission, the way test reporters
(GitHub, GitLab, Jenkins) already display test results.

Writes only what it is given: selfcheck passes the public view of a result and the number of
hidden checks, which appear as one skipped test case that names no hidden check. A failing
check's text holds its reasons and its own notes, since CI shows that text beside the test
name; every note is also in the suite's system-out. A check (or score) an instructor's override
set carries the override in an `adjusted` property.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from grader.report.text import adjustment_text, format_points, out_of
from grader.results import INVALID, TOTAL, CheckResult, SubmissionResult

# XML 1.0 cannot hold most control characters; student output may contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def junit_xml(result: SubmissionResult, assignment: str, *, hidden_checks: int = 0) -> str:
    suite_name = f"{assignment}: {Path(result.path).name}"
    classname = f"{assignment}.{result.student}"
    def went_wrong(check: CheckResult) -> bool:
        """An error rather than a failure: the check could not judge (exception, timeout, bad file)."""
        return bool(check.error) or result.status == INVALID

    failures = sum(not c.passed and not went_wrong(c) for c in result.checks)
    errors = sum(not c.passed and went_wrong(c) for c in result.checks)
    counts = {
        "tests": str(len(result.checks) + (1 if hidden_checks else 0)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(1 if hidden_checks else 0),
        "time": f"{result.seconds:.3f}",
    }
    suites = ET.Element("testsuites", {"name": "grader selfcheck", **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": _text(suite_name), **counts})
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("notebook", result.path),
        ("status", result.status),
        ("score", format_points(result.total)),
        ("max_score", format_points(result.max_total)),
        ("hidden_checks", str(hidden_checks)),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": _text(value)})
    total_adjustment = result.adjustment(TOTAL)
    if total_adjustment is not None:
        ET.SubElement(properties, "property", {"name": "adjusted", "value": _text(adjustment_text(total_adjustment))})

    for check in result.checks:
        case = ET.SubElement(suite, "testcase", {"classname": _text(classname), "name": check.name, "time": "0", "file": _text(result.path)})
        case_properties = ET.SubElement(case, "properties")
        ET.SubElement(case_properties, "property", {"name": "points", "value": format_points(check.points)})
        ET.SubElement(case_properties, "property", {"name": "max_points", "value": format_points(check.max_points)})
        adjustment = result.adjustment(check.name)
        if adjustment is not None:
            ET.SubElement(case_properties, "property", {"name": "adjusted", "value": _text(adjustment_text(adjustment))})
        if check.passed:
            continue
        body = "\n".join([*check.reasons, *map(str, result.notes_for(check.name))])
        if went_wrong(check):
            cause = check.error or result.error or check.message
            verdict = ET.SubElement(case, "error", {"type": "error", "message": _text(f"{out_of(check.points, check.max_points)}: {cause}")})
        else:
            verdict = ET.SubElement(case, "failure", {"type": "points lost", "message": _text(f"{out_of(check.points, check.max_points)}: {check.message}")})
        verdict.text = _text(body)

    if hidden_checks:
        case = ET.SubElement(suite, "testcase", {"classname": _text(classname), "name": "hidden checks", "time": "0"})
        ET.SubElement(case, "skipped", {"message": f"{hidden_checks} hidden check(s) are graded after you submit"})
    if result.notes:
        ET.SubElement(suite, "system-out").text = _text("\n".join(map(str, result.notes)))

    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

