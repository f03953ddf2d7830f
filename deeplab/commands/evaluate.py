"""``python -m deeplab evaluate``: the mIoU of a checkpoint on a validation split, callable from notebooks too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torch import nn

from deeplab.commands.inference import announce_emulation, chosen_device, inference_from_args
from deeplab.commands.report import iou_table, save_plots
from deeplab.config import Config
from deeplab.data import build_dataset
from deeplab.data.transforms import eval_transforms
from deeplab.engine import distributed
from deeplab.engine.evaluate import Inference, evaluate
from deeplab.engine.runlog import FINAL_METRICS, atomic_write_json
from deeplab.engine.train import set_gpu_numerics
from deeplab.paths import output_folder
from deeplab.segmenter import load_trained
from deeplab.weights.released import resolve_checkpoint


def model_from_checkpoint(checkpoint: Path, config_name: str | None, overrides: list[str]) -> tuple[Config, Any]:
    """The config stored in our checkpoint (or the named one, for sssegmentation's) and the loaded model."""
    trained = load_trained(checkpoint, config_name, overrides)
    return trained.config, trained.model


def evaluate_checkpoint(
    config: Config, model: nn.Module, data_root: Path, *, split: str | None, inference: Inference, device: str | None
) -> tuple[dict[str, Any], bool]:
    """Metrics of ``model`` on ``split`` (default: the config's validation split), in this process and its
    ``torchrun`` peers, with ``"data"`` saying which dataset, split and how many images; returns them and whether
    this is the main process. ``config.data.num_workers`` processes read the images; the fast path folds ``model``
    in place."""
    env = distributed.setup(device)
    set_gpu_numerics(config.train)  # the reference's: fp32 with TF32 off
    model.to(env.device)
    data = config.data
    dataset = build_dataset(
        data.dataset, data_root, split or data.val_split, transforms=eval_transforms(scale=data.scale)
    )
    metrics = evaluate(
        model,
        dataset,
        num_classes=config.model.num_classes,
        env=env,
        inference=inference,
        progress=True,
        workers=data.num_workers,
        inplace=True,  # the caller's model is folded, not copied
    )
    distributed.teardown()
    about = f"{data.dataset} {split or data.val_split} ({len(dataset)} images) in {data_root}"
    return {**metrics, "data": about}, env.is_main


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    """mIoU of a checkpoint; prints the per-class table; with ``--out`` writes metrics.json and plots."""
    if args.out:
        output_folder(args.out, "--out")
    checkpoint = resolve_checkpoint(args.checkpoint, args.config, args.released_root)
    trained = load_trained(checkpoint, args.config, args.set, args.data_root)
    config = trained.config
    inference = inference_from_args(args, config.data.crop_size)
    announce_emulation(inference, chosen_device(args.device))
    metrics, is_main = evaluate_checkpoint(
        config, trained.model, args.data_root, split=args.split, inference=inference, device=args.device
    )
    if is_main:
        class_names = trained.classes.classes
        print(iou_table(metrics, class_names))
        if args.out:
            atomic_write_json(args.out / FINAL_METRICS, metrics)
            save_plots(args.out, metrics, class_names)
    return metrics


def run(args: argparse.Namespace) -> None:
    """The command line's ``evaluate``."""
    evaluate_command(args)
