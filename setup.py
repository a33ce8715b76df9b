"""Where the packages come from (the rest of the set-up is in pyproject.toml).

The top-level folders ``models/`` and ``cli/`` are installed as ``hpx_analysis.models`` and
``hpx_analysis.cli``. The package list is derived from the folders, so the wheel holds every
package under ``hpx_analysis/``, ``models/`` and ``cli/`` (a folder with an ``__init__.py``)
without an entry here.
"""

from setuptools import find_packages, setup

# top-level folder -> the package it is installed as
MAPPED_FOLDERS = {"models": "hpx_analysis.models", "cli": "hpx_analysis.cli"}


def package_list() -> list[str]:
    """Every package of the distribution, by its installed name."""
    packages = find_packages(include=["hpx_analysis", "hpx_analysis.*"])
    for folder, package in MAPPED_FOLDERS.items():
        packages += [package] + [f"{package}.{sub}" for sub in find_packages(where=folder)]
    return packages


setup(packages=package_list(), package_dir={package: folder for folder, package in MAPPED_FOLDERS.items()})
