"""What the ``train``, ``evaluate`` and ``predict`` commands do, callable from Python and notebooks too."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeplab.config import Config, ConfigError, apply_override, config_from_dict, get_config, validate_config
from deeplab.data import build_dataset, dataset_info
from deeplab.data.datasets import DatasetNotFoundError, read_image
from deeplab.data.transforms import eval_transforms
from deeplab.engine import distributed
from deeplab.engine.evaluate import Inference, evaluate, inference_model, predict_probabilities
from deeplab.engine.precision import autocast_dtype
from deeplab.engine.train import FINAL_METRICS, LOG, atomic_write_json, read_log, set_gpu_numerics, train
from deeplab.models import build_model
from deeplab.models.weights import load_checkpoint, read_checkpoint
from deeplab.models.zoo import DEFAULT_ROOT
from deeplab.paths import output_folder
from deeplab.released import resolve_checkpoint

MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def iou_table(metrics: dict[str, Any], class_names: list[str]) -> str:
    """Per-class IoU and the summary numbers as a markdown table."""
    lines = ["| class | IoU (%) |", "|---|---:|"]
    for name, iou in zip(class_names, metrics["iou"], strict=True):
        lines.append(f"| {name} | {'—' if iou is None or math.isnan(iou) else f'{100 * iou:.2f}'} |")
    lines.append(f"| **mIoU** | **{100 * metrics['miou']:.2f}** |")
    lines.append(f"| pixel accuracy | {100 * metrics['pixel_accuracy']:.2f} |")
    return "\n".join(lines)


def save_plots(run_dir: Path, metrics: dict[str, Any], class_names: list[str]) -> list[Path]:
    """Training curves (if a log exists), per-class IoU bars and the confusion matrix as PNGs in ``run_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deeplab import viz

    figures = {
        "per_class_iou.png": viz.plot_per_class_iou(metrics["iou"], class_names),
        "confusion_matrix.png": viz.plot_confusion_matrix(metrics["confusion_matrix"], class_names),
    }
    if (run_dir / LOG).is_file():
        figures["training_curves.png"] = viz.plot_training_curves(read_log(run_dir / LOG))
    paths = []
    for name, figure in figures.items():
        figure.savefig(run_dir / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(run_dir / name)
    return paths


def train_command(
    config_name: str, data_root: Path, out: Path | None, *, overrides: list[str], resume: bool, device: str | None
) -> dict[str, Any]:
    """Train, then (main process) print the per-class IoU table and save the plots into the run folder."""
    config = get_config(config_name, overrides)
    run_dir = output_folder(out or Path("runs") / config.name, "--out")
    metrics = train(config, data_root, run_dir, resume=resume, device=device)
    if distributed_rank() == 0:
        class_names = dataset_info(config.data.dataset).classes
        print(iou_table(metrics, class_names))
        save_plots(run_dir, metrics, class_names)
        print(f"run folder: {run_dir} (last.pth, {LOG}, {FINAL_METRICS}, plots)")
    return metrics


def distributed_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    import os

    return int(os.environ.get("RANK", 0))


def model_from_checkpoint(checkpoint: Path, config_name: str | None, overrides: list[str]) -> tuple[Config, Any]:
    """The config stored in our checkpoint (or the named one, for sssegmentation's) and the loaded model."""
    stored = read_checkpoint(checkpoint).get("config")
    if config_name:
        config = get_config(config_name, overrides)
    elif stored:
        config = config_from_dict(stored)
        for override in overrides:
            apply_override(config, override)
        validate_config(config)
    else:
        raise ConfigError(f"{checkpoint} holds no config (an sssegmentation checkpoint?): pass --config NAME")
    model = build_model(config)
    load_checkpoint(checkpoint, model)
    return config, model.eval()


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
    config, model = model_from_checkpoint(checkpoint, args.config, args.set)
    data = config.data
    inference = Inference(
        scales=MULTI_SCALES if args.multi_scale else (1.0,),
        flip=args.flip,
        window=data.crop_size if args.slide else None,
        stride=tuple(size * 2 // 3 for size in data.crop_size) if args.slide else None,
        fast=not args.plain,
        amp=args.amp,
    )
    metrics, is_main = evaluate_checkpoint(
        config, model, args.data_root, split=args.split, inference=inference, device=args.device
    )
    if is_main:
        class_names = dataset_info(data.dataset).classes
        print(iou_table(metrics, class_names))
        if args.out:
            atomic_write_json(args.out / FINAL_METRICS, metrics)
            save_plots(args.out, metrics, class_names)
    return metrics


def predict_command(
    checkpoint: str | Path,
    images: list[Path],
    out: Path,
    *,
    config_name: str | None,
    device: str | None,
    released_root: Path = DEFAULT_ROOT,
    inference: Inference | None = None,
) -> list[Path]:
    """Write ``<stem>_mask.png`` (colourised prediction) and ``<stem>_overlay.png`` for every image; ``inference``
    defaults to the fast fp32 path."""
    from torchvision.io import write_png

    from deeplab import viz

    inference = inference or Inference()
    for path in images:
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not found"
            raise DatasetNotFoundError(f"image {path} is {kind}: pass JPEG or PNG files")
    output_folder(out, "--out")
    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    autocast_dtype(inference.amp, where, option="--amp")
    config, model = model_from_checkpoint(resolve_checkpoint(checkpoint, config_name, released_root), config_name, [])
    network = inference_model(model.to(where), inference, inplace=True)
    info = dataset_info(config.data.dataset)
    transform = eval_transforms(scale=config.data.scale)
    written = []
    for path in images:
        image = read_image(path)  # (3, H, W) uint8; a file that is not an image ends in one line
        sample = transform({"image": image, "mask": torch.zeros(image.shape[-2:], dtype=torch.int64)})
        batch = sample["image"].unsqueeze(0).to(where)
        prediction = predict_probabilities(network, batch, tuple(image.shape[-2:]), inference).argmax(dim=1)[0].cpu()
        write_png(viz.colorize_mask(prediction, info.palette), str(out / f"{path.stem}_mask.png"))
        write_png(viz.overlay(image, prediction, info.palette), str(out / f"{path.stem}_overlay.png"))
        written.append(out / f"{path.stem}_overlay.png")
    print(f"wrote {len(written)} masks and overlays to {out}")
    return written
