"""Plain-words explanations of the PyTorch errors students hit in a CNN assignment.

The grader reports a crash as torch's own text (`RuntimeError: mat1 and mat2 shapes cannot be
multiplied (64x8 and 512x32) (in forward, cell 5, line 14)`), which a first-year student rarely
reads as "your flatten size is wrong". `explain_error` turns such a message into one or two
sentences in the lecture's terms (flatten size = channels × height × width, `x.view(x.size(0), -1)`,
`labels.long()`, `.to(device)`), with the numbers from the message; the caller shows the original
message below it.

The knowledge is one table, `KNOWN_ERRORS`: a row per wording torch uses (a compiled regex on
torch's case-sensitive text, and a template or function for the sentence). Rows that explain the
same mistake share a `name`. Pure string work: this module never imports torch or student code,
so it can run in the grader's own process.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# A row's explanation: a template filled from the regex's named groups, or a function of those
# groups and the batch size that may return None to let a later row with the same regex decide.
Explainer = str | Callable[[dict[str, str], int | None], str | None]

_FLATTEN_FIX = "`x.view(x.size(0), -1)` or `torch.flatten(x, 1)`"


@dataclass(frozen=True)
class KnownError:
    name: str  # what the mistake is, stable for tests and callers ("linear_input_size")
    pattern: re.Pattern[str]
    explain: Explainer


def _dims(text: str) -> list[int]:
    """`'64, 512'` -> [64, 512]."""
    return [int(part) for part in text.split(",") if part.strip()]


def _images(count: int | None) -> str:
    return "1 image" if count == 1 else f"{count} images"


def _per_image(total: int, batch_size: int | None) -> int | None:
    """Numbers per image when `total` numbers are a whole batch, else None."""
    if not batch_size or total % batch_size:
        return None
    return total // batch_size


def _linear_input_size(groups: dict[str, str], batch_size: int | None) -> str:
    rows, got, expected = int(groups["rows"]), int(groups["got"]), int(groups["expected"])
    if batch_size and rows != batch_size:
        # One row per image is what a Linear layer needs; any other row count means the view
        # before it mixed images, whatever in_features says.
        text = (
            f"The batch has {_images(batch_size)}, but the tensor reaching this Linear layer has {rows} rows: "
            f"the view/reshape before it does not keep one row per image, usually because the batch size is "
            f"hard-coded, as in `view({rows}, -1)`."
        )
        per_image = _per_image(rows * got, batch_size)
        if per_image == expected:
            return f"{text} Let the batch size follow the data: `x.view(-1, {expected})`, {_FLATTEN_FIX}."
        if per_image is None:
            return f"{text} Keep the batch dimension free with {_FLATTEN_FIX}."
        return (
            f"{text} Keep the batch dimension free with {_FLATTEN_FIX}; each image then has {per_image} features "
            f"(channels × height × width), so this layer needs in_features={per_image}, not {expected}."
        )
    return (
        f"This Linear layer expects {expected} input features per image (its in_features), but gets {got}: "
        f"in_features must equal the flatten size, channels × height × width of the output before it. "
        f"Print `x.shape` just before the layer and set in_features={got}, or fix the view/flatten "
        f"(e.g. {_FLATTEN_FIX})."
    )


def _view_size(groups: dict[str, str], batch_size: int | None) -> str:
    shape, size = _dims(groups["shape"]), int(groups["size"])
    shown = "[" + ", ".join(map(str, shape)) + "]"
    per_image = _per_image(size, batch_size)
    rest = [d for d in shape[1:] if d != -1]
    rest_size = math.prod(rest) if rest and len(rest) == len(shape) - 1 else None
    if shape and shape[0] != -1 and batch_size and shape[0] != batch_size:
        text = (
            f"The view/reshape asks for shape {shown} with a hard-coded batch size of {shape[0]}, but this batch "
            f"has {_images(batch_size)} ({size} numbers)."
        )
        if per_image is not None and rest_size == per_image:
            return f"{text} Let the batch size follow the data: `x.view(-1, {rest_size})`, {_FLATTEN_FIX}."
        return f"{text} Keep the batch dimension free with {_FLATTEN_FIX}" + (
            f"; each image has {per_image} numbers (channels × height × width)." if per_image else "."
        )
    wanted = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        text = (
            f"The view/reshape asks for shape {shown}, but the tensor holds {size} numbers, which cannot be split "
            f"into pieces of {wanted}: the flatten size is wrong."
        )
    else:
        text = f"The view/reshape asks for shape {shown}, which needs {wanted} numbers, but the tensor holds {size}."
    if per_image is not None:
        return (
            f"{text} Each image has {per_image} numbers (channels × height × width of the output before it): "
            f"use `x.view(-1, {per_image})` or {_FLATTEN_FIX}, and in_features={per_image} in the next Linear layer."
        )
    if shape and shape[0] != -1:
        return (
            f"{text} If {shape[0]} is your batch size, do not hard-code it: use {_FLATTEN_FIX}, and set the next "
            f"Linear layer's in_features to channels × height × width."
        )
    return (
        f"{text} The flatten size must be channels × height × width of the output before it: use {_FLATTEN_FIX} "
        f"and set the next Linear layer's in_features to that product."
    )


def _device_of(type_name: str) -> str:
    lowered = type_name.lower()
    return "cuda" if "cuda" in lowered else "mps" if "mps" in lowered else "cpu"


_DEVICE_FIX = (
    "The model and the data are on different devices (one on the GPU, one on the CPU): move both with "
    "`.to(device)`: `model.to(device)` once and `images, labels = images.to(device), labels.to(device)` "
    "for every batch."
)


def _device_type_mismatch(groups: dict[str, str], batch_size: int | None) -> str | None:
    # torch words a device mismatch and a dtype mismatch in a conv the same way; only the type
    # names tell them apart, so a dtype mismatch falls through to the dtype row below.
    if _device_of(groups["data"]) == _device_of(groups["weights"]):
        return None
    return _DEVICE_FIX


def _data_dtype(groups: dict[str, str], batch_size: int | None) -> str:
    return (
        f"The data and the weights of this layer have different dtypes ({groups['data']} and {groups['weights']}): "
        f"both must be float32, so convert the images with `images.float()` (numpy arrays arrive as float64, "
        f"i.e. double, raw pixels as uint8) and do not call `.double()` on the model."
    )


def _target_dtype(groups: dict[str, str], batch_size: int | None) -> str:
    expected = groups["expected"]
    method = {"Float": "float", "Long": "long", "Double": "double"}.get(expected, "float")
    return (
        f"The loss got labels of dtype {groups['found']} but needs {expected}, like the network's output: convert "
        f"them with `labels.{method}()` (nn.BCELoss and nn.MSELoss want float labels)."
    )


def _loss_batch_mismatch(groups: dict[str, str], batch_size: int | None) -> str:
    outputs, labels = int(groups["outputs"]), int(groups["labels"])
    if batch_size and labels == batch_size and outputs != batch_size:
        return (
            f"The network gives {outputs} outputs for a batch of {_images(batch_size)} with {labels} labels: the "
            f"view/reshape before the first Linear layer does not keep one row per image (a wrong flatten size "
            f"in `view(-1, …)`, or a hard-coded batch size). Use {_FLATTEN_FIX}, with in_features = "
            f"channels × height × width."
        )
    if batch_size and outputs == batch_size and labels != batch_size:
        return (
            f"There are {labels} labels for a batch of {_images(batch_size)}: nn.CrossEntropyLoss wants one class "
            f"index per image (shape [batch]), not one-hot or flattened labels; use `labels.argmax(dim=1)` for "
            f"one-hot labels."
        )
    return (
        f"The network gives {outputs} outputs but there are {labels} labels: usually the view before the first "
        f"Linear layer has a wrong flatten size, so images are split or merged (use {_FLATTEN_FIX}, with "
        f"in_features = channels × height × width), or the labels are not one class index per image."
    )


def _conv_in_channels(groups: dict[str, str], batch_size: int | None) -> str:
    expected, got, shape = int(groups["expected"]), int(groups["got"]), _dims(groups["input"])
    if len(shape) == 4 and shape[-1] == expected:
        # [batch, height, width, channels], as images come out of numpy/PIL.
        return (
            f"The images are in [batch, height, width, channels] order {shape}, but Conv2d wants "
            f"[batch, channels, height, width]: use `x.permute(0, 3, 1, 2)` before the first convolution."
        )
    return (
        f"This Conv2d has in_channels={expected} but the tensor coming in has {got} channel(s) (input shape {shape}): "
        f"in_channels must equal the out_channels of the layer before it, or the image's channels for the "
        f"first convolution (3 for colour, 1 for grey-scale), here in_channels={got}."
    )


def _conv_input_dims(groups: dict[str, str], batch_size: int | None) -> str:
    shape, batched = _dims(groups["size"]), int(groups["batched"])
    if len(shape) > batched:
        return (
            f"The {groups['layer']} layer got a {len(shape)}-D input {shape}, one dimension too many: a batch of "
            f"images is [batch, channels, height, width]; remove the extra `unsqueeze`/`stack`."
        )
    return (
        f"The {groups['layer']} layer got flat vectors {shape}, but a convolution needs images "
        f"[batch, channels, height, width]: do not flatten before the convolutions; flatten only after the last "
        f"convolution/pooling, just before the first Linear layer."
    )


def _target_out_of_bounds(groups: dict[str, str], batch_size: int | None) -> str:
    target = int(groups["target"])
    if target < 0:
        return f"A label is {target}, but class labels must be 0, 1, …, number of classes − 1: fix the labels."
    return (
        f"A label is {target}, but the output layer gives scores for fewer classes: its out_features must equal "
        f"the number of classes (at least {target + 1} here), with labels 0 … classes − 1."
    )


_LABELS_LONG = (
    "nn.CrossEntropyLoss wants the labels as class indices (0, 1, …) of dtype long, but they are {dtype}: "
    "pass `labels.long()`."
)

def _row(name: str, regex: str, explain: Explainer) -> KnownError:
    return KnownError(name, re.compile(regex), explain)


# Order matters only where two rows match the same text: the first that gives a sentence wins.
KNOWN_ERRORS: list[KnownError] = [
    _row("linear_input_size",
         r"mat1 and mat2 shapes cannot be multiplied \((?P<rows>\d+)x(?P<got>\d+) and (?P<expected>\d+)x\d+\)",
         _linear_input_size),
    # torch <= 1.7 said "size mismatch" for the same Linear mistake.
    _row("linear_input_size",
         r"size mismatch, m1: \[(?P<rows>\d+) x (?P<got>\d+)\], m2: \[(?P<expected>\d+) x \d+\]",
         _linear_input_size),
    _row("view_size", r"shape '\[(?P<shape>[-\d, ]+)\]' is invalid for input of size (?P<size>\d+)", _view_size),
    _row("no_grad",
         r"element 0 of tensors does not require grad and does not have a grad_fn",
         "The loss has no computation graph, so `.backward()` has nothing to differentiate: it was computed inside "
         "`with torch.no_grad():` or from a detached value (`.detach()`, `.item()`, `.numpy()`, `torch.tensor(loss)`). "
         "Compute the forward pass and the loss with gradients enabled and call `.backward()` on that loss tensor."),
    _row("label_dtype", r"expected target dtype to be Long or Byte, but got (?P<dtype>\w+)", _LABELS_LONG),
    # Older torch, and the CUDA kernel, word the same label mistake differently.
    _row("label_dtype", r"expected scalar type Long but found (?P<dtype>\w+)", _LABELS_LONG),
    _row("label_dtype", r"\"nll_loss\w*\" not implemented for '(?P<dtype>\w+)'", _LABELS_LONG),
    _row("labels_like_outputs", r"Expected floating point type for target with class probabilities, got (?P<dtype>\w+)",
         "The labels have the same shape as the network's output, so nn.CrossEntropyLoss reads them as class "
         "probabilities (one-hot) and wants floats, but got {dtype}: give it outputs of shape [batch, classes] and "
         "labels as class indices of shape [batch] (`labels.argmax(dim=1)` for one-hot labels)."),
    _row("labels_2d", r"0D or 1D target tensor expected, multi-target not supported",
         "nn.CrossEntropyLoss wants one class index per image (labels of shape [batch]), but the labels have more "
         "dimensions (one-hot, or shape [batch, 1]): use `labels.argmax(dim=1)` for one-hot labels, or "
         "`labels.view(-1)`."),
    _row("loss_batch_mismatch",
         r"Expected input batch_size \((?P<outputs>\d+)\) to match target batch_size \((?P<labels>\d+)\)",
         _loss_batch_mismatch),
    _row("target_out_of_bounds", r"Target (?P<target>-?\d+) is out of bounds", _target_out_of_bounds),
    _row("device_mismatch", r"Expected all tensors to be on the same device", _DEVICE_FIX),
    _row("device_mismatch",
         r"Input type \((?P<data>[^)]*)\) and (?:weight|bias) type \((?P<weights>[^)]*)\) should be the same",
         _device_type_mismatch),
    _row("data_dtype",
         r"Input type \((?P<data>[^)]*)\) and (?:weight|bias) type \((?P<weights>[^)]*)\) should be the same",
         _data_dtype),
    _row("data_dtype", r"mat1 and mat2 must have the same dtype, but got (?P<data>\w+) and (?P<weights>\w+)",
         _data_dtype),
    _row("data_dtype", r"expected m1 and m2 to have the same dtype, but got: (?P<data>\w+) != (?P<weights>\w+)",
         _data_dtype),
    _row("target_dtype", r"Found dtype (?P<found>\w+) but expected (?P<expected>\w+)", _target_dtype),
    _row("non_contiguous_view", r"view size is not compatible with input tensor's size and stride",
         "`.view()` needs the tensor's numbers stored in order, and after `permute`/`transpose` they are not: "
         "use `.reshape(...)`, `.contiguous().view(...)` or `torch.flatten(x, 1)`."),
    _row("conv_in_channels",
         r"Given groups=\d+, weight of size \[[\d, ]+\], expected input\[(?P<input>[\d, ]+)\] to have "
         r"(?P<expected>\d+) channels, but got (?P<got>\d+) channels instead",
         _conv_in_channels),
    _row("backward_twice", r"Trying to backward through the graph a second time",
         "`.backward()` went through the same graph twice: usually `loss_train += loss` keeps every batch's graph "
         "(write `loss_train += loss.item()`), or an output computed once is reused across iterations; compute the "
         "forward pass and the loss afresh for every batch."),
    _row("inplace_modified",
         r"one of the variables needed for gradient computation has been modified by an inplace operation"
         r"(?:: .*?, which is output \d+ of (?P<op>\w+))?",  # the tensor's shape nests brackets
         lambda groups, _: (
             "An in-place operation (`+=`, `x.relu_()`, `nn.ReLU(inplace=True)`, `x[...] = …`) changed a tensor "
             + (f"(the output of {groups['op']}) " if groups.get("op") else "")
             + "that autograd still needs for `.backward()`: write `x = x + y` or `torch.relu(x)` instead, "
             "and drop `inplace=True`.")),
    _row("image_too_small",
         r"Calculated padded input size per channel: \((?P<size>\d+ x \d+)\)\. "
         r"Kernel size: \((?P<kernel>\d+ x \d+)\)\. Kernel size can't be greater than actual input size",
         "The image reaching this layer is only {size} but the kernel is {kernel}: the convolutions and poolings "
         "before it shrank the image too much. Use fewer pooling layers, or padding (`padding=1` keeps the size "
         "with a 3×3 kernel)."),
    _row("image_too_small",
         r"Given input size: \((?P<input>[\dx]+)\)\. Calculated output size: \((?P<output>[\dx]+)\)\. "
         r"Output size is too small",
         "This layer would turn its {input} input (channels×height×width) into {output}: the convolutions and "
         "poolings before it shrank the image to nothing. Use fewer pooling layers, or padding (`padding=1` keeps "
         "the size with a 3×3 kernel)."),
    _row("conv_input_dims",
         r"Expected (?P<unbatched>\d)D \(unbatched\) or (?P<batched>\d)D \(batched\) input to (?P<layer>\w+), "
         r"but got input of size: \[(?P<size>[\d, ]*)\]",
         _conv_input_dims),
    # Pooling words the same mistake (flat vectors into a 2-D layer) its own way.
    _row("conv_input_dims", r"non-empty 3D or 4D \(batch mode\) tensor expected for input",
         "A pooling layer got flat vectors, but it needs images [batch, channels, height, width]: do not flatten "
         "before the convolutions and poolings; flatten only just before the first Linear layer."),
    _row("batchnorm_features", r"running_mean should contain (?P<got>\d+) elements not (?P<expected>\d+)",
         "This BatchNorm layer has num_features={expected}, but the tensor coming in has {got} channels: "
         "num_features must equal the out_channels of the convolution before it (set it to {got})."),
    _row("loss_not_scalar", r"grad can be implicitly created only for scalar outputs",
         "`.backward()` needs a single number, the loss: call it on the loss of the batch (a loss with the default "
         "reduction='mean'), not on the network's output or a per-image loss."),
    # The stub `grader assign` leaves where a solution was (grader/authoring/regions.py), or any
    # starter's `raise NotImplementedError(...)`.
    _row("not_implemented", r"^NotImplementedError\b",
         "Not implemented yet: this code still raises NotImplementedError, the starter's stub under "
         "`# YOUR CODE HERE`; replace that `raise` line with your code."),
    _row("numpy_needs_detach", r"Can't call numpy\(\) on Tensor that requires grad",
         "This tensor is still part of the computation graph: use `.detach().numpy()` (or `.item()` for one number, "
         "such as the loss) before converting it."),
]


def explain_error(message: str, *, batch_size: int | None = None) -> str | None:
    """A sentence saying what this error usually means in a student's CNN assignment, and the fix; None when the
    message is not one we know.

    `message` may carry the exception type in front and the grader's location after it;
    `batch_size` (the batch the grader fed the network) tells a hard-coded batch size from a wrong
    flatten size.
    """
    found = diagnose_error(message, batch_size=batch_size)
    return found[1] if found else None


def diagnose_error(message: str, *, batch_size: int | None = None) -> tuple[str, str] | None:
    """(entry name, explanation) for a known error message, else None."""
    for entry in KNOWN_ERRORS:
        match = entry.pattern.search(message)
        if match is None:
            continue
        groups = {key: value for key, value in match.groupdict().items() if value is not None}
        if isinstance(entry.explain, str):
            text: str | None = entry.explain.format(**groups)
        else:
            text = entry.explain(groups, batch_size)
        if text is not None:
            return entry.name, text
    return None


def with_explanation(error: str, *, batch_size: int | None = None) -> str:
    """An exception's text led by what it usually means, when that is known; else the text alone."""
    meaning = explain_error(error, batch_size=batch_size)
    return f"{meaning} (the error: {error})" if meaning else error
