"""Confusion matrix, IoU, mIoU and pixel accuracy: the numbers every segmentation paper reports.

All of them come from one ``(C, C)`` int64 confusion matrix ``M`` whose rows are the ground truth and whose columns
are the prediction: ``M[t, p]`` counts the pixels of class ``t`` predicted as ``p``. Pixels labelled with the ignore
index (255) are not counted. For class ``c``, ``TP = M[c, c]``, ``FN = row sum - TP``, ``FP = column sum - TP`` and

    IoU_c = TP / (TP + FP + FN),    mIoU = mean of IoU_c over the classes with TP + FP + FN > 0.

A class that appears in neither the ground truth nor the prediction has IoU NaN and is left out of the mean: the
convention of the reference toolboxes (mmsegmentation, sssegmentation) and of the official Cityscapes script.
Areas are summed over the whole set before dividing (not averaged per image).

The matrix is counted with ``torch.bincount`` over ``num_classes * target + pred`` for all the images of a call at
once (in chunks of ``CHUNK_PIXELS`` on the CPU, in one go on a GPU), on whatever device the tensors live on.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from deeplab.engine.distributed import sum_across_processes

IGNORE_INDEX = 255
CHUNK_PIXELS = 1 << 19  # pixels counted per bincount on the CPU: the int32 index (2 MiB) stays in the cache
CPU_LANES = 4  # copies of the count table on the CPU, see `confusion_matrix`


class LabelError(ValueError):
    """Predictions or labels that cannot be counted: wrong shapes, floating point values, values out of range."""


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = IGNORE_INDEX
) -> torch.Tensor:
    """The ``(C, C)`` int64 confusion matrix (rows: ground truth, columns: prediction) of one or many images.

    ``pred`` and ``target`` are integer tensors of the same shape, ``(H, W)`` or ``(N, H, W)`` (any shape works), on
    the same device; ``pred`` holds ``0 .. C - 1``, ``target`` holds ``0 .. C - 1`` or ``ignore_index``. Anything
    else raises :class:`LabelError`.

    On the CPU ``torch.bincount`` is a serial loop, and neighbouring pixels nearly always fall into the same cell,
    so each increment waits for the previous one to land. Consecutive pixels are therefore spread over
    ``CPU_LANES`` copies of the count table (pixel ``i`` counts in copy ``i % CPU_LANES``) that are summed at the
    end, and the pixels are taken ``CHUNK_PIXELS`` at a time so the int32 index never leaves the cache.
    """
    _check_pair(pred, target, num_classes, ignore_index)
    pred, target = pred.reshape(-1), target.reshape(-1)
    if pred.numel() == 0:
        return torch.zeros(num_classes, num_classes, dtype=torch.int64, device=pred.device)
    rows = num_classes if ignore_index is None else ignore_index + 1  # every target value that may occur
    table_size = rows * num_classes
    lanes, chunk = (CPU_LANES, CHUNK_PIXELS) if pred.device.type == "cpu" else (1, pred.numel())
    index, pred32 = (torch.empty(min(chunk, pred.numel()), dtype=torch.int32, device=pred.device) for _ in range(2))
    counts = None
    for start in range(0, pred.numel(), chunk):
        pred_part, target_part = pred[start : start + chunk], target[start : start + chunk]
        _check_ranges(pred_part, target_part, num_classes, ignore_index)
        size = pred_part.numel()
        part = index[:size].copy_(target_part)  # int32 whatever the input dtype: uint8 labels would overflow
        torch.add(pred32[:size].copy_(pred_part), part, alpha=num_classes, out=part)  # num_classes * target + pred
        if lanes > 1:
            part.add_(_lane_ids(chunk, lanes)[:size], alpha=table_size)  # pixel i counts in table copy i % lanes
        part_counts = torch.bincount(part, minlength=lanes * table_size)
        counts = part_counts if counts is None else counts.add_(part_counts)
    table = counts.view(lanes, rows, num_classes).sum(dim=0)  # (rows, C)
    _check_unknown_targets(table, num_classes, ignore_index)
    return table[:num_classes]


@functools.cache
def _lane_ids(length: int, lanes: int) -> torch.Tensor:
    """``(length,)`` int32 ``0, 1, .., lanes - 1, 0, 1, ..`` on the CPU, made once."""
    return torch.arange(length, dtype=torch.int32) % lanes


def _check_pair(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    if num_classes < 1:
        raise LabelError(f"num_classes must be at least 1, got {num_classes}")
    if ignore_index is not None and not num_classes <= ignore_index < 2**31 // (CPU_LANES * num_classes):
        raise LabelError(f"ignore_index must be >= num_classes ({num_classes}) or None, got {ignore_index}")
    if pred.shape != target.shape:
        raise LabelError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape: "
            "upsample the prediction to the label's size and take the argmax over classes"
        )
    for name, tensor in (("prediction", pred), ("target", target)):
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise LabelError(f"{name} has dtype {tensor.dtype}: pass integer class indices (e.g. logits.argmax(1))")
    if pred.device != target.device:
        raise LabelError(f"prediction is on {pred.device} but target on {target.device}: move them to one device")


def _check_ranges(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Prediction in ``0 .. C - 1``, target in ``0 .. max(C - 1, ignore_index)`` (the rest is checked on counts)."""
    if pred.numel() == 0:
        return
    pred_min, pred_max, target_min, target_max = torch.stack([*torch.aminmax(pred), *torch.aminmax(target)]).tolist()
    if pred_min < 0 or pred_max >= num_classes:
        raise LabelError(
            f"prediction holds values from {pred_min} to {pred_max}, outside 0..{num_classes - 1}: "
            f"pass class indices for num_classes={num_classes}"
        )
    highest = num_classes - 1 if ignore_index is None else ignore_index
    if target_min < 0 or target_max > highest:
        bad = target_min if target_min < 0 else target_max
        raise LabelError(_target_message([bad], num_classes, ignore_index))


