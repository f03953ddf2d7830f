"""The whole DeepLabV3+: backbone -> ASPP -> decoder, plus an auxiliary FCN head for training.

Paper: DeepLabV3+ Fig. 2. The auxiliary head on layer3 is not in the paper; the reference recipe trains with it
(loss weight 0.4) as PSPNet introduced, and drops it at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.config import Config, ModelConfig
from deeplab.models.aspp import ASPP, atrous_rates_for
from deeplab.models.atrous import ConvBNReLU
from deeplab.models.backbone import AUX_CHANNELS, LOW_LEVEL_CHANNELS, OUT_CHANNELS, Weights, resnet_backbone
from deeplab.models.decoder import Decoder, DeepLabV3Head


class FCNHead(nn.Sequential):
    """Auxiliary head: 3x3 ConvBNReLU -> Dropout2d -> 1x1 classifier.

    Shapes: ``(N, in_channels, h, w) -> (N, num_classes, h, w)``.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(
            ConvBNReLU(in_channels, channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with a ResNet backbone.

    ``forward`` maps images ``(N, 3, H, W)`` to ``{"out": (N, num_classes, H, W)}`` logits, upsampled bilinearly
    from stride 4; in training mode with an auxiliary head it adds ``"aux": (N, num_classes, H, W)``. With
    ``output_size=(H', W')`` the stride-4 logits go straight to that size instead, in one interpolation: evaluation
    asks for the label's size, as the reference does.
    """

    def __init__(
        self, backbone: nn.Module, aspp: ASPP, decoder: Decoder | DeepLabV3Head, aux_head: FCNHead | None = None
    ):
        super().__init__()
        self.backbone = backbone
        self.aspp = aspp
        self.decoder = decoder
        self.aux_head = aux_head

    def forward(self, images: torch.Tensor, output_size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        size = output_size or images.shape[-2:]
        features = self.backbone(images)  # low_level (N, 256, H/4, W/4), aux (N, 1024, H/os, W/os), out (N, 2048, ...)
        encoded = self.aspp(features["out"])  # (N, 512, H/os, W/os)
        logits = self.decoder(encoded, features["low_level"])  # (N, num_classes, H/4, W/4); H/os without decoder
        result = {"out": _resize(logits, size)}
        if self.training and self.aux_head is not None:
            result["aux"] = _resize(self.aux_head(features["aux"]), size)
        return result


def _resize(logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def build_model(config: Config | ModelConfig, *, weights: Weights = None) -> DeepLabV3Plus:
    """The DeepLabV3+ a config describes, randomly initialised; with ``weights``, ImageNet backbone weights.

    ``weights``: a torchvision weight enum or name (standard stem), or the path of an ImageNet checkpoint (e.g.
    open-mmlab's ``resnet101_v1c-e67eebb6.pth`` for the deep stem). The config's ``pretrained`` is what the
    trainer passes here (``config.model.backbone_weights``); building the network alone loads nothing.
    """
    model_config = config.model if isinstance(config, Config) else config
    backbone = resnet_backbone(
        model_config.depth,
        model_config.output_stride,
        deep_stem=model_config.deep_stem,
        weights=weights,
    )
    channels = model_config.channels
    aspp = ASPP(OUT_CHANNELS, channels, atrous_rates_for(model_config.output_stride))
    decoder = (
        Decoder(
            model_config.num_classes,
            in_channels=channels,
            low_level_channels=LOW_LEVEL_CHANNELS,
            shortcut_channels=model_config.shortcut_channels,
            channels=channels,
            dropout=model_config.dropout,
        )
        if model_config.decoder
        else DeepLabV3Head(model_config.num_classes, in_channels=channels, dropout=model_config.dropout)
    )
    aux_head = (
        FCNHead(AUX_CHANNELS, channels, model_config.num_classes, model_config.dropout)
        if model_config.aux_head
        else None
    )
    return DeepLabV3Plus(backbone, aspp, decoder, aux_head)


def build_empty_model(config: Config | ModelConfig) -> DeepLabV3Plus:
    """The network of ``config`` in uninitialised memory, for a checkpoint that fills every tensor of it (loaded
    strictly). Built on the meta device, it skips :func:`build_model`'s random initialisation: half a second for
    R-50 or R-101 on two CPU cores, each time a command loads a trained model."""
    with torch.device("meta"):
        model = build_model(config)
    return model.to_empty(device="cpu")
