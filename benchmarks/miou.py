"""How fast is the confusion matrix? Ours (batched ``torch.bincount``) against the per-image intersect-and-union.

The reference toolboxes count areas image by image: mmsegmentation 0.x (``mmseg/core/evaluation/mean_iou.py``)
masks out the ignored pixels and calls ``np.histogram`` three times per image (intersection, prediction, label);
sssegmentation 1.7 (``Evaluation.totalintersectandunion``) does the same with ``torch.histc``. All of them are run on
the same synthetic predictions (piecewise-constant maps, as real ones are, with ignored regions), their areas are
checked to be identical, and the best of ``--repeats`` runs is reported.

    python -m benchmarks.miou                      # 100 images of 512 x 512, 21 and 150 classes
    python -m benchmarks.miou --images 20 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from deeplab.engine.metrics import IGNORE_INDEX, ConfusionMatrix, intersection_and_union

Areas = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # intersection, union, prediction, label: (C,) each


def piecewise_constant(num_classes: int, shape: tuple[int, int, int], cell: int, generator: torch.Generator):
    """``(N, H, W)`` int64 map of ``cell x cell`` blocks of random classes (nearest-upsampled noise)."""
    n, height, width = shape
    coarse = torch.randint(num_classes, (n, 1, -(-height // cell), -(-width // cell)), generator=generator)
    return F.interpolate(coarse.float(), scale_factor=cell, mode="nearest")[:, 0, :height, :width].long()


def synthetic_predictions(num_images: int, size: int, num_classes: int, seed: int = 0):
    """``(pred, target)``, both ``(N, size, size)`` int64: regions of ~32 px, 10% ignored, ~80% predicted right."""
    generator = torch.Generator().manual_seed(seed)
    shape = (num_images, size, size)
    target = piecewise_constant(num_classes, shape, 32, generator)
    target[piecewise_constant(10, shape, 8, generator) == 0] = IGNORE_INDEX
    wrong = piecewise_constant(5, shape, 16, generator) == 0
    pred = torch.where(wrong, piecewise_constant(num_classes, shape, 16, generator), target.clamp(max=num_classes - 1))
    return pred, target


def mmseg_areas(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> Areas:
    """Per-image ``np.histogram`` of intersection, prediction and label, summed: mmsegmentation 0.x's mean_iou.py."""
    totals = [np.zeros(num_classes) for _ in range(4)]
    for pred_label, label in zip(pred.numpy(), target.numpy(), strict=True):
        mask = label != IGNORE_INDEX
        pred_label, label = pred_label[mask], label[mask]
        intersect = pred_label[pred_label == label]
        area_intersect, _ = np.histogram(intersect, bins=np.arange(num_classes + 1))
        area_pred_label, _ = np.histogram(pred_label, bins=np.arange(num_classes + 1))
        area_label, _ = np.histogram(label, bins=np.arange(num_classes + 1))
        area_union = area_pred_label + area_label - area_intersect
        for total, area in zip(totals, (area_intersect, area_union, area_pred_label, area_label), strict=True):
            total += area
    return tuple(totals)


def sssegmentation_areas(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> Areas:
    """sssegmentation 1.7's own per-image ``torch.histc`` areas."""
    from ssseg.modules.datasets.pipelines.evaluation import Evaluation

    areas = Evaluation.totalintersectandunion(list(pred.numpy()), list(target.numpy()), num_classes, IGNORE_INDEX)
    return tuple(area.numpy() for area in areas)


def ours_areas(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, per_image: bool) -> Areas:
    """Our confusion matrix, one ``update`` per image (as evaluation runs) or one for the whole batch."""
    metric = ConfusionMatrix(num_classes)
    for image_pred, image_target in zip(pred, target, strict=True) if per_image else [(pred, target)]:
        metric.update(image_pred, image_target)
    intersection, union = intersection_and_union(metric.matrix)
    return tuple(area.numpy() for area in (intersection, union, metric.matrix.sum(0), metric.matrix.sum(1)))


BASELINE = "mmseg 0.x: np.histogram per image"
METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], Areas]] = {
    BASELINE: mmseg_areas,
    "sssegmentation 1.7: torch.histc per image": sssegmentation_areas,
    "ours: one update per image": functools.partial(ours_areas, per_image=True),
    "ours: one batched update": functools.partial(ours_areas, per_image=False),
}


def best_times(pred: torch.Tensor, target: torch.Tensor, num_classes: int, repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` runs of every method (interleaved, so a busy moment hurts them alike), in seconds.

    Every method's areas are checked against the baseline's.
    """
    methods = {name: method for name, method in METHODS.items() if "sssegmentation" not in name or has_ssseg()}
    seconds: dict[str, float] = dict.fromkeys(methods, math.inf)
    for _ in range(repeats):
        reference = None
        for name, method in methods.items():
            start = time.perf_counter()
            areas = method(pred, target, num_classes)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
            reference = areas if reference is None else reference
            for ours, theirs in zip(areas, reference, strict=True):
                np.testing.assert_array_equal(np.asarray(ours, dtype=np.float64), theirs, err_msg=name)
    return seconds


@functools.cache
def has_ssseg() -> bool:
    try:
        import ssseg  # noqa: F401
    except ImportError:
        return False
    return True


# (prediction, label) dtypes: argmax output and our dataset's masks; argmax output and label PNGs as mmseg reads
# them; both as PNGs (predictions saved to disk and evaluated offline)
DTYPES = ((torch.int64, torch.int64), (torch.int64, torch.uint8), (torch.uint8, torch.uint8))


def table(num_images: int, size: int, class_counts: list[int], repeats: int) -> list[str]:
    """The rows of the markdown table: every method on every (classes, dtypes) case."""
    rows = []
    for num_classes in class_counts:
        pred, target = synthetic_predictions(num_images, size, num_classes)
        for pred_dtype, target_dtype in DTYPES:
            seconds = best_times(pred.to(pred_dtype), target.to(target_dtype), num_classes, repeats)
            dtypes = " / ".join(str(dtype).removeprefix("torch.") for dtype in (pred_dtype, target_dtype))
            for name, time_s in seconds.items():
                rows.append(
                    f"| {num_classes} | {dtypes} | {name} | {1000 * time_s:.1f} | {1000 * time_s / num_images:.2f} | "
                    f"{seconds[BASELINE] / time_s:.1f}x |"
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, nargs="+", default=[21, 150])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"{args.images} images of {args.size} x {args.size}, best of {args.repeats}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, {platform.processor() or platform.machine()}\n"
    )
    print("| classes | pred / label dtype | method | time (ms) | ms / image | speed-up vs mmseg |")
    print("|---:|---|---|---:|---:|---:|")
    print("\n".join(table(args.images, args.size, args.classes, args.repeats)))


if __name__ == "__main__":
    main()
