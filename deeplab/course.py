"""What the course notebooks share: where the repository's folders are (``data/``, ``runs/``, ``data_scripts/``,
``weights/``) wherever JupyterLab, papermill or a Colab runtime was started, and whether a run folder already holds
the finished run a notebook would train."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import deeplab
from deeplab.config import Config, config_differences
from deeplab.engine.runlog import FINAL_METRICS

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


def go_to_repository(start: str | os.PathLike | None = None) -> None:
    """Make the repository's root (:func:`repository`) the working directory, so that the notebooks' relative paths
    (``data``, ``runs/course/...``) mean the same folders from wherever the kernel started."""
    os.chdir(repository(start))


def finished_run(run_dir: str | os.PathLike, config: Config) -> dict[str, Any] | None:
    """The final metrics of the run in ``run_dir`` when it is a finished run of exactly ``config`` (its
    ``metrics.json`` written at the end, its ``config.json`` equal to ``config``), else ``None``: a notebook then
    trains it. Notebooks 00, 07, 08 and 10 share the course's toy run this way, so it is trained once."""
    metrics, saved = Path(run_dir, FINAL_METRICS), Path(run_dir, "config.json")
    if not (metrics.is_file() and saved.is_file()):
        return None
    if config_differences(json.loads(saved.read_text()), dataclasses.asdict(config)):
        return None
    return json.loads(metrics.read_text())
