"""Effective receptive fields (ERF) after Luo et al. (2016) and RepLKNet/SLaK's scripts.

For every image (resized to ``size`` x ``size``, ImageNet-normalized):

1. take the last feature map of the model (``forward_features``: the output of the last
   stage, before pooling and the final norm), at the centre-most position
   ``(H // 2, W // 2)`` (this project's MetaFormers give that position's vector directly,
   ``forward_features_at``, running their last MLP on that token only);
2. ReLU, then sum over channels: one scalar per image;
3. gradient of that scalar w.r.t. the input image; ReLU; sum over the colour channels;
4. mean of these maps over all images (accumulated in float64).

The model runs in eval mode with its parameters frozen (no weight gradients; this also
lets long-convolution mixers reuse their kernel spectrum). The caller's model is left as
found: requires_grad flags and train/eval flags are restored, no hooks are added.

Batching is exact: the per-image scalars of a batch are summed before the backward pass,
and since images in a batch do not interact in eval mode, the gradient w.r.t. image ``i``
is the gradient of scalar ``i`` alone. A batch of N gives N single-image maps (bit-equal
up to the last bits of the backend's float arithmetic; exactly equal in float64 models up
to rounding).

``method`` selects what is accumulated per image, always for the same output unit:

- ``"grad"`` (default, the protocol above): ``sum_c ReLU(d unit / d x_c)``;
- ``"saliency"``: captum's ``Saliency`` (absolute gradient), ``sum_c |d unit / d x_c|``;
- ``"integrated_gradients"``: captum's ``IntegratedGradients`` from an all-zero baseline
  (the dataset mean image after normalization) with ``ig_steps`` steps,
  ``sum_c |attribution_c|``.

Images whose map has non-finite values (NaN or inf) are excluded from the mean, counted
(``nonfinite_values``) and listed among the skipped images with the reason.

``precision="fp32"`` is full float32: TF32 is switched off for the passes (PyTorch's
default runs cuDNN convolutions in TF32 on CUDA, which moved a random-init
hpx_former_s18's ERF by 1.5% of its mass). On CUDA, ``precision="tf32"`` runs matrix
products and convolutions in TF32 and ``"bf16"`` or ``"fp16"`` runs forward and backward
under autocast; the first batch is also computed in float32 and the deviation of the
reduced-precision maps from it is stated in the result (``precision_deviation``).

``compile_blocks=True`` runs the model's repeated blocks through ``torch.compile`` (see
:mod:`hpx_analysis.execution.compiled`): same matrix up to float32 rounding, faster on a GPU once
compiled.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..execution.compiled import compiling
from ..execution.out_of_memory import is_out_of_memory
from ..execution.prefetch import prefetched
from ..models.fast import fast_path_record, fast_paths
from ..models.numerics import full_float32, tf32
from ..settings import Hooks
from .result import ErfResult
from .settings import METHODS, PRECISIONS, PREPROCESS, ErfSettings, default_batch_size
from .state import ErfAccumulator
from .unit import ErfUnit

__all__ = [
    "METHODS",
    "PRECISIONS",
    "ErfError",
    "ErfInputError",
    "ErfModelError",
    "GradCheckpointingError",
    "ErfResult",
    "ErfSettings",
    "PassInfo",
    "image_transform",
    "compute_erf",
    "last_feature_map",
    "centre_unit",
    "contribution_maps",
    "maps_that_fit",
    "frozen_for_erf",
    "image_key",
    "KeyedInput",
    "accumulate_erf",
    "erf_result",
    "ErfUnit",
]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class ErfError(ValueError):
    """The ERF cannot be computed for these inputs (clear message, no traceback needed)."""


class ErfInputError(ErfError, TypeError):
    """A model or image of a kind the ERF cannot take (the message says what it expects)."""


class ErfModelError(ErfError, RuntimeError):
    """The model failed on the given images (e.g. images too small for its downsampling)."""


class GradCheckpointingError(ErfError):
    """The model cannot recompute its activations (no ``set_grad_checkpointing``)."""


IMAGE_KINDS = (
    "image paths, image items with a path, PIL images, HxWx3 uint8 numpy arrays, "
    "or (3, H, W) float tensors that are already normalized"
)


# ----------------------------------------------------------------------------- output unit
def last_feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's last feature map as ``(B, C, H, W)``.

    ``forward_features`` gives NCHW for our models and timm's CNNs; NHWC models (timm's
    ``output_fmt == "NHWC"``, e.g. Swin) are permuted; token outputs ``(B, N, C)`` (ViTs)
    drop the prefix tokens and are laid back onto the patch grid.

    Args:
        model: a timm-style model with ``forward_features``.
        x: the input batch ``(B, 3, H, W)``.

    Returns:
        torch.Tensor: the map ``(B, C, H', W')``.
    """
    if not hasattr(model, "forward_features"):
        raise ErfError(f"{type(model).__name__} has no forward_features(); the ERF needs timm's model API")
    f = model.forward_features(x)
    if isinstance(f, (list, tuple)):
        f = f[-1]
    if f.ndim == 4:
        return f.permute(0, 3, 1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else f
    if f.ndim == 3:
        return _tokens_to_grid(model, f, x.shape[-2:])
    raise ErfError(f"forward_features returned a tensor of shape {tuple(f.shape)}; expected a spatial feature map")


def _tokens_to_grid(model: nn.Module, tokens: torch.Tensor, image_size) -> torch.Tensor:
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    n = tokens.shape[1] - prefix
    if patch is None:
        side = math.isqrt(n)
        grid = (side, side) if side * side == n else None
    else:
        grid = (image_size[0] // patch[0], image_size[1] // patch[1])
        grid = grid if grid[0] * grid[1] == n else None
    if grid is None:
        raise ErfError(f"cannot lay {n} tokens of {type(model).__name__} onto a 2D grid for the ERF")
    return tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def centre_unit(fmap: torch.Tensor) -> torch.Tensor:
    """Per-image scalar: ReLU of the feature map at ``(H // 2, W // 2)``, summed over channels.

    Args:
        fmap: a feature map ``(B, C, H, W)``.

    Returns:
        torch.Tensor: one scalar per image ``(B,)``.
    """
    h, w = fmap.shape[-2:]
    return torch.relu(fmap[:, :, h // 2, w // 2]).sum(1)


def _unit_fn(model: nn.Module, unit: ErfUnit | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The output unit as a function of the input. For the default unit (RepLKNet's protocol
    on the last feature map), models with ``forward_features_at`` (this project's
    MetaFormers) give the centre vector of the last feature map directly, with their last
    MLP computed at that position only; others (and every other unit) go through the whole
    map (see :class:`ErfUnit`)."""
    unit = unit or ErfUnit()
    centre_vector = getattr(model, "forward_features_at", None) if unit.is_default else None

    def scalar(x: torch.Tensor) -> torch.Tensor:
        if centre_vector is not None:
            u = torch.relu(centre_vector(x)).sum(1)
        else:
            u = unit.scalar(unit.feature_map(model, x))
        return u if u.dtype == torch.float64 else u.float()

    return scalar


# ----------------------------------------------------------------------------- one batch
def contribution_maps(model: nn.Module, x: torch.Tensor, settings: ErfSettings | None = None) -> torch.Tensor:
    """Per-image contribution maps of one batch.

    The model should already be in eval mode with frozen parameters (see
    :func:`frozen_for_erf`); :func:`compute_erf` does that.

    Args:
        model: the model.
        x: the batch ``(B, 3, H, W)``, on the model's device.
        settings: the method, precision, integration steps and unit (default:
            :class:`~hpx_analysis.erf.settings.ErfSettings` ``()``, RepLKNet's protocol).

    Returns:
        torch.Tensor: the maps ``(B, H, W)``, detached; float32, or float64 for a float64 model.
    """
    settings = settings or ErfSettings()
    spec = settings.unit
    unit = _unit_fn(model, spec)
    with _precision_mode(x.device, settings.precision):
        if settings.method == "grad":
            xg = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(unit(xg).sum(), xg)
            maps = spec.input_map(grad)
        elif settings.method == "saliency":
            from captum.attr import Saliency

            maps = Saliency(unit).attribute(x.detach().clone().requires_grad_(True), abs=True).sum(1)
        else:
            from captum.attr import IntegratedGradients

            xi = x.detach().clone()
            attr = IntegratedGradients(unit).attribute(
                xi, baselines=torch.zeros_like(xi), n_steps=settings.ig_steps, internal_batch_size=xi.shape[0]
            )
            maps = attr.abs().sum(1)
    maps = maps.detach()
    return maps if maps.dtype == torch.float64 else maps.float()


@contextlib.contextmanager
def _precision_mode(device: torch.device, precision: str):
    """fp32: full float32 (no TF32); tf32: TF32 products and convolutions; bf16/fp16: CUDA autocast."""
    if precision not in PRECISIONS:
        raise ErfError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        with full_float32():  # no TF32 on CUDA: cuDNN's default moved hpx_former_s18's ERF by 1.5%
            yield
        return
    if device.type != "cuda":
        raise ErfError(f"reduced precision ({precision}) is only supported on CUDA; use fp32 on {device.type}")
    mode = tf32() if precision == "tf32" else torch.autocast(device_type="cuda", dtype=_AUTOCAST_DTYPES[precision])
    with mode:
        yield


def maps_that_fit(model: nn.Module, x: torch.Tensor, chunk: int, settings: ErfSettings) -> tuple[torch.Tensor, int]:
    """:func:`contribution_maps` of ``x`` computed ``chunk`` images at a time; when the device
    runs out of memory the chunk is halved (down to one image) and the pass retried. Exact:
    images do not interact, so chunks give the maps of the whole batch. Running out of
    memory is PyTorch's ``OutOfMemoryError`` or another library's failed allocation (see
    :mod:`hpx_analysis.execution.out_of_memory`).

    Args:
        model: the model (eval mode, frozen).
        x: the batch ``(B, 3, H, W)``.
        chunk: images per pass to try first.
        settings: what is computed (see :func:`contribution_maps`).

    Returns:
        tuple[torch.Tensor, int]: the maps ``(B, H, W)`` and the chunk that fitted, to
        start the next batch with.
    """
    while True:
        size = min(chunk, x.shape[0])
        try:
            if size == x.shape[0]:
                return contribution_maps(model, x, settings), chunk
            return torch.cat([contribution_maps(model, part, settings) for part in x.split(size)]), size
        except RuntimeError as exc:
            if size == 1 or not is_out_of_memory(exc):
                raise
        chunk = (size + 1) // 2  # out of the except block: the failed pass's tensors are freed by now
        if x.device.type == "cuda":
            torch.cuda.empty_cache()


@contextlib.contextmanager
def frozen_for_erf(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and the fast paths of frozen models
    (:func:`~hpx_analysis.models.fast.fast_paths`, where ``HPX_ANALYSIS_FAST`` allows them)
    for the duration; the caller's flags and module classes are restored.

    Args:
        model: the model.

    Returns:
        Iterator[nn.Module]: a context manager yielding ``model``.
    """
    params = list(model.parameters())
    grad_flags = [p.requires_grad for p in params]
    train_flags = [(m, m.training) for m in model.modules()]
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        with fast_paths(model):
            yield model
    finally:
        for p, flag in zip(params, grad_flags):
            p.requires_grad_(flag)
        for m, flag in train_flags:
            m.training = flag


# ----------------------------------------------------------------------------- images
@dataclass(frozen=True)
class KeyedInput:
    """An input (tensor or image item) with an explicit resume key."""

    item: object
    key: str


def image_key(item, index: int) -> str:
    """Resume key of an input: the image path, or ``tensor:<index>`` for a tensor.

    Args:
        item: the input (a :class:`KeyedInput` keeps its key).
        index: its position in the list.

    Returns:
        str: the key.
    """
    if isinstance(item, KeyedInput):
        return item.key
    if isinstance(item, torch.Tensor):
        return f"tensor:{index}"
    if not isinstance(getattr(item, "path", item), (str, os.PathLike)):
        return f"image:{index}"  # PIL images and arrays, keyed by position as tensors are
    return str(getattr(item, "path", item))


def _is_single_image(images) -> bool:
    import numpy as np
    from PIL import Image

    if isinstance(images, torch.Tensor):
        return images.ndim == 3
    return isinstance(images, (str, os.PathLike, Image.Image, np.ndarray))


def _as_items(images) -> list:
    """``images`` as a list (one image on its own is taken as a list of one)."""
    if images is None:
        raise ErfInputError(f"images must be an iterable of {IMAGE_KINDS}; got None")
    if _is_single_image(images):
        return [images]
    try:
        return list(images)
    except TypeError:
        raise ErfInputError(f"images must be an iterable of {IMAGE_KINDS}; got {type(images).__name__}") from None


def _check_input(item, size: int | None, has_transform: bool = False) -> None:
    """Refuse, before any work, an input the ERF cannot take (see :data:`IMAGE_KINDS`)."""
    import numpy as np
    from PIL import Image

    item = item.item if isinstance(item, KeyedInput) else item
    if isinstance(item, torch.Tensor):
        shape = tuple(item.shape)
        if not (item.ndim == 3 or (item.ndim == 4 and shape[0] == 1)) or shape[-3] != 3:
            raise ErfInputError(f"image tensors must be (3, H, W), got {shape}")
        if not item.is_floating_point():
            raise ErfInputError(
                f"image tensors must be normalized floats, got {item.dtype}; pass 8-bit pixels as an HxWx3 "
                "uint8 numpy array or a PIL image (they are resized and normalized)"
            )
        if item.is_meta:
            raise ErfInputError("image tensors must hold data; got a tensor on the meta device")
        if min(shape[-2:]) < 1:
            raise ErfInputError(f"image tensors must not be empty, got {shape}")
        return
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or not (item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4))):
            raise ErfInputError(
                f"image arrays must be HxWx3 (or HxW) uint8 pixels, got {item.dtype} of shape {item.shape}; "
                "pass normalized images as (3, H, W) float tensors"
            )
    elif not isinstance(item, (Image.Image, str, os.PathLike)) and not isinstance(getattr(item, "path", None), str):
        raise ErfInputError(f"cannot use a {type(item).__name__} as an image; expected {IMAGE_KINDS}")
    if size is None and not has_transform:
        raise ErfError("image files, PIL images and arrays need a size (the side length they are resized to)")


def _load_input(item, size: int | None, transform: Callable | None = None) -> torch.Tensor:
    """A (3, H, W) tensor for a tensor, an image item or path, a PIL image or a uint8 array;
    raises ImageLoadError for bad files. ``transform``: turns the RGB image into the tensor
    (default: RepLKNet's resize to ``size``)."""
    import numpy as np
    from PIL import Image

    if isinstance(item, KeyedInput):
        item = item.item
    if isinstance(item, torch.Tensor):
        t = item[0] if item.ndim == 4 and item.shape[0] == 1 else item
        if t.ndim != 3 or t.shape[0] != 3:
            raise ErfError(f"image tensors must be (3, H, W), got {tuple(item.shape)}")
        return t
    from ..io.images import _as_rgb, erf_transform, load_rgb

    if isinstance(item, np.ndarray):
        item = Image.fromarray(item)
    rgb = _as_rgb(item) if isinstance(item, Image.Image) else load_rgb(getattr(item, "path", item))
    if transform is not None:
        return transform(rgb)
    if size is None:
        raise ErfError("image files need a size (the side length they are resized to)")
    return erf_transform(size)(rgb)


def _batches(
    items: Sequence,
    keys: Sequence[str],
    batch_size: int,
    size: int | None,
    state: ErfAccumulator,
    loader_threads: int = 0,
    pin_memory: bool = False,
    transform: Callable | None = None,
):
    """Yield ``(keys, tensor)`` batches of loadable images; unreadable ones go to ``state.skip``.
    With ``loader_threads`` > 0 the images are read on that many threads, up to two
    batches ahead of the consumer. ``pin_memory``: batches are stacked into page-locked
    memory (for asynchronous copies to a CUDA device)."""
    loaded = prefetched(
        lambda i: _load_input(items[i], size, transform),
        range(len(items)),
        workers=loader_threads,
        ahead=2 * batch_size,
    )
    keys_out, tensors = [], []
    for i, t, exc in loaded:
        key = keys[i]
        if exc is not None:
            if isinstance(exc, ErfError) or not _is_image_load_error(exc):
                raise exc
            state.skip(key, str(exc))  # ImageLoadError messages are the reason itself
            yield [], None  # lets the caller count the image as handled
            continue
        keys_out.append(key)
        tensors.append(t)
        if len(tensors) == batch_size:
            yield keys_out, _stack(tensors, pin_memory)
            keys_out, tensors = [], []
    if tensors:
        yield keys_out, _stack(tensors, pin_memory)


def _stack(tensors: list[torch.Tensor], pin_memory: bool) -> torch.Tensor:
    if not pin_memory or len({(t.shape, t.dtype) for t in tensors}) > 1:  # mixed sizes: stack's error
        return torch.stack(tensors)
    first = tensors[0]
    return torch.stack(tensors, out=torch.empty((len(tensors), *first.shape), dtype=first.dtype, pin_memory=True))


@dataclass
class _BatchSum:
    """A batch's maps reduced where they were computed: per-image non-finite counts and the
    float64 sum of the finite images' maps, on their way to the host (``ready`` is the
    CUDA event of the copies; None where they are done)."""

    keys: Sequence[str]
    nonfinite: torch.Tensor
    total: torch.Tensor
    ready: torch.cuda.Event | None


def _reduce_maps(keys: Sequence[str], maps: torch.Tensor) -> _BatchSum:
    """Start reducing a batch of maps (no wait for the device: on CUDA the results are copied
    to page-locked host memory behind the work already queued)."""
    if maps.device.type not in ("cpu", "cuda"):  # e.g. MPS has no float64
        maps = maps.cpu()
    finite = torch.isfinite(maps).flatten(1)
    nonfinite = (~finite).sum(1)
    total = torch.where(finite.all(1)[:, None, None], maps, 0).sum(0, dtype=torch.float64)
    if maps.device.type != "cuda":
        return _BatchSum(keys, nonfinite, total, None)
    host = [
        torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True) for t in (nonfinite, total)
    ]
    ready = torch.cuda.Event()
    ready.record()
    return _BatchSum(keys, host[0], host[1], ready)


def _add_batch_sum(state: ErfAccumulator, batch: _BatchSum) -> None:
    """Wait for a reduced batch and add it to ``state``: images with non-finite values are
    skipped and counted, the others' maps added (one float64 map per batch crosses to the
    host)."""
    if batch.ready is not None:
        batch.ready.synchronize()
    bad = batch.nonfinite.tolist()
    for key, n in zip(batch.keys, bad):
        if n:
            state.skip(key, f"non-finite gradient ({n} values); excluded from the mean", n)
    good = [key for key, n in zip(batch.keys, bad) if n == 0]
    if good:
        state.add_sum(good, batch.total.cpu().numpy())


def _default_loader_threads(device: torch.device) -> int:
    """Threads that read images ahead: on an accelerator, reading overlaps its work; on the
    CPU the model already uses every core."""
    return 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)


def _is_image_load_error(exc: Exception) -> bool:
    from ..io.images import ImageLoadError

    return isinstance(exc, ImageLoadError)


# ----------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class PassInfo:
    """How the passes of an accumulation ran.

    Args:
        device: the device they ran on.
        precision_deviation: with a reduced precision, how far the first batch's maps are
            from float32 maps (None otherwise).
        compiled_blocks: how many blocks ran through ``torch.compile``.
        images_per_pass: the batch size, or the smaller number of images per pass that
            fitted when the device ran out of memory (see :func:`maps_that_fit`).
    """

    device: str
    precision_deviation: dict | None = None
    compiled_blocks: int = 0
    images_per_pass: int | None = None


def image_transform(model: nn.Module, preprocess: str, size: int | None) -> Callable | None:
    """How image files become tensors.

    Args:
        model: the model (its timm data config for ``"timm-eval"``).
        preprocess: ``"squash"`` (RepLKNet's resize of the whole image to ``size`` x
            ``size``, ImageNet mean/std) or ``"timm-eval"`` (the model's timm data config:
            input size, crop percentage, interpolation, mean and std).
        size: the side length; with ``"timm-eval"`` it replaces the config's input size.

    Returns:
        Callable | None: the transform, or None for ``"squash"`` (the default loading).
    """
    if preprocess not in PREPROCESS:
        raise ErfError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESS)}")
    if preprocess == "squash":
        return None
    from ..io.images import model_eval_transform

    return model_eval_transform(model, size=size)


