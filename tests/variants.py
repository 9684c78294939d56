"""Student submissions for the CIFAR-2 assignment, as notebook cells, written to disk with nbformat.

Each variant is what a real student might hand in. `CORRECT` ones must earn full marks;
`WRONG` ones lose exactly the points the tests pin.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

IMPORTS = """\
%matplotlib inline
from matplotlib import pyplot as plt
import numpy as np
import collections
import datetime

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

torch.set_printoptions(edgeitems=2)
torch.manual_seed(123)
"""

DATA = """\
from torchvision import datasets, transforms
data_path = '../data-unversioned/p1ch7/'
cifar10 = datasets.CIFAR10(
    data_path, train=True, download=True,
    transform=transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.4915, 0.4823, 0.4468), (0.2470, 0.2435, 0.2616))
    ]))
label_map = {0: 0, 2: 1}
class_names = ['airplane', 'bird']
cifar2 = [(img, label_map[label]) for img, label in cifar10 if label in [0, 2]]
"""

NET = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 8, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(8 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        out = out.view(-1, 8 * 8 * 8)
        out = torch.tanh(self.fc1(out))
        out = self.fc2(out)
        return out
"""

LOOP = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        loss_train = 0.0
        for imgs, labels in train_loader:
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_train += loss.item()
        if epoch == 1 or epoch % 10 == 0:
            print('{} Epoch {}, Training loss {}'.format(
                datetime.datetime.now(), epoch, loss_train / len(train_loader)))
"""

TRAIN = """\
train_loader = torch.utils.data.DataLoader(cifar2, batch_size=64, shuffle=True)
model = Net()
optimizer = optim.SGD(model.parameters(), lr=1e-2)
loss_fn = nn.CrossEntropyLoss()
training_loop(n_epochs=100, optimizer=optimizer, model=model, loss_fn=loss_fn, train_loader=train_loader)
"""

EVALUATE = """\
val_loader = torch.utils.data.DataLoader(cifar2, batch_size=64, shuffle=False)
correct = 0
with torch.no_grad():
    for imgs, labels in val_loader:
        _, predicted = torch.max(model(imgs), dim=1)
        correct += int((predicted == labels).sum())
print("Accuracy:", correct / len(cifar2))
"""


def notebook_cells(net: str = NET, loop: str = LOOP, *, extra: list[str] | None = None) -> list[str]:
    """The lecture's notebook layout: imports, data download, Net, loop, training, evaluation."""
    return [IMPORTS, DATA, net, loop, TRAIN, EVALUATE] + (extra or [])


def write_notebook(path: Path, cells: list[str], *, markdown_first: bool = True) -> Path:
    notebook = new_notebook()
    if markdown_first:
        notebook.cells.append(new_markdown_cell("# CIFAR-2: birds vs airplanes"))
    notebook.cells += [new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


# ---------------------------------------------------------------- correct Net variants

NET_SEQUENTIAL = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(16, 8, kernel_size=3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(512, 32), nn.Tanh(),
            nn.Linear(32, 2))

    def forward(self, x):
        return self.model(x)
"""

NET_MODULES = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.act1 = nn.Tanh()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 8, kernel_size=3, padding=1)
        self.act2 = nn.Tanh()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 8 * 8, 32)
        self.act3 = nn.Tanh()
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = self.pool1(self.act1(self.conv1(x)))
        out = self.pool2(self.act2(self.conv2(out)))
        out = torch.flatten(out, 1)
        out = self.act3(self.fc1(out))
        return self.fc2(out)
"""

NET_RESHAPE = NET.replace("out = out.view(-1, 8 * 8 * 8)", "out = out.reshape(out.shape[0], -1)")

NET_DEFAULTS = """\
class Net(nn.Module):
    def __init__(self, n_chans1=16):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(8 * 8 * n_chans1 // 2, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        out = out.view(-1, 8 * 8 * self.n_chans1 // 2)
        out = torch.tanh(self.fc1(out))
        return self.fc2(out)
"""

# Net split over several cells: settings, a helper, then the class that uses both.
ACROSS_CELLS = [
    IMPORTS,
    "N_CHANS = 16\nHIDDEN = 32\nn_out = 2",
    "def conv_block(c_in, c_out):\n    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)",
    DATA,
    """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = conv_block(3, N_CHANS)
        self.conv2 = conv_block(N_CHANS, N_CHANS // 2)
        self.fc1 = nn.Linear(8 * 8 * N_CHANS // 2, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, n_out)
""",
    """\
def forward(self, x):
    out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
    out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
    out = torch.tanh(self.fc1(nn.Flatten()(out)))
    return self.fc2(out)

Net.forward = forward
""",
    LOOP,
    TRAIN,
]

DEVICE_LOOP = """\
device = (torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu'))
print(f"Training on device {device}.")

def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        loss_train = 0.0
        for imgs, labels in train_loader:
            imgs = imgs.to(device=device)
            labels = labels.to(device=device)
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_train += loss.item()
"""

MAGIC_CELLS = [
    "!pip install torchvision\n%load_ext autoreload\n%autoreload 2",
    IMPORTS,
    DATA,
    NET,
    "%%time\n" + LOOP,
    "%%time\n" + TRAIN,
    "files = !ls\nprint(files)",
]

# ---------------------------------------------------------------- wrong Net variants

NET_RELU = NET.replace("torch.tanh", "torch.relu")
NET_WRONG_CHANNELS = NET.replace("nn.Conv2d(3, 16,", "nn.Conv2d(3, 32,").replace("nn.Conv2d(16, 8,", "nn.Conv2d(32, 8,")
NET_NO_PADDING = (
    NET.replace(", padding=1)", ")")
    .replace("nn.Linear(8 * 8 * 8, 32)", "nn.Linear(8 * 6 * 6, 32)")
    .replace("out.view(-1, 8 * 8 * 8)", "out.view(-1, 8 * 6 * 6)")
)
NET_AVGPOOL = NET.replace("F.max_pool2d", "F.avg_pool2d")
NET_MISSING_ACTIVATION = NET.replace(
    "out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)", "out = F.max_pool2d(self.conv2(out), 2)"
)
NET_EXTRA_LAYER = NET.replace(
    "self.fc2 = nn.Linear(32, 2)", "self.fc_extra = nn.Linear(32, 32)\n        self.fc2 = nn.Linear(32, 2)"
).replace("out = self.fc2(out)", "out = self.fc2(torch.tanh(self.fc_extra(out)))")
NET_HARDCODED_BATCH = NET.replace("out.view(-1, 8 * 8 * 8)", "out.view(64, 8 * 8 * 8)")

# ---------------------------------------------------------------- wrong loops

LOOP_NO_ZERO_GRAD = LOOP.replace("            optimizer.zero_grad()\n", "")
LOOP_NO_STEP = LOOP.replace("            optimizer.step()\n", "")
LOOP_NO_BACKWARD = LOOP.replace("            loss.backward()\n", "")
LOOP_NO_GRAD = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        for imgs, labels in train_loader:
            with torch.no_grad():
                outputs = model(imgs)
                loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
"""
LOOP_RAISES_MID_EPOCH = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        for i, (imgs, labels) in enumerate(train_loader):
            if epoch == 2 and i == 3:
                raise ValueError("batch went missing")
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
"""
