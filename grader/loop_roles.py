"""The roles of a training loop's parameters: what the grader hands each one.

Courses name their loop's parameters as they like (`train(net, trainloader, criterion,
optimizer, epochs)`, d2l's `train(net, train_iter, num_epochs, lr)`); the grader calls every loop,
the reference's and the students', through one mapping from the solution's parameter names to
roles. Plain data and pure functions: read by the config reader, the child that calls loops and
the check that words the call.
"""

from __future__ import annotations

# Each role, the words that name it in messages, and the parameter names that take it without
# a `[loop] roles` table (lower case; matched case-insensitively).
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "model": ("the model", ("model", "net", "network", "module")),
    "optimizer": ("the optimizer", ("optimizer", "opt", "optim", "trainer", "updater")),
    "loss_fn": ("the loss function", ("loss_fn", "criterion", "loss", "loss_func", "loss_function", "lossfn", "loss_fcn")),
    "train_loader": (
        "the training data",
        ("train_loader", "trainloader", "train_iter", "loader", "dataloader", "data_loader", "train_dl", "train_dataloader", "train_data"),
    ),
    "n_epochs": ("the number of epochs", ("n_epochs", "epochs", "num_epochs", "nb_epochs", "n_epoch", "epoch_count", "max_epochs")),
    "learning_rate": ("the learning rate", ("lr", "learning_rate", "eta", "alpha")),
    "device": ("the device", ("device", "dev")),
    "val_loader": (
        "the validation data",
        ("val_loader", "valloader", "test_loader", "testloader", "test_iter", "val_iter", "valid_loader", "val_dl", "test_dl"),
    ),
}
# Every loop trains a model on data for some epochs; what it is not given, it makes itself
# (an optimizer from the learning rate, its own loss function).
REQUIRED = ("model", "train_loader", "n_epochs")
# The lecture's loop, the default when a config names no signature.
LECTURE_SIGNATURE = ("n_epochs", "optimizer", "model", "loss_fn", "train_loader")


class RolesError(ValueError):
    """A loop's parameters cannot be given roles; the message says which and how to fix it."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key  # the config key to fix: loop.signature or loop.roles


def role_by_name(parameter: str) -> str | None:
    """The role a parameter's name says, if it is one of the common names."""
    lowered = parameter.lower()
    return next((role for role, (_, names) in ROLES.items() if lowered in names), None)


def describe_role(role: str) -> str:
    return ROLES[role][0]


def assign_roles(signature: tuple[str, ...] | list[str], given: dict[str, str], function: str) -> dict[str, str]:
    """Each parameter of the solution's loop (`signature`) to its role: as the config's `roles`
    table (role -> parameter name) gives it, else by its name. Raises RolesError naming what the
    instructor must write."""
    known = ", ".join(ROLES)
    if len(set(signature)) != len(signature):
        raise RolesError(f"names a parameter twice: {list(signature)}", "loop.signature")
    roles: dict[str, str] = {}
    for role, parameter in given.items():
        if role not in ROLES:
            raise RolesError(f"{role!r} is not a role (roles: {known})", "loop.roles")
        if parameter not in signature:
            raise RolesError(f"gives {role} to {parameter!r}, which is not one of {function}'s parameters {list(signature)}", "loop.roles")
        if parameter in roles:
            raise RolesError(f"gives {parameter!r} two roles ({roles[parameter]} and {role})", "loop.roles")
        roles[parameter] = role
    for parameter in signature:
        if parameter in roles:
            continue
        named = role_by_name(parameter)
        if named is None or named in roles.values():
            why = "has no role" if named is None else f"would be {describe_role(named)}, which {_holder(roles, named)} already is"
            raise RolesError(
                f"{function}'s parameter {parameter!r} {why}: say what the grader passes there in the config, as "
                f'[loop] roles = {{ <role> = "{parameter}" }} (roles: {known})',
                "loop.roles",
            )
        roles[parameter] = named
    missing = [role for role in REQUIRED if role not in roles.values()]
    if missing:
        raise RolesError(
            f"{function}({', '.join(signature)}) takes no parameter for {' or '.join(describe_role(r) for r in missing)}: "
            f"the grader calls a loop with the model, the training data and the number of epochs (and an optimizer and a "
            f"loss function, or the learning rate, when the loop takes them); if one of its parameters is that, say so as "
            f'[loop] roles = {{ {missing[0]} = "<parameter>" }}',
            "loop.signature",
        )
    return roles


def _holder(roles: dict[str, str], role: str) -> str:
    return next(repr(parameter) for parameter, held in roles.items() if held == role)
