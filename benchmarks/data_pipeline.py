"""Training data pipeline speed per CPU core: ours (torchvision.transforms.v2) against the reference's cv2/numpy way.

Both pipelines decode a VOC-sized JPEG (500 x 375) and its palette PNG mask and run the reference training recipe:
resize to (2048, 512) x U(0.5, 2.0) keeping the aspect ratio, 512 x 512 crop with at most 75 % of one class
(10 tries), flip, photometric distortion, normalize, pad. The reference way is sssegmentation's own transforms
(``ssseg.modules.datasets.pipelines.transforms``, as its ``vocaug_512x512`` config lists them) with its reader
(``cv2.imread`` for the image, ``cv2.imread(..., IMREAD_GRAYSCALE).astype(float32)`` for the mask); ours is
``VOCSegmentation(..., transforms=train_transforms())``. One thread each (``torch.set_num_threads(1)``,
``cv2.setNumThreads(1)``), as in a DataLoader worker; rounds alternate between the two and
medians are reported, the speed ratio as the median over pairs of back-to-back rounds.

    python -m benchmarks.data_pipeline [--images 24 --rounds 15]

Needs ``opencv-python-headless`` and ``sssegmentation`` (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeplab.data import VOCSegmentation, train_transforms
from deeplab.data.transforms import MEAN, STD
from deeplab.prepare import toy as make_toy

SIZE = (375, 500)  # a typical VOC image, (H, W)
CROP, SCALE = (512, 512), (2048, 512)


def write_images(root: Path, count: int) -> VOCSegmentation:
    """``count`` toy scenes of VOC size as JPEGs + palette PNGs in the VOC layout under ``root``."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"2012_{i:06d}" for i in range(count)]
    for i, sample_id in enumerate(ids):
        make_toy.save_sample(*make_toy.render_sample(np.random.default_rng(i), *SIZE), voc, sample_id)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return VOCSegmentation(root, "train", transforms=train_transforms(CROP, SCALE))


def reference_steps() -> list[Callable[[dict], dict]]:
    """sssegmentation's training transforms for VOC, with the ignore label 255."""
    from ssseg.modules.datasets.pipelines import transforms as T

    return [
        T.Resize(SCALE, scale_range=(0.5, 2.0)),
        T.RandomCrop(CROP, ignore_index=255, one_category_max_ratio=0.75),
        T.RandomFlip(prob=0.5),
        T.PhotoMetricDistortion(),
        T.Normalize(list(MEAN), list(STD)),
        T.ToTensor(),
        T.Padding(CROP, data_type="tensor", seg_target_fill_value=255),
    ]


def reference_read(image_path: Path, mask_path: Path) -> dict[str, Any]:
    """sssegmentation's ``BaseDataset.read``."""
    import cv2

    image = cv2.imread(str(image_path))
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    return {"image": image, "seg_target": mask, "height": image.shape[0], "width": image.shape[1]}


def ours_stages(dataset: VOCSegmentation) -> list[tuple[str, Callable[[Any], Any]]]:
    read = lambda i: dataset.__class__.__getitem__(_without_transforms(dataset), i)  # noqa: E731
    return _numbered([("read", read)] + [(_name(step), step) for step in dataset.transforms.transforms])


def reference_stages(dataset: VOCSegmentation) -> list[tuple[str, Callable[[Any], Any]]]:
    read = lambda i: reference_read(dataset.samples[i].image, dataset.samples[i].mask)  # noqa: E731
    return _numbered([("read", read)] + [(_name(step), step) for step in reference_steps()])


def _without_transforms(dataset: VOCSegmentation) -> VOCSegmentation:
    plain = object.__new__(type(dataset))
    plain.__dict__.update(dataset.__dict__, transforms=None)
    return plain


def _name(step: Any) -> str:
    return getattr(step, "__name__", type(step).__name__)


