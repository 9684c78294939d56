"""A picture of the student's network beside the reference's, operation by operation, for the
feedback page, the Markdown feedback and the in-notebook `selfcheck()` table.

It draws `details["network"]` of the `net.layers` check: rows of aligned operations (layer,
settings, output shape, parameters on each side), which fields differ, where the student's
forward stopped. Every string in it comes from student code (layer names, arguments, error
messages), so everything is escaped, and a detail that is missing or malformed (a gradebook
written before this detail existed, a corrupted file) is simply not drawn: `network_of` never
raises on a result's contents, and the writers draw only what it accepts. Like every writer
here, it consumes SubmissionResults only.

The HTML carries classes always, and inline `style=` attributes on request: Jupyter output has no
stylesheet, while the feedback page's Content-Security-Policy blocks inline styles and takes the
same looks from `NETWORK_CSS` in its own (hashed) stylesheet.
"""

from __future__ import annotations

from html import escape
from typing import Any

from grader.results import SubmissionResult

NETWORK_HEADING = "Your network beside the reference"  # the section's title, wherever it is shown
LAYERS_CHECK = "net.layers"  # the check whose details carry the network
FIELDS = ("layer", "settings", "output_shape", "parameters")
HEADINGS = {"layer": "layer", "settings": "settings", "output_shape": "output shape", "parameters": "parameters"}
SIDES = (("reference", "Reference"), ("student", "Your Net"))

# Student text is clipped so one pathological name cannot swamp the page.
_MAX_TEXT = {"layer": 120, "settings": 200}
_MAX_ERROR = 600

# One look per class, in order from general to specific: a later class wins both as inline
# declarations (the last duplicate property wins) and in NETWORK_CSS (same specificity, later rule).
_LOOKS: dict[str, str] = {
    "grader-network": "border-collapse:collapse;font-size:0.9em;margin:8px 0",
    "nw-cell": "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #d8dee4",
    "nw-head": "background:#f6f8fa;font-weight:600",
    "nw-group": "text-align:center",
    "nw-num": "text-align:right;font-variant-numeric:tabular-nums",
    "nw-side": "border-left:2px solid #8c959f",  # where a side's column group starts
    "nw-differs": "background:#fff8c5",
    "nw-missing": "background:#ffebe9",
    "nw-extra": "background:#dafbe1",
    "nw-stopped": "color:#cf222e",
    "nw-marker": "font-size:0.85em;color:#57606a;white-space:nowrap",
    "nw-swatch": "padding:0 4px;border-radius:3px",
    "nw-caption": "text-align:left;caption-side:top;padding:4px 0;font-size:0.95em;color:#57606a",
    "nw-note": "font-size:0.9em;color:#57606a;padding-top:4px",
}

NETWORK_CSS = "\n".join(
    f"table.grader-network {{ {look} }}" if name == "grader-network" else f".grader-network .{name} {{ {look} }}"
    for name, look in _LOOKS.items()
) + "\n"


# ---------------------------------------------------------------- the detail, validated


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _side(value: object) -> dict[str, Any] | None:
    """A validated copy of one side, known keys only; raises ValueError if malformed."""
    if not isinstance(value, dict):
        raise ValueError("a side is not an object")
    layer, settings = value.get("layer"), value.get("settings", "")
    shape, parameters = value.get("output_shape"), value.get("parameters")
    if not isinstance(layer, str) or not isinstance(settings, str):
        raise ValueError("layer and settings must be strings")
    if shape is not None and not (isinstance(shape, list) and all(_is_int(n) for n in shape)):
        raise ValueError("output_shape must be a list of integers")
    if parameters is not None and not (_is_int(parameters) and parameters >= 0):
        raise ValueError("parameters must be a count")
    checked = {"layer": layer, "settings": settings, "output_shape": shape, "parameters": parameters}
    shared = value.get("shared")
    if shared is not None:
        if not (_is_int(shared) and shared > 1):
            raise ValueError("shared must be a count of runs")
        checked["shared"] = shared  # one layer object, run this many times: its parameters counted once
    return checked


class CheckedNetwork(dict):
    """A `network` detail as `checked_network` returns it: the tables draw it without checking it again."""