def _model_device(model: nn.Module, device, precision: str) -> tuple[torch.device, torch.dtype]:
    """The device the ERF runs on (default: the model's) and the dtype of the model's inputs;
    refuses models that are no module, hold no data or sit on another device."""
    if not isinstance(model, nn.Module):
        raise ErfInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    param = next(iter(model.parameters()), None)
    if param is not None and param.is_meta:
        raise ErfInputError("the model's weights are on the meta device (no data); load or materialize them first")
    model_device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device) if device is not None else model_device
    if device.type != model_device.type or (device.index is not None and device != model_device):
        raise ErfError(f"the model is on {model_device}, the ERF was asked for on {device}; move the model first")
    if precision != "fp32" and device.type != "cuda":
        raise ErfError(f"reduced precision ({precision}) is only supported on CUDA; use fp32 on {device.type}")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return device, dtype


@contextlib.contextmanager
def _checkpointing(model: nn.Module, on: bool):
    """timm's gradient checkpointing switched on for the duration (and off again after)."""
    if not on:
        yield
        return
    if not hasattr(model, "set_grad_checkpointing"):
        raise GradCheckpointingError(f"{type(model).__name__} does not support gradient checkpointing")
    model.set_grad_checkpointing(True)
    try:
        yield
    finally:
        model.set_grad_checkpointing(False)


