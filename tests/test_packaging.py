"""Packaging: the wheel holds every package by its installed name (a new subpackage included
without an entry anywhere) and the probe weights; the top-level folders ``models/`` and
``cli/`` cannot be imported a second time under their folder names; a checkout that was not
installed works, and an incomplete install says how to install instead of failing with a
circular import."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# top-level folder -> the package it is installed as
INSTALLED_AS = {"hpx_analysis": "hpx_analysis", "models": "hpx_analysis.models", "cli": "hpx_analysis.cli"}
WEIGHTS = ROOT / "hpx_analysis" / "probe" / "weights"
WEIGHT_SUFFIXES = {".safetensors", ".json", ".csv"}
# what the build needs from the checkout
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", *INSTALLED_AS)


def _python(code: str, cwd: Path, *, env: dict | None = None, flags: tuple[str, ...] = ()):
    return subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _packages_in(folders: Path) -> set[str]:
    """Installed names of the packages (folders with an __init__.py) in a source tree."""
    names = set()
    for folder, package in INSTALLED_AS.items():
        for init in (folders / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(folders / folder).parts
            if "__pycache__" not in parts:
                names.add(".".join((package, *parts)))
    return names


def _packages_in_wheel(names: list[str]) -> set[str]:
    return {name.rpartition("/")[0].replace("/", ".") for name in names if name.endswith("/__init__.py")}


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> tuple[Path, list[str]]:
    """A wheel built from a copy of the checkout with one new subpackage under hpx_analysis/
    and one under models/ (which no list names): (the copy, the wheel's file names)."""
    src = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    for new in ("hpx_analysis/added_subpackage", "models/added_subpackage"):
        (src / new).mkdir()
        (src / new / "__init__.py").write_text('"""A package that no list names."""\n')
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("hpx_analysis-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return src, archive.namelist()


def test_every_source_folder_is_a_package():
    """A folder of modules without an __init__.py would be left out of the wheel."""
    for folder in INSTALLED_AS:
        for module in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in module.parts:
                assert (module.parent / "__init__.py").is_file(), f"{module.parent} has modules but no __init__.py"


@pytest.mark.slow
def test_wheel_holds_every_package_by_its_installed_name(built_wheel):
    src, names = built_wheel
    expected = _packages_in(src)
    assert {"hpx_analysis.added_subpackage", "hpx_analysis.models.added_subpackage"} <= expected
    assert {"hpx_analysis.models.mixers", "hpx_analysis.models.fast", "hpx_analysis.cli"} <= expected
    assert _packages_in_wheel(names) == expected
    # every module of every package, and nothing under the folder names
    for folder, package in INSTALLED_AS.items():
        for module in (src / folder).rglob("*.py"):
            relative = module.relative_to(src / folder).as_posix()
            assert f"{package.replace('.', '/')}/{relative}" in names, relative
    assert not [n for n in names if n.split("/")[0] in ("models", "cli", "tests")]


@pytest.mark.slow
def test_wheel_holds_the_probe_weights_the_command_and_the_type_marker(built_wheel):
    _, names = built_wheel
    weights = sorted(p.name for p in WEIGHTS.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    assert any(w.endswith(".safetensors") for w in weights)
    for weight in weights:
        assert f"hpx_analysis/probe/weights/{weight}" in names
    assert [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "hpx_analysis/py.typed" in names  # type checkers read the inline types


@pytest.mark.parametrize(
    ("statement", "package"),
    [
        ("import models", "hpx_analysis.models"),
        ("import models.metaformer", "hpx_analysis.models"),
        ("from models import fast", "hpx_analysis.models"),
        ("import cli", "hpx_analysis.cli"),
        ("import cli.main", "hpx_analysis.cli"),
    ],
)
def test_folder_names_cannot_be_imported_from_the_repository_root(statement, package):
    result = _python(statement, ROOT)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: import {package}, not ")
    assert "Overwriting" not in result.stderr


@pytest.mark.slow
def test_folder_names_leave_the_installed_registry_alone():
    """After the real package is imported, ``import models`` from the repository root neither
    registers a model again nor creates a second fast-path switch."""
    code = (
        "import warnings, sys, timm\n"
        "import hpx_analysis.models as real\n"
        "names = real.PUBLISHED + real.EXTRA + real.PROBES\n"
        "before = {n: timm.models.model_entrypoint(n) for n in names}\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        "    import models\n"
        "except ImportError as err:\n"
        "    print('refused:', err)\n"
        "after = {n: timm.models.model_entrypoint(n) for n in names}\n"
        "assert before == after\n"
        "assert 'models' not in sys.modules and 'models.fast' not in sys.modules\n"
        "assert real.__file__.endswith('models/__init__.py')\n"
    )
    result = _python(code, ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: import hpx_analysis.models, not models")


def _without_install(pythonpath: list[str]) -> dict:
    """An environment in which ``python -S`` sees ``pythonpath`` and the dependencies but no
    install of hpx_analysis (site-packages without their .pth files, so no editable finder)."""
    site_dirs = [p for p in sys.path if p.endswith("site-packages")]
    return {"PYTHONPATH": ":".join([*pythonpath, *site_dirs]), "PATH": "/usr/bin:/bin"}


@pytest.mark.slow
def test_a_checkout_on_pythonpath_works_without_install(tmp_path):
    """The checkout on PYTHONPATH, no install: the folders models/ and cli/ are imported as
    hpx_analysis.models and hpx_analysis.cli (the same files, registered once)."""
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "import timm, hpx_analysis.models.fast, hpx_analysis.cli.common\n"
        "import hpx_analysis.models as m, hpx_analysis.cli as c\n"
        "print(m.__file__); print(c.__file__); print(timm.is_model('hpx_former_s18'))\n"
    )
    result = _python(code, tmp_path, env=_without_install([str(ROOT)]), flags=("-S",))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(ROOT / "models" / "__init__.py"), str(ROOT / "cli" / "__init__.py"), "True"]


def test_an_incomplete_install_says_how_to_install(tmp_path):
    """hpx_analysis without its models/ and cli/ next to it (not a checkout): one ImportError
    that says how to install, not a circular-import error."""
    shutil.copytree(ROOT / "hpx_analysis", tmp_path / "hpx_analysis", ignore=shutil.ignore_patterns("__pycache__"))
    result = _python("import hpx_analysis", tmp_path, env=_without_install([str(tmp_path)]), flags=("-S",))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: hpx_analysis is incompletely installed")
    assert "pip install -e ." in last
    assert "circular" not in result.stderr
