"""Inference-only speed-ups for a trained DeepLabV3+: BatchNorm folded into convolutions, channels_last memory,
convolution weights stored in the autocast precision.

In eval mode a BatchNorm is a fixed per-channel affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``,
so it folds into the weights and bias of the convolution before it; the network then computes the same function
with one pass over memory less per layer. Under bf16 (or fp16) autocast every convolution casts its float32 weight
and bias to that precision at every call; weights stored in it already are used as they are, and the results are
the same to the bit.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck

_BOTTLENECK_PAIRS = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]


def optimize_for_inference(
    model: nn.Module, *, inplace: bool = False, channels_last: bool = True, autocast_dtype: torch.dtype | None = None
) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d+BatchNorm2d pair fused, no aux head, in channels_last
    (unless ``channels_last=False``); with ``autocast_dtype``, the copy to run under that autocast: the weights and
    biases of its ``nn.Conv2d`` layers (those that autocast casts at every call) stored in that dtype.

    The pairs are the ``(conv, bn)`` neighbours of sequential containers (``ConvBNReLU``, the ResNet stems,
    ``downsample``) and ``conv{1,2,3}/bn{1,2,3}`` of torchvision's ``Bottleneck``; each BatchNorm (``SyncBatchNorm``
    too, in a model converted for several GPUs) becomes an ``nn.Identity``. ``model`` itself is left untouched,
    unless ``inplace``: then it is changed and returned, and the memory of a second copy of the weights is saved.

    Shapes: like ``model``, images ``(N, 3, H, W)`` -> ``{"out": (N, num_classes, H, W)}``; pass inputs in
    ``torch.channels_last`` for the full benefit.
    """
    fast = (model if inplace else copy.deepcopy(model)).eval()
    if getattr(fast, "aux_head", None) is not None:
        fast.aux_head = None  # only used in training mode
    for module in list(fast.modules()):
        for conv_name, bn_name in _conv_bn_pairs(module):
            setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), getattr(module, bn_name)))
            setattr(module, bn_name, nn.Identity())
    if autocast_dtype is not None:
        _store_conv_weights(fast, autocast_dtype)
    return fast.to(memory_format=torch.channels_last) if channels_last else fast


def _store_conv_weights(model: nn.Module, dtype: torch.dtype) -> None:
    """The parameters of every plain ``nn.Conv2d`` of ``model`` cast to ``dtype``, once, as autocast would cast them
    at each call. ``DepthwiseConv2d`` (a subclass) keeps float32: its shifted path computes in float32 under
    autocast, from the float32 weight."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.to(dtype)


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names of the ``(Conv2d, BatchNorm2d)`` children of ``module`` where the BatchNorm reads the conv's output."""
    if isinstance(module, Bottleneck):
        return _BOTTLENECK_PAIRS
    if not isinstance(module, nn.Sequential | IntermediateLayerGetter):  # children run one after the other
        return []
    children = list(module.named_children())
    return [
        (conv_name, bn_name)
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d | nn.SyncBatchNorm)
    ]
