"""Mixed precision by name: the ``amp`` settings of training (``train.amp``) and inference (``--amp``)."""

from __future__ import annotations

import torch

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """An amp setting this device cannot run."""


def autocast_dtype(amp: str, device: torch.device, *, option: str) -> torch.dtype | None:
    """The autocast dtype ``amp`` names on ``device`` (``None``: fp32); ``option`` is how the user set it, for the
    message. fp16 needs a GPU (on the CPU it is emulated, slowly, and needs a gradient scaler to train)."""
    if amp not in AMP_DTYPES:
        raise PrecisionError(f"{option}={amp!r} is not one of {', '.join(AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise PrecisionError(f"{option}=fp16 needs a GPU: use {option}=bf16 on the CPU")
    return AMP_DTYPES[amp]
