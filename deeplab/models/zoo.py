"""The reference's model zoo: the trained DeepLabV3+ checkpoints sssegmentation released, one per config.

Each of the 12 reference configs has a checkpoint and its training log as GitHub release assets, named
``deeplabv3plus_resnet{50,101}os{8,16}_{voc,ade20k,cityscapes}.{pth,log}`` since Nov 2023 and with ``_train`` before
the extension until then; :class:`ReleasedModel` lists both URLs, current name first. No checksums are published, so
``python -m deeplab weights released`` (:mod:`deeplab.weights.released`) checks each file by its content (a strict
load into the config's network) and records the SHA-256 of what it checked in ``ROOT/manifest.json``;
:func:`released_checkpoint` hands out a file only while it still has that SHA-256.

The checkpoints come in two layouts, both ``{"model": state_dict, ...}``:

- ``"2020"``: the 2020 trainer saved ``{"epoch", "model", "optimizer"}`` and named the ASPP fuse convolution
  ``aspp_net.fuse_layer``;
- ``"current"``: today's trainer saves ``{"cur_epoch", "cur_iter", "optimizer", "model"}`` and names it
  ``aspp_net.bottleneck``.

The key names are what loading depends on (:mod:`deeplab.models.weights` renames both), so they decide the layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from deeplab.models.weights import CheckpointError

BASE_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_deeplabv3plus"
URL_VARIABLE = "DEEPLAB_MODELSTORE_URL"  # overrides BASE_URL, e.g. with a mirror or a local test server
DEFAULT_ROOT = Path("weights/released")
MANIFEST = "manifest.json"
LAYOUTS = {"aspp_net.fuse_layer.": "2020", "aspp_net.bottleneck.": "current"}  # ASPP fuse key prefix -> layout
LOG = "log"  # the manifest's "layout" of a training log
SCRIPT = "python -m deeplab weights released"


@dataclass(frozen=True)
class ReleasedModel:
    """One released model: our config name, its two file names, and the mIoU (%) the reference reports for it."""

    config: str
    checkpoint: str
    log: str
    reported_miou: float

    def checkpoint_urls(self) -> tuple[str, str]:
        """Where the checkpoint is published: the current name, then the ``_train`` name of before Nov 2023."""
        return release_urls(self.checkpoint)

    def log_urls(self) -> tuple[str, str]:
        """Where the training log is published, in the same order as :meth:`checkpoint_urls`."""
        return release_urls(self.log)


@dataclass(frozen=True)
class ManifestEntry:
    """What was verified of one file: its config, SHA-256 and size, and its layout (``"2020"``, ``"current"``,
    or ``"log"`` for a training log)."""

    config: str
    sha256: str
    size: int
    layout: str


def release_urls(filename: str) -> tuple[str, str]:
    """The URLs of a release asset: ``filename``, then its ``_train`` name; the base is read from
    ``$DEEPLAB_MODELSTORE_URL`` at each call (default :data:`BASE_URL`)."""
    base = os.environ.get(URL_VARIABLE, BASE_URL).rstrip("/")
    stem, suffix = os.path.splitext(filename)
    return f"{base}/{filename}", f"{base}/{stem}_train{suffix}"


def _released(config: str, reported_miou: float) -> ReleasedModel:
    dataset, depth, output_stride = config.split("-")  # "voc-r50-d8" -> "voc", "r50", "d8"
    stem = f"deeplabv3plus_resnet{depth[1:]}os{output_stride[1:]}_{dataset}"
    return ReleasedModel(config, f"{stem}.pth", f"{stem}.log", reported_miou)


_REPORTED = {
    "voc-r50-d8": 77.43, "voc-r50-d16": 76.92, "voc-r101-d8": 79.19, "voc-r101-d16": 78.31,
    "ade20k-r50-d8": 44.51, "ade20k-r50-d16": 43.21, "ade20k-r101-d8": 45.72, "ade20k-r101-d16": 45.22,
    "cityscapes-r50-d8": 80.38, "cityscapes-r50-d16": 79.73, "cityscapes-r101-d8": 81.09, "cityscapes-r101-d16": 80.20,
}  # fmt: skip
RELEASED: dict[str, ReleasedModel] = {config: _released(config, miou) for config, miou in _REPORTED.items()}


def detect_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """``"2020"`` or ``"current"``, from the name of the ASPP fuse convolution in an sssegmentation state dict;
    None when it has neither name (it is no sssegmentation DeepLabV3+ checkpoint)."""
    return next((layout for prefix, layout in LAYOUTS.items() if any(key.startswith(prefix) for key in state)), None)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path, config: str, layout: str) -> ManifestEntry:
    """The manifest entry of the file at ``path``, just verified as ``config``'s file in ``layout``."""
    return ManifestEntry(config, sha256_of(path), path.stat().st_size, layout)


def matches(path: Path, entry: ManifestEntry) -> bool:
    """Whether the file at ``path`` is still the one ``entry`` recorded (size first, then SHA-256)."""
    return path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


def read_manifest(root: str | os.PathLike) -> dict[str, ManifestEntry]:
    """``ROOT/manifest.json`` as ``{file name: entry}``; empty when there is none yet."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return {name: ManifestEntry(**values) for name, values in json.loads(path.read_text()).items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path} is not a manifest ({error}); delete it and run {SCRIPT} --root {root}") from None


def write_manifest(root: str | os.PathLike, manifest: Mapping[str, ManifestEntry]) -> Path:
    """Write ``manifest`` to ``ROOT/manifest.json`` atomically (a temporary file renamed over it)."""
    path = Path(root) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    entries = {name: dataclasses.asdict(entry) for name, entry in sorted(manifest.items())}
    try:
        temporary.write_text(json.dumps(entries, indent=2) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def released_checkpoint(config_name: str, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """The verified released checkpoint of ``config_name`` in ``root``, after re-checking its SHA-256.

    Raises :class:`~deeplab.models.weights.CheckpointError` (one line naming the file and the command that fixes
    it) when the file is missing, was never verified, or changed since it was.
    """
    if config_name not in RELEASED:
        raise CheckpointError(f"no released checkpoint for {config_name!r}; released: {', '.join(RELEASED)}")
    filename = RELEASED[config_name].checkpoint
    path = Path(root) / filename
    entry = read_manifest(root).get(filename)
    if not path.is_file():
        problem = "not found"
    elif entry is None:
        problem = f"not verified (not in {MANIFEST})"
    elif not matches(path, entry):
        problem = f"changed since it was verified (its SHA-256 is not the one in {MANIFEST})"
    else:
        return path
    raise CheckpointError(f"{path} {problem}; run {SCRIPT} --root {root} --configs {config_name}")
