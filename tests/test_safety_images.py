"""Issue 16, item 4: image discovery follows symbolic links (ImageNet val link farms), with loop
protection, and lists what it could not read as skipped instead of dropping it silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import hpx_analysis.io.images as images_module
from hpx_analysis.cli.main import app
from hpx_analysis.io.images import ImageInputError, list_images

CLASSES = {"n01440764": 0, "n01443537": 1}  # IN-1k class indices of the first two synsets


def write_tree(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for synset in CLASSES:
        (root / synset).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / synset / f"{i}.png")
    return root


def link_farm(tmp_path: Path) -> Path:
    """``farm/<synset>`` are symbolic links to the class folders of a real tree elsewhere."""
    real = write_tree(tmp_path / "storage")
    farm = tmp_path / "farm"
    farm.mkdir()
    for synset in CLASSES:
        (farm / synset).symlink_to(real / synset, target_is_directory=True)
    return farm


def test_symlinked_class_folders_are_followed_and_labelled(tmp_path):
    farm = link_farm(tmp_path)
    items = list_images(farm)
    assert [Path(i.path).relative_to(farm).as_posix() for i in items] == [
        "n01440764/0.png",
        "n01440764/1.png",
        "n01443537/0.png",
        "n01443537/1.png",
    ]
    assert [i.label for i in items] == [0, 0, 1, 1] and items.skipped == []


def test_link_loops_and_broken_links_are_listed_not_followed_forever(tmp_path):
    farm = link_farm(tmp_path)
    (farm / "n01440764" / "loop").symlink_to(farm, target_is_directory=True)
    (farm / "dangling.png").symlink_to(tmp_path / "gone.png")
    items = list_images(farm)
    assert len(items) == 4
    reasons = dict(items.skipped)
    assert "symbolic link loop" in reasons[str(farm / "n01440764" / "loop")]
    assert reasons[str(farm / "dangling.png")] == "broken symbolic link"


def test_an_unreadable_folder_is_listed_as_skipped(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree")
    hidden = root / "n01443537"
    if os.geteuid() == 0:  # root reads through permission bits: refuse the listing instead
        real_scandir = os.scandir

        def scandir(path):
            if Path(path) == hidden:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(images_module.os, "scandir", scandir)
    else:
        hidden.chmod(0)
    try:
        items = list_images(root)
    finally:
        hidden.chmod(0o755)
    assert len(items) == 2
    assert items.skipped == [(str(hidden), "unreadable folder (Permission denied)")]
    assert list_images(root, 1).skipped == items.skipped  # kept when the list is cut


def test_nothing_readable_says_why(tmp_path):
    (tmp_path / "only").symlink_to(tmp_path / "missing-folder", target_is_directory=True)
    with pytest.raises(ImageInputError, match="no image files .*1 skipped.*broken symbolic link"):
        list_images(tmp_path)


def test_erf_record_lists_the_skipped_folder(tmp_path):
    farm = link_farm(tmp_path)
    (farm / "n01440764" / "loop").symlink_to(farm, target_is_directory=True)
    out = tmp_path / "out"
    args = ["erf", "-m", "hpx_s4=random", "--size", "64", "--device", "cpu", "--num-images", "1"]
    r = CliRunner().invoke(app, [*args, "--images", str(farm), "--out", str(out)])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "erf_hpx_former_s4.json").read_text())
    assert meta["num_images"] == 1
    assert [s["key"] for s in meta["images_skipped"]] == [str(farm / "n01440764" / "loop")]
