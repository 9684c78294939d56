"""Property-based tests: notebooks and scripts put together from the pieces real hand-ins are made of.

The pieces: import cells (the lecture's, Colab's, with Japanese comments), correct `Net` and
`training_loop` cells in several styles (GPU code, `%%time`, progress bars and live plots, keyword
order, extra keyword arguments), earlier wrong or duplicate versions of both, and noise: data
loading, training calls, plots, prints, helpers, Colab preambles, magics and `!shell` lines, names
bound again (`import torch.nn as nn`, `device = ...`), cells with syntax errors (one of them a
broken later attempt at `Net`), markdown and raw cells (one holding a wrong `Net` as text), empty
cells; in any order, duplicated, with execution counts out of order and outputs from none to
huge. They are saved as nbformat 4.5, Colab's 4.0 or nbformat 3 notebooks, or `# %%` scripts
(magics commented out as jupytext writes them or left as they are, sometimes with a main guard),
occasionally as markdown-only notebooks; in UTF-8 (with a BOM or Windows line ends at times) and
occasionally in another encoding.

- fast (many examples, no torch): the real reading path, `read_and_extract` in a forked child,
  never crashes and returns the documented form; a file that is not UTF-8 (nor declares its
  encoding) is invalid and says so; and when the correct `Net` and loop are the last definitions,
  the kept units hold them at their true location, whatever the noise around them.
- slow: a generated class graded in one `grader run`: one row per file, and every hand-in that
  embeds the correct `Net` and loop as its last definitions earns full marks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nbformat import v3
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell
from test_fuzz_extraction import assert_documented_form

from grader.isolate.reading import ReadingLimits, read_and_extract
from grader.protocol import submission_request

LIMITS = ReadingLimits(timeout_s=20.0, memory_mb=2048, max_cell_chars=256 * 1024)
ROOTS = ["Net", "training_loop"]

REALISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ---------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Piece:
    """One cell. For the correct Net and loop, `before` is what the cell holds ahead of the
    definition (a magic, a device setting, imports), so the definition starts on line
    before.count("\\n") + 1 of the cell."""

    kind: str  # "code", "markdown" or "raw"
    text: str
    role: str = "noise"  # "imports", "net", "loop", "old_net", "old_loop", "broken", "noise", "text"
    before: str = ""
    name: str = ""

    @property
    def source(self) -> str:
        return self.before + self.text

    @property
    def label(self) -> str:
        return self.name or self.role


def definition(role: str, name: str, text: str, before: str = "") -> Piece:
    return Piece("code", text, role, before, name)


def code_cell(name: str, text: str, role: str = "noise") -> Piece:
    return Piece("code", text, role, name=name)


IMPORTS = [
    Piece("code", v.IMPORTS, "imports", name="lecture imports"),
    Piece(
        "code",
        "import datetime\nimport torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
        "import torch.optim as optim\nfrom torchvision import datasets, transforms\n",
        "imports",
        name="colab imports",
    ),
    Piece(
        "code",
        "# ライブラリの読み込み\nimport datetime\nimport torch\nimport torch.nn as nn  # ニューラルネット\nimport torch.nn.functional as F\n",
        "imports",
        name="japanese imports",
    ),
]

NET_JAPANESE = v.NET.replace(
    "        self.conv1 =", "        # 畳み込み層: 3 → 16 チャンネル\n        self.conv1 ="
).replace(
    "        out = out.view(-1, 8 * 8 * 8)\n", "        out = out.view(-1, 8 * 8 * 8)  # 平坦化（バッチサイズは -1）\n"
)
NET_ON_DEVICE = v.NET.replace("    def forward(self, x):\n", "    def forward(self, x):\n        x = x.to(device)\n")

CORRECT_NETS = [
    definition("net", "lecture Net", v.NET),
    definition("net", "Sequential Net", v.NET_SEQUENTIAL),
    definition("net", "Net of modules", v.NET_MODULES),
    definition("net", "Net with defaults", v.NET_DEFAULTS),
    definition("net", "Japanese Net", NET_JAPANESE),
    definition("net", "GPU Net", NET_ON_DEVICE, before="device = torch.device('cuda')\n\n"),
    definition("net", "%%time Net", v.NET, before="%%time\n"),
]

LOOP_KEYWORD_ORDER = v.LOOP.replace(
    "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):",
    "def training_loop(model, train_loader, loss_fn, optimizer, n_epochs=10):",
)
LOOP_EXTRA_KEYWORDS = v.LOOP.replace(
    "train_loader):", "train_loader, val_loader=None, log_every=10, device='cpu'):"
).replace("epoch % 10 == 0", "epoch % log_every == 0")
LOOP_GPU = v.LOOP.replace("    for epoch in", "    model = model.to(device)\n    for epoch in").replace(
    "            outputs = model(imgs)\n",
    "            imgs, labels = imgs.cuda(non_blocking=True), labels.to(device)\n            outputs = model(imgs)\n",
)
LOOP_TQDM = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    history = []
    for epoch in tqdm(range(1, n_epochs + 1)):
        loss_train = 0.0
        for imgs, labels in tqdm(train_loader, leave=False):
            loss = loss_fn(model(imgs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_train += loss.item()
        history.append(loss_train / len(train_loader))
        clear_output(wait=True)
        plt.plot(history)
        plt.show()
    return history
"""
LOOP_JAPANESE = (
    v.LOOP.replace("loss = loss_fn", "損失 = loss_fn")
    .replace("loss.backward()", "損失.backward()  # 誤差逆伝播")
    .replace("loss.item()", "損失.item()")
)

