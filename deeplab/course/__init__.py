"""What the course notebooks share: where the repository's folders are (``data/``, ``runs/``, ``data_scripts/``,
``weights/``) wherever JupyterLab, papermill or a Colab runtime was started, whether a run folder already holds
the finished run a notebook would train, the sample photographs, and the reference's released model."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import deeplab
from deeplab.config import Config, config_differences
from deeplab.engine.runlog import FINAL_METRICS
from deeplab.models.weights import CheckpointError
from deeplab.models.zoo import RELEASED
from deeplab.weights.released import RELEASED_NAME, resolve_checkpoint

if TYPE_CHECKING:  # deeplab.segmenter imports tqdm (the engine), which warns in a notebook without ipywidgets
    from deeplab.segmenter import Trained

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


class CourseRunError(RuntimeError):
    """A run folder the notebooks share holds a run of another config than the one a notebook asks for."""


def finished_run(run_dir: str | os.PathLike, config: Config) -> dict[str, Any] | None:
    """The final metrics of the run in ``run_dir`` when it is a finished run of exactly ``config`` (its
    ``metrics.json`` written at the end, its ``config.json`` equal to ``config``); ``None`` when the folder holds no
    run of another config and none finished: a notebook then trains it. A run of another config (finished or not)
    is a :class:`CourseRunError`, in one line naming what differs: notebooks 00, 07, 08, 10 and 11 share the
    course's toy run this way, so it is trained once and never replaced without being asked to (notebook 07's
    ``retrain``)."""
    metrics, saved = Path(run_dir, FINAL_METRICS), Path(run_dir, "config.json")
    if saved.is_file() and (changed := config_differences(json.loads(saved.read_text()), dataclasses.asdict(config))):
        raise CourseRunError(
            f"{run_dir} holds a run of another config ({changed}): to train this one there on purpose, run notebook "
            f"07 with retrain = True (the earlier run moves to {Path(run_dir, 'previous')}), or choose another run_dir"
        )
    return json.loads(metrics.read_text()) if metrics.is_file() and saved.is_file() else None


@dataclasses.dataclass(frozen=True)
class Photo:
    """A photograph that ships with scikit-image (``skimage.data.<name>()``), and who took it under what licence."""

    name: str
    caption: str
    credit: str


PHOTOS = (
    Photo("astronaut", "the astronaut Eileen Collins", "NASA, public domain"),
    Photo("chelsea", "Chelsea the cat", "Stéfan van der Walt, CC0"),
    Photo("coffee", "a cup of coffee", "Rachel Michetti, CC0"),
)  # each in the scikit-image wheel itself: nothing to download


def photo(name: str) -> torch.Tensor:
    """The scikit-image sample photograph ``name`` (one of :data:`PHOTOS`) as a ``(3, H, W)`` uint8 RGB tensor."""
    import skimage.data  # imported here: only the photo cells need scikit-image

    if name not in {known.name for known in PHOTOS}:
        raise ValueError(f"no course photo {name!r}: choose one of {', '.join(known.name for known in PHOTOS)}")
    return torch.from_numpy(getattr(skimage.data, name)().copy()).permute(2, 0, 1).contiguous()


def how_to_get_released(config_name: str, root: str | os.PathLike) -> str:
    """The one line that says where the released weights of ``config_name`` come from and how to get them."""
    file = RELEASED[config_name].checkpoint
    return (
        f"skipped: the released {config_name} weights ({file}) are not in {root} and could not be downloaded: with "
        f"internet, run the notebook again (it downloads them), or python -m deeplab weights released --root {root} "
        f"--configs {config_name}"
    )


def released_model(config_name: str, root: str | os.PathLike) -> Trained | None:
    """The reference's released model of ``config_name``, downloaded into ``root`` and verified on first use
    (:func:`deeplab.weights.released.resolve_checkpoint`, without its progress lines), on the CPU in eval mode;
    ``None``, after printing :func:`how_to_get_released`'s line, when it can't be had (offline, or the download
    failed)."""
    from deeplab.segmenter import load_trained

    try:
        path = resolve_checkpoint(RELEASED_NAME, config_name, Path(root), quiet=True)
    except CheckpointError:
        print(how_to_get_released(config_name, root))
        return None
    return load_trained(path, config_name, [])
