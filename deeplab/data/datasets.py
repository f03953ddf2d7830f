"""Segmentation datasets read from their official on-disk layouts, all through one base class.

``dataset[i]`` is a dict ``{"image": (3, H, W) uint8 tv_tensors.Image (RGB), "mask": (H, W) int64
tv_tensors.Mask, "id": str}``; mask values are class indices ``0 .. num_classes - 1`` or ``ignore_index`` (255).
With ``transforms`` the dict goes through them as a whole, so image and mask are transformed together.

Layouts (``root`` is the data folder, e.g. ``data/``; the ``data_scripts/`` named in the errors prepare them):

- VOC 2012: ``root/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png,
  SegmentationClassAug/<id>.png, ImageSets/Segmentation/<split>.txt}``; ``train_aug`` reads SegmentationClassAug.
- ADE20k: ``root/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}``; label 0
  ("other objects") becomes 255 and ``k`` becomes ``k - 1`` at read time, as the reference implementation does.
- Cityscapes: ``root/cityscapes/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
  ``root/cityscapes/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png``.
- Toy: ``root/toy`` in the VOC layout (``JPEGImages``, ``SegmentationClass``, ``ImageSets/Segmentation``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image

from deeplab.data.classes import IGNORE_INDEX, dataset_info

Sample = dict[str, Any]


class DatasetError(RuntimeError):
    """Data on disk that cannot be used as it is; the message names the file and the fix."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder, split list, image or mask that is not where the layout puts it."""


class CorruptSampleError(DatasetError):
    """An image or mask that cannot be decoded, masks of the wrong size, or label values out of range."""


@dataclass(frozen=True)
class SampleFiles:
    """Where one sample lives on disk."""

    id: str
    image: Path
    mask: Path


def read_image(path: Path, mode: ImageReadMode = ImageReadMode.RGB) -> torch.Tensor:
    """Decode ``path`` (JPEG or PNG) to ``(C, H, W)`` uint8; :class:`CorruptSampleError` if it cannot be decoded."""
    try:
        return decode_image(str(path), mode=mode)
    except RuntimeError as error:
        reason = _decoder_reason(str(error))
        raise CorruptSampleError(f"{path}: unreadable image ({reason}); replace the file or prepare it again") from None


def _decoder_reason(message: str) -> str:
    """The reason in torchvision's decoder message, without its ``function, file.cpp:line,`` prefix and its advice
    to call other decoders: ``"Unsupported image file. Only jpeg, png, webp and gif are currently supported"``."""
    reason = re.sub(r"^\w+, \S+:\d+, ", "", message.strip().splitlines()[-1])
    return ". ".join(reason.split(". ")[:2]).rstrip(".")


