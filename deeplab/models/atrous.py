"""Atrous (dilated) and depthwise-separable convolutions, the building blocks of DeepLabV3+.

Paper: Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation",
ECCV 2018, Sec. 3.1 ("Atrous convolution", "Depthwise separable convolution").
"""

from __future__ import annotations

from torch import nn

from deeplab.models.depthwise import DepthwiseConv2d


def receptive_field(kernel_size: int, dilation: int = 1) -> int:
    """Side of the window a single atrous convolution sees: ``k + (k - 1)(r - 1)`` pixels.

    A 3x3 kernel at rate 1 sees 3 pixels, at rate 2 it sees 5, at rate 12 it sees 25.
    """
    return kernel_size + (kernel_size - 1) * (dilation - 1)


class ConvBNReLU(nn.Sequential):
    """Convolution (no bias) -> BatchNorm -> ReLU, padded so that stride 1 keeps the spatial size.

    A depthwise 3x3 convolution (``groups == in_channels == out_channels``) is a :class:`DepthwiseConv2d`: the same
    ``nn.Conv2d``, with a faster path on the CPU for large dilations.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            _convolution(in_channels, out_channels, kernel_size, stride, dilation, groups),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _convolution(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int, groups: int
) -> nn.Conv2d:
    """The bias-free convolution of a :class:`ConvBNReLU`; a depthwise 3x3 one is a :class:`DepthwiseConv2d`."""
    if kernel_size == 3 and stride == 1 and groups == in_channels == out_channels > 1:
        return DepthwiseConv2d(in_channels, dilation=dilation)
    padding = (receptive_field(kernel_size, dilation) - 1) // 2
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=False,
    )


class SeparableConv2d(nn.Sequential):
    """Atrous depthwise-separable convolution: depthwise 3x3 (dilated) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU.

    The depthwise step filters each channel on its own (``groups=in_channels``), the pointwise step mixes
    channels. Parameters: ``9 C_in + C_in C_out`` instead of ``9 C_in C_out`` for a full 3x3 convolution.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, dilation=dilation, groups=in_channels)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1)
