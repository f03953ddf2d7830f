"""A dilated depthwise 3x3 convolution computed as nine shifted multiply-adds (a CPU speed-up, same function).

A depthwise 3x3 convolution at rate ``r`` is ``y[c, i, j] = sum_{a, b} w[c, a, b] x[c, i + (a - 1) r, j + (b - 1) r]``
with zeros outside the image: nine per-channel multiply-adds of shifted copies of ``x``. Where a shift is at
least the image size, its tap reads only padding and is skipped (at output stride 8 the ASPP's rate 36 on a
64 x 64 map keeps the centre row and column of taps on their whole length, the others on 28 of 64 lines).

oneDNN, which runs ``nn.Conv2d`` on the CPU, has no fast kernel for a large dilation in the channels_last layout:
over ``(2, 2048, 64, 64)`` its depthwise convolution, forward and backward, is about 4x slower than this at rate
12 and 7-8x slower at rates 24 and 36. ``DepthwiseConv2d`` is an ``nn.Conv2d`` (same parameters, state dict and
repr fields) that takes this path on the CPU where it was measured faster (training at a dilation above 1,
inference above 6) and calls the library everywhere else; tests check it against ``F.conv2d``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import FunctionCtx

_LIBRARY_INFERENCE_MAX_DILATION = 6  # measured: oneDNN's inference kernel is fast up to here, in both layouts
_CHUNK_BYTES = 8 << 20  # temporaries stay below glibc's 32 MiB mmap threshold, so freed memory is reused


def _taps(size: int, dilation: int) -> list[tuple[int, slice, slice]]:
    """``(kernel index, output slice, input slice)`` of the taps of a 3-tap 'same' convolution along one axis."""
    taps = []
    for k in range(3):
        shift = (k - 1) * dilation
        if abs(shift) < size:
            taps.append((k, slice(max(0, -shift), size - max(0, shift)), slice(max(0, shift), size + min(0, shift))))
    return taps


def shifted_depthwise_conv3x3(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=dilation, dilation=dilation, groups=C)`` as shifted multiply-adds.

    Shapes: ``x (N, C, H, W)``, ``weight (C, 1, 3, 3)`` -> ``(N, C, H, W)`` in ``x``'s memory format.
    """
    _, channels, height, width = x.shape
    taps = weight.reshape(channels, 3, 3)
    y = x * taps[:, 1, 1].view(1, channels, 1, 1)  # the centre tap covers every output pixel
    for a, rows_out, rows_in in _taps(height, dilation):
        for b, cols_out, cols_in in _taps(width, dilation):
            if (a, b) != (1, 1):
                y[:, :, rows_out, cols_out].addcmul_(x[:, :, rows_in, cols_in], taps[:, a, b].view(1, channels, 1, 1))
    return y


def _weight_grad(x: torch.Tensor, grad_y: torch.Tensor, dilation: int) -> torch.Tensor:
    """The gradient of the weight ``(C, 1, 3, 3)``: per tap, the sum of ``grad_y * shifted x`` over N, H, W."""
    _, channels, height, width = x.shape
    dtype = torch.promote_types(torch.promote_types(x.dtype, grad_y.dtype), torch.float32)  # bf16 sums in fp32
    grad = torch.zeros(channels, 3, 3, dtype=dtype, device=x.device)
    rows_per_chunk = max(1, _CHUNK_BYTES // (4 * x.shape[0] * channels * width))
    for a, rows_out, rows_in in _taps(height, dilation):
        for b, cols_out, cols_in in _taps(width, dilation):
            shift = rows_in.start - rows_out.start
            for start in range(rows_out.start, rows_out.stop, rows_per_chunk):
                out = slice(start, min(start + rows_per_chunk, rows_out.stop))
                inp = slice(out.start + shift, out.stop + shift)
                grad[:, a, b] += (grad_y[:, :, out, cols_out] * x[:, :, inp, cols_in]).sum((0, 2, 3))
    return grad.unsqueeze(1)


class _ShiftedDepthwise(torch.autograd.Function):
    """Autograd for :func:`shifted_depthwise_conv3x3`: the input's gradient is the same convolution of
    ``grad_y`` with the kernel turned by 180 degrees; the weight's is :func:`_weight_grad`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        return shifted_depthwise_conv3x3(x, weight, dilation)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = shifted_depthwise_conv3x3(grad_y, weight.flip((2, 3)), ctx.dilation).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_grad(x, grad_y, ctx.dilation).to(weight.dtype)
        return grad_x, grad_weight, None


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise 3x3 'same' convolution, ``(N, C, H, W) -> (N, C, H, W)``, at any dilation.

    Exactly ``nn.Conv2d(C, C, 3, padding=dilation, dilation=dilation, groups=C, bias=bias)``; on the CPU with a
    large dilation it computes through :func:`shifted_depthwise_conv3x3` (see :meth:`_takes_shifted_path`).
    Under autocast it computes in float32 and returns the autocast dtype, as the library convolution would.
    """

    def __init__(self, channels: int, *, dilation: int = 1, bias: bool = False) -> None:
        super().__init__(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self._takes_shifted_path(x):
            return super()._conv_forward(x, weight, bias)
        y = _ShiftedDepthwise.apply(x, weight, self.dilation[0])
        if bias is not None:
            y.add_(bias.view(1, -1, 1, 1))
        if torch.is_autocast_enabled("cpu"):
            return y.to(torch.get_autocast_dtype("cpu"))
        return y

    def _takes_shifted_path(self, x: torch.Tensor) -> bool:
        """On the CPU: for training at any dilation above 1, for inference above the library's fast range."""
        dilation = self.dilation[0]
        if x.device.type != "cpu" or dilation == 1:
            return False
        training = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        return training or dilation > _LIBRARY_INFERENCE_MAX_DILATION
