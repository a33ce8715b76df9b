"""Checkpoint plumbing shared by the model factory and the weights loader."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .mixers.filters import distance_map

__all__ = ["unwrap_state_dict", "resample_filter_inputs"]

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")


def unwrap_state_dict(obj) -> dict:
    """The tensor dict inside a checkpoint.

    Args:
        obj: what a checkpoint file holds: a plain state dict, or one nested (up to three
            levels) under ``state_dict``, ``model``, ``model_state_dict``, ``state_dict_ema``
            or ``model_ema``.

    Returns:
        dict: key -> tensor (entries that are not tensors are dropped), with a ``module.``
        prefix (DDP) removed when every key has it.

    Raises:
        TypeError: ``obj`` holds no dict of tensors.
    """
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise TypeError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def resample_filter_inputs(state_dict: dict, model_state: dict) -> dict:
    """Adapt a checkpoint's H_px filter inputs to larger kernels, as the published
    ``hpx_former_s18_384_interpolate`` does.

    ``long_conv.z`` is resized bicubically (with antialiasing) and ``long_conv.distance_map``
    is rebuilt for the new size, then divided by ``(new_size / 2) / old_size`` (the published
    scaling, reproduced as is).

    Args:
        state_dict: the checkpoint's tensors.
        model_state: the target model's ``state_dict()`` (gives the new shapes).

    Returns:
        dict: a copy of ``state_dict`` with the filter inputs whose shape differs resampled;
        every other entry unchanged.
    """
    out = dict(state_dict)
    for key, value in state_dict.items():
        target = model_state.get(key)
        if target is None or tuple(target.shape) == tuple(value.shape):
            continue
        if key.endswith("long_conv.z"):
            z = F.interpolate(value.float(), size=tuple(target.shape[-2:]), mode="bicubic", antialias=True)
            out[key] = z.to(value.dtype)
        elif key.endswith("long_conv.distance_map"):
            old, new = value.shape[-1], target.shape[-1]
            out[key] = (distance_map(*target.shape[-2:]) / ((new / 2) / old))[None, None].to(value.dtype)
    return out
