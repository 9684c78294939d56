"""Instructor solution for the Digits assignment: a 10-class CNN on 1x28x28 images with ReLU,
BatchNorm and max pooling.

The grader derives every expected value from this module at run time. Students never see it:
selfcheck uses assignments/mnist_relu/fixtures.json, generated from it by `grader fixtures`.
"""

import datetime

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(16 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        out = F.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        out = F.max_pool2d(torch.relu(self.conv2(out)), 2)
        out = torch.flatten(out, 1)
        out = torch.relu(self.fc1(out))
        out = self.fc2(out)
        return out


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
        print(f"{datetime.datetime.now()} Epoch {epoch}, Training loss {loss_train / len(train_loader)}")
