"""Inputs: image folders and batches, model weights, devices; output folders (checked and locked)."""

from .devices import DeviceError, device_description, resolve_device
from .images import ImageInputError, ImageItem, ImageList, ImageLoadError, list_images, load_rgb
from .output import OutputBusyError, OutputError, check_output_dir, output_lock
from .weights import LoadedModel, ModelSpec, WeightsError, load_model, parse_model_spec

__all__ = [
    "DeviceError",
    "resolve_device",
    "device_description",
    "ImageInputError",
    "ImageItem",
    "ImageList",
    "ImageLoadError",
    "list_images",
    "load_rgb",
    "OutputError",
    "OutputBusyError",
    "check_output_dir",
    "output_lock",
    "LoadedModel",
    "ModelSpec",
    "WeightsError",
    "load_model",
    "parse_model_spec",
]
