"""Segmentation datasets read from their official on-disk layouts, all through one base class.

``dataset[i]`` is a dict ``{"image": (3, H, W) uint8 tv_tensors.Image (RGB), "mask": (H, W) int64
tv_tensors.Mask, "id": str}``; mask values are class indices ``0 .. num_classes - 1`` or ``ignore_index`` (255).
With ``transforms`` the dict goes through them as a whole, so image and mask are transformed together.

Layouts (``root`` is the data folder, e.g. ``data/``; the ``python -m deeplab data`` commands named in the errors
prepare them):

- VOC 2012: ``root/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png,
  SegmentationClassAug/<id>.png, ImageSets/Segmentation/<split>.txt}``; ``train_aug`` reads SegmentationClassAug.
- ADE20k: ``root/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}``; label 0
  ("other objects") becomes 255 and ``k`` becomes ``k - 1`` at read time, as the reference implementation does.
- Cityscapes: ``root/cityscapes/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
  ``root/cityscapes/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png``.
- Toy: ``root/toy`` in the VOC layout (``JPEGImages``, ``SegmentationClass``, ``ImageSets/Segmentation``).
- Folder (your own images and masks, :class:`FolderDataset`): ``root`` is the folder itself, laid out in one of two
  ways, with split subfolders or with a flat folder and split lists::

      root/classes.json                               {"classes": ["background", "cat", "dog"],
                                                       "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]]}
      root/images/<split>/<id>.jpg|.png|.webp|...     root/images/<id>.jpg|.png|.webp|.bmp|.tif
      root/masks/<split>/<id>.png                     root/masks/<id>.png
                                                      root/splits/<split>.txt   (one id per line)

  A ``splits/`` folder selects the second layout. The splits are whatever the folder holds (``train``, ``val``,
  ``test``, ...); ids may contain subfolders (``images/train/city_a/x.jpg`` is id ``city_a/x`` with the mask
  ``masks/train/city_a/x.png``) and are read in sorted order; files and folders whose names start with ``.`` are
  skipped. A mask is a single-channel PNG (grayscale or palette) of class indices ``0 .. K - 1`` (``K`` classes in
  ``classes.json``, see :mod:`deeplab.data.classes`), 255 for "ignore". ``python -m deeplab data check root``
  reports every problem of such a folder at once; the dataset stops at the first, in one line.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import to_dtype

from deeplab.data.classes import (
    CLASSES_FILE,
    IGNORE_INDEX,
    VOC_COLORMAP,
    Color,
    DatasetError,
    DatasetInfo,
    UnknownDatasetError,
    dataset_info,
    flat_palette,
    read_classes_file,
)
from deeplab.paths import atomic_write

Sample = dict[str, Any]
PILLOW_SUFFIXES = (".bmp", ".tif", ".tiff")  # images torchvision's decoder does not read: Pillow reads them
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", *PILLOW_SUFFIXES)  # of the folder dataset's images, any case
MASK_SUFFIX = ".png"
CHECK_CACHE = ".checked.json"  # in a folder dataset: the pairs check_pairs passed, by file size and time
EXIF_ORIENTATION = 0x0112  # the EXIF tag of how a camera was held: values 5-8 swap width and height
REPLACE_FILE = "replace the file or prepare it again"  # the fix for a file that cannot be decoded


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


def read_image(path: Path, mode: ImageReadMode = ImageReadMode.RGB, hint: str = REPLACE_FILE) -> torch.Tensor:
    """Decode ``path`` (JPEG, PNG, WebP, BMP or TIFF) to ``(C, H, W)`` uint8 as viewers show it: turned upright by its
    EXIF orientation, and a 16-bit image scaled to 8 bits over its full range (``value >> 8``, as torchvision's
    ``to_dtype`` scales). :class:`CorruptSampleError` (ending in ``hint``) if it cannot be decoded."""
    image = _decode(path, mode, hint, upright=True)
    return to_dtype(image, torch.uint8, scale=True) if image.dtype != torch.uint8 else image


def _decode(path: Path, mode: ImageReadMode, hint: str, *, upright: bool) -> torch.Tensor:
    """``path`` decoded to ``(C, H, W)`` as stored (uint8, or uint16 for 16-bit files); ``upright`` applies the EXIF
    orientation."""
    try:
        if Path(path).suffix.lower() in PILLOW_SUFFIXES:
            return _decode_with_pillow(path, mode, upright=upright)
        return decode_image(str(path), mode=mode, apply_exif_orientation=upright)
    except (RuntimeError, OSError) as error:  # Pillow's UnidentifiedImageError is an OSError
        raise CorruptSampleError(f"{path}: unreadable image ({_decoder_reason(str(error))}); {hint}") from None


def _decode_with_pillow(path: Path, mode: ImageReadMode, *, upright: bool) -> torch.Tensor:
    """A BMP or TIFF file as ``(C, H, W)``, 16-bit greyscale TIFFs as uint16, everything else uint8 (RGB for
    ``mode=RGB``)."""
    from PIL import Image, ImageOps

    with Image.open(path) as picture:
        picture = ImageOps.exif_transpose(picture) if upright else picture
        sixteen_bits = picture.mode.startswith("I;16")
        if mode == ImageReadMode.RGB and not sixteen_bits:
            picture = picture.convert("RGB")
        array = np.asarray(picture, dtype=np.uint16 if sixteen_bits else np.uint8)
    tensor = torch.from_numpy(array.copy())
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # (C, H, W)
    return tensor.expand(3, -1, -1).contiguous() if mode == ImageReadMode.RGB and tensor.shape[0] == 1 else tensor


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of the image file ``path`` as :func:`read_image` returns it (EXIF orientation applied), from its
    header: the pixels are not decoded."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            (width, height), turned = picture.size, _turns(picture)
    except OSError as error:
        raise CorruptSampleError(f"{path}: unreadable image ({error}); {REPLACE_FILE}") from None
    return (width, height) if turned else (height, width)


def _signature(files: SampleFiles) -> list[int]:
    """Sizes and modification times of a pair's files: a pair whose signature is unchanged need not be read again."""
    image, mask = files.image.stat(), files.mask.stat()
    return [image.st_size, image.st_mtime_ns, mask.st_size, mask.st_mtime_ns]


