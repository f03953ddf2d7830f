"""Inference and evaluation: whole image or sliding window, optionally multi-scale with flips.

By default a model is evaluated through :func:`deeplab.models.fast.optimize_for_inference` (a copy with
BatchNorm folded into the convolutions, no auxiliary head, channels_last where that layout is the faster one)
under ``torch.inference_mode``; it computes
the same function as the trained model up to float rounding. ``Inference(fast=False)`` runs the model as it is, and
``amp`` runs the forward under bf16 or fp16 autocast (the fast copy then holds its convolution weights in that
precision, as autocast would cast them at every call). Images are read, decoded and resized by a ``DataLoader``
(``workers`` processes prefetching ahead of the forwards, pinned memory on CUDA), in dataset order.

Predictions are made on the image as the eval transforms resized it (the test scale); the decoder's stride-4 logits
are upsampled once, straight to the label's original resolution, where the confusion matrix is accumulated: the
reference evaluates the same way. (Sliding windows are stitched at the test scale first, then resized.)

A model here maps ``(images, output_size=None)`` to ``{"out": logits}``, as ``DeepLabV3Plus`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from deeplab.data.loading import CarryErrors, raise_carried, worker_count
from deeplab.engine.distributed import Distributed
from deeplab.engine.metrics import ConfusionMatrix
from deeplab.engine.precision import autocast_dtype, uses_channels_last
from deeplab.models.fast import optimize_for_inference


@dataclass(frozen=True)
class Inference:
    """How to turn an image into class scores.

    ``scales`` multiply the (already test-scale) image size; ``flip`` adds horizontally flipped copies;
    ``window``/``stride`` ``(H, W)`` switch from whole-image to sliding-window inference. ``fast`` evaluates a
    folded channels_last copy of the model (:func:`inference_model`); ``amp`` is ``"none"``, ``"bf16"`` or
    ``"fp16"`` (GPUs only), the autocast precision of the forward.
    """

    scales: Sequence[float] = (1.0,)
    flip: bool = False
    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    fast: bool = True
    amp: str = "none"


MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # the reference's multi-scale test (--multi-scale)


def sliding(inference: Inference, crop_size: tuple[int, int]) -> Inference:
    """``inference`` over windows of ``crop_size`` ``(H, W)`` that overlap by a third (stride 2/3 of the window)."""
    stride = (crop_size[0] * 2 // 3, crop_size[1] * 2 // 3)
    return dataclasses.replace(inference, window=crop_size, stride=stride)


def inference_of(
    *, flip: bool = False, multi_scale: bool = False, window: tuple[int, int] | None = None, amp: str = "none",
    fast: bool = True,
) -> Inference:  # fmt: skip
    """The :class:`Inference` of the commands' options: ``--flip``, ``--multi-scale``, ``--slide`` (windows of
    ``window``, see :func:`sliding`; ``None``: the whole image), ``--amp`` and ``--plain`` (``fast=False``)."""
    inference = Inference(scales=MULTI_SCALES if multi_scale else (1.0,), flip=flip, fast=fast, amp=amp)
    return sliding(inference, window) if window is not None else inference


def inference_model(model: nn.Module, inference: Inference = Inference(), *, inplace: bool = False) -> nn.Module:
    """What evaluation runs: with ``inference.fast`` an optimized eval-mode copy of ``model`` (BatchNorm folded,
    no aux head, channels_last where that is faster on its device, the convolutions' weights in ``inference.amp``'s
    precision; with ``inplace``, ``model`` itself optimized, which saves a copy of the weights), else ``model``
    itself in eval mode. The copy is meant to run under ``inference.amp``'s autocast, as
    :func:`predict_probabilities` runs it."""
    if not inference.fast:
        return model.eval()
    device = next(model.parameters()).device
    channels_last = uses_channels_last(True, device, inference.amp)
    dtype = autocast_dtype(inference.amp, device, option="--amp")
    return optimize_for_inference(model, inplace=inplace, channels_last=channels_last, autocast_dtype=dtype)


def sliding_window_logits(
    model: nn.Module, image: torch.Tensor, window: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Logits ``(1, C, H, W)`` of ``image (1, 3, H, W)`` averaged over overlapping windows that cover it.

    Windows step by ``stride``; the last row and column are shifted back inside the image, and an image smaller
    than the window is seen whole.
    """
    height, width = image.shape[-2:]
    window_h, window_w = min(window[0], height), min(window[1], width)
    tops = _starts(height, window_h, stride[0])
    lefts = _starts(width, window_w, stride[1])
    total = counts = None
    for top in tops:
        for left in lefts:
            logits = model(image[..., top : top + window_h, left : left + window_w])["out"]
            if total is None:
                total = image.new_zeros(1, logits.shape[1], height, width, dtype=logits.dtype)
                counts = image.new_zeros(1, 1, height, width)
            total[..., top : top + window_h, left : left + window_w] += logits
            counts[..., top : top + window_h, left : left + window_w] += 1
    return total / counts


