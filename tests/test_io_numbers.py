"""The numbers the input functions take (counts, sizes, threads) are whole numbers in range or
a clear error, never truncated; a list of images says whether the caller asked for more
images than exist."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import hpx_analysis  # noqa: F401  (registers the models)
from hpx_analysis.io.batches import ImageBatches
from hpx_analysis.io.checks import whole_number
from hpx_analysis.io.devices import device_description
from hpx_analysis.io.images import (
    BUNDLED_PHOTOS,
    ImageInputError,
    ImageItem,
    ImageList,
    erf_transform,
    list_images,
    model_eval_transform,
)


@pytest.fixture
def folder(tmp_path):
    """A flat folder of three 16 x 20 photographs of noise."""
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("value", [1.5, 2.0, True, "3", None, torch.tensor(2.5)])
def test_whole_number_refuses_what_int_would_coerce(value):
    with pytest.raises(TypeError, match="n must be a whole number"):
        whole_number(value, "n")


def test_whole_number_bounds_and_numpy_integers():
    assert whole_number(np.int64(7), "n", minimum=1) == 7 and type(whole_number(np.int64(7), "n")) is int
    assert whole_number(-3, "n") == -3
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        whole_number(0, "n", minimum=1)
    with pytest.raises(ValueError, match="n must be at most 4, got 5"):
        whole_number(5, "n", maximum=4)


@pytest.mark.parametrize("value", [1.5, 2.0, True])
def test_list_images_refuses_a_number_of_images_that_is_not_whole(folder, value):
    with pytest.raises(TypeError, match="num_images must be a whole number"):
        list_images(folder, value)
    with pytest.raises(TypeError, match="default_num must be a whole number"):
        list_images(folder, default_num=value)


def test_list_images_refuses_fewer_than_one(folder):
    with pytest.raises(ImageInputError, match="at least 1"):
        list_images(folder, 0)
    with pytest.raises(ImageInputError, match="at least 1"):
        list_images(folder, default_num=-2)


def test_shortfall_only_when_the_caller_asked_for_a_number(folder):
    asked = list_images(folder, 50)
    assert (len(asked), asked.requested, asked.available) == (3, 50, 3)
    assert asked.shortfall() == "only 3 image(s) available, asked for 50"
    default = list_images(folder, default_num=50)  # the command's own number, not the user's
    assert (len(default), default.requested, default.available) == (3, None, 3)
    assert default.shortfall() == ""
    cut = list_images(folder, 2, default_num=50)  # an explicit number wins over the default
    assert [item.path for item in cut] == [str(folder / "0.png"), str(folder / "1.png")]
    assert (cut.requested, cut.available, cut.shortfall()) == (2, 3, "")
    assert len(list_images(folder, default_num=1)) == 1
    assert list_images(folder).shortfall() == ""
    bundled = list_images(None, 50)
    assert bundled.available == len(bundled) <= len(BUNDLED_PHOTOS)
    assert bundled.shortfall() == f"only {len(bundled)} image(s) available, asked for 50"


def test_image_list_defaults():
    items = ImageList([ImageItem("a.png"), ImageItem("b.png")])
    assert (items.requested, items.available, items.skipped, items.shortfall()) == (None, 2, [], "")


def test_batches_refuse_a_batch_size_that_is_not_whole(folder):
    items = list_images(folder)
    with pytest.raises(TypeError, match="batch_size must be a whole number"):
        ImageBatches(items, erf_transform(8), batch_size=2.5)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        ImageBatches(items, erf_transform(8), batch_size=0)
    sizes = [x.shape[0] for x, _ in ImageBatches(items, erf_transform(8), batch_size=np.int64(2))]
    assert sizes == [2, 1]


@pytest.mark.parametrize("size, error", [(32.7, TypeError), (0, ValueError), (True, TypeError)])
def test_transforms_refuse_sizes_they_would_truncate(size, error):
    with pytest.raises(error, match="size must be"):
        erf_transform(size)
    model = timm.create_model("hpx_former_s4")
    with pytest.raises(error, match="size must be"):
        model_eval_transform(model, size=size)


def test_eval_transform_checks_crop_pct_and_sizes_the_output(folder):
    model = timm.create_model("hpx_former_s4")
    with pytest.raises(TypeError, match="crop_pct must be a number"):
        model_eval_transform(model, crop_pct="0.5")
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\]"):
        model_eval_transform(model, crop_pct=float("nan"))
    image = Image.open(folder / "0.png").convert("RGB")
    assert model_eval_transform(model, crop_pct=1, size=np.int64(24))(image).shape == (3, 24, 24)
    assert erf_transform(np.int64(12))(image).shape == (3, 12, 12)


def test_device_description_checks_threads():
    assert device_description("cpu", threads=3).endswith(", 3 threads")
    with pytest.raises(TypeError, match="threads must be a whole number"):
        device_description("cpu", threads=2.5)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        device_description("cpu", threads=0)