CORRECT_LOOPS = [
    definition("loop", "lecture loop", v.LOOP),
    definition("loop", "keyword-order loop", LOOP_KEYWORD_ORDER),
    definition("loop", "loop with extra keywords", LOOP_EXTRA_KEYWORDS),
    definition("loop", "GPU loop", LOOP_GPU, before="device = torch.device('cuda')\n"),
    definition(
        "loop",
        "tqdm loop",
        LOOP_TQDM,
        before="from tqdm.notebook import tqdm\nfrom IPython.display import clear_output\nimport matplotlib.pyplot as plt\n\n",
    ),
    definition("loop", "Japanese loop", LOOP_JAPANESE, before="# 学習ループ\n"),
    definition("loop", "%%time loop", v.LOOP, before="%%time\n"),
]

OLD_NETS = [
    code_cell("ReLU Net", v.NET_RELU, "old_net"),
    code_cell("wide Net", v.NET_WRONG_CHANNELS, "old_net"),
    code_cell("hard-coded batch Net", v.NET_HARDCODED_BATCH, "old_net"),
    code_cell("placeholder Net", "class Net(nn.Module):\n    pass\n", "old_net"),
    code_cell("lecture Net, an earlier copy", v.NET, "old_net"),
]
OLD_LOOPS = [
    code_cell("loop without zero_grad", v.LOOP_NO_ZERO_GRAD, "old_loop"),
    code_cell("loop without step", v.LOOP_NO_STEP, "old_loop"),
    code_cell("loop, an earlier copy", v.LOOP, "old_loop"),
    code_cell(
        "loop stub",
        "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    raise NotImplementedError()\n",
        "old_loop",
    ),
]

VALIDATE = """\
def validate(model, train_loader, val_loader):
    for name, loader in [("train", train_loader), ("val", val_loader)]:
        correct = 0
        total = 0
        with torch.no_grad():
            for imgs, labels in loader:
                _, predicted = torch.max(model(imgs), dim=1)
                total += labels.shape[0]
                correct += int((predicted == labels).sum())
        print("Accuracy {}: {:.2f}".format(name, correct / total))

validate(model, train_loader, val_loader)
"""
NET_WIDTH = """\
import torch.nn as nn

class NetWidth(nn.Module):
    def __init__(self, n_chans1=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(8 * 8 * n_chans1 // 2, 32)
        self.fc2 = nn.Linear(32, 2)
"""

