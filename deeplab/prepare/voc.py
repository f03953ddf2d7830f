"""PASCAL VOC 2012 + SBD -> the "trainaug" training set (10,582 images) and VOC val (1,449 images).

Steps, each skipped when a re-run finds it done:
  1. download (or take with --archive) VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz, check their md5,
     extract them into ROOT (ROOT/VOCdevkit/VOC2012 and ROOT/benchmark_RELEASE);
  2. convert SBD's masks (benchmark_RELEASE/dataset/cls/*.mat) into VOC-palette PNGs in
     VOC2012/SegmentationClassAug, then copy VOC's own SegmentationClass PNGs there too: where an image has both,
     VOC's mask (with its 255 "ignore" borders) wins, so val is always scored on the official masks;
  3. write ImageSets/Segmentation/train_aug.txt = (SBD train + SBD val + VOC train) - VOC val, sorted.

Result: ROOT/VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, SegmentationClassAug,
ImageSets/Segmentation/{train,val,trainval,train_aug}.txt}. Archives are kept in ROOT/downloads.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from deeplab.data.classes import VOC_PALETTE
from deeplab.prepare.download import (
    PrepareError,
    Resource,
    check_archive_names,
    check_counts,
    dataset_parser,
    fetch_and_extract,
    run_main,
    run_once,
)

# URLs and md5s as torchvision.datasets.VOCSegmentation (year 2012) and torchvision.datasets.SBDataset publish them;
# the VOC archive also from its original host and a long-lived mirror, the md5 guarding all of them.
VOC = Resource(
    "VOCtrainval_11-May-2012.tar",
    (
        "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
    ),
    "md5:6cd6e144f989b92b3379bac3b3de84fd",
)
SBD = Resource(
    "benchmark.tgz",
    ("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",),
    "md5:82b4d87ceb2ed10f6038a1cba92111cb",
)
EXPECTED_COUNTS = {"train": 1_464, "val": 1_449, "trainval": 2_913, "train_aug": 10_582}


def sbd_mask(mat_path: Path) -> np.ndarray:
    """The class mask ``(H, W)`` uint8 of one SBD file: MATLAB struct ``GTcls``, field ``Segmentation``."""
    return np.asarray(scipy.io.loadmat(mat_path, variable_names=["GTcls"])["GTcls"]["Segmentation"][0, 0], np.uint8)


def save_palette_png(mask: np.ndarray, path: Path) -> None:
    """Save a class mask ``(H, W)`` uint8 as a PNG in PIL mode 'P' with the VOC palette (pixel values unchanged)."""
    image = Image.fromarray(mask)  # mode 'L'; putpalette turns it into 'P' without touching the values
    image.putpalette(VOC_PALETTE)
    image.save(path)


def build_aug_masks(sbd_cls: Path, voc_masks: Path, out_dir: Path) -> None:
    """Fill ``out_dir`` with SBD's ``.mat`` masks as palette PNGs, then VOC's PNG masks (VOC wins on overlap)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for mat_path in sorted(sbd_cls.glob("*.mat")):
        save_palette_png(sbd_mask(mat_path), out_dir / f"{mat_path.stem}.png")
    for png in voc_masks.glob("*.png"):
        shutil.copyfile(png, out_dir / png.name)


def trainaug_ids(
    sbd_train: Iterable[str], sbd_val: Iterable[str], voc_train: Iterable[str], voc_val: Iterable[str]
) -> list[str]:
    """The trainaug image ids: (SBD train + SBD val + VOC train) minus VOC val, sorted and unique."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def read_ids(path: Path) -> list[str]:
    """Image ids of a split file, one per line."""
    if not path.is_file():
        raise PrepareError(f"{path}: split list missing; delete the extracted folder and run again")
    return path.read_text().split()


def check_files(ids: Iterable[str], voc: Path) -> None:
    """Raise :class:`PrepareError` unless every id has its JPEGImages/<id>.jpg and SegmentationClassAug/<id>.png."""
    wanted = [voc / "JPEGImages" / f"{i}.jpg" for i in ids] + [voc / "SegmentationClassAug" / f"{i}.png" for i in ids]
    missing = [str(path) for path in wanted if not path.is_file()]
    if missing:
        raise PrepareError(
            f"{len(missing)} files missing, e.g. {', '.join(missing[:3])}; "
            f"delete {voc / '.aug_masks_done'} (and the extracted folder whose files are missing) and run again"
        )


def prepare(args: argparse.Namespace) -> None:
    """Download, extract, convert and list, then print a summary with counts."""
    check_archive_names(args.archive, [VOC.filename, SBD.filename])
    voc, sbd = args.root / "VOCdevkit" / "VOC2012", args.root / "benchmark_RELEASE" / "dataset"
    fetch_and_extract(VOC, args, voc / ".extracted")
    fetch_and_extract(SBD, args, sbd.parent / ".extracted")
    run_once(
        voc / ".aug_masks_done",
        "SBD .mat + VOC masks -> SegmentationClassAug palette PNGs",
        lambda: build_aug_masks(sbd / "cls", voc / "SegmentationClass", voc / "SegmentationClassAug"),
    )
    lists = voc / "ImageSets" / "Segmentation"
    splits = {name: read_ids(lists / f"{name}.txt") for name in ["train", "val", "trainval"]}
    splits["train_aug"] = trainaug_ids(
        read_ids(sbd / "train.txt"), read_ids(sbd / "val.txt"), splits["train"], splits["val"]
    )
    (lists / "train_aug.txt").write_text("".join(f"{i}\n" for i in splits["train_aug"]))
    check_files(splits["train_aug"] + splits["val"], voc)
    print(f"VOC 2012 + SBD ready in {voc}:")
    counts = {name: len(ids) for name, ids in splits.items()}
    counts["SegmentationClassAug"] = sum(1 for _ in (voc / "SegmentationClassAug").glob("*.png"))
    check_counts(counts, EXPECTED_COUNTS, args.verify_counts)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line; see the module docstring."""
    parser = dataset_parser(__doc__, prog)
    run_main(prepare, parser, argv)
