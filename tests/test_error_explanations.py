"""The error-explanation table against the installed torch's real wording: every message here
comes from running the faulty code, so a change in torch's words fails a test instead of silently
leaving students without an explanation. Only wordings this machine cannot produce (CUDA kernels,
older torch) are written out, and the CUDA ones are also produced for real where a GPU exists."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.compare.error_explanations import KNOWN_ERRORS, diagnose_error, explain_error

BATCH = 2
LOCATION = " (in forward, cell 5, line 14)"


def error_of(action: Callable[[], object]) -> str:
    """The failure as the grader reports it: `Type: message`."""
    with pytest.raises(Exception) as info:  # noqa: PT011 (any failure: its type and text are what is compared)
        action()
    return f"{type(info.value).__name__}: {info.value}"


def features(channels: int) -> torch.Tensor:
    """A batch of conv outputs, channels × 4 × 4 per image."""
    return torch.randn(BATCH, channels, 4, 4)


def no_grad_loss() -> None:
    net = nn.Linear(3, 2)
    with torch.no_grad():
        loss = nn.CrossEntropyLoss()(net(torch.randn(BATCH, 3)), torch.tensor([0, 1]))
    loss.backward()


def backward_twice() -> None:
    net = nn.Linear(3, 2)
    loss_train = 0
    for _ in range(2):  # the classic: summing loss tensors instead of loss.item()
        loss = nn.CrossEntropyLoss()(net(torch.randn(BATCH, 3)), torch.tensor([0, 1]))
        loss_train += loss
        loss_train.backward()


def inplace_after_sigmoid() -> None:
    x = torch.randn(BATCH, 3, requires_grad=True)
    y = torch.sigmoid(x)
    y += 1
    y.sum().backward()


def grad_tensor() -> torch.Tensor:
    return nn.Linear(3, 1)(torch.randn(BATCH, 3))


LABELS = torch.tensor([0, 1])

# Real failures, each with the batch size the grader would pass, the entry it must hit, and words the
# explanation must contain (the mistake, the fix, and the numbers from the message).
CASES: list[tuple[str, Callable[[], object], int | None, str, list[str]]] = [
    ("hard-coded batch into Linear", lambda: nn.Linear(512, 32)(features(32).view(64, -1)), BATCH,
     "linear_input_size", ["hard-coded", "64 rows", "view(-1, 512)", "x.view(x.size(0), -1)", "torch.flatten(x, 1)"]),
    ("hard-coded batch, wrong in_features too", lambda: nn.Linear(500, 32)(features(32).view(64, -1)), BATCH,
     "linear_input_size", ["hard-coded", "in_features=512, not 500"]),
    ("wrong flatten size", lambda: nn.Linear(512, 32)(features(16).view(BATCH, -1)), BATCH,
     "linear_input_size", ["expects 512", "gets 256", "channels × height × width", "in_features=256"]),
    ("Linear fed 8 features, batch unknown", lambda: nn.Linear(512, 32)(torch.randn(64, 8)), None,
     "linear_input_size", ["expects 512", "gets 8"]),
    ("view with hard-coded batch", lambda: features(32).view(64, 512), BATCH,
     "view_size", ["hard-coded", "[64, 512]", "view(-1, 512)", "x.view(x.size(0), -1)"]),
    ("view with wrong flatten size", lambda: features(32).view(-1, 500), BATCH,
     "view_size", ["flatten size is wrong", "1024", "512", "view(-1, 512)"]),
    ("view with a fixed first dimension, batch unknown", lambda: features(32).view(64, 512), None,
     "view_size", ["needs 32768 numbers", "holds 1024", "If 64 is your batch size, do not hard-code it"]),
    ("loss computed under no_grad", no_grad_loss, None, "no_grad", ["torch.no_grad()", ".item()", ".backward()"]),
    ("float labels", lambda: nn.CrossEntropyLoss()(torch.randn(BATCH, 2), LABELS.float()), None,
     "label_dtype", ["long", "labels.long()", "Float"]),
    ("int labels", lambda: nn.CrossEntropyLoss()(torch.randn(BATCH, 2), LABELS.int()), None,
     "label_dtype", ["labels.long()", "Int"]),
    ("one-hot labels", lambda: nn.CrossEntropyLoss()(torch.randn(BATCH, 2), F.one_hot(LABELS, 2)), None,
     "labels_like_outputs", ["one-hot", "argmax", "Long"]),
    ("labels of shape [batch, 1]", lambda: nn.CrossEntropyLoss()(torch.randn(BATCH, 2), LABELS.view(-1, 1)), None,
     "labels_2d", ["[batch]", "labels.view(-1)"]),
    ("outputs and labels disagree on the batch",
     lambda: nn.CrossEntropyLoss()(nn.Linear(256, 2)(features(32).view(-1, 256)), LABELS), BATCH,
     "loss_batch_mismatch", ["4 outputs", "2 images", "view(x.size(0), -1)"]),
    ("label out of range", lambda: nn.CrossEntropyLoss()(torch.randn(BATCH, 2), torch.tensor([0, 5])), None,
     "target_out_of_bounds", ["5", "out_features", "number of classes", "at least 6"]),
    ("double images into Linear", lambda: nn.Linear(3, 1)(torch.randn(BATCH, 3, dtype=torch.float64)), None,
     "data_dtype", ["Double", "float32", "images.float()"]),
    ("double images into Conv2d", lambda: nn.Conv2d(3, 4, 3)(torch.randn(BATCH, 3, 8, 8, dtype=torch.float64)), None,
     "data_dtype", ["double", "images.float()"]),
    ("uint8 pixels into Conv2d", lambda: nn.Conv2d(3, 4, 3)(torch.zeros(BATCH, 3, 8, 8, dtype=torch.uint8)), None,
     "data_dtype", ["unsigned char", "uint8", ".float()"]),
    ("float times double matrices", lambda: torch.mm(torch.randn(BATCH, 3), torch.randn(3, 2, dtype=torch.float64)),
     None, "data_dtype", ["float", "double", ".float()"]),
    ("long labels into BCELoss", lambda: nn.BCELoss()(torch.rand(BATCH), LABELS), None,
     "target_dtype", ["Long", "labels.float()"]),
    ("double labels into BCELoss", lambda: nn.BCELoss()(torch.rand(BATCH), LABELS.double()), None,
     "target_dtype", ["Double", "labels.float()"]),
    ("view after permute", lambda: torch.randn(BATCH, 3, 4, 5).permute(0, 2, 3, 1).view(BATCH, -1), None,
     "non_contiguous_view", [".reshape(", ".contiguous().view(", "torch.flatten(x, 1)"]),
    ("view after transpose", lambda: torch.randn(BATCH, 3, 4, 5).transpose(1, 2).view(BATCH, -1), None,
     "non_contiguous_view", [".reshape("]),
    ("grey-scale images into a colour conv", lambda: nn.Conv2d(3, 16, 3)(torch.randn(BATCH, 1, 32, 32)), None,
     "conv_in_channels", ["in_channels=3", "1 channel(s)", "out_channels", "in_channels=1"]),
    ("channels-last images", lambda: nn.Conv2d(3, 16, 3)(torch.randn(BATCH, 32, 32, 3)), None,
     "conv_in_channels", ["permute(0, 3, 1, 2)"]),
    ("backward twice", backward_twice, None, "backward_twice", ["loss_train += loss.item()"]),
    ("in-place change after sigmoid", inplace_after_sigmoid, None,
     "inplace_modified", ["in-place", "Sigmoid", "inplace=True", "x = x + y"]),
    ("kernel larger than the image", lambda: nn.Conv2d(3, 4, 3)(torch.randn(BATCH, 3, 2, 2)), None,
     "image_too_small", ["2 x 2", "3 x 3", "padding"]),
    ("pooling a 1×1 image", lambda: nn.MaxPool2d(2)(torch.randn(BATCH, 3, 1, 1)), None,
     "image_too_small", ["3x1x1", "3x0x0", "fewer pooling"]),
    ("conv on flat vectors", lambda: nn.Conv2d(3, 4, 3)(torch.randn(BATCH, 3072)), None,
     "conv_input_dims", ["conv2d", "[2, 3072]", "do not flatten before the convolutions"]),
    ("conv on a 5-D input", lambda: nn.Conv2d(3, 4, 3)(torch.randn(1, BATCH, 3, 32, 32)), None,
     "conv_input_dims", ["one dimension too many"]),
    ("pooling on flat vectors", lambda: nn.MaxPool2d(2)(torch.randn(BATCH, 3072)), None,
     "conv_input_dims", ["flat vectors", "do not flatten"]),
    ("BatchNorm with wrong num_features", lambda: nn.BatchNorm2d(16)(features(8)), None,
     "batchnorm_features", ["num_features=16", "8 channels", "out_channels"]),
    ("backward on the output", lambda: grad_tensor().backward(), None, "loss_not_scalar", ["single number"]),
    ("numpy on a graph tensor", lambda: grad_tensor().numpy(), None, "numpy_needs_detach", [".detach().numpy()"]),
]

# Wordings this CPU build cannot produce: CUDA kernels (see test_cuda_wordings_are_explained) and
# older torch releases whose words students still paste from tutorials.
WRITTEN_OUT: list[tuple[str, str, list[str]]] = [
    ("RuntimeError: \"nll_loss_forward_reduce_cuda_kernel_2d_index\" not implemented for 'Float'",
     "label_dtype", ["labels.long()", "Float"]),
    ("RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
     "(when checking argument for argument mat1 in method wrapper_CUDA_addmm)", "device_mismatch", [".to(device)"]),
    ("RuntimeError: Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor) should be the same",
     "device_mismatch", ["model.to(device)", "images.to(device)"]),
    ("RuntimeError: Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same "
     "or input should be a MKLDNN tensor and weight is a dense tensor", "device_mismatch", [".to(device)"]),
    ("RuntimeError: size mismatch, m1: [64 x 8], m2: [512 x 32] at /pytorch/aten/src/TH/generic/THTensorMath.cpp:136",
     "linear_input_size", ["expects 512", "gets 8"]),
    ("RuntimeError: expected scalar type Long but found Float", "label_dtype", ["labels.long()"]),
    # the stub grader assign leaves in a student notebook, as the probes report it
    ("NotImplementedError (in __init__, cell 7, line 6)", "not_implemented", ["Not implemented yet", "# YOUR CODE HERE"]),
    ("NotImplementedError: Net.forward is not written yet (in forward, cell 7, line 9)", "not_implemented", ["Not implemented yet"]),
]

REAL = {description: (action, batch_size) for description, action, batch_size, _, _ in CASES}


@pytest.mark.parametrize(
    ("action", "batch_size", "name", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_real_error_is_explained_with_its_fix(action, batch_size, name, words):
    message = error_of(action)
    found = diagnose_error(message, batch_size=batch_size)
    assert found is not None, f"no entry for torch's wording: {message}"
    assert found[0] == name, message
    for word in words:
        assert word in found[1], f"{word!r} missing from {found[1]!r} (for {message})"


@pytest.mark.parametrize(("message", "name", "words"), WRITTEN_OUT, ids=[case[1] for case in WRITTEN_OUT])
def test_other_torch_wordings_are_explained(message, name, words):
    found = diagnose_error(message)
    assert found is not None and found[0] == name, message
    assert all(word in found[1] for word in words), found[1]


def test_hard_coded_batch_is_told_apart_from_wrong_flatten_size_by_the_batch_size():
    message = error_of(lambda: nn.Linear(512, 32)(features(32).view(64, -1)))  # (64x16 and 512x32)
    told = explain_error(message, batch_size=BATCH)
    assert told is not None and "hard-coded" in told
    # A batch of 64 makes the same numbers a wrong flatten size: 16 features per image, not 512.
    told = explain_error(message, batch_size=64)
    assert told is not None and "hard-coded" not in told and "in_features=16" in told


def test_location_suffix_does_not_break_matching():
    for description, (action, batch_size) in REAL.items():
        message = error_of(action)
        plain = explain_error(message, batch_size=batch_size)
        assert explain_error(message + LOCATION, batch_size=batch_size) == plain, description


def test_explanation_is_only_the_sentence_not_the_message():
    message = error_of(lambda: nn.Linear(512, 32)(torch.randn(64, 8))) + LOCATION
    told = explain_error(message)
    assert told is not None and "mat1" not in told and "cell 5" not in told


def test_dtype_mismatch_in_a_conv_is_not_mistaken_for_a_device_mismatch():
    on_cpu = error_of(lambda: nn.Conv2d(3, 4, 3)(torch.randn(BATCH, 3, 8, 8, dtype=torch.float64)))
    # Both on the GPU, as torch words it there: same sentence shape as a device mismatch.
    on_gpu = ("RuntimeError: Input type (torch.cuda.DoubleTensor) and weight type (torch.cuda.FloatTensor) "
              "should be the same")
    for message in (on_cpu, on_gpu):
        found = diagnose_error(message)
        assert found is not None and found[0] == "data_dtype", message


@pytest.mark.parametrize("message", [
    "NameError: name 'Net' is not defined",
    "ValueError: too many values to unpack (expected 2)",
    "RuntimeError: mat1 and mat2 shapes cannot be multiplied",  # no numbers: nothing to say about them
    "runtimeerror: ELEMENT 0 OF TENSORS DOES NOT REQUIRE GRAD AND DOES NOT HAVE A GRAD_FN",  # torch's wording is exact
    "",
])
def test_unknown_messages_get_no_explanation(message):
    assert explain_error(message) is None
    assert explain_error(message, batch_size=BATCH) is None


def test_every_table_row_is_exercised():
    messages = [error_of(action) for action, _ in REAL.values()] + [message for message, _, _ in WRITTEN_OUT]
    tested_names = {case[3] for case in CASES} | {case[1] for case in WRITTEN_OUT}
    assert {entry.name for entry in KNOWN_ERRORS} == tested_names
    unmatched = [entry.pattern.pattern for entry in KNOWN_ERRORS
                 if not any(entry.pattern.search(message) for message in messages)]
    assert unmatched == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA wordings need a GPU")
def test_cuda_wordings_are_explained():
    gpu = torch.device("cuda")
    cases = [
        (lambda: nn.Linear(3, 2).to(gpu)(torch.randn(BATCH, 3)), "device_mismatch"),
        (lambda: nn.Conv2d(3, 4, 3)(torch.randn(BATCH, 3, 8, 8, device=gpu)), "device_mismatch"),
        (lambda: F.nll_loss(torch.randn(BATCH, 2, device=gpu), LABELS.float().to(gpu)), "label_dtype"),
    ]
    for action, name in cases:
        message = error_of(action)
        found = diagnose_error(message)
        assert found is not None and found[0] == name, message
