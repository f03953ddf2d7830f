"""Inference-only speed-ups for a trained DeepLabV3+: BatchNorm folded into convolutions, channels_last memory.

In eval mode a BatchNorm is a fixed per-channel affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``,
so it folds into the weights and bias of the convolution before it; the network then computes the same function
with one pass over memory less per layer.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck

_BOTTLENECK_PAIRS = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]


def optimize_for_inference(model: nn.Module, *, inplace: bool = False, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d+BatchNorm2d pair fused, no aux head, in channels_last
    (unless ``channels_last=False``).

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
    return fast.to(memory_format=torch.channels_last) if channels_last else fast


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
