"""The one place a ``--device`` string becomes a torch device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:
    import torch


class DeviceError(UserError, ValueError):
    """A device was asked for that this machine does not have."""


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are
    checked against this machine at once (no silent CPU fallback, no late traceback).

    Raises:
        DeviceError: an unknown device string, or CUDA asked for where there is none (or not
            that many GPUs).
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"--device {device!r}: valid values are auto, cpu, cuda, cuda:N") \
            from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {device}: this machine has no CUDA device "
                              "(torch.cuda.is_available() is False); use --device cpu or auto")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA device(s)")
    elif dev.type != "cpu":
        raise DeviceError(f"--device {device!r}: valid values are auto, cpu, cuda, cuda:N")
    return dev


__all__ = ["DeviceError", "resolve_device"]
