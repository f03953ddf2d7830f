"""``python -m deeplab train``: train a config, then report its per-class IoU and plots (under ``torchrun``, on every
process)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from deeplab.commands.report import iou_table, save_plots
from deeplab.config import get_config, with_dataset_classes
from deeplab.data import dataset_info
from deeplab.engine.runlog import FINAL_METRICS, LOG
from deeplab.engine.train import train
from deeplab.paths import output_folder


def train_command(
    config_name: str, data_root: Path, out: Path | None, *, overrides: list[str], resume: bool, device: str | None
) -> dict[str, Any]:
    """Train, then (main process) print the per-class IoU table and save the plots into the run folder."""
    config = with_dataset_classes(get_config(config_name, overrides), data_root)
    run_dir = output_folder(out or Path("runs") / config.name, "--out")
    metrics = train(config, data_root, run_dir, resume=resume, device=device)
    if distributed_rank() == 0:
        class_names = dataset_info(config.data.dataset, data_root).classes
        print(iou_table(metrics, class_names))
        save_plots(run_dir, metrics, class_names)
        print(f"run folder: {run_dir} (last.pth, best.pth, {LOG}, {FINAL_METRICS}, plots)")
    return metrics


def distributed_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    return int(os.environ.get("RANK", 0))


def run(args: argparse.Namespace) -> None:
    """The command line's ``train``."""
    train_command(args.config, args.data_root, args.out, overrides=args.set, resume=args.resume, device=args.device)
