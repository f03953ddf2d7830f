"""What the ``train``, ``evaluate`` and ``predict`` commands do, callable from Python and notebooks too."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deeplab.config import Config, get_config, with_dataset_classes
from deeplab.data import DatasetInfo, build_dataset, dataset_info
from deeplab.data.datasets import IMAGE_SUFFIXES, DatasetNotFoundError, read_image, write_mask_file
from deeplab.data.transforms import eval_transforms
from deeplab.engine import distributed
from deeplab.engine.evaluate import Inference, evaluate, inference_of, sliding
from deeplab.engine.precision import autocast_dtype, emulation_note
from deeplab.engine.runlog import FINAL_METRICS, LOG, atomic_write_json, read_log
from deeplab.engine.train import set_gpu_numerics, train
from deeplab.models.zoo import DEFAULT_ROOT
from deeplab.paths import atomic_write, output_folder
from deeplab.segmenter import Segmenter, load_trained
from deeplab.weights.released import resolve_checkpoint


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
    import os

    return int(os.environ.get("RANK", 0))


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


def inference_from_args(args: argparse.Namespace, crop_size: tuple[int, int] | None) -> Inference:
    """The ``Inference`` of ``--multi-scale``, ``--flip``, ``--slide`` (windows of ``crop_size``, 2/3 overlap; with
    ``crop_size=None`` the caller sets the window), ``--plain`` and ``--amp``."""
    window = crop_size if args.slide else None
    return inference_of(flip=args.flip, multi_scale=args.multi_scale, window=window, amp=args.amp, fast=not args.plain)


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


def chosen_device(device: str | None) -> torch.device:
    """``device``, or a GPU when there is one, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def announce_emulation(inference: Inference, where: torch.device) -> None:
    """Print :func:`~deeplab.engine.precision.emulation_note`'s line when ``--amp bf16`` runs in fp32 on ``where``."""
    if note := emulation_note(inference.amp, where, option="--amp"):
        print(note, flush=True)


def image_files(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """The images to predict and where each one's outputs go, as ``(image, output stem)``, the stem relative to
    the output folder: a file's own stem; for a folder, every JPEG or PNG under it (sorted), keeping the sub-folders
    (under the folder's name when several inputs are given)."""
    pairs = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DatasetNotFoundError(f"folder {path} holds no JPEG or PNG images: pass image files or folders")
            prefix = Path(path.name) if len(inputs) > 1 else Path()
            pairs += [(image, prefix / image.relative_to(path).with_suffix("")) for image in found]
        elif path.is_file():
            pairs.append((path, Path(path.stem)))
        else:
            raise DatasetNotFoundError(f"image {path} not found: pass JPEG or PNG files or folders of them")
    seen: dict[Path, Path] = {}
    for image, stem in pairs:
        if stem in seen:
            raise DatasetNotFoundError(
                f"{seen[stem]} and {image} would both be written as {stem}_mask.png: predict them in separate runs"
            )
        seen[stem] = image
    return pairs


def predict_command(
    checkpoint: str | Path,
    images: list[Path],
    out: Path,
    *,
    config_name: str | None,
    device: str | None,
    released_root: Path = DEFAULT_ROOT,
    inference: Inference | None = None,
    slide: bool = False,
    color: bool = False,
    probabilities: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Segment every image file, and every image in the folders among ``images`` (sub-folders kept, see
    :func:`image_files`), with :class:`~deeplab.segmenter.Segmenter`; write what :func:`write_prediction` writes.
    ``inference`` defaults to the fast fp32 path; ``slide`` runs it over windows of the config's crop size (2/3
    overlap). Returns the masks written."""
    from tqdm.auto import tqdm

    inference = inference or Inference()
    pairs = image_files(images)
    output_folder(out, "--out")
    where = chosen_device(device)
    autocast_dtype(inference.amp, where, option="--amp")
    announce_emulation(inference, where)
    source = resolve_checkpoint(checkpoint, config_name, released_root)
    segmenter = Segmenter.from_trained(load_trained(source, config_name, [])).to(where)
    if slide:
        inference = sliding(inference, segmenter.config.data.crop_size)
    written = []
    for path, stem in tqdm(pairs, desc="predict", unit="image", disable=not progress):
        image = read_image(path)  # (3, H, W) uint8; a file that is not an image ends in one line
        scores = segmenter.infer(image, inference)  # (C, H, W)
        target = out / stem
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_prediction(target, image, scores, segmenter.classes, color=color, scores=probabilities))
    print(f"wrote {len(written)} masks and overlays to {out}")
    return written


def write_prediction(
    target: Path, image: torch.Tensor, probabilities: torch.Tensor, classes: DatasetInfo, *, color: bool, scores: bool
) -> Path:
    """For ``image`` ``(3, H, W)`` and its class ``probabilities`` ``(C, H, W)``: ``<target>_mask.png``, the class
    of each pixel as a palette PNG (values are class indices, viewers show the classes' colours), and
    ``<target>_overlay.png``; with ``color``, ``<target>_color.png`` (RGB); with ``scores``,
    ``<target>_probabilities.npz`` (``probabilities`` float16 ``(C, H, W)`` and ``classes``). Returns the mask."""
    from torchvision.io import write_png

    from deeplab import viz

    prediction = probabilities.argmax(dim=0).to(torch.uint8)  # (H, W)
    mask = Path(f"{target}_mask.png")
    write_mask_file(prediction, classes.palette, mask)
    pictures = {"overlay": viz.overlay(image, prediction, classes.palette)}
    if color:
        pictures["color"] = viz.colorize_mask(prediction, classes.palette)
    for name, picture in pictures.items():
        atomic_write(Path(f"{target}_{name}.png"), lambda file, picture=picture: write_png(picture, str(file)))
    if scores:

        def save_scores(file: Path) -> None:
            with file.open("wb") as handle:  # a file object: np.savez would add ".npz" to the temporary's name
                half = probabilities.to(torch.float16).numpy()
                np.savez_compressed(handle, probabilities=half, classes=np.array(classes.classes))

        atomic_write(Path(f"{target}_probabilities.npz"), save_scores)
    return mask


def predict_from_args(args: argparse.Namespace) -> list[Path]:
    """``python -m deeplab predict``: :func:`predict_command` with the inference options of the command line."""
    return predict_command(
        args.checkpoint,
        args.images,
        args.out,
        config_name=args.config,
        device=args.device,
        released_root=args.released_root,
        inference=inference_from_args(args, crop_size=None),  # the window of --slide is the checkpoint config's
        slide=args.slide,
        color=args.color,
        probabilities=args.probabilities,
    )
