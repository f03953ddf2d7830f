"""``DepthwiseConv2d``'s shifted multiply-adds compute the library's depthwise convolution, forward and backward."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from deeplab.models import SeparableConv2d
from deeplab.models.depthwise import DepthwiseConv2d, shifted_depthwise_conv3x3
from deeplab.models.fast import optimize_for_inference

CASES = list(
    itertools.product(
        (2, 5, 12, 40),  # 40 > the image: only the centre tap reads pixels
        ((7, 9), (16, 16), (1, 3)),
        (torch.contiguous_format, torch.channels_last),
        (False, True),
    )
)


@pytest.mark.parametrize(("dilation", "size", "memory_format", "bias"), CASES)
def test_forward_and_gradients_equal_the_library_convolution(dilation, size, memory_format, bias):
    torch.manual_seed(0)
    conv = DepthwiseConv2d(6, dilation=dilation, bias=bias).double()
    x = torch.randn(2, 6, *size, dtype=torch.double).contiguous(memory_format=memory_format).requires_grad_()
    assert conv._takes_shifted_path(x)

    y = conv(x)
    grad_y = torch.randn_like(y)
    grad_x, grad_weight, *grad_bias = torch.autograd.grad(y, [x, *conv.parameters()], grad_y)
    expected = F.conv2d(x, conv.weight, conv.bias, padding=dilation, dilation=dilation, groups=6)
    expected_grads = torch.autograd.grad(expected, [x, *conv.parameters()], grad_y)

    torch.testing.assert_close(y, expected)
    assert y.is_contiguous(memory_format=memory_format)
    for actual, wanted in zip([grad_x, grad_weight, *grad_bias], expected_grads, strict=True):
        torch.testing.assert_close(actual, wanted)


def test_the_weight_gradient_is_summed_in_chunks_correctly(monkeypatch):
    """Chunks of one row (forced here) give the same weight gradient as one chunk per tap."""
    torch.manual_seed(1)
    conv = DepthwiseConv2d(4, dilation=3).double()
    x = torch.randn(3, 4, 11, 8, dtype=torch.double, requires_grad=True)
    expected = F.conv2d(x, conv.weight, padding=3, dilation=3, groups=4)
    (wanted,) = torch.autograd.grad(expected.square().sum(), conv.weight)
    monkeypatch.setattr("deeplab.models.depthwise._CHUNK_BYTES", 1)
    (actual,) = torch.autograd.grad(conv(x).square().sum(), conv.weight)
    torch.testing.assert_close(actual, wanted)


def test_the_kernel_function_equals_the_library_in_float32():
    x = torch.randn(1, 8, 20, 20)
    weight = torch.randn(8, 1, 3, 3)
    expected = F.conv2d(x, weight, padding=6, dilation=6, groups=8)
    torch.testing.assert_close(shifted_depthwise_conv3x3(x, weight, 6), expected)


@pytest.mark.parametrize(
    ("dilation", "grad", "shifted"),
    [(1, True, False), (2, True, True), (6, False, False), (12, False, True)],
)
def test_the_path_is_the_faster_one_measured(dilation, grad, shifted):
    conv = DepthwiseConv2d(4, dilation=dilation).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        assert conv._takes_shifted_path(torch.zeros(1, 4, 8, 8)) is shifted


def test_autocast_returns_the_autocast_dtype_close_to_float32():
    torch.manual_seed(2)
    conv = DepthwiseConv2d(8, dilation=12)
    x = torch.randn(2, 8, 30, 30)
    with torch.no_grad():
        expected = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = conv(x.bfloat16())
    assert actual.dtype == torch.bfloat16
    torch.testing.assert_close(actual.float(), expected, atol=0.05, rtol=0.02)


def test_it_is_an_ordinary_conv2d_for_checkpoints_and_batchnorm_folding():
    block = SeparableConv2d(8, 8, dilation=12).eval()
    conv = block.depthwise[0]
    assert isinstance(conv, DepthwiseConv2d) and isinstance(conv, torch.nn.Conv2d)
    assert set(conv.state_dict()) == {"weight"}
    assert (conv.padding, conv.dilation, conv.groups) == ((12, 12), (12, 12), 8)
    block.depthwise[1].running_mean.uniform_(-1, 1)
    x = torch.randn(1, 8, 25, 25)
    with torch.no_grad():
        torch.testing.assert_close(optimize_for_inference(block)(x), block(x), atol=1e-5, rtol=1e-5)
