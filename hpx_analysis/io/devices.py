"""Devices: the toolbench's device policy (``auto``, ``cpu``, ``cuda[:N]``) and their names."""

from __future__ import annotations

import platform

import torch

__all__ = ["DeviceError", "resolve_device", "cpu_name", "device_description"]


class DeviceError(ValueError):
    """The requested device is not available."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``; ``cuda`` / ``cuda:N`` (checked)."""
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
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    except OSError:
        return fallback
    return names[0] if names else fallback


def device_description(device: torch.device | str, threads: int | None = None) -> str:
    """Human-readable name of the device (GPU model, or CPU model and thread count;
    ``threads`` defaults to torch's current setting)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {cpu_name()}, {threads or torch.get_num_threads()} threads"
