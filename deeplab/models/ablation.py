"""Test-time ablation: what a trained network loses when one of its parts stops telling it about the image.

A part is ablated by replacing its output with a constant: its average output over a set of images (per channel,
over images and positions). The layers after it then see the level of input they were trained on, but nothing about
*this* image: neither where things are nor what the image holds. Ablating the decoder's shortcut this way measures
what the stride-4 features add; ablating one ASPP branch, what that branch adds (image pooling included, whose output
is constant over each image anyway: an average over one image would leave it unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn


def average_outputs(
    model: nn.Module, modules: Sequence[nn.Module], images: Iterable[torch.Tensor]
) -> list[torch.Tensor]:
    """The average output ``(C,)`` of each of ``modules`` (parts of ``model``) over ``images``, each a normalized
    ``(1, 3, H, W)`` batch run through ``model`` once: every image weighs the same, whatever its size."""
    sums: list[torch.Tensor | None] = [None] * len(modules)
    count = 0

    def add(index: int, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        mean = output.detach().float().mean(dim=(0, 2, 3))  # (C,)
        sums[index] = mean if sums[index] is None else sums[index] + mean

    handles = [module.register_forward_hook(partial(add, index)) for index, module in enumerate(modules)]
    try:
        with torch.inference_mode():
            for image in images:
                model(image)
                count += 1
    finally:
        for handle in handles:
            handle.remove()
    if count == 0:
        raise ValueError("average_outputs needs at least one image")
    return [total / count for total in sums]


def _constant(value: torch.Tensor, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
    """The forward hook: ``output`` ``(N, C, H, W)`` replaced by ``value`` ``(C,)`` at every position."""
    return value.to(output.device, output.dtype).view(1, -1, 1, 1).expand_as(output)


@contextmanager
def ablated(values: Mapping[nn.Module, torch.Tensor]) -> Iterator[None]:
    """Within the ``with`` block, each module of ``values`` outputs its value ``(C,)`` (from :func:`average_outputs`)
    at every position instead of what it computes; the hooks are removed on leaving the block, even after an
    error."""
    handles = [module.register_forward_hook(partial(_constant, value)) for module, value in values.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
