"""``python -m deeplab weights WHAT``: download and verify the ImageNet backbones and the reference's released
checkpoints (:mod:`deeplab.weights`)."""

from __future__ import annotations

import argparse

from deeplab.commands import Listed, run_listed

COMMANDS: Listed = {
    "imagenet": ("deeplab.weights.imagenet", "the ImageNet ResNetV1c backbones the reference configs start from"),
    "released": ("deeplab.weights.released", "the reference's released checkpoints and logs, verified by content"),
}


def run(args: argparse.Namespace) -> int:
    """Run the weights command ``args.what`` with ``args.arguments``."""
    return run_listed("weights", COMMANDS, args)