@dataclass
class _Passes:
    """The passes of one accumulation, pipelined: while the device works on a batch, the
    next one is read and stacked and the previous one's reduced maps come back to the host."""

    model: nn.Module
    state: ErfAccumulator
    settings: ErfSettings
    device: torch.device
    dtype: torch.dtype
    hooks: Hooks
    per_image: Callable | None
    chunk: int
    deviation: dict | None = None
    pending: _BatchSum | None = None
    input_size: tuple | None = None

    def step(self, keys: Sequence[str], batch: torch.Tensor | None) -> None:
        """Compute one batch (None: an image that could not be read, counted as handled)."""
        if batch is None:
            self._report(1)
            return
        if self.input_size is None:
            self.input_size = tuple(batch.shape[-2:])
        elif tuple(batch.shape[-2:]) != self.input_size:
            raise ErfError(
                f"all images must have the same size for one ERF: got {tuple(batch.shape[-2:])} after {self.input_size}"
            )
        x = batch.to(device=self.device, dtype=self.dtype, non_blocking=True)
        maps, self.chunk = maps_that_fit(self.model, x, self.chunk, self.settings)
        if self.per_image is not None:
            self.per_image(keys, maps)
        if self.settings.precision != "fp32" and self.settings.check_precision and self.deviation is None:
            fp32_maps, _ = maps_that_fit(self.model, x, self.chunk, self.settings.replace(precision="fp32"))
            self.deviation = _precision_deviation(maps, fp32_maps)
        self.flush()
        self.pending = _reduce_maps(keys, maps)

    def flush(self) -> None:
        """Add the batch on its way to the host (the last one, or the one computed when an
        error or interrupt came) to the state."""
        if self.pending is not None:
            previous, self.pending = self.pending, None
            _add_batch_sum(self.state, previous)
            self._report(len(previous.keys))

    def _report(self, n: int) -> None:
        self.hooks.on_batch(self.state)
        self.hooks.progress(n)