NOISE = [
    code_cell("data", v.DATA),
    code_cell("training", v.TRAIN),
    code_cell("evaluation", v.EVALUATE),
    code_cell("validate helper", VALIDATE),
    code_cell("plot", "plt.plot(losses)\nplt.xlabel('epoch')\nplt.ylabel('loss')\nplt.show()\n"),
    code_cell("prints", "print(model)\nprint(sum(p.numel() for p in model.parameters()))\n"),
    code_cell("forward on noise", "model = Net()\nmodel(torch.randn(1, 3, 32, 32))\n"),
    code_cell("pip", "!pip install -q torchinfo\n"),
    code_cell("drive", "from google.colab import drive\ndrive.mount('/content/drive')\n"),
    code_cell("matplotlib inline", "%matplotlib inline\n"),
    code_cell("nvidia-smi", "!nvidia-smi\n"),
    code_cell("autoreload", "%load_ext autoreload\n%autoreload 2\n"),
    code_cell("shell capture", "files = !ls ../data-unversioned/p1ch7/\nprint(files)\n"),
    code_cell("env magic", "%env CUDA_LAUNCH_BLOCKING=1\n"),
    code_cell("help", "nn.Conv2d?\n"),
    code_cell("timed training", "%%time\n" + v.TRAIN),
    code_cell("captured pip", "%%capture\n!pip install tqdm\n"),
    code_cell("re-import nn", "import torch.nn as nn\n"),
    code_cell("from torch import nn", "from torch import nn\nimport torch.nn.functional as F\n"),
    code_cell("cuda device", "device = torch.device('cuda')\nprint(f'Training on device {device}.')\n"),
    code_cell(
        "guarded device",
        "device = (torch.device('cuda') if torch.cuda.is_available()\n          else torch.device('cpu'))\n",
    ),
    code_cell("cudnn", "torch.backends.cudnn.benchmark = True\n"),
    code_cell("settings", "lr = 1e-2\nn_epochs = 100\nbatch_size = 64\n"),
    code_cell("loss function", "loss_fn = nn.CrossEntropyLoss()\n"),
    code_cell("NetWidth", NET_WIDTH),
    code_cell(
        "helper",
        "def count_parameters(model):\n    return sum(p.numel() for p in model.parameters() if p.requires_grad)\n",
    ),
    code_cell("Japanese comment", "# 学習結果の確認\nprint('正解率:', 0.89)  # 検証データ\n"),
    code_cell("empty cell", ""),
]

# Anywhere, even after the correct Net: a cell Python cannot parse never defines anything.
BROKEN = [
    code_cell("unclosed call", "plt.plot(losses\nplt.show()\n", "broken"),
    code_cell("bad def", "def plot_losses(:\n    pass\n", "broken"),
    code_cell("Python 2 print", "print 'accuracy', acc\n", "broken"),
    code_cell("missing colon", "for epoch in range(10)\n    print(epoch)\n", "broken"),
    code_cell(
        "broken later Net", "class Net(nn.Module)\n    def __init__(self):\n        super().__init__()\n", "broken"
    ),
]

TEXT = [
    Piece("markdown", "# CIFAR-2: birds vs airplanes", "text"),
    Piece("markdown", "## 畳み込みニューラルネットワーク\n\n鳥と飛行機を分類します。", "text"),
    Piece("markdown", "Training took **8 minutes** on a T4. Loss: $L = -\\sum_i y_i \\log p_i$", "text"),
    Piece("markdown", "My first try, with ReLU:\n\n```python\nclass Net(nn.Module):\n    pass\n```", "text"),
    Piece("raw", "student id: 2024-0117", "text"),
    Piece("raw", "%%time\nclass Net(nn.Module):\n    pass\n", "text"),
]


