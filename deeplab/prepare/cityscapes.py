"""Cityscapes, fine annotations: 2,975 train and 500 val images (and 1,525 test), labelIds -> trainIds.

Downloading needs a free login, so fetch leftImg8bit_trainvaltest.zip (11 GB) and gtFine_trainvaltest.zip (241 MB)
from https://www.cityscapes-dataset.com/downloads/ yourself and pass them with --archive (or put them in
ROOT/downloads). Already extracted? Put the leftImg8bit/ and gtFine/ folders into ROOT/cityscapes and give no archive.

Steps, each skipped when a re-run finds it done:
  1. extract both zips into ROOT/cityscapes (zip's own CRCs are checked; no checksums are published to check);
  2. check that every image has its label and count the images (2,975 train, 500 val);
  3. write <name>_gtFine_labelTrainIds.png next to every <name>_gtFine_labelIds.png: the 19 evaluated classes get
     trainIds 0..18 and every other id 255 (ignore), with the table of torchvision.datasets.Cityscapes.classes
     (the official cityscapesscripts labels.py table).

Result: ROOT/cityscapes/{leftImg8bit,gtFine}/{train,val,test}/<city>/...
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import Cityscapes
from tqdm.auto import tqdm

from deeplab.prepare.download import (
    PrepareError,
    archive_for,
    check_archive_names,
    check_counts,
    count_pairs,
    dataset_parser,
    extract,
    run_main,
    run_once,
)

PACKAGES = {"leftImg8bit_trainvaltest.zip": "leftImg8bit", "gtFine_trainvaltest.zip": "gtFine"}
EXPECTED_COUNTS = {"train": 2_975, "val": 500}
IGNORE = 255
# labelId -> trainId; torchvision writes 255 or -1 for classes left out of the evaluation, both become IGNORE
TRAIN_IDS: dict[int, int] = {c.id: c.train_id if 0 <= c.train_id < IGNORE else IGNORE for c in Cityscapes.classes}
LOOKUP = np.full(256, IGNORE, np.uint8)  # (256,) labelId -> trainId for every uint8 value
for label_id, train_id in TRAIN_IDS.items():
    if label_id >= 0:
        LOOKUP[label_id] = train_id


def write_train_ids(label_ids: Path) -> None:
    """Write ``*_gtFine_labelTrainIds.png`` (``(H, W)`` uint8) next to the ``*_gtFine_labelIds.png`` given."""
    train_ids = LOOKUP[np.asarray(Image.open(label_ids))]
    Image.fromarray(train_ids).save(label_ids.with_name(label_ids.name.replace("_labelIds.png", "_labelTrainIds.png")))


def convert_all(gt_fine: Path, workers: int) -> None:
    """Write the trainId PNG of every labelIds PNG under ``gt_fine``, in ``workers`` processes (1: in this one)."""
    paths = sorted(gt_fine.glob("*/*/*_gtFine_labelIds.png"))
    bar = tqdm(total=len(paths), unit="mask", desc="labelIds -> trainIds")
    if workers > 1:
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(write_train_ids, paths, chunksize=16):
                bar.update()
    else:
        for path in paths:
            write_train_ids(path)
            bar.update()
    bar.close()


def find_archive(args: argparse.Namespace, filename: str) -> Path | None:
    """The ``--archive`` named ``filename``, else ``filename`` in ROOT/downloads or ROOT, else None."""
    if (given := archive_for(args.archive, filename)) is not None:
        if not given.is_file():
            raise PrepareError(f"--archive {given}: no such file; give the path of {filename}")
        return given
    return next((path for path in [args.root / "downloads" / filename, args.root / filename] if path.is_file()), None)


def get_package(args: argparse.Namespace, filename: str, folder: Path) -> None:
    """Extract the zip ``filename`` into ``folder.parent``, or accept an already extracted ``folder``."""
    archive, stamp = find_archive(args, filename), folder.parent / f".{folder.name}_extracted"
    if archive is None and not stamp.exists():
        if not folder.is_dir():
            raise PrepareError(
                f"{folder} missing: download {filename} from https://www.cityscapes-dataset.com/downloads/ "
                "(free login) and pass --archive PATH"
            )
        print(f"using the extracted folder {folder}")
        return
    run_once(stamp, f"extract {filename}", lambda: extract(archive, folder.parent))


def split_counts(city: Path) -> dict[str, int]:
    """Images per split, each checked to have its ``*_gtFine_labelIds.png``."""
    return {
        split: count_pairs(
            (p.name.removesuffix("_leftImg8bit.png") for p in (city / "leftImg8bit" / split).glob("*/*.png")),
            (p.name.removesuffix("_gtFine_labelIds.png") for p in (city / "gtFine" / split).glob("*/*_labelIds.png")),
            f"{city}/{{leftImg8bit,gtFine}}/{split}",
            "extract both zips again (delete the folders first)",
        )
        for split in EXPECTED_COUNTS
    }


def prepare(args: argparse.Namespace) -> None:
    """Extract, check, convert and print the counts."""
    check_archive_names(args.archive, list(PACKAGES))
    city = args.root / "cityscapes"
    for filename, folder in PACKAGES.items():
        get_package(args, filename, city / folder)
    print(f"Cityscapes images in {city}:")
    check_counts(split_counts(city), EXPECTED_COUNTS, args.verify_counts)
    run_once(
        city / ".train_ids_done",
        "labelIds -> labelTrainIds PNGs",
        lambda: convert_all(city / "gtFine", args.workers),
    )
    print(f"Cityscapes ready in {city}")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line; see the module docstring."""
    parser = dataset_parser(__doc__, prog)
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes for the conversion (default: %(default)s)",
    )
    run_main(prepare, parser, argv)
