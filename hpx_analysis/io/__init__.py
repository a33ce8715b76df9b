"""Inputs: image folders and batches, model weights, devices."""

from .devices import DeviceError, device_description, resolve_device
from .images import ImageInputError, ImageItem, ImageLoadError, list_images, load_rgb
from .weights import LoadedModel, ModelSpec, WeightsError, load_model, parse_model_spec

__all__ = [
    "DeviceError",
    "resolve_device",
    "device_description",
    "ImageInputError",
    "ImageItem",
    "ImageLoadError",
    "list_images",
    "load_rgb",
    "LoadedModel",
    "ModelSpec",
    "WeightsError",
    "load_model",
    "parse_model_spec",
]