def checked_network(network: object) -> CheckedNetwork:
    """A validated, normalised copy of a `network` detail (known keys only, defaults filled in);
    raises ValueError if it is malformed. Differences named on a row with a missing side, or
    fields unknown to this version, are dropped: there is nothing to compare them with."""
    if not isinstance(network, dict) or not isinstance(network.get("rows"), list):
        raise ValueError("network detail without a list of rows")
    rows = []
    for row in network["rows"]:
        if not isinstance(row, dict):
            raise ValueError("a row is not an object")
        reference = None if row.get("reference") is None else _side(row["reference"])
        student = None if row.get("student") is None else _side(row["student"])
        if reference is None and student is None:
            raise ValueError("a row with neither side")
        differs = row.get("differs", [])
        if not isinstance(differs, list) or not all(isinstance(name, str) for name in differs):
            raise ValueError("differs must be a list of field names")
        both = reference is not None and student is not None
        rows.append({"reference": reference, "student": student, "differs": [f for f in FIELDS if both and f in differs]})
    truncated, error = network.get("truncated", False), network.get("student_error")
    if not isinstance(truncated, bool) or not (error is None or isinstance(error, str)):
        raise ValueError("truncated must be a boolean and student_error a string or null")
    return CheckedNetwork(rows=rows, truncated=truncated, student_error=error or None)


def network_of(result: SubmissionResult) -> CheckedNetwork | None:
    """The `network` detail of the result's `net.layers` check, validated; None when the check
    is absent (hidden, or not run), the detail predates this picture, or it is malformed."""
    for check in result.checks:
        if check.name == LAYERS_CHECK and isinstance(check.details, dict) and "network" in check.details:
            try:
                return checked_network(check.details["network"])
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------- cell texts


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # a newline in a name would break a Markdown row
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(side: dict[str, Any], field: str) -> str:
    """A field as the student reads it: shapes as 64×16×32×32, counts as 1,234."""
    value = side[field]
    if field == "output_shape":
        if value is None:
            return ""
        return "×".join(str(n) for n in value) if value else "scalar"
    if field == "parameters":
        if side.get("shared"):
            return "shared" if value is None else f"{value:,} (shared by {side['shared']} runs)"
        return "" if value is None else f"{value:,}"
    return _clip(value, _MAX_TEXT[field])


# ---------------------------------------------------------------- HTML


def _open(tag: str, classes: list[str], inline: bool, **attributes: str) -> str:
    """A start tag with its classes, its look inline if asked (in _LOOKS order, as the
    stylesheet would apply it), and static attributes."""
    opening = tag + f' class="{" ".join(classes)}"'
    if inline:
        opening += ' style="' + ";".join(look for name, look in _LOOKS.items() if name in classes) + '"'
    opening += "".join(f' {name}="{escape(value)}"' for name, value in attributes.items())
    return f"<{opening}>"


def _el(tag: str, classes: list[str], inline: bool, content: str = "", **attributes: str) -> str:
    return _open(tag, classes, inline, **attributes) + content + f"</{tag}>"


SHARED_LEGEND = "shared: one layer object that forward runs several times (a repeated block), its parameters counted on its first run."


def _has_shared(network: dict[str, Any]) -> bool:
    return any(side is not None and side.get("shared") for row in network["rows"] for side in (row["reference"], row["student"]))


def _caption(inline: bool, shared: bool) -> str:
    def swatch(look: str, text: str) -> str:
        return _el("span", [look, "nw-swatch"], inline, text)

    return _el(
        "caption",
        ["nw-caption"],
        inline,
        "One row per operation, in the order forward runs them. "
        f"{swatch('nw-differs', '≠ highlighted')}: differs from the reference; "
        f"{swatch('nw-missing', '— missing')}: the reference runs it, your Net does not; "
        f"{swatch('nw-extra', 'extra')}: your Net runs it, the reference does not." + (f" {SHARED_LEGEND}" if shared else ""),
    )


def _field_classes(field: str, first: bool) -> list[str]:
    return ["nw-cell"] + (["nw-num"] if field == "parameters" else []) + (["nw-side"] if first else [])


def _head(inline: bool) -> str:
    head = ["<thead><tr>", _el("th", ["nw-cell", "nw-head", "nw-num"], inline, "#", rowspan="2", scope="col")]
    head += [_el("th", ["nw-cell", "nw-group", "nw-head", "nw-side"], inline, title, colspan="4", scope="colgroup") for _, title in SIDES]
    head.append("</tr><tr>")
    for _ in SIDES:
        head += [_el("th", [*_field_classes(f, i == 0), "nw-head"], inline, HEADINGS[f], scope="col") for i, f in enumerate(FIELDS)]
    head.append("</tr></thead>")
    return "".join(head)


def _side_cells(row: dict[str, Any], key: str, tint: list[str], inline: bool) -> list[str]:
    side = row[key]
    cells = []
    for i, field in enumerate(FIELDS):
        classes = _field_classes(field, i == 0) + tint
        if side is None:
            # The absent side: an em-dash, and on the student's side the word, not only the tint.
            label = " " + _el("span", ["nw-marker"], inline, "missing") if key == "student" and i == 0 else ""
            cells.append(_el("td", classes, inline, "—" + label))
            continue
        text = escape(_text(side, field))
        if field in row["differs"]:
            classes.append("nw-differs")
            if key == "student":
                text += " " + _el("span", ["nw-marker"], inline, "≠", title="differs from the reference")
        if key == "student" and i == 0 and row["reference"] is None:
            text += " " + _el("span", ["nw-marker"], inline, "extra")
        cells.append(_el("td", classes, inline, text))
    return cells


