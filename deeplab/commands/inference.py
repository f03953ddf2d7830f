"""The options ``evaluate`` and ``predict`` share: how the network runs (``--flip``, ``--multi-scale``, ``--slide``,
``--amp``, ``--plain``) and on which device."""

from __future__ import annotations

import argparse

import torch

from deeplab.engine.evaluate import Inference, inference_of
from deeplab.engine.precision import emulation_note


def inference_from_args(args: argparse.Namespace, crop_size: tuple[int, int] | None) -> Inference:
    """The ``Inference`` of ``--multi-scale``, ``--flip``, ``--slide`` (windows of ``crop_size``, 2/3 overlap; with
    ``crop_size=None`` the caller sets the window), ``--plain`` and ``--amp``."""
    window = crop_size if args.slide else None
    return inference_of(flip=args.flip, multi_scale=args.multi_scale, window=window, amp=args.amp, fast=not args.plain)


def chosen_device(device: str | None) -> torch.device:
    """``device``, or a GPU when there is one, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def announce_emulation(inference: Inference, where: torch.device) -> None:
    """Print :func:`~deeplab.engine.precision.emulation_note`'s line when ``--amp bf16`` runs in fp32 on ``where``."""
    if note := emulation_note(inference.amp, where, option="--amp"):
        print(note, flush=True)