def _check_unknown_targets(table: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Rows ``C .. ignore_index - 1`` of the ``(rows, C)`` count table must be empty."""
    unknown = table[num_classes:ignore_index].sum(dim=1).nonzero().flatten()
    if unknown.numel():
        raise LabelError(_target_message((unknown + num_classes).tolist(), num_classes, ignore_index))


def _target_message(values: list[int], num_classes: int, ignore_index: int | None) -> str:
    shown = ", ".join(str(value) for value in values[:5]) + (", ..." if len(values) > 5 else "")
    allowed = f"0..{num_classes - 1}" + ("" if ignore_index is None else f" or the ignore index {ignore_index}")
    return (
        f"target holds the value(s) {shown}, not {allowed}: convert the labels to training ids "
        "(e.g. Cityscapes labelIds -> trainIds) or fix num_classes"
    )


def intersection_and_union(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class ``TP`` and ``TP + FP + FN``, both ``(C,)`` int64, of a ``(C, C)`` confusion matrix."""
    intersection = matrix.diagonal()
    return intersection, matrix.sum(dim=0) + matrix.sum(dim=1) - intersection


def iou_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """``(C,)`` float64 IoU of a ``(C, C)`` confusion matrix; NaN for a class absent from target and prediction."""
    intersection, union = intersection_and_union(matrix)
    return intersection.double() / union.double()  # 0 / 0 = NaN


def accuracy_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """``(C,)`` float64 share of each ground-truth class predicted right (recall); NaN for a class not in target."""
    return matrix.diagonal().double() / matrix.sum(dim=1).double()


def summarize(matrix: torch.Tensor) -> dict[str, Any]:
    """Every metric of a ``(C, C)`` confusion matrix as plain Python values, ready for JSON.

    ``iou`` and ``accuracy`` are per-class lists (NaN for absent classes); ``miou`` and ``mean_accuracy`` their
    means over the classes that are not NaN; ``pixel_accuracy`` the share of counted pixels predicted right;
    ``confusion_matrix`` the matrix as a list of rows.
    """
    iou, accuracy = iou_per_class(matrix), accuracy_per_class(matrix)
    total = int(matrix.sum())
    return {
        "miou": _nanmean(iou),
        "pixel_accuracy": int(matrix.trace()) / total if total else math.nan,
        "mean_accuracy": _nanmean(accuracy),
        "iou": iou.tolist(),
        "accuracy": accuracy.tolist(),
        "confusion_matrix": matrix.tolist(),
    }


def _nanmean(values: torch.Tensor) -> float:
    return float(values.nanmean()) if not values.isnan().all() else math.nan


class ConfusionMatrix:
    """Accumulates a ``(C, C)`` int64 confusion matrix over batches, then reports IoU, mIoU and accuracies.

    >>> metric = ConfusionMatrix(num_classes=3)
    >>> metric.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [1, 255]]))
    >>> metric.compute()["iou"]
    [1.0, 0.5, 0.0]
    """

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = IGNORE_INDEX, device: torch.device | str = "cpu"
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)  # (C, C)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count ``pred`` against ``target``, both ``(H, W)`` or ``(N, H, W)`` integer tensors on any device."""
        pred, target = (torch.Tensor.as_subclass(x, torch.Tensor).to(self.matrix.device) for x in (pred, target))
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def all_reduce(self) -> None:
        """Sum the matrices of all processes of the default process group (nothing to do without one)."""
        sum_across_processes(self.matrix)

    def compute(self) -> dict[str, Any]:
        """The metrics of the counts so far, as :func:`summarize` gives them."""
        return summarize(self.matrix.cpu())

    def reset(self) -> None:
        self.matrix.zero_()
