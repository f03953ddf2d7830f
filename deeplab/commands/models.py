"""``python -m deeplab models``: the model zoo, with the parameters and GFLOPs of each config."""

from __future__ import annotations

import argparse

from deeplab.config import config_names
from deeplab.models.complexity import zoo_table


def run(args: argparse.Namespace) -> None:
    """Print the table of ``args.configs`` (``"all"`` or comma-separated names)."""
    names = config_names(folder=False) if args.configs == "all" else args.configs.split(",")
    print(zoo_table(names))
    print("\nGFLOPs: one inference forward at batch 1 and the crop size (a multiply-add counts as 2 FLOPs).")