def _numbered(stages: list[tuple[str, Callable]]) -> list[tuple[str, Callable]]:
    """Stage names prefixed with their position, so that a transform used twice is timed twice."""
    return [(f"{i}. {name}", stage) for i, (name, stage) in enumerate(stages)]


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def run_stages(stages: list[tuple[str, Callable]], count: int, seconds: dict[str, float]) -> float:
    """Push images ``0 .. count - 1`` through ``stages``, adding each stage's time to ``seconds``; total seconds."""
    total = 0.0
    for index in range(count):
        value: Any = index
        for name, stage in stages:
            start = time.perf_counter()
            value = stage(value)
            spent = time.perf_counter() - start
            seconds[name] = seconds.get(name, 0.0) + spent
            total += spent
    return total


def measure(dataset: VOCSegmentation, rounds: int) -> dict[str, Any]:
    """Seconds per image of each pipeline in each of ``rounds`` back-to-back rounds, and per-stage means."""
    pipelines = {"ours (torchvision v2)": ours_stages(dataset), "reference way (cv2/numpy)": reference_stages(dataset)}
    per_image: dict[str, list[float]] = {name: [] for name in pipelines}
    stage_seconds: dict[str, dict[str, float]] = {name: {} for name in pipelines}
    count = len(dataset)
    for stages in pipelines.values():  # warm-up
        seed_all(0)
        run_stages(stages, min(count, 4), {})
    for round_index in range(rounds):
        order = list(pipelines) if round_index % 2 == 0 else list(reversed(pipelines))
        for name in order:
            seed_all(round_index)
            per_image[name].append(run_stages(pipelines[name], count, stage_seconds[name]) / count)
    stages = {
        name: {stage: spent / (count * rounds) for stage, spent in seconds.items()}
        for name, seconds in stage_seconds.items()
    }
    return {"per_image": per_image, "stages": stages}


def check_outputs(dataset: VOCSegmentation) -> None:
    """Both pipelines give a (3, 512, 512) float image and a (512, 512) mask with the same label set."""
    seed_all(0)
    ours = dataset[0]
    reference = reference_read(dataset.samples[0].image, dataset.samples[0].mask)
    for step in reference_steps():
        reference = step(reference)
    assert ours["image"].shape == reference["image"].shape == (3, *CROP), (
        ours["image"].shape,
        reference["image"].shape,
    )
    assert ours["mask"].shape == reference["seg_target"].shape == CROP


def report(results: dict[str, Any], images: int, rounds: int) -> str:
    """Markdown tables: images/s per core with the speed ratio (median of the paired rounds), then ms per stage."""
    (ours_name, ours), (ref_name, ref) = results["per_image"].items()
    ratios = sorted(r / o for o, r in zip(ours, ref, strict=True))
    lines = [
        f"Training pipeline, VOC-sized JPEG {SIZE[1]}x{SIZE[0]} -> {CROP[0]}x{CROP[1]} crop, one thread, "
        f"{images} images x {rounds} alternating rounds (medians), torch {torch.__version__}",
        "",
        "| pipeline | images/s per core | ms per image | speed vs reference way (range over rounds) |",
        "|---|---:|---:|---:|",
        f"| {ours_name} | {1 / statistics.median(ours):.0f} | {statistics.median(ours) * 1e3:.2f} "
        f"| {statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) |",
        f"| {ref_name} | {1 / statistics.median(ref):.0f} | {statistics.median(ref) * 1e3:.2f} | 1.00x |",
        "",
    ]
    for name, stages in results["stages"].items():
        lines += [f"Stages of {name} (mean ms per image):", "", "| stage | ms |", "|---|---:|"]
        lines += [f"| {stage} | {seconds * 1e3:.2f} |" for stage, seconds in stages.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="images per round (default: 24)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per pipeline (default: 15)")
    args = parser.parse_args(argv)
    try:
        import cv2
        import ssseg  # noqa: F401
    except ImportError as error:
        sys.exit(f"{error.name} is missing: pip install opencv-python-headless sssegmentation dill (the dev extra)")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with tempfile.TemporaryDirectory() as folder:
        dataset = write_images(Path(folder), args.images)
        check_outputs(dataset)
        print(report(measure(dataset, args.rounds), args.images, args.rounds))


if __name__ == "__main__":
    main()
