"""``python -m deeplab data WHAT``: download and prepare the datasets, make the toy data, check a folder of your
own (:mod:`deeplab.prepare`)."""

from __future__ import annotations

import argparse

from deeplab.commands import Listed, run_listed

COMMANDS: Listed = {
    "voc": ("deeplab.prepare.voc", "download and prepare PASCAL VOC 2012 + SBD (trainaug/val)"),
    "ade20k": ("deeplab.prepare.ade20k", "download and prepare ADE20k (ADEChallengeData2016)"),
    "cityscapes": ("deeplab.prepare.cityscapes", "prepare Cityscapes from its archives (19 training classes)"),
    "toy": ("deeplab.prepare.toy", "generate the toy shapes dataset (VOC or folder layout)"),
    "check": ("deeplab.prepare.check", "check a folder dataset of your own: every problem at once, class balance"),
    "download": ("deeplab.prepare.download", "download one file from mirrors, resumable and verified"),
}


def run(args: argparse.Namespace) -> int:
    """Run the dataset command ``args.what`` with ``args.arguments``."""
    return run_listed("data", COMMANDS, args)
