"""Inference and evaluation: whole image or sliding window, optionally multi-scale with flips.

Predictions are made on the image as the eval transforms resized it (the test scale); the decoder's stride-4 logits
are upsampled once, straight to the label's original resolution, where the confusion matrix is accumulated: the
reference evaluates the same way. (Sliding windows are stitched at the test scale first, then resized.)

A model here maps ``(images, output_size=None)`` to ``{"out": logits}``, as ``DeepLabV3Plus`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from deeplab.engine.distributed import Distributed
from deeplab.engine.metrics import ConfusionMatrix


@dataclass(frozen=True)
class Inference:
    """How to turn an image into class scores.

    ``scales`` multiply the (already test-scale) image size; ``flip`` adds horizontally flipped copies;
    ``window``/``stride`` ``(H, W)`` switch from whole-image to sliding-window inference.
    """

    scales: Sequence[float] = (1.0,)
    flip: bool = False
    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None


def sliding_window_logits(
    model: nn.Module, image: torch.Tensor, window: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Logits ``(1, C, H, W)`` of ``image (1, 3, H, W)`` averaged over overlapping windows that cover it.

    Windows step by ``stride``; the last row and column are shifted back inside the image, and an image smaller
    than the window is seen whole.
    """
    height, width = image.shape[-2:]
    window_h, window_w = min(window[0], height), min(window[1], width)
    tops = _starts(height, window_h, stride[0])
    lefts = _starts(width, window_w, stride[1])
    total = counts = None
    for top in tops:
        for left in lefts:
            logits = model(image[..., top : top + window_h, left : left + window_w])["out"]
            if total is None:
                total = image.new_zeros(1, logits.shape[1], height, width, dtype=logits.dtype)
                counts = image.new_zeros(1, 1, height, width)
            total[..., top : top + window_h, left : left + window_w] += logits
            counts[..., top : top + window_h, left : left + window_w] += 1
    return total / counts


def _starts(size: int, window: int, stride: int) -> list[int]:
    last = max(size - window, 0)
    return sorted({min(start, last) for start in range(0, last + stride, stride)})


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, image: torch.Tensor, out_size: tuple[int, int], inference: Inference = Inference()
) -> torch.Tensor:
    """Softmax probabilities ``(1, C, *out_size)`` for a normalized ``image (1, 3, h, w)``.

    Each scale (and its flip) is predicted, upsampled bilinearly to ``out_size`` and averaged.
    """
    height, width = image.shape[-2:]
    total = None
    for scale in inference.scales:
        size = (round(height * scale), round(width * scale))
        scaled = image if size == (height, width) else F.interpolate(image, size, mode="bilinear", align_corners=False)
        for flipped in (False, True) if inference.flip else (False,):
            view = scaled.flip(-1) if flipped else scaled
            if inference.window is None:
                logits = model(view, output_size=out_size)["out"].float()  # (1, C, *out_size) from stride 4
            else:
                logits = sliding_window_logits(model, view, inference.window, inference.stride or inference.window)
                logits = F.interpolate(logits.float(), out_size, mode="bilinear", align_corners=False)
            logits = logits.flip(-1) if flipped else logits
            probabilities = logits.softmax(dim=1)
            total = probabilities if total is None else total + probabilities
    return total / (len(inference.scales) * (2 if inference.flip else 1))


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    num_classes: int,
    env: Distributed,
    inference: Inference = Inference(),
    progress: bool = False,
) -> dict[str, Any]:
    """Per-class IoU, mIoU and pixel accuracy of ``model`` on ``dataset``, each process taking every n-th image.

    ``dataset[i]`` gives ``{"image": (3, h, w) normalized, "mask": (H, W)}``: the image at the test scale, the
    mask at its original resolution.
    """
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, device=env.device)
    indices = range(env.rank, len(dataset), env.world_size)
    for index in tqdm(indices, desc="evaluate", disable=not (progress and env.is_main)):
        sample = dataset[index]
        image = sample["image"].unsqueeze(0).to(env.device)
        mask = sample["mask"].to(env.device)
        probabilities = predict_probabilities(model, image, tuple(mask.shape[-2:]), inference)
        matrix.update(probabilities.argmax(dim=1)[0], mask)
    matrix.all_reduce()
    model.train(was_training)
    return matrix.compute()