def accumulate_erf(
    model: nn.Module,
    images: Iterable,
    state: ErfAccumulator,
    settings: ErfSettings | None = None,
    device: str | torch.device | None = None,
    hooks: Hooks | None = None,
    per_image: Callable | None = None,
) -> PassInfo:
    """Add the contribution maps of ``images`` to ``state`` (in place), skipping images whose
    key ``state`` already holds. An empty ``images`` is fine here (a rank of a distributed
    run may get no image).

    Args:
        model: the model (left as found).
        images: the inputs (see :func:`compute_erf`).
        state: the accumulation to add to.
        settings: what is computed (default: :class:`~hpx_analysis.erf.settings.ErfSettings` ``()``).
        device: where to compute (default: the model's device; the model is not moved).
        hooks: ``progress(n)`` and ``on_batch(state)`` after every batch.
        per_image: called with every batch's keys and per-image maps ``(B, H, W)``.

    Returns:
        PassInfo: the device, precision deviation, compiled blocks and images per pass.
    """
    settings, hooks = settings or ErfSettings(), hooks or Hooks()
    device, dtype = _model_device(model, device, settings.precision)
    transform = image_transform(model, settings.preprocess, settings.size)
    items = _as_items(images)
    for item in items:
        _check_input(item, settings.size, transform is not None)
    keys = [image_key(item, i) for i, item in enumerate(items)]
    if len(set(keys)) != len(keys):
        raise ErfError("the same image is listed more than once")
    done = state.done_keys()
    todo = [(item, key) for item, key in zip(items, keys) if key not in done]
    chunk = settings.batch_size or default_batch_size(device)
    passes = _Passes(model, state, settings, device, dtype, hooks, per_image, chunk)
    passes.input_size = tuple(state.total.shape) if state.total is not None else None
    threads = _default_loader_threads(device) if settings.loader_threads is None else settings.loader_threads
    start, blocks = time.perf_counter(), 0
    try:
        with (
            frozen_for_erf(model),
            _checkpointing(model, settings.grad_checkpointing),
            _maybe_compiled(model, settings.compile_blocks) as blocks,
        ):
            batches = _batches(
                [t[0] for t in todo], [t[1] for t in todo], chunk, settings.size, state, threads,
                pin_memory=device.type == "cuda", transform=transform,
            )  # fmt: skip
            for batch_keys, batch in batches:
                passes.step(batch_keys, batch)
    finally:
        try:
            passes.flush()
        finally:
            state.seconds += time.perf_counter() - start
    return PassInfo(str(device), passes.deviation, blocks, passes.chunk)


