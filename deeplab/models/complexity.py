"""What a network costs: parameters and FLOPs, counted with ``torch.utils.flop_counter``.

FLOPs count a multiply-add as two operations (``FlopCounterMode``'s convention). Counting runs the model on the
``meta`` device, which tracks shapes without computing, so even a 1-TFLOP forward is counted in a blink.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deeplab.config import Config, get_config


def count_parameters(module: nn.Module) -> int:
    """Number of learnable values in ``module``."""
    return sum(parameter.numel() for parameter in module.parameters())


def count_flops(module: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``module`` on ``inputs`` (any device, ``meta`` included)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(inputs)
    return counter.get_total_flops()


@dataclass(frozen=True)
class ModelSummary:
    """One row of the model zoo: a config's size and cost of an inference forward at its crop size."""

    name: str
    depth: int
    output_stride: int
    num_classes: int
    crop_size: tuple[int, int]
    parameters: int
    inference_parameters: int
    gflops: float


def summarize(config: Config) -> ModelSummary:
    """Count parameters (with and without the auxiliary head) and FLOPs of ``config``'s model at batch 1."""
    from deeplab.models.deeplabv3plus import build_model

    with torch.device("meta"):
        model = build_model(config).eval()
        images = torch.empty(1, 3, *config.data.crop_size)
    aux_parameters = count_parameters(model.aux_head) if model.aux_head is not None else 0
    return ModelSummary(
        name=config.name,
        depth=config.model.depth,
        output_stride=config.model.output_stride,
        num_classes=config.model.num_classes,
        crop_size=config.data.crop_size,
        parameters=count_parameters(model),
        inference_parameters=count_parameters(model) - aux_parameters,
        gflops=count_flops(model, images) / 1e9,
    )


def zoo_table(names: list[str]) -> str:
    """A markdown table summarizing the named configs."""
    lines = [
        "| config | backbone | output stride | classes | crop (H x W) | params (train) | params (inference) | GFLOPs |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for summary in (summarize(get_config(name)) for name in names):
        lines.append(
            f"| {summary.name} | ResNet-{summary.depth} | {summary.output_stride} | {summary.num_classes} "
            f"| {summary.crop_size[0]} x {summary.crop_size[1]} | {summary.parameters:,} "
            f"| {summary.inference_parameters:,} | {summary.gflops:,.1f} |"
        )
    return "\n".join(lines)