def _row_tint(row: dict[str, Any]) -> tuple[list[str], str]:
    if row["student"] is None:
        return ["nw-missing"], ' title="missing: the reference runs this operation here, your Net does not"'
    if row["reference"] is None:
        return ["nw-extra"], ' title="extra: your Net runs this operation here, the reference does not"'
    return [], ""


def network_table_html(network: dict[str, Any], *, inline_styles: bool = True) -> str:
    """The two networks as one self-contained <table class="grader-network">. With
    `inline_styles` (for Jupyter output, which has no stylesheet) every element carries its look;
    without (for pages whose CSP forbids `style=`), the page must include NETWORK_CSS.
    Raises ValueError if `network` is malformed; `network_of` gives a checked one."""
    network = network if isinstance(network, CheckedNetwork) else checked_network(network)
    inline = inline_styles
    parts = [_open("table", ["grader-network"], inline), _caption(inline, _has_shared(network))]
    parts.append("<colgroup><col></colgroup>" + '<colgroup span="4"></colgroup>' * len(SIDES))
    parts += [_head(inline), "<tbody>"]
    for number, row in enumerate(network["rows"], 1):
        tint, title = _row_tint(row)
        cells = [_el("td", ["nw-cell", "nw-num", *tint], inline, str(number))]
        for key, _ in SIDES:
            cells += _side_cells(row, key, tint, inline)
        parts.append(f"<tr{title}>" + "".join(cells) + "</tr>")
    if network["student_error"]:
        error = escape(_clip(network["student_error"], _MAX_ERROR))
        stopped = _el("td", ["nw-cell", "nw-side", "nw-stopped"], inline, f"forward stopped: {error}", colspan="4")
        parts.append("<tr>" + _el("td", ["nw-cell"], inline) + _el("td", ["nw-cell", "nw-side"], inline, colspan="4") + stopped + "</tr>")
    parts.append("</tbody>")
    if network["truncated"]:
        note = f"Only the first {len(network['rows'])} operations your forward ran are shown."
        parts.append("<tfoot><tr>" + _el("td", ["nw-note"], inline, note, colspan=str(1 + 4 * len(SIDES))) + "</tr></tfoot>")
    parts.append("</table>")
    return "\n".join(parts)


# ---------------------------------------------------------------- Markdown


_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|~"})


def _md(text: str) -> str:
    """Student text inside a GitHub table cell: no HTML, no formatting, no column separators."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.translate(_MARKDOWN_SPECIAL)


def _md_cells(row: dict[str, Any], key: str) -> list[str]:
    side = row[key]
    if side is None:
        return ["— (missing)" if key == "student" else "—", "—", "—", "—"]
    cells = []
    for field in FIELDS:
        text = _md(_text(side, field))
        if field in row["differs"]:
            text = f"**{text}**" if text else "**(none)**"  # "****" would render as a rule of stars
        cells.append(text)
    if key == "student" and row["reference"] is None:
        cells[0] += " (extra)"
    return cells


def network_table_markdown(network: dict[str, Any]) -> str:
    """The same rows as a GitHub-Markdown table (one line per row), with a legend above it and
    where forward stopped, or that it was cut short, below it. Raises ValueError if `network` is
    malformed; `network_of` gives a checked one."""
    network = network if isinstance(network, CheckedNetwork) else checked_network(network)
    columns = ["#"] + [f"{title} {HEADINGS['layer']}" if i == 0 else HEADINGS[f] for _, title in SIDES for i, f in enumerate(FIELDS)]
    lines = [
        "One row per operation, in the order forward runs them. **Bold**: differs from the reference; "
        "(missing): the reference runs it, your Net does not; (extra): your Net runs it, the reference does not."
        + (f" {SHARED_LEGEND}" if _has_shared(network) else ""),
        "",
        "| " + " | ".join(columns) + " |",
        "|---:|" + "---|---|---|---:|" * len(SIDES),
    ]
    for number, row in enumerate(network["rows"], 1):
        lines.append("| " + " | ".join([str(number), *_md_cells(row, "reference"), *_md_cells(row, "student")]) + " |")
    lines.append("")
    if network["student_error"]:
        last = max((n for n, row in enumerate(network["rows"], start=1) if row["student"] is not None), default=0)
        lines += [f"Your forward stopped at row {last}: {_md(_clip(network['student_error'], _MAX_ERROR))}", ""]
    if network["truncated"]:
        lines += [f"Only the first {len(network['rows'])} operations your forward ran are shown.", ""]
    return "\n".join(lines)