def _starts(size: int, window: int, stride: int) -> list[int]:
    last = max(size - window, 0)
    return sorted({min(start, last) for start in range(0, last + stride, stride)})


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module, image: torch.Tensor, out_size: tuple[int, int], inference: Inference = Inference()
) -> torch.Tensor:
    """Softmax probabilities ``(1, C, *out_size)`` float32 for a normalized ``image (1, 3, h, w)``.

    Each scale (and its flip) is predicted, upsampled bilinearly to ``out_size`` and averaged. ``model`` is run as
    given (see :func:`inference_model`; a channels_last model turns the image channels_last at its first
    convolution), under ``inference.amp``'s autocast.
    """
    dtype = autocast_dtype(inference.amp, image.device, option="--amp")
    with torch.autocast(image.device.type, dtype=dtype, enabled=dtype is not None):
        return _average_probabilities(model, image, out_size, inference)


def _average_probabilities(
    model: nn.Module, image: torch.Tensor, out_size: tuple[int, int], inference: Inference
) -> torch.Tensor:
    height, width = image.shape[-2:]
    total = None
    for scale in inference.scales:
        size = (round(height * scale), round(width * scale))
        scaled = image if size == (height, width) else F.interpolate(image, size, mode="bilinear", align_corners=False)
        for flipped in (False, True) if inference.flip else (False,):
            view = scaled.flip(-1) if flipped else scaled
            if inference.window is None:
                logits = model(view, output_size=out_size)["out"].float()  # (1, C, *out_size) from stride 4
            else:
                logits = sliding_window_logits(model, view, inference.window, inference.stride or inference.window)
                logits = F.interpolate(logits.float(), out_size, mode="bilinear", align_corners=False)
            logits = logits.flip(-1) if flipped else logits
            probabilities = channel_softmax(logits)
            total = probabilities if total is None else total + probabilities
    return total / (len(inference.scales) * (2 if inference.flip else 1))


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The softmax over the classes of logits ``(N, C, H, W)``, in their memory layout. Channels_last logits (what
    the folded model gives on a CPU) are taken as their ``(N, H, W, C)`` view, whose contiguous last dimension torch's
    softmax is fastest over, and the probabilities stay channels_last, so that an argmax over the classes reads each
    pixel's scores together. With 21 classes at 500 x 375 the softmax and the argmax take 10 ms on 2 AMD Zen 4 cores;
    ``softmax(dim=1)``, which returns a contiguous tensor, and the argmax over that take 25 ms."""
    if logits.is_contiguous(memory_format=torch.channels_last) and not logits.is_contiguous():
        return logits.permute(0, 2, 3, 1).softmax(dim=-1).permute(0, 3, 1, 2)
    return logits.softmax(dim=1)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    num_classes: int,
    env: Distributed,
    inference: Inference = Inference(),
    progress: bool = False,
    workers: int = 0,
    inplace: bool = False,
) -> dict[str, Any]:
    """Per-class IoU, mIoU and pixel accuracy of ``model`` on ``dataset``, each process taking every n-th image.

    ``dataset[i]`` gives ``{"image": (3, h, w) normalized, "mask": (H, W)}``: the image at the test scale, the
    mask at its original resolution. ``workers`` DataLoader processes read the images (0: this process; at most
    one per CPU core). ``model`` is left as it was (in training mode if it was), unless ``inplace``: then the fast
    path folds it in place, for a caller that has no further use for it.
    """
    autocast_dtype(inference.amp, env.device, option="--amp")  # an impossible setting fails before any work
    was_training = model.training
    network = inference_model(model, inference, inplace=inplace)
    matrix = ConfusionMatrix(num_classes, device=env.device)
    share = Subset(dataset, range(env.rank, len(dataset), env.world_size))  # every world_size-th, from the rank
    samples = _read_ahead(share, worker_count(workers), pin_memory=env.device.type == "cuda")
    for sample in tqdm(samples, total=len(share), desc="evaluate", disable=not (progress and env.is_main)):
        image = sample["image"].unsqueeze(0).to(env.device, non_blocking=True)
        mask = sample["mask"].to(env.device, non_blocking=True)
        probabilities = predict_probabilities(network, image, tuple(mask.shape[-2:]), inference)
        matrix.update(probabilities.argmax(dim=1)[0], mask)
    matrix.all_reduce()
    model.train(was_training)
    return matrix.compute()


def _read_ahead(dataset: Dataset, workers: int, *, pin_memory: bool) -> Iterator[dict[str, torch.Tensor]]:
    """The samples of ``dataset`` in order, read ahead by ``workers`` processes; a sample that a worker could not
    read raises its one-line error here, in the main process."""
    loader = DataLoader(
        CarryErrors(dataset),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator(),  # seeds come from here, not from the global RNG that training's dropout uses
    )
    for sample in loader:
        yield raise_carried(sample)
