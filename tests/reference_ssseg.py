"""The sssegmentation 1.7.0 DeepLabV3+ (``ssseg.modules.Deeplabv3Plus``) as a test oracle.

The PyPI wheel ships no config files, so the segmentor config is rebuilt here from the repository's
``ssseg/configs/_base_/segmentors/deeplabv3plus.py`` and ``ssseg/configs/deeplabv3plus/deeplabv3plus_resnet{50,101}
os{8,16}_{voc,ade20k,cityscapes}.py``, with two changes: plain ``BatchNorm2d`` instead of ``SyncBatchNorm`` and
``pretrained: False`` so nothing is downloaded. Tests that import this module are skipped when ``ssseg`` is absent.
"""

import pytest
import torch
from torch import nn

ssseg_modules = pytest.importorskip("ssseg.modules", reason="the reference needs `pip install sssegmentation==1.7.0`")

ASPP_DILATIONS = {8: [1, 12, 24, 36], 16: [1, 6, 12, 18]}
"""ASPP rates per output stride: the OS16 configs keep the base ``[1, 6, 12, 18]``, the OS8 ones override it."""


def reference_config(depth: int, output_stride: int, num_classes: int) -> dict:
    """The segmentor config dict that ``ssseg.modules.BuildSegmentor`` takes, as the 1.7.0 configs set it."""
    if depth not in (50, 101):
        raise ValueError(f"depth={depth} is not a reference variant; use 50 or 101")
    if output_stride not in ASPP_DILATIONS:
        raise ValueError(f"output_stride={output_stride} is not a reference variant; use 8 or 16")
    return {
        "type": "Deeplabv3Plus",
        "num_classes": num_classes,
        "align_corners": False,
        "norm_cfg": {"type": "BatchNorm2d"},
        "act_cfg": {"type": "ReLU", "inplace": True},
        "backbone": {
            "type": "ResNet",
            "depth": depth,
            "structure_type": f"resnet{depth}conv3x3stem",
            "pretrained": False,
            "outstride": output_stride,
            "use_conv3x3_stem": True,
            "selected_indices": (0, 1, 2, 3),
        },
        "head": {
            "in_channels": [256, 2048],
            "feats_channels": 512,
            "shortcut_channels": 48,
            "dilations": ASPP_DILATIONS[output_stride],
            "dropout": 0.1,
        },
        "auxiliary": {"in_channels": 1024, "out_channels": 512, "dropout": 0.1},
        "losses": {  # read only in TRAIN mode: CE on the decoder logits + 0.4 CE on the auxiliary logits
            "loss_aux": {"type": "CrossEntropyLoss", "scale_factor": 0.4, "ignore_index": 255, "reduction": "mean"},
            "loss_cls": {"type": "CrossEntropyLoss", "scale_factor": 1.0, "ignore_index": 255, "reduction": "mean"},
        },
    }


def build_reference(depth: int, output_stride: int, num_classes: int) -> nn.Module:
    """The reference Deeplabv3Plus in eval (``TEST``) mode, randomly initialised, auxiliary head included.

    Its ``forward`` takes an ``SSSegInputStructure`` rather than a tensor: call :func:`reference_logits`.
    """
    model = ssseg_modules.BuildSegmentor(reference_config(depth, output_stride, num_classes), mode="TEST")
    return model.eval()


def reference_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode decoder logits of the reference, at stride 4 and NOT upsampled to the input size.

    Args:
        model: a model from :func:`build_reference`, in eval mode.
        x: normalised images ``(N, 3, H, W)``.

    Returns:
        ``(N, num_classes, h, w)`` where ``(h, w)`` is the layer1 size: ``h = ceil(ceil(H / 2) / 2)`` (3x3 stride-2
        stem conv with padding 1, then 3x3 stride-2 max-pool with padding 1); for 513x511 that is 129x128. The
        reference only upsamples (bilinear, ``align_corners=False``) inside its loss and its evaluation loop.
    """
    if model.training:
        raise ValueError("reference_logits needs the model in eval mode; call model.eval() first")
    with torch.no_grad():
        return model(ssseg_modules.SSSegInputStructure(images=x, mode="TEST")).seg_logits
