"""Image listing, labels, RGB conversion, errors, bundled photographs and transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpx_analysis.io.images import (
    BUNDLED_PHOTOS,
    ImageInputError,
    ImageItem,
    ImageLoadError,
    erf_transform,
    labels_available,
    list_images,
    load_rgb,
    model_eval_transform,
)

TENCH, GOLDFISH = "n01440764", "n01443537"  # IN-1k classes 0 and 1


def _rgb(size=(16, 12), colour=(10, 200, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.fixture
def tree(tmp_path) -> Path:
    """An ImageFolder tree with synset class folders and awkward files."""
    root = tmp_path / "val"
    tench, goldfish = root / TENCH, root / GOLDFISH
    (tench / "sub").mkdir(parents=True)
    goldfish.mkdir()
    _rgb().save(goldfish / "b.png")
    _rgb().save(tench / "a.jpg")
    Image.new("L", (20, 10), 77).save(tench / "c_gray.png")
    Image.new("RGBA", (9, 9), (1, 2, 3, 0)).save(tench / "d_rgba.png")
    sixteen = np.array([[0, 257 * 100, 65535] * 4] * 10, dtype=np.uint16)
    Image.fromarray(sixteen).save(tench / "e16.png")
    _rgb().save(tench / "sub" / "f.PNG")
    (tench / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (2, 2)).save(tench / "tiny.png")
    (tench / "notes.txt").write_text("not an image")
    _rgb().save(tench / ".hidden.png")
    return root


def test_tree_is_listed_recursively_in_sorted_order_with_labels(tree):
    items = list_images(tree)
    relative = [Path(item.path).relative_to(tree).as_posix() for item in items]
    assert relative == [
        f"{TENCH}/a.jpg",
        f"{TENCH}/c_gray.png",
        f"{TENCH}/corrupt.jpg",
        f"{TENCH}/d_rgba.png",
        f"{TENCH}/e16.png",
        f"{TENCH}/sub/f.PNG",
        f"{TENCH}/tiny.png",
        f"{GOLDFISH}/b.png",
    ]
    assert [item.label for item in items] == [0] * 7 + [1]
    assert {item.class_name for item in items} == {TENCH, GOLDFISH}
    assert labels_available(items) == (True, "")
    assert list_images(tree, num_images=3) == items[:3]
    assert list_images(str(tree), num_images=100) == items


def test_flat_folder_has_no_labels(tmp_path):
    for name in ("z.png", "a.png", "m.jpg"):
        _rgb().save(tmp_path / name)
    items = list_images(tmp_path)
    assert [Path(item.path).name for item in items] == ["a.png", "m.jpg", "z.png"]
    assert all(item.label is None and item.class_name is None for item in items)
    ok, reason = labels_available(items)
    assert not ok and "flat folder" in reason


def test_non_synset_class_folders_have_no_labels(tmp_path):
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        _rgb().save(tmp_path / cls / "x.png")
    items = list_images(tmp_path)
    assert [item.class_name for item in items] == ["cats", "dogs"]
    ok, reason = labels_available(items)
    assert not ok and "not IN-1k synset ids" in reason and "'cats'" in reason


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p / "nowhere", "not found"),
        (lambda p: (p / "file.png").write_bytes(b"x") and p / "file.png", "not a folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no image files"),
    ],
)
def test_bad_folders_raise_input_error(tmp_path, make, fragment):
    with pytest.raises(ImageInputError, match=fragment):
        list_images(make(tmp_path))


def test_num_images_must_be_positive(tree):
    with pytest.raises(ImageInputError, match="at least 1"):
        list_images(tree, num_images=0)


def test_conversions_to_8bit_rgb(tree):
    tench = tree / TENCH
    gray = load_rgb(str(tench / "c_gray.png"))
    assert gray.mode == "RGB" and gray.size == (20, 10)
    assert np.all(np.asarray(gray) == 77)
    rgba = load_rgb(str(tench / "d_rgba.png"))
    assert rgba.mode == "RGB" and rgba.getpixel((4, 4)) == (1, 2, 3)
    sixteen = np.asarray(load_rgb(str(tench / "e16.png")))
    assert sixteen.dtype == np.uint8 and sixteen.shape == (10, 12, 3)
    assert sixteen[0, :3, 0].tolist() == [0, 100, 255]
    assert np.all(sixteen[..., 0] == sixteen[..., 2])


def test_palette_and_cmyk_convert(tmp_path):
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 200, 40, 90])
    palette.save(tmp_path / "p.png")
    assert load_rgb(str(tmp_path / "p.png")).getpixel((0, 0)) == (200, 40, 90)
    Image.new("CMYK", (10, 10), (0, 0, 0, 0)).save(tmp_path / "c.tiff")
    cmyk = load_rgb(str(tmp_path / "c.tiff"))
    assert cmyk.mode == "RGB" and cmyk.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("corrupt.jpg", "unreadable"),
        ("tiny.png", "too small"),
        ("missing.png", "not found"),
    ],
)
def test_unusable_files_raise_load_error(tree, name, fragment):
    with pytest.raises(ImageLoadError, match=fragment):
        load_rgb(str(tree / TENCH / name))


def test_bundled_photographs_are_real_colour_images():
    items = list_images(None)
    assert len(items) == len(BUNDLED_PHOTOS) >= 8
    assert [Path(item.path).name for item in items] == list(BUNDLED_PHOTOS)
    assert all(isinstance(item, ImageItem) and item.label is None for item in items)
    for item in items:
        img = np.asarray(load_rgb(item.path)).astype(np.int16)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 256
        assert np.abs(img[..., 0] - img[..., 1]).mean() > 1.0  # colour, not gray
    ok, reason = labels_available(items)
    assert not ok and "bundled" in reason
    assert list_images(None, num_images=2) == items[:2]


def test_erf_transform_resizes_and_normalises():
    transform = erf_transform(32)
    out = transform(Image.new("RGB", (50, 40), (128, 64, 255)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for channel, value in enumerate((128, 64, 255)):
        expected = (value / 255.0 - mean[channel]) / std[channel]
        assert torch.allclose(out[channel], torch.full((32, 32), expected), atol=1e-5)


def test_model_eval_transform_follows_the_model_config():
    import timm

    import hpx_analysis  # noqa: F401

    model = timm.create_model("resnet18")
    size = model.pretrained_cfg["input_size"][-1]
    image = Image.new("RGB", (300, 200), (0, 0, 0))
    assert model_eval_transform(model)(image).shape == (3, size, size)
    transform = model_eval_transform(model, crop_pct=0.5)
    assert transform.transforms[0].size == int(size / 0.5)
    assert transform(image).shape == (3, size, size)
    with pytest.raises(ValueError):
        model_eval_transform(model, crop_pct=1.5)
