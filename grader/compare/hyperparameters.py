"""Layer settings (torch's `__constants__`, as the probes report them) written one way, so equal
settings compare equal and read the way the lecture writes them. Never imports torch."""

from __future__ import annotations

from typing import Any


def normalized(hyper: dict[str, Any]) -> dict[str, Any]:
    """Write equivalent settings one way: padding='same'/'valid' as numbers, scalars as lists."""
    found = dict(hyper)
    kernel = found.get("kernel_size")
    dims = len(kernel) if isinstance(kernel, list) else 1
    for key in ("kernel_size", "stride", "dilation", "output_padding"):
        if isinstance(found.get(key), int):
            found[key] = [found[key]] * dims
    padding = found.get("padding")
    if padding == "valid":
        found["padding"] = [0] * dims
    elif padding == "same" and isinstance(kernel, list):
        dilation = found.get("dilation") or [1] * dims
        if all((d * (k - 1)) % 2 == 0 for d, k in zip(dilation, kernel)):
            found["padding"] = [d * (k - 1) // 2 for d, k in zip(dilation, kernel)]
    elif isinstance(padding, int):
        found["padding"] = [padding] * dims
    return found


def show(value: Any) -> str:
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return str(value[0])
    return str(tuple(value)) if isinstance(value, list) else str(value)


def describe_layer(hyper: dict[str, Any]) -> str:
    """`3 → 16, kernel 3, padding 1` for a Conv2d, `512 → 32` for a Linear: what the picture of
    the network shows in its settings column."""
    found = normalized(hyper)
    if "in_channels" in found and "out_channels" in found:
        parts = [f"{found['in_channels']} → {found['out_channels']}"]
        for key, word in (("kernel_size", "kernel"), ("stride", "stride"), ("padding", "padding"), ("dilation", "dilation")):
            value = found.get(key)
            default = {"stride": 1, "padding": 0, "dilation": 1}.get(key)
            if value is not None and not (isinstance(value, list) and all(v == default for v in value)):
                parts.append(f"{word} {show(value)}")
        if found.get("groups", 1) != 1:
            parts.append(f"groups {found['groups']}")
        if found.get("bias") is False:
            parts.append("no bias")
        return ", ".join(parts)
    if "in_features" in found and "out_features" in found:
        return f"{found['in_features']} → {found['out_features']}" + (", no bias" if found.get("bias") is False else "")
    if "num_features" in found:
        return f"{found['num_features']} features"
    shown = [f"{key}={show(value)}" for key, value in sorted(found.items()) if key != "bias"]
    return ", ".join(shown)[:80]
