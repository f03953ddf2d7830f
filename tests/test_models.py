"""The DeepLabV3+ network: shapes, strides, dilations, parameter counts, gradients, export."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplab import build_model, get_config
from deeplab.config import ModelConfig
from deeplab.models import ASPP, SeparableConv2d, receptive_field, resnet_backbone
from deeplab.models.complexity import count_parameters

VARIANTS = [(50, 8), (50, 16), (101, 8), (101, 16)]


def small_model(output_stride: int = 16, num_classes: int = 5, **options) -> nn.Module:
    return build_model(ModelConfig(num_classes=num_classes, output_stride=output_stride, **options))


@pytest.mark.slow
@pytest.mark.parametrize("output_stride", [8, 16])
def test_odd_input_gives_logits_of_the_same_size(output_stride):
    model = small_model(output_stride).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 513, 511))
    assert set(out) == {"out"}
    assert out["out"].shape == (1, 5, 513, 511)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_backbone_feature_strides(output_stride):
    backbone = resnet_backbone(50, output_stride).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 128, 96))
    assert features["low_level"].shape == (1, 256, 32, 24)
    assert features["aux"].shape == (1, 1024, 128 // output_stride, 96 // output_stride)
    assert features["out"].shape == (1, 2048, 128 // output_stride, 96 // output_stride)


@pytest.mark.parametrize(
    ("output_stride", "layer3", "layer4"),
    [(8, [1, 2, 2, 2, 2, 2], [2, 4, 4]), (16, [1] * 6, [1, 2, 2])],
)
def test_dilated_stages_start_at_half_the_dilation(output_stride, layer3, layer4):
    backbone = resnet_backbone(50, output_stride)
    assert [block.conv2.dilation[0] for block in backbone.layer3] == layer3
    assert [block.conv2.dilation[0] for block in backbone.layer4] == layer4
    assert [block.conv2.stride[0] for block in backbone.layer4] == [1, 1, 1]


def test_deep_stem_is_three_3x3_convolutions_and_standard_stem_is_7x7():
    deep = resnet_backbone(50, 16, deep_stem=True)
    convs = [m for m in deep.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (3, 3), (2, 2)),
        (32, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    standard = resnet_backbone(50, 16, deep_stem=False)
    assert standard.conv1.kernel_size == (7, 7) and not hasattr(standard, "stem")


@pytest.mark.parametrize(("depth", "total", "inference"), [(50, 45_956_602, 41_226_213), (101, 64_948_730, 60_218_341)])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_parameter_counts_equal_the_reference(depth, output_stride, total, inference):
    model = build_model(ModelConfig(num_classes=21, depth=depth, output_stride=output_stride))
    assert count_parameters(model) == total
    assert count_parameters(model) - count_parameters(model.aux_head) == inference
    assert count_parameters(model.aux_head) == 4_730_389
    assert count_parameters(model.aspp) + count_parameters(model.decoder) == 17_698_949


@pytest.mark.parametrize("output_stride", [8, 16])
def test_without_the_decoder_it_is_deeplabv3(output_stride):
    """``model.decoder=false``: the model without the decoder (its shortcut and refinement), a 1x1 classifier on
    ASPP's output at the output stride, upsampled to the image in one step."""
    full = build_model(get_config(f"voc-r50-d{output_stride}"))
    plain = build_model(get_config(f"voc-r50-d{output_stride}", ["model.decoder=false"]))
    classifier = 512 * 21 + 21
    assert count_parameters(plain) == count_parameters(full) - count_parameters(full.decoder) + classifier
    assert not any(name.startswith(("decoder.shortcut", "decoder.refine")) for name, _ in plain.named_parameters())
    images = torch.randn(1, 3, 64, 96)
    plain.eval()
    with torch.no_grad():
        stride_logits = plain.decoder(plain.aspp(plain.backbone(images)["out"]), None)
        expected = F.interpolate(stride_logits, size=(64, 96), mode="bilinear", align_corners=False)
        assert stride_logits.shape == (1, 21, 64 // output_stride, 96 // output_stride)
        torch.testing.assert_close(plain(images)["out"], expected)


@pytest.mark.parametrize(("kernel_size", "dilation"), [(3, 1), (3, 2), (3, 6), (5, 3)])
def test_atrous_convolution_sees_its_receptive_field(kernel_size, dilation):
    size = receptive_field(kernel_size, dilation)
    conv = nn.Conv2d(1, 1, kernel_size, dilation=dilation, padding=(size - 1) // 2, bias=False)
    nn.init.ones_(conv.weight)
    impulse = torch.zeros(1, 1, 41, 41)
    impulse[..., 20, 20] = 1
    response = conv(impulse)[0, 0].detach()
    rows, cols = torch.nonzero(response, as_tuple=True)
    assert rows.max() - rows.min() + 1 == size and cols.max() - cols.min() + 1 == size
    assert torch.count_nonzero(response) == kernel_size**2  # the holes: only k*k taps are used


def randomize_batchnorm(module: nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine values, so that eval outputs exercise them."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.2, 0.2)


def test_separable_convolution_is_depthwise_then_pointwise():
    block = SeparableConv2d(8, 16, dilation=2).eval()
    randomize_batchnorm(block)
    x = torch.randn(2, 8, 19, 17)
    depthwise_conv, depthwise_bn = block.depthwise[0], block.depthwise[1]
    pointwise_conv, pointwise_bn = block.pointwise[0], block.pointwise[1]
    expected = F.conv2d(x, depthwise_conv.weight, padding=2, dilation=2, groups=8)
    expected = F.relu(F.batch_norm(expected, depthwise_bn.running_mean, depthwise_bn.running_var,
                                   depthwise_bn.weight, depthwise_bn.bias))  # fmt: skip
    expected = F.conv2d(expected, pointwise_conv.weight)
    expected = F.relu(F.batch_norm(expected, pointwise_bn.running_mean, pointwise_bn.running_var,
                                   pointwise_bn.weight, pointwise_bn.bias))  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)
    assert depthwise_conv.weight.shape == (8, 1, 3, 3) and pointwise_conv.weight.shape == (16, 8, 1, 1)


@pytest.mark.parametrize(("output_stride", "rates"), [(16, [6, 12, 18]), (8, [12, 24, 36])])
def test_aspp_rates_follow_the_output_stride(output_stride, rates):
    model = small_model(output_stride)
    assert [branch.depthwise[0].dilation[0] for branch in model.aspp.branches[1:]] == rates
    assert isinstance(model.aspp, ASPP) and model.aspp.fuse[0].kernel_size == (3, 3)


def test_gradients_reach_every_parameter_and_aux_is_training_only():
    torch.manual_seed(0)
    model = small_model(16).train()
    images, target = torch.randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    out = model(images)
    assert set(out) == {"out", "aux"} and out["aux"].shape == out["out"].shape
    loss = F.cross_entropy(out["out"], target) + 0.4 * F.cross_entropy(out["aux"], target)
    loss.backward()
    without_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without_grad == []
    model.eval()
    with torch.no_grad():
        assert set(model(images)) == {"out"}


def test_without_aux_head_training_returns_only_out():
    model = small_model(16, aux_head=False).train()
    assert model.aux_head is None and set(model(torch.randn(2, 3, 64, 64))) == {"out"}


def test_batchnorm_converts_to_syncbatchnorm():
    model = nn.SyncBatchNorm.convert_sync_batchnorm(small_model(8))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)


@pytest.mark.slow
def test_exported_eval_model_gives_the_same_logits():
    torch.manual_seed(0)
    model = small_model(16).eval()
    randomize_batchnorm(model)
    images = torch.randn(1, 3, 65, 63)
    exported = torch.export.export(model, (images,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(images)["out"], model(images)["out"])


def test_every_reference_config_builds_its_number_of_classes():
    for name, classes in [("voc-r50-d8", 21), ("ade20k-r101-d16", 150), ("cityscapes-r50-d16", 19)]:
        with torch.device("meta"):
            model = build_model(get_config(name))
        assert model.decoder.classifier.out_channels == classes
        assert model.aux_head[-1].out_channels == classes
