"""Render a submission as HTML for the annotated notebook, with a placeholder right after the
cell that defines each graded name (`Net`, `training_loop`).

Runs only in the reading child (grader/isolate/reading.py), after that child has sent its
extraction result: nbformat, mistune, Pygments and bleach parse the student's text here, never in
the grading host, and a crash or a timeout while rendering costs the annotated page, never the
grade. The worker warms it up once on a trusted notebook (`warm_up`), so each child starts with
nbconvert imported and its templates compiled.

What comes out fetches nothing and runs nothing: nbconvert's "basic" template (no require.js, no
MathJax, no CSS), Markdown and HTML outputs cleaned by an allow-list (no script, style, frame,
form, event handler, style attribute, comment, or image that is not a data: URI; no class that
could pass for the grader's findings), JavaScript and widget outputs dropped. It is sized: long
outputs are cut, large images left out, and past a budget whole cells, each time saying so, so
the page stays under MAX_NOTEBOOK_HTML_CHARS. The host still wraps it in a page whose
Content-Security-Policy allows no script (grader/report/annotated_notebook.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from grader.child.cells import SourceCell
from grader.protocol import MAX_NOTEBOOK_HTML_CHARS, findings_placeholder

MAX_SOURCE_CHARS = 30_000  # of one cell's source; the rest is cut
MAX_TEXT_OUTPUT_CHARS = 10_000  # of one text output (its first and last halves are kept)
MAX_RICH_OUTPUT_CHARS = 300_000  # of one image, HTML or Markdown output; a larger one is left out
# Content weighed by what it grows to in HTML (Pygments wraps every token of code in a span),
# so that what is rendered stays well under MAX_NOTEBOOK_HTML_CHARS.
_BUDGET = MAX_NOTEBOOK_HTML_CHARS // 2
_GROWTH = {"code": 8, "markdown": 2, "raw": 2, "output": 2, "image": 1}

_PAGE_LIMIT = f"{MAX_NOTEBOOK_HTML_CHARS / 1e6:g} MB"

_SHOWN_MIMETYPES = ("text/html", "text/markdown", "image/svg+xml", "image/png", "image/jpeg", "text/latex", "text/plain")
_TEXT_MIMETYPES = ("text/plain", "text/latex")

# The basic template, plus the placeholders after a cell: the only comments in the page, since
# the cleaner strips every comment a student wrote. Code is shown as Pygments writes it, which
# escapes every character of the source; the cleaner on top of it (nbconvert's default) took
# 40% of the rendering time and found nothing to remove.
_TEMPLATE = """{%- extends 'basic/index.html.j2' -%}
{% block any_cell %}{{ super() }}{% for placeholder in cell.metadata.get('grader_findings', []) %}
{{ placeholder }}{% endfor %}{% endblock any_cell %}
{% block input %}
<div class="inner_cell">
<div class="input_area">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
</div>
</div>
{%- endblock input %}
"""

_ALLOWED_TAGS = frozenset(
    "a abbr b blockquote br caption code dd del details div dl dt em h1 h2 h3 h4 h5 h6 hr i img ins kbd li ol p "
    "pre q s samp small span strong sub summary sup table tbody td tfoot th thead tr u ul".split()
)
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*\Z")
# Removed with their content before the allow-list, which would otherwise leave their text
# (pandas puts a <style> in every DataFrame).
_DROPPED_WITH_CONTENT = re.compile(r"<(script|style|template|noscript)\b", re.IGNORECASE)
_TAG = re.compile(r"<[A-Za-z][^<>]*>")
_STYLE_ATTRIBUTE = re.compile(r"""\sstyle\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)
_SCRIPT_TAG = re.compile(
    r"<\s*/?\s*(script|style|svg|math|iframe|frame|object|embed|link|meta|base|form)\b", re.IGNORECASE
)

_exporter: Any = None  # built once per worker by warm_up(); each child uses its own copy
_warmed_up = False


class RenderError(Exception):
    """Why the notebook cannot be shown, said for the student ("its page is 2.4 MB, ...")."""


