"""The boundary band ("trimap") of a label map: the pixels near an object boundary, where the decoder matters.

DeepLab v1 (Chen et al., ICLR 2015) and DeepLabV3+ (Sec. 4.4, Fig. 5) score a model on these pixels alone,
as a function of the band's width, to show how much of an improvement happens at the boundaries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_boundaries(mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` bool: the pixels of the integer label map ``mask`` ``(H, W)`` with a different label among their 8
    neighbours (an ignored pixel's label, e.g. 255, counts as a label of its own, so VOC's void outlines are
    boundaries)."""
    labels = mask[None, None].float()  # (1, 1, H, W)
    largest = F.max_pool2d(labels, 3, stride=1, padding=1)
    smallest = -F.max_pool2d(-labels, 3, stride=1, padding=1)
    return (largest != smallest)[0, 0]


def boundary_band(mask: torch.Tensor, width: int) -> torch.Tensor:
    """``(H, W)`` bool: the pixels at most ``width`` pixels (in both axes, a ``2 width + 1`` square) from a label
    boundary of ``mask`` ``(H, W)``; ``width=0`` is the boundary itself."""
    if width < 0:
        raise ValueError(f"band width {width} is negative: use 0 (the boundary itself) or more")
    boundary = label_boundaries(mask)[None, None].float()  # (1, 1, H, W)
    return F.max_pool2d(boundary, 2 * width + 1, stride=1, padding=width)[0, 0] > 0
