"""Atrous Spatial Pyramid Pooling (ASPP) with image-level pooling.

Paper: DeepLabV3 (Chen et al. 2017, Sec. 3.3) and DeepLabV3+ (Sec. 3.1, Fig. 2): parallel atrous convolutions at
several rates see the same features at several scales; a global average pool adds image-level context.
DeepLabV3+ makes the atrous branches depthwise-separable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.atrous import ConvBNReLU, SeparableConv2d


def atrous_rates_for(output_stride: int) -> tuple[int, int, int]:
    """The paper's rates: (6, 12, 18) at output stride 16, doubled to (12, 24, 36) at output stride 8."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    scale = 16 // output_stride
    return (6 * scale, 12 * scale, 18 * scale)


class ImagePooling(nn.Module):
    """Image-level features: global average pool -> 1x1 ConvBNReLU -> bilinear upsampling back to ``(H, W)``.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(self.pool(x))  # (N, C_out, 1, 1)
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """ASPP of DeepLabV3+: a 1x1 branch, three separable atrous branches, image pooling, fused by a 3x3 conv.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``; each of the five branches gives
    ``out_channels`` channels, concatenated to ``5 * out_channels`` before the fuse.
    """

    def __init__(self, in_channels: int, out_channels: int = 512, atrous_rates: tuple[int, ...] = (12, 24, 36)):
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, 1)]
            + [SeparableConv2d(in_channels, out_channels, dilation=rate) for rate in atrous_rates]
        )
        self.image_pooling = ImagePooling(in_channels, out_channels)
        self.fuse = ConvBNReLU(out_channels * (len(atrous_rates) + 2), out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches] + [self.image_pooling(x)]
        return self.fuse(torch.cat(outputs, dim=1))  # (N, 5 * C_out, H, W) -> (N, C_out, H, W)
