"""The DeepLabV3+ decoder: recover sharp boundaries from the low-level features.

Paper: DeepLabV3+ Sec. 3.1 ("Proposed decoder"), Fig. 2. The encoder's output (stride 8 or 16) is upsampled to
the stride-4 low-level features of the backbone's first stage, whose channels a 1x1 convolution reduces to 48 so
they do not outweigh the semantic features; two 3x3 (separable) convolutions refine the concatenation.
:class:`DeepLabV3Head` is what the paper compares it with (DeepLabV3+ Sec. 4.1: "DeepLabV3 as encoder only"): the
encoder's output classified where it is, with no decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.atrous import ConvBNReLU, SeparableConv2d


class Decoder(nn.Module):
    """Low-level shortcut + refinement + classifier.

    Shapes: ``encoder (N, in_channels, H/os, W/os)`` and ``low_level (N, low_level_channels, H/4, W/4)``
    -> logits ``(N, num_classes, H/4, W/4)``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 512,
        low_level_channels: int = 256,
        shortcut_channels: int = 48,
        channels: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.shortcut = ConvBNReLU(low_level_channels, shortcut_channels, 1)
        self.refine = nn.Sequential(
            SeparableConv2d(in_channels + shortcut_channels, channels),
            SeparableConv2d(channels, channels),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        encoder = F.interpolate(encoder, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([encoder, self.shortcut(low_level)], dim=1)  # (N, 512 + 48, H/4, W/4)
        x = self.refine(x)  # (N, 512, H/4, W/4)
        return self.classifier(self.dropout(x))  # (N, num_classes, H/4, W/4)


class DeepLabV3Head(nn.Module):
    """DeepLabV3's head in the decoder's place (``model.decoder=false``): dropout and a 1x1 classifier on the
    encoder's output at its own stride; no low-level shortcut, no refinement. The model upsamples the logits to the
    image in one step, as DeepLabV3 does.

    Shapes: ``encoder (N, in_channels, H/os, W/os)`` (``low_level`` is not used) -> logits ``(N, num_classes, H/os,
    W/os)``.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(encoder))
