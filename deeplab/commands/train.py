"""``python -m deeplab train``: train a config, then report its per-class IoU and plots (under ``torchrun``, on every
process)."""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deeplab.commands.report import iou_table, save_plots
from deeplab.config import Config, get_config, with_dataset_classes
from deeplab.data import build_dataset, dataset_info
from deeplab.engine.runlog import FINAL_METRICS, LOG
from deeplab.engine.train import TrainingError, train
from deeplab.models.weights import CheckpointError, require_backbone_weights
from deeplab.paths import output_folder


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Train as the command line says, then (main process) print the per-class IoU table and save the plots into
    the run folder."""
    data_root = args.data_root
    config, run_dir = preflight(get_config(args.config, args.set), data_root, args.out)
    timeout = datetime.timedelta(minutes=args.dist_timeout)
    metrics = train(
        config, data_root, run_dir, resume=args.resume, replan=args.replan, device=args.device, timeout=timeout
    )
    if distributed_rank() == 0:
        class_names = dataset_info(config.data.dataset, data_root).classes
        print(iou_table(metrics, class_names))
        save_plots(run_dir, metrics, class_names)
        print(f"run folder: {run_dir} (last.pth, best.pth, {LOG}, {FINAL_METRICS}, plots)")
    return metrics


def preflight(config: Config, data_root: Path, out: Path | None) -> tuple[Config, Path]:
    """``config`` with the data's classes, and the run folder, once every precondition of a run holds: the data (its
    classes file and both splits), the ImageNet and ``model.init_from`` files, the output folder. Each is checked
    even when another failed, before anything is written; one problem is its own error, several are one error that
    names each on a line of its own."""
    from deeplab.errors import USER_ERRORS

    problems: list[Exception] = []

    def attempt(check: Callable[[], Any]) -> Any:
        try:
            return check()
        except USER_ERRORS as error:
            problems.append(error)
            return None

    for split in dict.fromkeys((config.data.train_split, config.data.val_split)):
        attempt(lambda split=split: build_dataset(config.data.dataset, data_root, split))
    with_classes = None if problems else attempt(lambda: with_dataset_classes(config, data_root))  # after the data
    if (weights := config.model.backbone_weights_file) is not None:
        attempt(lambda: require_backbone_weights(weights))
    if (init := config.model.init_checkpoint) is not None and not Path(init).is_file():
        problems.append(CheckpointError(f"model.init_from {init} not found: give a checkpoint file, or none"))
    run_dir = attempt(lambda: output_folder(out or Path("runs") / config.name, "--out"))
    messages = list(dict.fromkeys(str(problem) for problem in problems))  # a missing folder fails both splits alike
    if len(messages) == 1:
        raise problems[0]
    if messages:
        raise TrainingError(f"{len(messages)} problems stop the run before it starts:\n  " + "\n  ".join(messages))
    return with_classes, run_dir


def distributed_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    return int(os.environ.get("RANK", 0))


def run(args: argparse.Namespace) -> None:
    """The command line's ``train``."""
    train_command(args)
