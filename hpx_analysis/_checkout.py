"""Finding ``hpx_analysis.models`` and ``hpx_analysis.cli`` when the package is imported from a
checkout that the interpreter does not see as installed.

The two subpackages live in the checkout's top-level folders ``models/`` and ``cli/``; an
install maps them into the namespace. When ``hpx_analysis`` is imported straight from a
checkout (on ``PYTHONPATH``, or as the current folder shadowing a non-editable or strict
editable install), :func:`map_checkout_folders` maps the same folders, so the same files are
imported under the same names. Anywhere else a missing subpackage is an incomplete install.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from importlib.util import find_spec
from pathlib import Path

# subpackages that live in the checkout's top-level folders of the same name
MAPPED_FOLDERS = ("models", "cli")
_CHECKOUT_MARKERS = ("pyproject.toml", "models/__init__.py", "cli/__init__.py")


class CheckoutFolders(MetaPathFinder):
    """Finds ``PACKAGE.models`` and ``PACKAGE.cli`` in the checkout's top-level folders (their
    own submodules are then found through the package's ``__path__``)."""

    def __init__(self, package: str, root: Path):
        self.root = root
        self.names = {f"{package}.{folder}" for folder in MAPPED_FOLDERS}

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        """The spec of a mapped subpackage, or None for every other name.

        Args:
            fullname: the module's full dotted name.
            path: the parent package's search path (unused: the folder is fixed).
            target: unused (module reloading).

        Returns:
            A spec named ``fullname`` for the checkout folder, or None.
        """
        if fullname not in self.names:
            return None
        return PathFinder.find_spec(fullname, [str(self.root)])  # looks for the last name part in root


def map_checkout_folders(package: str, package_dir: Path) -> None:
    """Make ``package.models`` and ``package.cli`` importable when they are not already.

    Args:
        package: the package's name (``hpx_analysis``).
        package_dir: the folder its ``__init__.py`` was imported from.

    Raises:
        ImportError: the subpackages are missing and ``package_dir`` is not in a checkout
            (an incomplete install); the message says how to install.
    """
    if find_spec(f"{package}.models") is not None:
        return
    root = package_dir.parent
    if not all((root / marker).is_file() for marker in _CHECKOUT_MARKERS):
        raise ImportError(
            f"{package} is incompletely installed ({package}.models is missing next to {package_dir}); "
            "reinstall it, or run `pip install -e .` in a checkout of the repository"
        )
    if not any(isinstance(finder, CheckoutFolders) and finder.root == root for finder in sys.meta_path):
        sys.meta_path.append(CheckoutFolders(package, root))