def render_annotated(path: Path, raw: bytes, cells: list[SourceCell], defined_in: dict[str, str], nonce: str) -> str:
    """The submission as HTML, with `findings_placeholder(nonce, name)` after the cell whose
    title `defined_in[name]` gives. `cells` are the code cells extraction read from `raw`."""
    notebook = _notebook_to_show(path, raw, cells, defined_in, nonce)
    html, _ = _html_exporter().from_notebook_node(notebook)
    html = _TAG.sub(lambda tag: _STYLE_ATTRIBUTE.sub("", tag.group()), html)  # ANSI colours come as style attributes
    if _SCRIPT_TAG.search(html):  # text is escaped, so a tag here got past the cleaner: show nothing
        raise RenderError("the page held markup the grader does not show")
    if len(html) > MAX_NOTEBOOK_HTML_CHARS:
        raise RenderError(f"its page is {_megabytes(len(html))}, over the {_PAGE_LIMIT} limit")
    return html


def annotation_observation(
    path: Path, raw: bytes, cells: list[SourceCell], defined_in: dict[str, str], nonce: str
) -> dict[str, Any]:
    """What the reading child reports: {"kind": "annotated", "html": ...} or
    {"kind": "annotation_failed", "error": ...}. Never raises: the grade must not depend on it."""
    try:
        return {"kind": "annotated", "html": render_annotated(path, raw, cells, defined_in, nonce)}
    except RenderError as exc:
        return {"kind": "annotation_failed", "error": str(exc)}
    except Exception as exc:  # nbconvert's, mistune's and bleach's own failure modes on crafted text
        return {"kind": "annotation_failed", "error": f"rendering it failed: {type(exc).__name__}: {exc}"[:300]}


def warm_up() -> None:
    """Import nbconvert, compile the template and load the lexers and cleaner, on a trusted
    notebook, in the worker before it forks (1-3 s once, instead of in every child). Once per
    process: later calls return at once, even after a failure."""
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    script = "# %%\nimport torch\n\n\nclass Net:\n    '''warm-up'''\n    x = [1, 2.0, \"s\"]\n"
    render_annotated(
        Path("warm-up.py"),
        script.encode(),
        [SourceCell("warm-up.py", script, 1, False)],
        {"Net": "warm-up.py (from line 1)"},
        "0",
    )
    render_annotated(Path("warm-up.ipynb"), _WARM_UP_NOTEBOOK.encode(), [SourceCell("cell 2", "print(1)")], {}, "0")


_WARM_UP_NOTEBOOK = """{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
 {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# Title\\n\\n*a* **b** `c` [d](https://example.org)\\n\\n| x | y |\\n|---|---|\\n| 1 | 2 |"},
 {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": "print(1)", "outputs": [
  {"output_type": "stream", "name": "stdout", "text": "1\\n\\u001b[31mred\\u001b[0m"},
  {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": "1", "text/html": "<b>1</b>"}},
  {"output_type": "error", "ename": "E", "evalue": "e", "traceback": ["\\u001b[0;31mE\\u001b[0m: e"]}]}]}"""


def _html_exporter() -> Any:
    global _exporter
    if _exporter is None:
        from jinja2 import DictLoader
        from nbconvert import HTMLExporter
        from nbconvert.exporters.templateexporter import TemplateExporter
        from nbconvert.filters import Highlight2HTML
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

        class AnnotatedNotebookExporter(HTMLExporter):
            """HTMLExporter without its last pass, which parses the whole page again with
            BeautifulSoup to add alt texts and JupyterLab tab stops: two thirds of the time."""

            def from_notebook_node(self, nb: Any, resources: Any = None, **kw: Any) -> Any:
                return TemplateExporter.from_notebook_node(self, nb, resources, **kw)

        quiet = logging.getLogger("grader.notebook_render")
        quiet.setLevel(logging.ERROR)
        _exporter = AnnotatedNotebookExporter(
            template_name="basic",
            extra_loaders=[DictLoader({"grader_annotated.html.j2": _TEMPLATE})],
            template_file="grader_annotated.html.j2",
            sanitize_html=True,  # Markdown, HTML and raw content go through `clean_html`: ours
            filters={"clean_html": clean_html},
            exclude_anchor_links=True,
            log=quiet,
        )
        # What HTMLExporter.from_notebook_node registers on each call; the lexer is always ours.
        _exporter.register_filter("highlight_code", Highlight2HTML(pygments_lexer="ipython3", parent=_exporter))
        _exporter.register_filter(
            "filter_data_type", WidgetsDataTypeFilter(notebook_metadata={}, parent=_exporter, resources={})
        )
    return _exporter


