"""Numerics and memory layout by device: the ``amp`` settings of training (``train.amp``) and inference
(``--amp``), and where channels_last memory is the faster layout."""

from __future__ import annotations

import functools

import torch

from deeplab.choices import AMP_CHOICES

AMP_DTYPES: dict[str, torch.dtype | None] = dict(zip(AMP_CHOICES, (None, torch.bfloat16, torch.float16), strict=True))


class PrecisionError(ValueError):
    """An amp setting this device cannot run."""


@functools.cache
def cpu_computes_bf16() -> bool:
    """Whether oneDNN computes bf16 on this CPU at speed (AVX512-BF16, AMX, or AVX-512's bf16 path). On a CPU with
    AVX2 alone (most laptops, AMD Zen 3) bf16 is emulated: a convolution ~10x and a matrix product ~100x slower
    than in fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def autocast_dtype(amp: str, device: torch.device, *, option: str) -> torch.dtype | None:
    """The autocast dtype ``amp`` names on ``device`` (``None``: fp32); ``option`` is how the user set it, for the
    message. fp16 needs a GPU (on the CPU it is emulated, slowly, and needs a gradient scaler to train). bf16 on a
    CPU without bf16 arithmetic (:func:`cpu_computes_bf16`) runs in fp32: :func:`emulation_note` says so."""
    if amp not in AMP_DTYPES:
        raise PrecisionError(f"{option}={amp!r} is not one of {', '.join(AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise PrecisionError(f"{option}=fp16 needs a GPU: use {option}=bf16 on the CPU")
    if amp == "bf16" and device.type == "cuda" and not _native_bf16(device):
        name = torch.cuda.get_device_name(device)
        raise PrecisionError(f"{option}=bf16 is emulated on this GPU ({name}), slowly: use {option}=fp16")
    if _emulated_on_cpu(amp, device):
        return None
    return AMP_DTYPES[amp]


def _emulated_on_cpu(amp: str, device: torch.device) -> bool:
    """Whether ``amp`` is bf16 on a CPU that would emulate it (:func:`cpu_computes_bf16`)."""
    return amp == "bf16" and device.type == "cpu" and not cpu_computes_bf16()


def emulation_note(amp: str, device: torch.device, *, option: str) -> str | None:
    """The line that tells the user that ``amp`` runs in fp32 on ``device`` (bf16 on a CPU that would emulate it),
    else ``None``; the commands print it when they start."""
    if not _emulated_on_cpu(amp, device):
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{option}=bf16: this CPU ({capability}) has no bf16 arithmetic, only a slow emulation: computing in fp32"


def amp_for_device(device: torch.device | str) -> str:
    """The ``amp`` setting that runs fastest on ``device``: bf16 on CPUs and GPUs with bf16 arithmetic (Ampere and
    later), fp16 on older GPUs such as Colab's T4 (with a gradient scaler when training), none (fp32) on other CPUs."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if _native_bf16(device) else "fp16"
    return "bf16" if cpu_computes_bf16() else "none"


def _native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` computes in bf16 itself (compute capability 8.0 or higher) rather than emulating."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def uses_channels_last(wanted: bool, device: torch.device, amp: str) -> bool:
    """Whether to keep activations in channels_last memory: when ``wanted``, on CPUs (oneDNN's own layout: no
    reorder around each convolution) and on GPUs under autocast (the tensor-core kernels); a GPU in fp32 keeps the
    contiguous layout the reference runs in."""
    return wanted and (device.type != "cuda" or amp != "none")
