# %% [markdown]
# CIFAR-2: my training settings are at the top, as constants.

# %%
import datetime
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

EPOCHS = 10
LEARNING_RATE = 1e-2
BATCH_SIZE = 64

# %%
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

# %%
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(EPOCHS):
        loss_train = 0.0
        for imgs, labels in train_loader:
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_train += loss.item()
        print(f"{datetime.datetime.now()} Epoch {epoch + 1}/{EPOCHS}, Training loss {loss_train / len(train_loader):.4f}")

# %%
# train_loader = torch.utils.data.DataLoader(cifar2, batch_size=BATCH_SIZE, shuffle=True)
# model = Net()
# training_loop(EPOCHS, optim.SGD(model.parameters(), lr=LEARNING_RATE), model, nn.CrossEntropyLoss(), train_loader)
