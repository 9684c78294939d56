#!/usr/bin/env python3
"""Homework 8: birds vs airplanes. Run: python main_guard.py --epochs 100"""
import argparse
import datetime

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torchvision import datasets, transforms


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
        if epoch == 1 or epoch % 10 == 0:
            print(f"{datetime.datetime.now()} Epoch {epoch}, Training loss {loss_train / len(train_loader)}")


def load_cifar2(data_path):
    cifar10 = datasets.CIFAR10(data_path, train=True, download=True, transform=transforms.ToTensor())
    label_map = {0: 0, 2: 1}
    return [(img, label_map[label]) for img, label in cifar10 if label in [0, 2]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--data", default="../data-unversioned/p1ch7/")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"Training on device {device}.")

    train_loader = torch.utils.data.DataLoader(load_cifar2(args.data), batch_size=64, shuffle=True)
    model = Net().to(device=device)
    optimizer = optim.SGD(model.parameters(), lr=1e-2)
    training_loop(args.epochs, optimizer, model, nn.CrossEntropyLoss(), train_loader)
    torch.save(model.state_dict(), "birds_vs_airplanes.pt")
