"""How a split's pixels spread over its classes, and the loss weights that even it out: median frequency balancing
(Eigen & Fergus, ICCV 2015), the common choice in segmentation for imbalanced data (``train.class_weights=auto``).
"""

from __future__ import annotations

import torch

from deeplab.data.classes import IGNORE_INDEX
from deeplab.data.datasets import SegmentationDataset, image_size


def class_pixels(dataset: SegmentationDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels, holding)``, both ``(C,)`` int64: the labelled pixels of each class over the split's masks, and the
    pixels of the images that hold the class at all. Reads every mask once, and each image's size alone."""
    pixels = torch.zeros(dataset.num_classes, dtype=torch.int64)
    holding = torch.zeros_like(pixels)
    for files in dataset.samples:
        labels = dataset.read_mask(files, image_size(files.image)).flatten()  # (H * W,) int64
        counts = torch.bincount(labels[labels != IGNORE_INDEX], minlength=dataset.num_classes)
        pixels += counts
        holding += (counts > 0) * labels.numel()
    return pixels, holding


def median_frequency_weights(pixels: torch.Tensor, holding: torch.Tensor) -> torch.Tensor:
    """Weights ``(C,)`` float32 from :func:`class_pixels`: ``median(f) / f_c`` with ``f_c = pixels_c / holding_c``,
    the median over the classes that occur; a class that never occurs gets 1 (it adds nothing to the loss)."""
    present = pixels > 0
    frequency = pixels.double() / holding.clamp(min=1).double()
    weights = torch.ones(len(pixels), dtype=torch.float64)
    weights[present] = torch.quantile(frequency[present], 0.5) / frequency[present]
    return weights.float()