def clean_html(html: str) -> str:
    """Student HTML (rendered Markdown, HTML outputs, raw cells) cut down to an allow-list of
    tags and attributes that can neither run nor fetch anything."""
    import bleach

    html = _drop_with_content(str(html))
    return bleach.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_allowed_attribute,
        protocols={"http", "https", "mailto", "data"},
        strip=True,
        strip_comments=True,
    )


def _drop_with_content(html: str) -> str:
    """`html` without its script, style, template and noscript elements, content included; an
    unclosed one runs to the end, as a browser reads it. One pass: crafted input cannot make it
    slow, as a backtracking regular expression could be made."""
    lower = html.lower()
    kept: list[str] = []
    at = 0
    while (opening := _DROPPED_WITH_CONTENT.search(html, at)) is not None:
        kept.append(html[at : opening.start()])
        closing = lower.find(f"</{opening.group(1).lower()}", opening.end())
        end = lower.find(">", closing) if closing >= 0 else -1
        if end < 0:
            return "".join(kept)
        at = end + 1
    kept.append(html[at:])
    return "".join(kept)


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name == "class":
        return "grader" not in value.lower()  # the findings boxes' classes are the grader's alone
    if tag == "a":
        return name == "title" or (name == "href" and not value.strip().lower().startswith("data:"))
    if tag == "img":
        return (
            name == "alt"
            or (name == "src" and bool(_DATA_IMAGE.match(value)))
            or (name in ("width", "height") and value.isdigit())
        )
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan") and value.isdigit()
    return tag == "ol" and name == "start" and value.isdigit()


# ---------------------------------------------------------------- the notebook to show


