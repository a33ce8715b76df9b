"""Image input shared by the analyses: listing image folders, safe RGB loading, transforms.

Without a folder, the analyses use real colour photographs that ship inside the
scikit-image wheel (astronaut, chelsea, coffee, ...), never synthetic noise.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .checks import whole_number

__all__ = [
    "ImageItem",
    "ImageList",
    "ImageInputError",
    "ImageLoadError",
    "IMAGE_EXTENSIONS",
    "BUNDLED_PHOTOS",
    "MIN_SIDE",
    "bundled_photo_dir",
    "imagenet_synset_index",
    "list_images",
    "labels_available",
    "load_rgb",
    "erf_transform",
    "model_eval_transform",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm")
# Colour photographs of real scenes shipped with scikit-image (its synthetic, binary and
# grayscale samples are left out).
BUNDLED_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
)
MIN_SIDE = 8


@dataclass(frozen=True)
class ImageItem:
    """One input image; ``label`` is the IN-1k class index when its class folder is a synset id."""

    path: str
    label: int | None = None
    class_name: str | None = None


class ImageList(list):
    """The images :func:`list_images` found (a list of :class:`ImageItem`).

    Args:
        items: the images, in order.
        skipped: ``(path, reason)`` for every folder or file that could not be listed
            (unreadable folders, broken links, links that loop back), so nothing disappears
            silently.
        requested: the number of images the caller asked for, or None when it asked for no
            number (all images, or the command's own default).
        available: how many images the source holds (before the list was cut); defaults to
            ``len(items)``.
    """

    def __init__(
        self,
        items: Iterable[ImageItem] = (),
        skipped: Iterable[tuple[str, str]] = (),
        requested: int | None = None,
        available: int | None = None,
    ):
        super().__init__(items)
        self.skipped = list(skipped)
        self.requested = requested
        self.available = len(self) if available is None else available

    def shortfall(self) -> str:
        """A note for the user when fewer images exist than they asked for.

        Returns:
            str: ``"only N image(s) available, asked for M"`` when the caller asked for a
            number (``requested``) and the source holds fewer, else ``""`` (nothing asked
            for, or enough images: a command's own default is never reported).
        """
        if self.requested is None or self.available >= self.requested:
            return ""
        return f"only {self.available} image(s) available, asked for {self.requested}"


class ImageInputError(Exception):
    """The image input as a whole is unusable (missing folder, no images, ...)."""


class ImageLoadError(Exception):
    """One image file could not be used; the message is the reason."""


def bundled_photo_dir() -> Path:
    """The folder of scikit-image's sample images.

    Returns:
        Path: the folder that holds :data:`BUNDLED_PHOTOS`.
    """
    import skimage.data

    return Path(skimage.data.__file__).parent


@lru_cache(maxsize=1)
def imagenet_synset_index() -> dict[str, int]:
    """The IN-1k class index of every synset id.

    Returns:
        dict: synset id (``n01440764``) -> class index in the standard IN-1k order (timm's
        ImageNet info).
    """
    from timm.data import ImageNetInfo

    return {synset: i for i, synset in enumerate(ImageNetInfo().label_names())}


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _bundled_items() -> list[ImageItem]:
    root = bundled_photo_dir()
    items = [ImageItem(str(root / name)) for name in BUNDLED_PHOTOS if (root / name).is_file()]
    if not items:
        raise ImageInputError(
            f"the bundled photographs are missing from {root} (is scikit-image installed completely?)"
        )
    return items


def _find_image_files(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``root``, following symbolic links to files and folders (ImageNet
    val trees are often link farms); a folder reached twice (a link loop, or two links to one
    folder) is listed once. Unreadable folders and broken links are returned as skipped."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[Path, Path] = {}

    def walk(folder: Path) -> None:
        try:
            real = folder.resolve(strict=True)
        except (OSError, RuntimeError) as err:
            skipped.append((str(folder), f"unreadable folder ({getattr(err, 'strerror', None) or err})"))
            return
        if real in seen:
            skipped.append((str(folder), f"folder already listed as {seen[real]} (symbolic link loop or second link)"))
            return
        seen[real] = folder
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as err:
            skipped.append((str(folder), f"unreadable folder ({err.strerror or err})"))
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError as err:
                skipped.append((str(path), f"unreadable entry ({err.strerror or err})"))
                continue
            if is_dir:
                walk(path)
            elif not is_file and entry.is_symlink():
                skipped.append((str(path), "broken symbolic link"))  # to a folder or an image
            elif entry.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            elif is_file:
                files.append(path)
            else:
                skipped.append((str(path), "not a regular file"))

    walk(root)
    files.sort(key=lambda p: p.relative_to(root).parts)
    return files, skipped


def list_images(
    images_dir: str | Path | None, num_images: int | None = None, *, default_num: int | None = None
) -> ImageList:
    """The images of a folder, or the bundled photographs.

    Args:
        images_dir: a folder (an ImageFolder tree or flat; searched recursively, sorted,
            symbolic links followed), or None for the photographs bundled with scikit-image.
        num_images: how many images the caller asked for: the first ``num_images`` (None:
            all, or ``default_num``). A whole number of at least 1.
        default_num: the number a command uses when the caller asked for none (None: all);
            a source with fewer images is then not a shortfall (see :meth:`ImageList.shortfall`).

    Returns:
        ImageList: the images; ``skipped`` lists what could not be listed, ``requested`` is
        ``num_images`` and ``available`` the number the source holds.

    Raises:
        ImageInputError: the folder is missing, not a folder or holds no images, or a number
            is below 1.
        TypeError: a number that is not a whole number.
    """
    for name, value in (("num_images", num_images), ("default_num", default_num)):
        if value is not None and whole_number(value, name) < 1:
            raise ImageInputError(f"the number of images must be at least 1, got {value} ({name})")
    skipped: list[tuple[str, str]] = []
    if images_dir is None:
        items = _bundled_items()
    else:
        items, skipped = _folder_items(Path(images_dir).expanduser())
    limit = num_images if num_images is not None else default_num
    return ImageList(items if limit is None else items[:limit], skipped, requested=num_images, available=len(items))


def _folder_items(root: Path) -> tuple[list[ImageItem], list[tuple[str, str]]]:
    """The images under ``root`` with their IN-1k labels, and what was skipped."""
    if not root.exists():
        raise ImageInputError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ImageInputError(f"not a folder: {root} (expected a folder of images)")
    files, skipped = _find_image_files(root)
    if not files:
        why = f" ({len(skipped)} skipped: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ImageInputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root}{why}")
    synsets = imagenet_synset_index()
    items = []
    for path in files:
        parts = path.relative_to(root).parts
        class_name = parts[0] if len(parts) > 1 else None
        items.append(ImageItem(str(path), synsets.get(class_name) if class_name else None, class_name))
    return items, skipped


def labels_available(items: Iterable[ImageItem]) -> tuple[bool, str]:
    """Whether images carry IN-1k labels (for accuracies).

    Args:
        items: the images.

    Returns:
        tuple: ``(True, "")`` when every item has an IN-1k label, else ``(False, why not)``.
    """
    items = list(items)
    if not items:
        return False, "no images"
    if all(item.label is not None for item in items):
        return True, ""
    bundled = str(bundled_photo_dir())
    if all(item.class_name is None and item.path.startswith(bundled) for item in items):
        return False, "the bundled photographs have no ImageNet labels"
    if all(item.class_name is None for item in items):
        return False, "images are in a flat folder (no class subfolders)"
    unlabeled = sorted({item.class_name or "(top level)" for item in items if item.label is None})
    shown = ", ".join(repr(c) for c in unlabeled[:3]) + (", ..." if len(unlabeled) > 3 else "")
    return False, f"class folders are not IN-1k synset ids (e.g. {shown})"


def _to_uint8(array: np.ndarray, bit_depth: int) -> np.ndarray:
    scale = (2**bit_depth - 1) / 255.0
    return np.clip(np.rint(array.astype(np.float64) / scale), 0, 255).astype(np.uint8)


def _as_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(img)
        depth = 16 if mode.startswith("I;16") or array.max(initial=0) > 255 else 8
        return Image.fromarray(_to_uint8(np.clip(array, 0, 2**depth - 1), depth)).convert("RGB")
    if mode == "F":
        array = np.nan_to_num(np.asarray(img, dtype=np.float64))
        if array.max(initial=0.0) <= 1.0:
            array = array * 255.0
        return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_rgb(path: str) -> Image.Image:
    """Read an image as 8-bit RGB (grayscale, alpha, palette, 16-bit and CMYK are converted).

    Args:
        path: the image file.

    Returns:
        PIL.Image.Image: the RGB image, fully loaded.

    Raises:
        ImageLoadError: a missing, unreadable, corrupt, oversized (decompression bomb) or tiny
            (< 8 px side) file; the message is the reason.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.seek(0)
                img.load()
                rgb = _as_rgb(img)
                rgb.load()
    except FileNotFoundError:
        raise ImageLoadError("file not found") from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        EOFError,
    ) as err:
        raise ImageLoadError(f"unreadable image ({type(err).__name__}: {err})") from None
    if min(rgb.size) < MIN_SIDE:
        raise ImageLoadError(
            f"image too small ({rgb.size[0]}x{rgb.size[1]} px; at least {MIN_SIDE} px per side needed)"
        )
    return rgb


def erf_transform(size: int) -> Callable:
    """The ERF protocol's input (RepLKNet): bicubic resize to size x size, ImageNet mean/std.

    Args:
        size: the side of the square input in pixels (a whole number of at least 1).

    Returns:
        Callable: PIL image -> normalised ``(3, size, size)`` float tensor.

    Raises:
        TypeError: ``size`` is not a whole number.
        ValueError: ``size`` is below 1.
    """
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from torchvision import transforms

    size = whole_number(size, "size", minimum=1)
    return transforms.Compose(
        [
            transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        ]
    )


def model_eval_transform(model, crop_pct: float | None = None, size: int | None = None) -> Callable:
    """The model's own evaluation transform from its timm data config.

    Args:
        model: a timm model (its pretrained config gives the resize, crop and normalisation).
        crop_pct: another centre-crop fraction in (0, 1] (None: the model's own).
        size: another input side in pixels, a whole number of at least 1 (None: the model's own).

    Returns:
        Callable: PIL image -> normalised float tensor.

    Raises:
        TypeError: ``crop_pct`` is not a real number or ``size`` not a whole number.
        ValueError: ``crop_pct`` outside (0, 1] or ``size`` below 1.
    """
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config(model=model)
    if size is not None:
        size = whole_number(size, "size", minimum=1)
        config["input_size"] = (3, size, size)
    if crop_pct is not None:
        if isinstance(crop_pct, bool) or not isinstance(crop_pct, numbers.Real):
            raise TypeError(f"crop_pct must be a number in (0, 1], got {crop_pct!r} of type {type(crop_pct).__name__}")
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        config["crop_pct"] = float(crop_pct)
    return create_transform(**config, is_training=False)
