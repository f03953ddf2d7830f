"""ADE20k (MIT Scene Parsing Benchmark, ADEChallengeData2016): 20,210 training and 2,000 validation images.

Downloads (or takes with --archive) ADEChallengeData2016.zip, checks its sha1, extracts it into ROOT and checks the
counts. Result: ROOT/ADEChallengeData2016/{images,annotations}/{training,validation}, images ``ADE_*.jpg`` and
masks ``ADE_*.png`` with values 0..150.

Nothing is converted on disk: value 0 ("other objects") becomes the ignore label and k becomes class k-1 when the
dataset loader reads a mask, as the reference implementation does, so the files stay the official ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from deeplab.prepare.download import (
    Resource,
    check_archive_names,
    check_counts,
    count_pairs,
    dataset_parser,
    fetch_and_extract,
    run_main,
)

# The URL mmsegmentation and sssegmentation document; the sha1 GluonCV's and Segmenter's download scripts check.
ADE20K = Resource(
    "ADEChallengeData2016.zip",
    ("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",),
    "sha1:219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
)
EXPECTED_COUNTS = {"training": 20_210, "validation": 2_000}


def split_counts(dataset: Path) -> dict[str, int]:
    """Images per split, each checked to have its mask."""
    return {
        split: count_pairs(
            (path.stem for path in (dataset / "images" / split).glob("*.jpg")),
            (path.stem for path in (dataset / "annotations" / split).glob("*.png")),
            f"{dataset}/{{images,annotations}}/{split}",
            f"delete {dataset} and run again",
        )
        for split in EXPECTED_COUNTS
    }


def prepare(args: argparse.Namespace) -> None:
    """Download, extract, check the counts and print them."""
    check_archive_names(args.archive, [ADE20K.filename])
    dataset = args.root / "ADEChallengeData2016"
    fetch_and_extract(ADE20K, args, dataset / ".extracted")
    print(f"ADE20k ready in {dataset}:")
    check_counts(split_counts(dataset), EXPECTED_COUNTS, args.verify_counts)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line; see the module docstring."""
    parser = dataset_parser(__doc__, prog)
    run_main(prepare, parser, argv)
