"""``python -m deeplab predict``: class-index masks (palette PNGs) and overlays of image files and folders."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from deeplab.commands.inference import announce_emulation, chosen_device, inference_from_args
from deeplab.data import DatasetInfo
from deeplab.data.datasets import IMAGE_SUFFIXES, DatasetNotFoundError, read_image, write_mask_file
from deeplab.engine.evaluate import Inference, sliding
from deeplab.engine.precision import autocast_dtype
from deeplab.models.zoo import DEFAULT_ROOT
from deeplab.paths import atomic_write, output_folder
from deeplab.segmenter import Segmenter, load_trained
from deeplab.weights.released import resolve_checkpoint


def image_files(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """The images to predict and where each one's outputs go, as ``(image, output stem)``, the stem relative to the
    output folder: a file's own stem; for a folder, every image under it (JPEG, PNG, WebP, BMP, TIFF; sorted),
    keeping the sub-folders (under the folder's name when several inputs are given)."""
    pairs = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DatasetNotFoundError(
                    f"folder {path} holds no images (JPEG, PNG, WebP, BMP, TIFF): pass image files or folders"
                )
            prefix = Path(path.name) if len(inputs) > 1 else Path()
            pairs += [(image, prefix / image.relative_to(path).with_suffix("")) for image in found]
        elif path.is_file():
            pairs.append((path, Path(path.stem)))
        else:
            raise DatasetNotFoundError(f"image {path} not found: pass image files or folders of them")
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


def run(args: argparse.Namespace) -> None:
    """``python -m deeplab predict``: :func:`predict_command` with the inference options of the command line."""
    predict_command(
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
