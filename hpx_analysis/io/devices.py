"""Devices: the toolbench's device policy (``auto``, ``cpu``, ``cuda[:N]``) and their names."""

from __future__ import annotations

import platform

import torch

from .checks import whole_number

__all__ = ["DeviceError", "resolve_device", "cpu_name", "device_description"]


class DeviceError(ValueError):
    """The requested device is not available."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device a ``--device`` value names, checked to exist.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or a ``torch.device``.

    Returns:
        torch.device: the device.

    Raises:
        DeviceError: an unknown name, CUDA asked for where it is not available, or a CUDA
            index beyond the devices present.
    """
    if isinstance(device, torch.device):
        device = str(device)
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available here (use 'cpu' or 'auto')")
        dev = torch.device(text)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return dev
    raise DeviceError(f"unknown device {device!r} (expected auto, cpu or cuda)")


def cpu_name() -> str:
    """The CPU's model name.

    Returns:
        str: the model from /proc/cpuinfo, else what ``platform`` knows.
    """
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    except OSError:
        return fallback
    return names[0] if names else fallback


def device_description(device: torch.device | str, threads: int | None = None) -> str:
    """Human-readable name of a device.

    Args:
        device: the device.
        threads: the CPU threads to report, a whole number of at least 1 (None: torch's
            current setting).

    Returns:
        str: the GPU model and CUDA version, or the CPU model and thread count.

    Raises:
        TypeError: ``threads`` is not a whole number.
        ValueError: ``threads`` is below 1.
    """
    if threads is not None:
        threads = whole_number(threads, "threads", minimum=1)
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {cpu_name()}, {threads or torch.get_num_threads()} threads"
