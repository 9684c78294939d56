"""Assignments other courses write, as their solution notebooks would be: the PyTorch tutorial's
CIFAR-10 classifier with its own `train(net, trainloader, criterion, optimizer, epochs)`, d2l's
LeNet (with ReLU, as its exercises suggest: the sigmoid one needs epochs to leave its plateau)
with a loop that makes its own optimizer and loss, the same LeNet graded as a network
alone, and a loop graded alone. Each solution is one notebook with a raw config cell, as
`grader assign` reads it; students' notebooks are built from the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

TUTORIAL_IMPORTS = """\
import torch
import torchvision
import torchvision.transforms as transforms
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
"""

TUTORIAL_DATA = """\
transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
batch_size = 4
trainset = torchvision.datasets.CIFAR10(root='./data', train=True, download=True, transform=transform)
trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True, num_workers=2)
classes = ('plane', 'car', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
"""

TUTORIAL_NET = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        ### BEGIN SOLUTION
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1) # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x
        ### END SOLUTION
"""

TUTORIAL_LOOP = """\
def train(net, trainloader, criterion, optimizer, epochs):
    for epoch in range(epochs):  # loop over the dataset multiple times
        running_loss = 0.0
        ### BEGIN SOLUTION
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        ### END SOLUTION
        print(f'[{epoch + 1}] loss: {running_loss / len(trainloader):.3f}')
"""

TUTORIAL_TRAIN = """\
net = Net()
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
train(net, trainloader, criterion, optimizer, epochs=2)
print('Finished Training')
"""

TUTORIAL_CONFIG = """\
# ASSIGNMENT CONFIG
[assignment]
title = "CIFAR-10: the PyTorch tutorial's classifier"

[model]
input_shape = [3, 32, 32]
num_classes = 10

[data]
size = 320

[training]
epochs = 4
batch_size = 32
learning_rate = 0.05
min_loss_drop = 0.1
"""

D2L_IMPORTS = """\
import torch
from torch import nn
from d2l import torch as d2l
"""

LENET = """\
class LeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        ### BEGIN SOLUTION
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes))
        ### END SOLUTION

    def forward(self, X):
        return self.net(X)
"""

D2L_LOOP = """\
def train_epochs(net, train_iter, num_epochs, lr):
    \"\"\"Train with minibatch SGD, making the optimizer and the loss here, as d2l does.\"\"\"
    ### BEGIN SOLUTION
    loss = nn.CrossEntropyLoss()
    trainer = torch.optim.SGD(net.parameters(), lr=lr)
    for epoch in range(num_epochs):
        net.train()
        for X, y in train_iter:
            trainer.zero_grad()
            l = loss(net(X), y)
            l.backward()
            trainer.step()
    ### END SOLUTION
"""

D2L_TRAIN = """\
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size=256)
net = LeNet()
train_epochs(net, train_iter, num_epochs=10, lr=0.1)
"""

D2L_CONFIG = """\
# ASSIGNMENT CONFIG
[assignment]
title = "LeNet on Fashion-MNIST, trained as d2l does"

[model]
input_shape = [1, 28, 28]
num_classes = 10

[data]
size = 320

[training]
epochs = 4
batch_size = 32
learning_rate = 0.1
min_loss_drop = 0.25
"""


# The chapter's networks ("Deep Learning with PyTorch", chapter 8).
# The book's NetDropout, applying F.dropout2d.
NET_DROPOUT_REFERENCE = """\
class NetDropout(nn.Module):
    def __init__(self, n_chans1=32):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(8 * 8 * n_chans1 // 2, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = F.dropout2d(out, p=0.4, training=self.training)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        out = F.dropout2d(out, p=0.4, training=self.training)
        out = out.view(-1, 8 * 8 * self.n_chans1 // 2)
        out = torch.tanh(self.fc1(out))
        out = self.fc2(out)
        return out
"""

RESBLOCK = """\
class ResBlock(nn.Module):
    def __init__(self, n_chans):
        super().__init__()
        self.conv = nn.Conv2d(n_chans, n_chans, kernel_size=3, padding=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(num_features=n_chans)
        torch.nn.init.kaiming_normal_(self.conv.weight, nonlinearity='relu')
        torch.nn.init.constant_(self.batch_norm.weight, 0.5)
        torch.nn.init.zeros_(self.batch_norm.bias)

    def forward(self, x):
        out = self.conv(x)
        out = self.batch_norm(out)
        out = torch.relu(out)
        return out + x
"""

# The book's NetResDeep (one ResBlock object repeated), with 8 channels instead of 32 to stay quick.
BOOK_NET = """\
class NetResDeep(nn.Module):
    def __init__(self, n_chans1=8, n_blocks=10):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.resblocks = nn.Sequential(*(n_blocks * [ResBlock(n_chans=n_chans1)]))
        self.fc1 = nn.Linear(8 * 8 * n_chans1, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        out = self.resblocks(out)
        out = F.max_pool2d(out, 2)
        out = out.view(-1, 8 * 8 * self.n_chans1)
        out = torch.relu(self.fc1(out))
        out = self.fc2(out)
        return out
"""


@dataclass(frozen=True)
class Course:
    """One course's assignment: its solution notebook's cells."""

    name: str
    config: str
    cells: tuple[str, ...]  # code cells, in order; the config is a raw cell before them

    def solution(self, folder: Path) -> Path:
        notebook = new_notebook(cells=[new_markdown_cell(f"# {self.name}"), new_raw_cell(self.config)])
        notebook.cells += [new_code_cell(cell) for cell in self.cells]
        path = folder / f"{self.name}_solution.ipynb"
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, str(path))
        return path


TUTORIAL = Course("tutorial", TUTORIAL_CONFIG, (TUTORIAL_IMPORTS, TUTORIAL_DATA, TUTORIAL_NET, TUTORIAL_LOOP, TUTORIAL_TRAIN))
D2L = Course("d2l_lenet", D2L_CONFIG, (D2L_IMPORTS, LENET, D2L_LOOP, D2L_TRAIN))
# The network alone: no training function in the solution, so no loop to grade.
LENET_ONLY = Course("lenet_only", D2L_CONFIG, (D2L_IMPORTS, LENET, "net = LeNet()\nprint(net)\n"))
# The loop alone: the course hands out the model; a config naming only the loop.
LOOP_ONLY = Course(
    "loop_only",
    TUTORIAL_CONFIG.replace("[data]", '[loop]\nfunction_name = "train"\n\n[data]'),
    (TUTORIAL_IMPORTS, TUTORIAL_LOOP, "model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n"),
)


def without_solutions(cell: str) -> str:
    """The cell as a student writes it back: the solution regions' markers gone."""
    return "\n".join(line for line in cell.splitlines() if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line) + "\n"


def student_notebook(path: Path, cells: list[str]) -> Path:
    notebook = new_notebook(cells=[new_markdown_cell("# My homework")] + [new_code_cell(without_solutions(c)) for c in cells])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path