class SegmentationDataset(Dataset):
    """Pairs of images and class masks from ``root`` for ``split``; subclasses describe their layout.

    Subclasses set ``name`` (the key of :func:`deeplab.data.dataset_info`), ``folder`` (the dataset's folder under
    ``root``), ``script`` (the data script that prepares it) and ``splits``, and implement :meth:`list_samples`.
    """

    name: ClassVar[str]
    folder: ClassVar[str]
    script: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    reduce_zero_label: ClassVar[bool] = False  # raw 0 means "unlabelled" (-> 255) and raw k means class k - 1
    ignore_index: int = IGNORE_INDEX

    def __init__(self, root: str | Path, split: str, transforms: Callable[[Sample], Sample] | None = None) -> None:
        info = dataset_info(self.name)
        self.classes, self.palette, self.num_classes = info.classes, info.palette, info.num_classes
        self.root, self.split, self.transforms = Path(root), split, transforms
        if split not in self.splits:
            raise DatasetError(f"unknown split {split!r} for {self.name}: use one of {', '.join(self.splits)}")
        self.base = self.root / self.folder
        if not self.base.is_dir():
            raise DatasetNotFoundError(f"{self.base} not found: {self.prepare_hint()}")
        self.samples = self.list_samples()
        self._check_files()
        self.raw_values = self._raw_values()  # (256,) bool: which values a mask file may hold

    def _raw_values(self) -> torch.Tensor:
        valid = torch.zeros(256, dtype=torch.bool)
        valid[: self.num_classes + self.reduce_zero_label] = True
        valid[IGNORE_INDEX] = not self.reduce_zero_label
        return valid

    def _describe_raw_values(self) -> str:
        upper = self.num_classes + self.reduce_zero_label
        return f"[0, {upper})" if self.reduce_zero_label else f"[0, {upper}) and {IGNORE_INDEX}"

    def prepare_hint(self) -> str:
        """The command that prepares this dataset under ``root``."""
        return f"run `python data_scripts/{self.script} --root {self.root}` to download and prepare it"

    def list_samples(self) -> list[SampleFiles]:
        """The samples of ``self.split``, in a fixed order."""
        raise NotImplementedError

    def _check_files(self) -> None:
        if not self.samples:
            raise DatasetNotFoundError(
                f"{self.name} split {self.split!r} in {self.base} is empty: {self.prepare_hint()}"
            )
        missing = [path for s in self.samples for path in (s.image, s.mask) if not path.is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"{missing[0]} not found ({len(missing)} of the {2 * len(self.samples)} images and masks of "
                f"{self.name} split {self.split!r} are missing): {self.prepare_hint()} again"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def read_mask(self, files: SampleFiles, image_size: tuple[int, int]) -> torch.Tensor:
        """The class mask ``(H, W)`` int64 of ``files``, checked against the image size and the label range."""
        raw = read_image(files.mask, ImageReadMode.UNCHANGED)
        if raw.shape[0] != 1:
            raise CorruptSampleError(
                f"{files.mask}: mask has {raw.shape[0]} channels, expected one (palette or grayscale PNG); "
                "prepare the dataset again"
            )
        if tuple(raw.shape[-2:]) != image_size:
            raise CorruptSampleError(
                f"{files.mask}: mask size {tuple(raw.shape[-2:])} differs from its image {files.image.name} "
                f"{image_size}; replace the pair or prepare the dataset again"
            )
        counts = torch.bincount(raw.flatten(), minlength=256)  # (256,) pixels per raw value
        bad = ((counts > 0) & ~self.raw_values).nonzero().flatten().tolist()
        if bad:
            raise CorruptSampleError(
                f"{files.mask}: mask values {bad[:5]} outside {self._describe_raw_values()}; "
                f"check that the file belongs to {self.name} or prepare the dataset again"
            )
        labels = raw[0] - 1 if self.reduce_zero_label else raw[0]  # uint8: 0 - 1 wraps to 255 (ignore)
        return labels.long()

    def __getitem__(self, index: int) -> Sample:
        files = self.samples[index]
        image = read_image(files.image)  # (3, H, W) uint8
        mask = self.read_mask(files, tuple(image.shape[-2:]))  # (H, W) int64
        sample = {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask), "id": files.id}
        return self.transforms(sample) if self.transforms is not None else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} samples)"


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 (21 classes); ``train_aug`` is the 10,582-image SBD-augmented training set."""

    name, folder, script = "voc", "VOCdevkit/VOC2012", "voc.py"
    splits = ("train", "val", "trainval", "train_aug")
    aug_splits: ClassVar[tuple[str, ...]] = ("train_aug",)

    def list_samples(self) -> list[SampleFiles]:
        split_file = self.base / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not split_file.is_file():
            raise DatasetNotFoundError(f"split list {split_file} not found: {self.prepare_hint()}")
        masks = self.base / ("SegmentationClassAug" if self.split in self.aug_splits else "SegmentationClass")
        ids = split_file.read_text().split()
        return [SampleFiles(i, self.base / "JPEGImages" / f"{i}.jpg", masks / f"{i}.png") for i in ids]


class ToyDataset(VOCSegmentation):
    """The procedurally generated shapes dataset of ``data_scripts/make_toy.py``, in the VOC layout."""

    name, folder, script = "toy", "toy", "make_toy.py"
    splits = ("train", "val")
    aug_splits = ()

    def prepare_hint(self) -> str:
        return f"run `python data_scripts/make_toy.py --root {self.root}` to generate it"


class ADE20k(SegmentationDataset):
    """ADE20k / MIT Scene Parsing (150 classes): ``train`` (20,210 images) and ``val`` (2,000)."""

    name, folder, script = "ade20k", "ADEChallengeData2016", "ade20k.py"
    splits = ("train", "val")
    reduce_zero_label = True
    split_folders: ClassVar[dict[str, str]] = {"train": "training", "val": "validation"}

    def list_samples(self) -> list[SampleFiles]:
        images = self.base / "images" / self.split_folders[self.split]
        masks = self.base / "annotations" / self.split_folders[self.split]
        if not images.is_dir():
            raise DatasetNotFoundError(f"{images} not found: {self.prepare_hint()}")
        return [SampleFiles(p.stem, p, masks / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))]


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations, 19 evaluated classes as trainIds: ``train`` (2,975) and ``val`` (500)."""

    name, folder, script = "cityscapes", "cityscapes", "cityscapes.py"
    splits = ("train", "val")
    image_suffix: ClassVar[str] = "_leftImg8bit.png"
    mask_suffix: ClassVar[str] = "_gtFine_labelTrainIds.png"

    def list_samples(self) -> list[SampleFiles]:
        images, masks = self.base / "leftImg8bit" / self.split, self.base / "gtFine" / self.split
        if not images.is_dir():
            raise DatasetNotFoundError(f"{images} not found: {self.prepare_hint()}")
        samples = []
        for path in sorted(images.glob(f"*/*{self.image_suffix}")):
            stem = path.name.removesuffix(self.image_suffix)
            samples.append(SampleFiles(stem, path, masks / path.parent.name / f"{stem}{self.mask_suffix}"))
        return samples


DATASETS: dict[str, type[SegmentationDataset]] = {
    cls.name: cls for cls in (VOCSegmentation, ADE20k, Cityscapes, ToyDataset)
}


def build_dataset(
    name: str, root: str | Path, split: str, transforms: Callable[[Sample], Sample] | None = None
) -> SegmentationDataset:
    """The dataset called ``name`` (``voc``, ``ade20k``, ``cityscapes``, ``toy``) under ``root`` for ``split``."""
    dataset_info(name)  # an unknown name raises UnknownDatasetError listing the known ones
    return DATASETS[name](root, split, transforms)