def _maybe_compiled(model: nn.Module, compile_blocks: bool):
    return compiling(model) if compile_blocks else contextlib.nullcontext(0)


def erf_result(
    state: ErfAccumulator, info: PassInfo, settings: ErfSettings | None = None, identity: dict | None = None
) -> ErfResult:
    """The complete :class:`ErfResult` of an accumulation.

    Args:
        state: the accumulation (every rank's, combined).
        info: how its passes ran (:func:`accumulate_erf`).
        settings: what was computed; the unit's protocol finishes the mean.
        identity: further fields of the result (model, weights, run record, label, the
            unit's position, full metrics, ...); they replace the measured ones of the same name.

    Returns:
        ErfResult: the mean matrix and its record.

    Raises:
        ErfError: no image was used.
    """
    if state.count == 0:
        reasons = "; ".join(f"{s['key']}: {s['reason']}" for s in state.skipped[:5])
        raise ErfError("no image could be used for the ERF" + (f" ({reasons})" if reasons else ""))
    settings = settings or ErfSettings()
    measured = dict(
        matrix=settings.unit.finish(state.mean()),
        used=list(state.used),
        skipped=list(state.skipped),
        nonfinite_values=state.nonfinite_values,
        seconds=state.seconds,
        method=settings.method,
        precision=settings.precision,
        input_size=tuple(state.total.shape),
        device=info.device,
        precision_deviation=info.precision_deviation,
        settings=dict(state.settings),
        compiled_blocks=info.compiled_blocks,
        images_per_pass=info.images_per_pass,
        unit=settings.unit_record(),
        erf_settings=settings.describe(),
        fast_paths=fast_path_record(),
    )
    return ErfResult(**{**measured, **(identity or {})})


