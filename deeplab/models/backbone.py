"""ResNet-50/101 backbones at output stride 8 or 16, built on torchvision's ResNet.

Paper: DeepLabV3+ Sec. 3.1 (and DeepLabV3 Sec. 3.2): the last stages keep their resolution by replacing stride
with dilation, so that the encoder's features are 1/8 or 1/16 of the input instead of 1/32. As in torchvision,
the first block of a dilated stage keeps the previous dilation: at output stride 8 layer3 uses dilations
(1, 2, 2, ...) and layer4 (2, 4, 4); at output stride 16 layer4 uses (1, 2, 2).

The reference toolbox uses "ResNetV1c": a deep stem of three 3x3 convolutions (3 -> 32 -> 32 -> 64) in place of
the single 7x7 convolution (Bag of Tricks, He et al. 2019); ``deep_stem=True`` builds that, ``False`` the
standard stem for which torchvision publishes ImageNet weights.
"""

from __future__ import annotations

from collections import OrderedDict
from os import PathLike

from torch import nn
from torchvision.models import ResNet, WeightsEnum, get_weight, resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter

from deeplab.models.atrous import ConvBNReLU
from deeplab.models.weights import load_backbone_weights

LOW_LEVEL_CHANNELS = 256  # layer1, stride 4
AUX_CHANNELS = 1024  # layer3, stride 8 or 16
OUT_CHANNELS = 2048  # layer4, stride 8 or 16
RETURN_LAYERS = {"layer1": "low_level", "layer3": "aux", "layer4": "out"}

_RESNETS = {50: resnet50, 101: resnet101}
_DILATE = {
    8: [False, True, True],
    16: [False, False, True],
}  # layer2, layer3, layer4: dilation instead of stride

Weights = WeightsEnum | str | PathLike | None


def resnet_v1c_stem() -> nn.Sequential:
    """The ResNetV1c stem: three 3x3 ConvBNReLU, 3 -> 32 (stride 2) -> 32 -> 64.

    Shapes: ``(N, 3, H, W) -> (N, 64, H/2, W/2)``. Its indices (0, 1, 3, 4, 6, 7 hold weights) match the
    open-mmlab ``resnet*_v1c`` ImageNet checkpoints, which therefore load without renaming.
    """
    blocks = [ConvBNReLU(3, 32, 3, stride=2), ConvBNReLU(32, 32, 3), ConvBNReLU(32, 64, 3)]
    return nn.Sequential(*(layer for block in blocks for layer in block))


def resnet_backbone(
    depth: int = 50, output_stride: int = 8, *, deep_stem: bool = True, weights: Weights = None
) -> IntermediateLayerGetter:
    """A ResNet whose forward returns the features DeepLabV3+ needs.

    Args:
        depth: 50 or 101.
        output_stride: 8 or 16, the ratio of input size to ``out`` size.
        deep_stem: the ResNetV1c deep stem (reference) instead of the 7x7 convolution.
        weights: ``None`` for random initialisation (nothing is downloaded); a torchvision weight enum or its
            name (``"ResNet50_Weights.IMAGENET1K_V2"``, standard stem only); or the path of an ImageNet
            checkpoint file, such as open-mmlab's ``resnet50_v1c-2cccc1ad.pth`` for the deep stem.

    Returns:
        A module mapping ``(N, 3, H, W)`` to ``{"low_level": (N, 256, H/4, W/4),
        "aux": (N, 1024, H/os, W/os), "out": (N, 2048, H/os, W/os)}``.
    """
    if depth not in _RESNETS:
        raise ValueError(f"ResNet depth must be 50 or 101, got {depth}")
    if output_stride not in _DILATE:
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    torchvision_weights = _torchvision_weights(weights)
    if torchvision_weights is not None and deep_stem:
        raise ValueError(
            "torchvision's ImageNet weights are for the 7x7 stem: build with deep_stem=False, "
            "or pass the path of a ResNetV1c checkpoint for the deep stem"
        )
    resnet: ResNet = _RESNETS[depth](weights=torchvision_weights, replace_stride_with_dilation=_DILATE[output_stride])
    stem = {"stem": resnet_v1c_stem()} if deep_stem else {"conv1": resnet.conv1, "bn1": resnet.bn1, "relu": resnet.relu}
    layers = nn.Sequential(
        OrderedDict(
            **stem,
            maxpool=resnet.maxpool,
            layer1=resnet.layer1,
            layer2=resnet.layer2,
            layer3=resnet.layer3,
            layer4=resnet.layer4,
        )
    )
    backbone = IntermediateLayerGetter(layers, return_layers=RETURN_LAYERS)
    if weights is not None and torchvision_weights is None:
        load_backbone_weights(backbone, weights)
    return backbone


def _torchvision_weights(weights: Weights) -> WeightsEnum | None:
    """The torchvision weight enum that ``weights`` names, or ``None`` when it is a file or absent."""
    if isinstance(weights, WeightsEnum):
        return weights
    if isinstance(weights, str) and "_Weights." in weights:
        return get_weight(weights)
    return None