# ---------------------------------------------------------------- submissions


@dataclass
class Generated:
    """A generated hand-in: its file name and bytes, and what the grader must make of it."""

    name: str
    raw: bytes
    pieces: list[Piece]
    layout: str
    encoding: str
    # (filename, line) of the correct Net and loop when they are the file's last definitions
    net_at: tuple[str, int] | None = None
    loop_at: tuple[str, int] | None = None
    net: Piece | None = None
    loop: Piece | None = None
    broken_cells: set[int] = field(default_factory=set)

    @property
    def readable(self) -> bool:
        """Whether the grader can decode the file: UTF-8, or a script's declared encoding."""
        return self.encoding in [*UTF8, "shift_jis declared"]

    @property
    def student(self) -> str:
        """The row's name in the CSV: the file name without its extension."""
        return self.name.rsplit(".", 1)[0]

    @property
    def embeds_correct_work(self) -> bool:
        return self.net_at is not None and self.loop_at is not None and self.readable

    def describe(self) -> str:
        return f"{self.name} ({self.layout}, {self.encoding}): " + " | ".join(p.label for p in self.pieces)


def big_text(size: int) -> str:
    line = "2024-05-02 14:01:12 Epoch 1, Training loss 0.5635471311645298\n"
    return line * (size // len(line))


def outputs_of(kind: str) -> list[Any]:
    if kind == "stream":
        return [new_output("stream", name="stdout", text="Files already downloaded and verified\n")]
    if kind == "huge stream":
        return [new_output("stream", name="stdout", text=big_text(2_000_000))]
    if kind in ("image", "huge image"):
        data = "iVBORw0KGgo" + "A" * (200 if kind == "image" else 1_500_000)
        return [new_output("display_data", data={"image/png": data, "text/plain": "<Figure size 640x480 with 1 Axes>"})]
    if kind == "error":
        return [
            new_output("error", ename="KeyboardInterrupt", evalue="", traceback=["\x1b[0;31mKeyboardInterrupt\x1b[0m"])
        ]
    return []


def write_notebook(pieces: list[Piece], layout: str, draw: st.DrawFn) -> str:
    counts = draw(st.permutations(range(1, len(pieces) + 1)))
    # Most cells show nothing; a few show a line, an image or a traceback; one may show a huge output.
    output_kinds = st.sampled_from(["none", "none", "none", "stream", "image", "error"])
    huge = draw(st.sampled_from(["none", "huge stream", "huge image"]))
    huge_at = draw(st.integers(0, max(0, len(pieces) - 1)))
    if layout == "nbformat 3":
        cells = []
        for i, (piece, count) in enumerate(zip(pieces, counts)):
            if piece.kind == "code":
                shown = outputs_of(huge if i == huge_at else draw(output_kinds))
                outputs = [
                    v3.new_output("stream", output_text=o.text, stream="stdout")
                    for o in shown
                    if o.output_type == "stream"
                ]
                cells.append(v3.new_code_cell(input=piece.source, prompt_number=count, outputs=outputs))
            elif piece.kind == "markdown" and "\n" not in piece.source and piece.source.startswith("# "):
                cells.append(v3.new_heading_cell(piece.source[2:], level=1))
            else:
                cells.append(v3.new_text_cell(piece.kind, source=piece.source))
        return v3.nbjson.writes(v3.new_notebook(name="cifar2", worksheets=[v3.new_worksheet(cells=cells)]))
    notebook = new_notebook()
    for i, (piece, count) in enumerate(zip(pieces, counts)):
        if piece.kind == "code":
            notebook.cells.append(
                new_code_cell(
                    piece.source,
                    execution_count=draw(st.sampled_from([count, None])),
                    outputs=outputs_of(huge if i == huge_at else draw(output_kinds)),
                )
            )
        else:
            notebook.cells.append((new_markdown_cell if piece.kind == "markdown" else new_raw_cell)(piece.source))
    if layout == "colab notebook":  # Colab saves nbformat 4.0: no cell ids
        notebook.nbformat_minor = 0
        notebook.metadata = {
            "colab": {"provenance": [], "gpuType": "T4"},
            "accelerator": "GPU",
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
        }
        for cell in notebook.cells:
            cell.pop("id", None)
        return nbformat.v4.nbjson.writes(notebook)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(notebook)


def commented(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


def write_script(pieces: list[Piece], layout: str, header: str) -> tuple[str, dict[int, int]]:
    """The pieces as `# %%` cells; returns the text and the file line each piece's cell starts on."""
    magics_as_text = layout == "script, magics left in"
    text, starts = header, {}
    for i, piece in enumerate(pieces):
        starts[i] = text.count("\n") + 1
        if piece.kind == "code":
            source = (
                piece.source
                if magics_as_text
                else "".join(
                    f"# {line}" if line.lstrip().startswith(("%", "!")) or line.rstrip().endswith("?") else line
                    for line in piece.source.splitlines(keepends=True)
                )
            )
            body = "# %%\n" + source
        else:
            body = f"# %% [{piece.kind}]\n" + commented(piece.source)
        text += body if body.endswith("\n") else body + "\n"
        text += "\n"
    if layout == "script with a main guard":
        text += (
            'if __name__ == "__main__":\n    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")\n'
        )
        text += "".join(f"    {line}\n" if line else "\n" for line in v.TRAIN.splitlines())
    return text, starts


def place_after(items: list[Piece], piece: Piece, earliest: int, draw: st.DrawFn) -> int:
    at = draw(st.integers(earliest, len(items)))
    items.insert(at, piece)
    return at


def last_index(items: list[Piece], roles: tuple[str, ...]) -> int:
    return max((i for i, p in enumerate(items) if p.role in roles), default=-1)


# UTF-8 as editors on Windows also save it; other encodings as Notepad saves them, or damaged; and
# a script from a Japanese Windows editor, with its PEP 263 declaration (a notebook cannot declare
# one: its JSON is UTF-8).
UTF8 = ["utf-8", "utf-8 with BOM", "Windows line ends"]
NOT_UTF8 = ["utf-16", "cp1252", "a stray byte"]


@st.composite
def submissions(draw: st.DrawFn, name: str = "student", encoding: str | None = None) -> Generated:
    """A hand-in; `encoding` fixes how its text is saved, otherwise occasionally not as UTF-8."""
    scripts = ["script", "script, magics left in", "script with a main guard"]
    layout = draw(
        st.sampled_from(
            scripts
            if encoding == "shift_jis declared"
            else ["notebook", "notebook", "colab notebook", "nbformat 3", *scripts]
        )
    )
    shape = draw(
        st.sampled_from(["correct", "correct", "correct", "correct", "no correct Net or loop", "markdown only"])
    )
    if encoding is None:
        encoding = draw(st.sampled_from(["utf-8"] * 5 + UTF8[1:] + ["not UTF-8"]))
    if encoding == "not UTF-8":
        encoding = draw(st.sampled_from(NOT_UTF8 + ["shift_jis declared"] * layout.startswith("script")))
    pieces: list[Piece]
    net = loop = None
    if shape == "markdown only":
        pieces = draw(st.lists(st.sampled_from(TEXT), min_size=0, max_size=4))
    else:
        pieces = draw(
            st.permutations(
                draw(st.lists(st.sampled_from(OLD_NETS), max_size=2))
                + draw(st.lists(st.sampled_from(OLD_LOOPS), max_size=2))
                + draw(st.lists(st.sampled_from(NOISE), max_size=8))
                + draw(st.lists(st.sampled_from(BROKEN), max_size=2))
                + draw(st.lists(st.sampled_from(TEXT), max_size=3))
            )
        )
        place_after(pieces, draw(st.sampled_from(IMPORTS)), 0, draw)
        if shape == "correct":
            net, loop = draw(st.sampled_from(CORRECT_NETS)), draw(st.sampled_from(CORRECT_LOOPS))
            # Net's class statement reads nn where it stands: after the imports; both after their old versions.
            place_after(pieces, net, last_index(pieces, ("old_net", "imports")) + 1, draw)
            place_after(pieces, loop, last_index(pieces, ("old_loop",)) + 1, draw)
        for _ in range(draw(st.integers(0, 2))):  # a duplicated cell, run again further down
            original = draw(st.integers(0, len(pieces) - 1))
            if pieces[original].role not in ("old_net", "old_loop"):
                place_after(pieces, pieces[original], original + 1, draw)

    generated = Generated(name, b"", pieces, layout, encoding, net=net, loop=loop)
    starts: dict[int, int] = {}
    if layout.startswith("script"):
        generated.name += ".py"
        header = "# -*- coding: shift_jis -*-\n" if encoding == "shift_jis declared" else ""
        text, starts = write_script(pieces, layout, header)
    else:
        generated.name += ".ipynb"
        text = write_notebook(pieces, layout, draw)
        generated.broken_cells = {i + 1 for i, p in enumerate(pieces) if p.role == "broken"}

    def location(i: int) -> tuple[str, int]:
        """Where the definition in pieces[i] starts, as the grader names it."""
        line = 1 + pieces[i].before.count("\n")
        if starts:  # a script: the line after the cell's `# %%` marker, counted in the file
            return generated.name, starts[i] + line
        return f"cell {i + 1}", line

    if net is not None:
        generated.net_at = location(last_index(pieces, ("net",)))
        generated.loop_at = location(last_index(pieces, ("loop",)))
    generated.raw = encode(text, encoding, draw)
    return generated


def encode(text: str, encoding: str, draw: st.DrawFn) -> bytes:
    if encoding == "utf-8 with BOM":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if encoding == "Windows line ends":  # in a notebook, only the JSON's own line breaks
        return text.replace("\n", "\r\n").encode("utf-8")
    if encoding == "utf-16":
        return text.encode("utf-16")
    if encoding == "cp1252":  # Notepad on Windows; what cp1252 lacks becomes '?'
        return ("# Übung 8\n" + text).encode("cp1252", errors="replace")
    if encoding == "a stray byte":
        raw = text.encode("utf-8")
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + b"\xff" + raw[at:]
    if encoding == "shift_jis declared":  # a Japanese Windows editor, with the PEP 263 declaration
        return text.encode("shift_jis")
    return text.encode("utf-8")


# ---------------------------------------------------------------- fast: the reading path


def cells_named(note: str) -> set[int]:
    return {int(n) for n in re.findall(r"\bcell (\d+)\b", note)}


def assert_read_as_written(generated: Generated) -> None:
    """The reading child's outcome for `generated` is what the file holds, whatever else it holds."""
    outcome = read_and_extract(submission_request(generated.name, generated.raw, ROOTS), LIMITS)

    assert_documented_form(outcome)
    context = generated.describe()
    if not generated.readable:
        assert outcome["kind"] == "invalid" and "UTF-8" in outcome["cause"], (outcome, context)
        return
    assert outcome["kind"] == "extracted", (outcome, context)
    units = [
        {**u, "source": u["source"].replace("\r\n", "\n")} for u in outcome["units"]
    ]  # a unit keeps the file's line ends
    if generated.embeds_correct_work:
        assert generated.net is not None and generated.loop is not None and generated.net_at and generated.loop_at
        net = {"source": generated.net.text, "filename": generated.net_at[0], "line": generated.net_at[1]}
        loop = {"source": generated.loop.text, "filename": generated.loop_at[0], "line": generated.loop_at[1]}
        assert net in units, ([(u["filename"], u["line"], u["source"][:40]) for u in units], net, context)
        assert loop in units, ([(u["filename"], u["line"], u["source"][:40]) for u in units], loop, context)
        # The kept Net and loop are the last ones: no other unit defines them.
        assert [u for u in units if u["source"].startswith("class Net(")] == [net], context
        assert [u for u in units if u["source"].startswith("def training_loop(")] == [loop], context
    if not any(p.role in ("net", "old_net") for p in generated.pieces):
        assert not [u for u in units if u["source"].startswith("class Net(")], (units, context)
    if generated.name.endswith(".ipynb"):  # a problem names only a cell that was written broken
        for problem in outcome["problems"]:
            assert cells_named(problem) <= generated.broken_cells, (problem, generated.broken_cells, context)


@settings(REALISTIC, max_examples=80)  # for the suite's time (150 took 17 s); derandomized, the same every run
@given(generated=submissions())
def test_reading_a_realistic_hand_in_never_crashes_and_keeps_the_last_net_and_loop(generated: Generated) -> None:
    event(f"layout: {generated.layout}")
    event(f"encoding: {generated.encoding}")
    event("embeds the correct Net and loop" if generated.embeds_correct_work else "no correct work to find")
    event("over 1 MB" if len(generated.raw) > 2**20 else "under 1 MB")
    assert_read_as_written(generated)


@pytest.mark.parametrize("encoding", [*NOT_UTF8, "shift_jis declared"])
@settings(REALISTIC, max_examples=10)
@given(data=st.data())
def test_a_hand_in_not_in_utf8_is_invalid_unless_a_script_declares_its_encoding(
    encoding: str, data: st.DataObject
) -> None:
    generated = data.draw(submissions(encoding=encoding))
    event("embeds the correct Net and loop" if generated.embeds_correct_work else "no correct work to find")
    event("has text outside ASCII" if not generated.raw.isascii() else "ASCII only")
    assert_read_as_written(generated)


# ---------------------------------------------------------------- slow: grading a generated class


def generated_class() -> list[Generated]:
    """Hand-ins as hypothesis draws them, three per example (the first example the simplest): two
    of any kind, and one saved in an encoding other than UTF-8."""
    drawn: list[Generated] = []

    @settings(REALISTIC, max_examples=6)
    @given(three=st.tuples(submissions(), submissions(), submissions(encoding="not UTF-8")))
    def collect(three: tuple[Generated, Generated, Generated]) -> None:
        drawn.extend(three)

    collect()
    for i, generated in enumerate(drawn):
        suffix = generated.name.rsplit(".", 1)[1]
        generated.name = f"s{i:02d}_{generated.layout.split(',')[0].replace(' ', '_')}.{suffix}"
    return drawn


@pytest.mark.slow
def test_a_generated_class_gets_one_row_each_and_full_marks_for_correct_work(tmp_path: Path) -> None:
    hand_ins = generated_class()
    folder = tmp_path / "submissions"
    folder.mkdir()
    for generated in hand_ins:
        (folder / generated.name).write_bytes(generated.raw)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "run",
            str(folder),
            "-o",
            str(tmp_path / "out" / "report.csv"),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "out" / "report.csv", keep_default_na=False, dtype={"student": str})
    assert sorted(frame["student"]) == sorted(g.student for g in hand_ins)  # one row per file
    rows = frame.set_index("student")
    assert sum(g.embeds_correct_work for g in hand_ins) >= 3, [g.describe() for g in hand_ins]
    wrong = []
    for generated in hand_ins:
        row = rows.loc[generated.student]
        expected_status = "graded" if generated.readable else "invalid"
        full = generated.embeds_correct_work
        if row["status"] != expected_status or (
            full and (float(row["total"]) != 100 or any(float(row[c]) != FULL[c] for c in FULL))
        ):
            wrong.append(
                f"{generated.describe()}: status {row['status']}, total {row['total']}, error {row['error']!r}"
            )
    assert not wrong, "\n".join(wrong)
