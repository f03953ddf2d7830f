"""Where the course notebooks find the repository's folders (``data/``, ``runs/``, ``data_scripts/``,
``weights/``), wherever JupyterLab, papermill or a Colab runtime was started."""

from __future__ import annotations

import os
from pathlib import Path

import deeplab

MARKERS = ("notebooks", "data_scripts", "pyproject.toml")  # what a folder must hold to be the course's repository


class RepositoryError(FileNotFoundError):
    """The course's repository (the clone holding ``notebooks/`` and ``data_scripts/``) is not found."""


def repository(start: str | os.PathLike | None = None) -> Path:
    """The root of the course's repository: the folder above the ``deeplab`` package when it is installed from a
    clone (``pip install -e .``, as ``make setup`` does), else the first folder at or above ``start`` (the working
    directory) holding ``notebooks/``, ``data_scripts/`` and ``pyproject.toml``."""
    package_parent = Path(deeplab.__file__).resolve().parents[1]
    here = Path(start or Path.cwd()).resolve()
    for folder in (package_parent, here, *here.parents):
        if all((folder / marker).exists() for marker in MARKERS):
            return folder
    raise RepositoryError(
        f"no course repository (a folder with {', '.join(MARKERS)}) at or above {here}, nor around the deeplab "
        f"package at {package_parent}: start JupyterLab inside your clone, or install it with pip install -e CLONE"
    )


def go_to_repository(start: str | os.PathLike | None = None) -> Path:
    """Make the repository's root the working directory, so that the notebooks' relative paths (``data``,
    ``runs/course/...``) mean the same folders from wherever the kernel started; returns the root."""
    root = repository(start)
    os.chdir(root)
    return root