def _read_check_cache(path: Path) -> dict[str, list[int]]:
    """The pairs :meth:`FolderDataset.check_pairs` passed earlier; nothing when the file is missing or damaged."""
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def is_turned_by_exif(path: Path) -> bool:
    """Whether the image file ``path`` carries an EXIF orientation that swaps its width and height."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return _turns(picture)
    except OSError:
        return False


def _turns(picture: Any) -> bool:
    """Whether the open Pillow image ``picture`` has an EXIF orientation that swaps its width and height."""
    return picture.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)


def read_mask_file(path: Path, hint: str = REPLACE_FILE) -> torch.Tensor:
    """Decode the mask PNG ``path`` to ``(C, H, W)`` uint8 as it is stored (never turned by EXIF): a palette PNG
    gives its indices, a 16-bit PNG its values (at most 255).

    torchvision's decoder returns wrong values for palette PNGs of 1, 2 or 4 bits per pixel, which Pillow writes for
    palettes of at most 16 colours (a hand-made mask of a few classes): those are unpacked with Pillow instead.
    """
    if _is_packed_palette_png(path):
        from PIL import Image

        with Image.open(path) as picture:
            return torch.from_numpy(np.asarray(picture, dtype=np.uint8).copy())[None]
    raw = _decode(path, ImageReadMode.UNCHANGED, hint, upright=False)  # a mask is never turned
    if raw.dtype == torch.uint16:  # 16 bits per pixel, as many annotation tools write: indices all the same
        largest = int(raw.to(torch.int32).max())  # uint16 tensors support few operations
        if largest > IGNORE_INDEX:
            raise CorruptSampleError(
                f"{path}: 16-bit mask with values up to {largest}; class indices are 0 .. 254 and 255 for ignore: "
                "save the mask with 8 bits per pixel"
            )
        raw = raw.to(torch.uint8)
    return raw


def write_mask_file(labels: torch.Tensor, palette: Sequence[Color], path: Path) -> None:
    """Write class indices ``labels`` ``(H, W)`` uint8 as a palette PNG, PASCAL VOC's ``SegmentationClass``
    convention: the pixel values are the indices (what :func:`read_mask_file` and PIL read back), ``palette[k]`` the
    colour viewers show for class ``k``, cream for 255 (ignore). Written whole or not at all."""
    from PIL import Image

    colors = [*palette, *[(0, 0, 0)] * (IGNORE_INDEX - len(palette)), VOC_COLORMAP[IGNORE_INDEX]]  # 256 entries
    png = Image.fromarray(labels.numpy())  # (H, W) uint8: mode "L"; putpalette makes it "P", the values unchanged
    png.putpalette(flat_palette(colors))
    atomic_write(path, lambda file: png.save(file, format="PNG"))


def _is_packed_palette_png(path: Path) -> bool:
    """Whether ``path`` is a PNG with a palette (colour type 3) of fewer than 8 bits per pixel (its IHDR says)."""
    with open(path, "rb") as file:
        header = file.read(26)  # signature (8), IHDR length and type (8), width, height (8), bit depth, colour type
    return header[:8] == b"\x89PNG\r\n\x1a\n" and len(header) == 26 and header[25] == 3 and header[24] < 8


def _decoder_reason(message: str) -> str:
    """The reason in torchvision's decoder message, without its ``function, file.cpp:line,`` prefix and its advice
    to call other decoders: ``"Unsupported image file. Only jpeg, png, webp and gif are currently supported"``."""
    reason = re.sub(r"^\w+, \S+:\d+, ", "", message.strip().splitlines()[-1])
    return ". ".join(reason.split(". ")[:2]).rstrip(".")


class SegmentationDataset(Dataset):
    """Pairs of images and class masks from ``root`` for ``split``; subclasses describe their layout.

    Subclasses set ``name`` (the key of :func:`deeplab.data.dataset_info`), ``folder`` (the dataset's folder under
    ``root``), ``command`` (the ``python -m deeplab data`` command that prepares it) and ``splits``, and implement :meth:`list_samples`.
    """

    name: ClassVar[str]
    folder: ClassVar[str]
    command: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    reduce_zero_label: ClassVar[bool] = False  # raw 0 means "unlabelled" (-> 255) and raw k means class k - 1
    ignore_index: int = IGNORE_INDEX

    def __init__(self, root: str | Path, split: str, transforms: Callable[[Sample], Sample] | None = None) -> None:
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.base = self.root / self.folder
        if not self.base.is_dir():
            raise DatasetNotFoundError(f"{self.base} not found: {self.prepare_hint()}")
        info = self.read_info()
        self.classes, self.palette, self.num_classes = info.classes, info.palette, info.num_classes
        splits = self.available_splits(self.root)
        if split not in splits:
            raise DatasetError(f"unknown split {split!r} for {self.name}: {self.split_hint(split, splits)}")
        self.samples = self.list_samples()
        self._check_files()
        self.raw_values = self._raw_values()  # (256,) bool: which values a mask file may hold

    @classmethod
    def available_splits(cls, root: str | Path) -> list[str]:
        """The splits of this dataset under ``root``: ``splits`` (the folder dataset looks on disk)."""
        return list(cls.splits)

    def read_info(self) -> DatasetInfo:
        """The class names and palette (the folder dataset reads them from its folder)."""
        return dataset_info(self.name)

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
        return f"run `python -m deeplab data {self.command} --root {self.root}` to download and prepare it"

    def fix_hint(self, problem: str) -> str:
        """What to do about a bad file, the end of its message: ``problem`` is ``"image"`` (cannot be decoded),
        ``"channels"`` (a mask that is not single-channel), ``"size"`` (mask and image differ) or ``"values"``."""
        return {
            "image": REPLACE_FILE,
            "channels": "prepare the dataset again",
            "size": "replace the pair or prepare the dataset again",
            "values": f"check that the file belongs to {self.name} or prepare the dataset again",
        }[problem]

    def list_samples(self) -> list[SampleFiles]:
        """The samples of ``self.split``, in a fixed order."""
        raise NotImplementedError

    def split_hint(self, split: str, splits: list[str]) -> str:
        """What to do about a ``split`` this dataset does not have (it has ``splits``)."""
        return f"use one of {', '.join(splits)}"

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
        raw = read_mask_file(files.mask, self.fix_hint("image"))  # (C, H, W) uint8
        return self.mask_labels(raw, files, image_size)

    def mask_labels(self, raw: torch.Tensor, files: SampleFiles, image_size: tuple[int, int]) -> torch.Tensor:
        """The class mask ``(H, W)`` int64 of the decoded mask file ``raw`` ``(C, H, W)`` uint8 of ``files``:
        :class:`CorruptSampleError` unless it has one channel, the image's ``(H, W)`` and valid values."""
        if raw.shape[0] != 1:
            raise CorruptSampleError(
                f"{files.mask}: mask has {raw.shape[0]} channels; masks must be single-channel class indices "
                f"(palette or grayscale PNG); {self.fix_hint('channels')}"
            )
        if tuple(raw.shape[-2:]) != image_size:
            turned = tuple(raw.shape[-2:]) == image_size[::-1] and is_turned_by_exif(files.image)
            fix = (
                "the image is shown turned by its EXIF orientation and the mask fits its stored pixels: draw the mask "
                "on the image as shown, or save the image upright without the orientation tag"
                if turned
                else self.fix_hint("size")
            )
            raise CorruptSampleError(
                f"{files.mask}: mask size {tuple(raw.shape[-2:])} differs from its image {files.image.name} "
                f"{image_size}; {fix}"
            )
        counts = torch.bincount(raw.flatten(), minlength=256)  # (256,) pixels per raw value
        bad = ((counts > 0) & ~self.raw_values).nonzero().flatten().tolist()
        if bad:
            raise CorruptSampleError(
                f"{files.mask}: mask values {bad[:5]} outside {self._describe_raw_values()}; {self.fix_hint('values')}"
            )
        labels = raw[0] - 1 if self.reduce_zero_label else raw[0]  # uint8: 0 - 1 wraps to 255 (ignore)
        return labels.long()

    def __getitem__(self, index: int) -> Sample:
        files = self.samples[index]
        image = read_image(files.image, hint=self.fix_hint("image"))  # (3, H, W) uint8
        mask = self.read_mask(files, tuple(image.shape[-2:]))  # (H, W) int64
        sample = {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask), "id": files.id}
        return self.transforms(sample) if self.transforms is not None else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} samples)"


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 (21 classes); ``train_aug`` is the 10,582-image SBD-augmented training set."""

    name, folder, command = "voc", "VOCdevkit/VOC2012", "voc"
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
    """The procedurally generated shapes dataset of :mod:`deeplab.prepare.toy`, in the VOC layout."""

    name, folder, command = "toy", "toy", "toy"
    splits = ("train", "val")
    aug_splits = ()

    def prepare_hint(self) -> str:
        return f"run `python -m deeplab data toy --root {self.root}` to generate it"


class ADE20k(SegmentationDataset):
    """ADE20k / MIT Scene Parsing (150 classes): ``train`` (20,210 images) and ``val`` (2,000)."""

    name, folder, command = "ade20k", "ADEChallengeData2016", "ade20k"
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

    name, folder, command = "cityscapes", "cityscapes", "cityscapes"
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


def checker_hint(root: Path) -> str:
    """The command that lists every problem of the folder dataset ``root``."""
    return f"see `python -m deeplab data check {root}`"


@dataclass(frozen=True)
class Unpaired:
    """Files of one split of a folder dataset without their partner, or ids with two files: ``names`` are the files
    (for ids listed without an image, the file expected), ``problem`` what is wrong with each, ``noun`` what a name
    stands for (``"image"``, ``"mask"``, ``"id"``) and ``fix`` the fix."""

    names: tuple[str, ...]
    problem: str
    noun: str
    fix: str

    def message(self, shown: int = 1) -> str:
        """One line naming the first ``shown`` files and the count."""
        names = ", ".join(self.names[:shown]) + (", ..." if len(self.names) > shown else "")
        count = f"{len(self.names)} such {self.noun}{'s' if len(self.names) > 1 else ''}"
        return f"{names}: {self.problem} ({count}); {self.fix}"


@dataclass(frozen=True)
class FolderSplit:
    """One split of a folder dataset as found on disk: its complete pairs, sorted by id, and its unpaired files."""

    name: str
    pairs: tuple[SampleFiles, ...]
    problems: tuple[Unpaired, ...]


def scan_folder_split(root: str | Path, split: str) -> FolderSplit:
    """Pair the images and masks of ``split`` in the folder dataset ``root`` (see the module docstring)."""
    root = Path(root)
    list_file = root / "splits" / f"{split}.txt" if (root / "splits").is_dir() else None
    image_dir, mask_dir = (
        (root / "images", root / "masks") if list_file else (root / "images" / split, root / "masks" / split)
    )
    images, image_twins, unread_images = _index(image_dir, IMAGE_SUFFIXES)
    masks, mask_twins, unread_masks = _index(mask_dir, (MASK_SUFFIX,))
    ids = _listed_ids(list_file) if list_file else sorted(images.keys() | masks.keys())
    check = checker_hint(root)
    if list_file:
        without_image = Unpaired(
            tuple(f"{image_dir / i}.*" for i in ids if i not in images),
            f"listed in {list_file}, not found",
            "image",
            f"add the images ({', '.join(IMAGE_SUFFIXES)}) or remove their ids from the list; {check}",
        )
    else:
        without_image = Unpaired(
            tuple(_with_unread(masks[i], unread_images.get(i), "images") for i in ids if i not in images),
            f"no image in {image_dir}",
            "mask",
            f"add each image as <id>{'|'.join(IMAGE_SUFFIXES)} or remove the mask; {check}",
        )
    problems = (
        Unpaired(
            tuple(f"{first} and {second.name}" for first, second in image_twins + mask_twins),
            "two files with one id",
            "id",
            f"keep one image and one mask per id; {check}",
        ),
        Unpaired(
            tuple(_with_unread(images[i], unread_masks.get(i), "masks") for i in ids if i in images and i not in masks),
            f"no mask in {mask_dir}",
            "image",
            f"add each mask as <id>{MASK_SUFFIX} or remove the image; {check}",
        ),
        without_image,
    )
    pairs = tuple(SampleFiles(i, images[i], masks[i]) for i in ids if i in images and i in masks)
    return FolderSplit(split, pairs, tuple(problem for problem in problems if problem.names))


def _with_unread(path: Path, unread: Path | None, kind: str) -> str:
    """``path``, and the file of the same id that is not read (e.g. a JPEG mask), if there is one."""
    readable = {"images": ", ".join(IMAGE_SUFFIXES), "masks": MASK_SUFFIX}[kind]
    return f"{path} (not read: {unread}; {kind} are {readable})" if unread else str(path)


def _index(
    folder: Path, suffixes: tuple[str, ...]
) -> tuple[dict[str, Path], list[tuple[Path, Path]], dict[str, Path]]:
    """The files under ``folder`` (any depth) ending in one of ``suffixes`` (any case), by id (the relative path
    without suffix), the pairs of files that share an id, and the other files by id (not read, named where their
    partner is reported). Names starting with ``.`` are skipped."""
    files: dict[str, Path] = {}
    others: dict[str, Path] = {}
    twins = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        if hidden or not path.is_file():
            continue
        key = relative.with_suffix("").as_posix()
        if path.suffix.lower() not in suffixes:
            others[key] = path
        elif key in files:
            twins.append((files[key], path))
        else:
            files[key] = path
    return files, twins, others


def _listed_ids(list_file: Path) -> list[str]:
    """The ids in ``list_file``, one per line (blank lines skipped), sorted and each once."""
    if not list_file.is_file():
        raise DatasetNotFoundError(f"split list {list_file} not found: write one id per line there")
    return sorted({line.strip() for line in list_file.read_text().splitlines() if line.strip()})


class FolderDataset(SegmentationDataset):
    """Your own images and masks in a folder (layout in the module docstring), classes from its ``classes.json``.

    ``root`` is the folder itself; the splits are those it holds (:meth:`available_splits`).
    """

    name, folder, command = "folder", "", "check"
    splits = ()  # any split found on disk

    @classmethod
    def available_splits(cls, root: str | Path) -> list[str]:
        """The split list names in ``root/splits/`` if it exists, else the subfolders of ``root/images/``."""
        root = Path(root)
        lists, images = root / "splits", root / "images"
        if lists.is_dir():
            names = [path.stem for path in lists.glob("*.txt")]
        else:
            names = [path.name for path in images.iterdir() if path.is_dir()] if images.is_dir() else []
        found = sorted(name for name in names if not name.startswith("."))
        if not found:
            raise DatasetNotFoundError(
                f"no splits in {root}: put pairs in {images}/<split>/ and {root / 'masks'}/<split>/, or list their "
                f"ids in {lists}/<split>.txt (see the layout in deeplab/data/datasets.py)"
            )
        return found

    def read_info(self) -> DatasetInfo:
        return read_classes_file(self.root / CLASSES_FILE)

    def prepare_hint(self) -> str:
        return f"lay the folder out as deeplab/data/datasets.py describes; {checker_hint(self.root)}"

    def fix_hint(self, problem: str) -> str:
        if problem == "channels":
            return f"convert colour masks with `python -m deeplab data check {self.root} --convert-rgb`"
        return f"fix or remove the pair; {checker_hint(self.root)}"

    def split_hint(self, split: str, splits: list[str]) -> str:
        return (
            f"{self.root} holds {', '.join(splits)}; add {self.root / 'images' / split} and "
            f"{self.root / 'masks' / split} (or {self.root / 'splits' / split}.txt), or train on the splits it holds "
            "with --set data.train_split=NAME / data.val_split=NAME"
        )

    def list_samples(self) -> list[SampleFiles]:
        found = scan_folder_split(self.root, self.split)
        if found.problems:
            raise DatasetError(found.problems[0].message())
        return list(found.pairs)

    def check_pairs(self) -> None:
        """Read every mask of the split and the size of every image (not the pixels) once, before any training: a
        bad pair stops a run before its first step, not when a batch draws it. Pairs that passed keep their file
        sizes and times (and the number of classes) in ``root/.checked.json``, so a second start reads only what
        changed."""
        cache = self.root / CHECK_CACHE
        passed = _read_check_cache(cache)
        errors, fresh = [], {}
        for files in self.samples:
            key, signature = files.mask.relative_to(self.root).as_posix(), [*_signature(files), self.num_classes]
            if passed.get(key) != signature:
                try:
                    self.read_mask(files, image_size(files.image))
                except DatasetError as error:
                    errors.append(str(error))
                    continue
            fresh[key] = signature
        with contextlib.suppress(OSError):  # a read-only dataset is checked again next time
            atomic_write(cache, lambda path: path.write_text(json.dumps({**passed, **fresh})))
        if errors:
            more = f" (and {len(errors) - 1} more broken pairs)" if len(errors) > 1 else ""
            raise CorruptSampleError(f"{errors[0]}{more}")


DATASETS: dict[str, type[SegmentationDataset]] = {
    cls.name: cls for cls in (VOCSegmentation, ADE20k, Cityscapes, ToyDataset, FolderDataset)
}


def build_dataset(
    name: str, root: str | Path, split: str, transforms: Callable[[Sample], Sample] | None = None
) -> SegmentationDataset:
    """The dataset called ``name`` (``voc``, ``ade20k``, ``cityscapes``, ``toy``, ``folder``) under ``root`` for
    ``split`` (for ``folder``, ``root`` is the folder itself)."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return DATASETS[name](root, split, transforms)