def compute_erf(
    model: nn.Module,
    images: Iterable,
    settings: ErfSettings | None = None,
    *,
    device: str | torch.device | None = None,
    state: ErfAccumulator | None = None,
    hooks: Hooks | None = None,
    per_image: Callable | None = None,
    **overrides,
) -> ErfResult:
    """Mean ERF contribution matrix of ``model`` over ``images``, in memory.

    ``compute_erf(model, images, size=128)`` and ``compute_erf(model, images,
    ErfSettings(size=128))`` are the same call.

    Args:
        model: the model (not moved; its flags are left as found).
        images: an iterable of (or one of) ``(3, H, W)`` float tensors (already normalized),
            image paths or items with a ``path`` (loaded; unreadable files are skipped and
            listed), PIL images and HxWx3 uint8 numpy arrays; files, PIL images and arrays
            are resized to ``size`` x ``size`` and ImageNet-normalized.
        settings: what is computed (:class:`~hpx_analysis.erf.settings.ErfSettings`; default
            its defaults).
        device: where to compute (default: the model's device).
        state: an accumulator to continue (images whose key it holds are not computed
            again); updated in place.
        hooks: ``progress(n)`` after every batch with the images handled, ``on_batch(state)``
            after every batch (e.g. to save the state).
        per_image: called with every batch's keys and per-image maps ``(B, H, W)`` (e.g.
            :class:`~hpx_analysis.erf.spread.PerImage`).
        **overrides: fields of :class:`~hpx_analysis.erf.settings.ErfSettings` replacing
            those of ``settings`` (``size``, ``method``, ``unit``, ``batch_size``, ...).

    Returns:
        ErfResult: the matrix and its record; with ``full_metrics`` also the unit's
        position, the theoretical receptive field and the spread across images.

    Raises:
        TypeError: an override names no setting (the settings are listed).
        ErfInputError: a model or an input of a kind the ERF cannot take (a ``TypeError``).
        ErfModelError: the model failed on the images.
        ErfError: other inputs the ERF cannot use (no usable image, mixed sizes, ...).
    """
    from .extras import MapExtras, both

    settings = ErfSettings.from_overrides(settings, **overrides)
    state = state if state is not None else ErfAccumulator()
    images = _as_items(images)
    try:
        extras = MapExtras.measure(model, images, settings) if settings.with_full_metrics else MapExtras()
        info = accumulate_erf(model, images, state, settings, device, hooks, both(per_image, extras.per_image))
    except RuntimeError as err:
        if isinstance(err, ErfError) or is_out_of_memory(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ErfModelError(f"{type(model).__name__} failed on the images: {first}") from err
    return erf_result(state, info, settings, extras.fields())


def _precision_deviation(reduced: torch.Tensor, reference: torch.Tensor) -> dict:
    """How far reduced-precision maps are from float32 maps of the same batch."""
    r, f = reduced.double(), reference.double()
    diff = (r - f).abs()
    return {
        "images": int(f.shape[0]),
        "relative_l1": float(diff.sum() / f.abs().sum().clamp_min(1e-300)),
        "max_abs_relative_to_max": float(diff.max() / f.abs().max().clamp_min(1e-300)),
        "reference": "float32 maps of the first batch",
    }