def _notebook_to_show(path: Path, raw: bytes, cells: list[SourceCell], defined_in: dict[str, str], nonce: str) -> Any:
    """A fresh notebook holding only what the page shows: sources and outputs cut to size,
    no metadata of the student's (it feeds attributes in nbconvert's templates), and the
    placeholders after the defining cells."""
    import nbformat

    from grader.child.cells import is_code_cell, notebook_from_bytes

    if path.suffix == ".py":  # a script: its `# %%` cells, as code cells
        originals: list[Any] = [{"cell_type": "code", "source": cell.source} for cell in cells]
        titles = {i: cell.title for i, cell in enumerate(cells)}
    else:
        originals = list(notebook_from_bytes(path, raw).cells)
        code_positions = [i for i, cell in enumerate(originals) if is_code_cell(cell)]
        if len(code_positions) != len(cells):
            raise RenderError("the notebook read differently the second time")
        titles = dict(zip(code_positions, (cell.title for cell in cells)))
    placeholders: dict[int, list[str]] = {}
    position_of = {title: i for i, title in titles.items()}
    for name, title in defined_in.items():
        if title in position_of:
            placeholders.setdefault(position_of[title], []).append(findings_placeholder(nonce, name))

    shown: list[dict[str, Any]] = []
    budget = _Budget(_BUDGET)
    left_out = 0
    for position, original in enumerate(originals):
        defining = position in placeholders
        if budget.spent and not defining:
            left_out += 1
            continue
        if left_out:
            shown.append(
                _note_cell(f"{left_out} cells left out here: this page is limited to {_PAGE_LIMIT}", len(shown))
            )
            left_out = 0
        cell = _cell_to_show(original, position, budget)
        if cell is None:
            continue
        if defining:
            cell["metadata"]["grader_findings"] = placeholders[position]
        shown.append(cell)
    if left_out:
        shown.append(_note_cell(f"{left_out} cells left out here: this page is limited to {_PAGE_LIMIT}", len(shown)))
    metadata = {"language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    return nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata, "cells": shown})


class _Budget:
    """How much more content the page may take, weighed by its growth in HTML."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self, chars: int, kind: str) -> bool:
        """Take `chars` of `kind` if they fit. When they do not, the budget is spent: what
        follows is left out, so the page never shows a later output in place of an earlier one."""
        cost = chars * _GROWTH[kind]
        if cost > self.left:
            self.left = 0
            return False
        self.left -= cost
        return True


def _cell_to_show(original: Any, position: int, budget: _Budget) -> dict[str, Any] | None:
    if not isinstance(original, dict):
        return None
    kind = original.get("cell_type")
    if kind not in ("code", "markdown", "raw"):
        return None
    source = _cut(_text(original.get("source", "")), MAX_SOURCE_CHARS, "characters of this cell")
    budget.take(len(source), kind)  # a cell's own source is always shown; it may end the budget
    cell: dict[str, Any] = {"cell_type": kind, "id": f"cell-{position + 1}", "metadata": {}, "source": source}
    if kind == "code":
        count = original.get("execution_count")
        cell["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
        cell["outputs"] = _outputs_to_show(original.get("outputs"), budget)
    elif kind == "markdown":
        attachments = _attachments_to_show(original.get("attachments"), budget)
        if attachments:
            cell["attachments"] = attachments
    return cell


def _note_cell(text: str, index: int) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": f"grader-note-{index}", "metadata": {}, "source": f"*[{text}]*"}


def _outputs_to_show(outputs: Any, budget: _Budget) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    left_out = 0
    for output in outputs if isinstance(outputs, list) else []:
        if budget.spent:
            left_out += 1
            continue
        kept = _output_to_show(output, budget)
        if kept is not None:
            shown.append(kept)
        elif isinstance(output, dict):
            left_out += 1
    if left_out:
        shown.append(_stream(f"[{left_out} outputs left out: this page is limited to {_PAGE_LIMIT}]"))
    return shown


def _output_to_show(output: Any, budget: _Budget) -> dict[str, Any] | None:
    """The output as the page shows it, or None when the budget has no room for it."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        text = _cut(_text(output.get("text", "")), MAX_TEXT_OUTPUT_CHARS, "characters of output")
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return {"output_type": "stream", "name": name, "text": text} if budget.take(len(text), "output") else None
    if kind == "error":
        traceback = output.get("traceback")
        lines = [line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else []
        text = _cut("\n".join(lines), MAX_TEXT_OUTPUT_CHARS, "characters of the traceback")
        if not budget.take(len(text), "output"):
            return None
        ename, evalue = _text(output.get("ename", ""))[:200], _text(output.get("evalue", ""))[:2000]
        return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [text]}
    if kind not in ("display_data", "execute_result"):
        return None
    data = output.get("data")
    if not isinstance(data, dict):
        data = {}
    shown: dict[str, str] = {}
    too_large: list[str] = []
    for mimetype in _SHOWN_MIMETYPES:
        if mimetype not in data:
            continue
        value = _text(data[mimetype])
        if mimetype in _TEXT_MIMETYPES:
            shown[mimetype] = _cut(value, MAX_TEXT_OUTPUT_CHARS, "characters of output")
        elif len(value) <= MAX_RICH_OUTPUT_CHARS:
            shown[mimetype] = value
        else:
            too_large.append(f"{mimetype}, {_megabytes(len(value))}")
    if too_large and not (shown.keys() - set(_TEXT_MIMETYPES)):
        limit = MAX_RICH_OUTPUT_CHARS // 1000
        shown["text/plain"] = (
            shown.get("text/plain", "")
            + f"\n[output left out ({'; '.join(too_large)}): over the {limit} KB limit for one output]"
        )
    if not shown:
        return _stream(f"[an output the page does not show ({', '.join(sorted(map(str, data))) or 'empty'})]"[:300])
    kind_of = "image" if any(m.startswith("image/") for m in shown) else "output"
    if not budget.take(sum(map(len, shown.values())), kind_of):
        return None
    kept: dict[str, Any] = {"output_type": kind, "data": shown, "metadata": {}}
    if kind == "execute_result":
        count = output.get("execution_count")
        kept["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
    return kept


def _attachments_to_show(attachments: Any, budget: _Budget) -> dict[str, dict[str, str]]:
    """Images pasted into Markdown cells, when small enough (shown as data: URIs)."""
    shown: dict[str, dict[str, str]] = {}
    for name, bundle in attachments.items() if isinstance(attachments, dict) else []:
        if not isinstance(name, str) or not isinstance(bundle, dict):
            continue
        images = {
            m: _text(v)
            for m, v in bundle.items()
            if m in ("image/png", "image/jpeg") and len(_text(v)) <= MAX_RICH_OUTPUT_CHARS
        }
        if images and budget.take(sum(map(len, images.values())), "image"):
            shown[name] = images
    return shown


def _stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _text(value: Any) -> str:
    """nbformat text: a string, or a list of strings to join."""
    if isinstance(value, list):
        return "".join(part for part in value if isinstance(part, str))
    return value if isinstance(value, str) else ""


def _megabytes(chars: int) -> str:
    return f"{chars / 1e6:.1f} MB"


def _cut(text: str, limit: int, what: str) -> str:
    """`text` whole, or its first and last halves of `limit` with what was cut in between."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half:,} {what} cut ...]\n{text[-half:]}"
