"""Joint image + mask transforms on ``torchvision.transforms.v2``: the reference training and test pipelines.

A sample is a dict ``{"image": (3, H, W) uint8, "mask": (H, W) int64, ...}``; plain tensors under those keys are
wrapped as ``tv_tensors.Image`` / ``tv_tensors.Mask`` first, so every geometric step moves image and mask together
and masks always resize with nearest neighbours (255, the ignore label, survives every step).

Training (the reference's ``Resize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion -> Normalize -> Padding``):

1. :class:`RandomRescale`: keep the aspect ratio, fit ``scale = (long, short)`` times a ratio drawn from
   ``ratio_range`` (factor ``min(long / long side, short / short side)``), bilinear without anti-aliasing for the
   image (``cv2.INTER_LINEAR`` in the reference), nearest for the mask;
2. :class:`RandomCropCatMax`: a random ``crop_size`` crop, retried up to 10 times until no class covers more than
   ``cat_max_ratio`` of the crop's labelled pixels;
3. ``v2.RandomHorizontalFlip(0.5)``;
4. :class:`PhotoMetricDistortion`: brightness, contrast, saturation, hue, each with probability 0.5, contrast
   before or after the colour steps with equal chance;
5. ``v2.Normalize`` with the ImageNet mean/std on the 0-255 scale;
6. :class:`PadToSize`: pad (centred) to ``crop_size``, image with 0 after normalization, mask with 255.

Test: :class:`RandomRescale` of the image only (no random ratio; the mask keeps its original resolution, where the
metrics are computed) -> normalize.

Speed (``python -m benchmarks.data_pipeline``): the image stays uint8 in the channels-last layout the JPEG decoder
gives until the photometric step (torch's fast uint8 bilinear kernel wants it), which writes float32 planes once;
masks travel as int32 (torch resizes them through float32, its fastest nearest kernel, and counts them for the crop
without conversion) and become int64 at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from deeplab.data.classes import IGNORE_INDEX

MEAN = (123.675, 116.28, 103.53)  # RGB, on the 0-255 scale
STD = (58.395, 57.12, 57.375)
Size = tuple[int, int]


def _pair(size: int | Sequence[int]) -> Size:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


def _randint(low: int, high: int) -> int:
    """A random integer in ``[low, high)`` from torch's generator (so seeding torch makes augmentation repeatable)."""
    return int(torch.randint(low, high, ()))


def _coin() -> bool:
    return bool(_randint(0, 2))


def as_tv_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """``sample`` with plain tensors under ``"image"`` / ``"mask"`` wrapped as ``tv_tensors.Image`` / ``Mask``."""
    wrapped = dict(sample)
    for key, kind in (("image", tv_tensors.Image), ("mask", tv_tensors.Mask)):
        if key in wrapped and not isinstance(wrapped[key], kind):
            wrapped[key] = kind(wrapped[key])
    return wrapped


def rescaled_size(height: int, width: int, scale: Size) -> Size:
    """``(H, W)`` of an image resized keeping its aspect ratio to fit ``scale = (long, short)``, as the reference."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


class RandomRescale(v2.Transform):
    """Resize keeping the aspect ratio to ``scale = (long, short)`` times a random ratio from ``ratio_range``.

    ``ratio_range=None`` gives the fixed test-time resize; ``resize_masks=False`` leaves masks at their resolution.
    Images use bilinear interpolation without anti-aliasing (as ``cv2.INTER_LINEAR``), masks nearest.
    """

    def __init__(
        self, scale: Size, ratio_range: tuple[float, float] | None = None, *, resize_masks: bool = True
    ) -> None:
        super().__init__()
        self.scale, self.ratio_range, self.resize_masks = _pair(scale), ratio_range, resize_masks

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        ratio = 1.0 if self.ratio_range is None else _uniform(*self.ratio_range)
        scale = int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        return {"size": list(rescaled_size(*v2.query_size(flat_inputs), scale))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            if not self.resize_masks:
                return inpt
            return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.NEAREST)
        return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=False)


def dominant_fraction(mask: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[int, float]:
    """How many classes ``mask`` shows and the largest one's share of its labelled pixels (ignored ones not counted)."""
    counts = torch.bincount(mask.flatten(), minlength=ignore_index + 1)  # (ignore_index + 1,)
    counts[ignore_index] = 0
    total = int(counts.sum())
    return int(torch.count_nonzero(counts)), (int(counts.max()) / total if total else 1.0)


class RandomCropCatMax(v2.Transform):
    """Random ``size = (H, W)`` crop (smaller where the image is smaller) where no class dominates.

    Up to ``tries`` positions are drawn; the first whose mask shows at least two classes, none over ``cat_max_ratio``
    of the labelled pixels, is taken, else the last one drawn (the reference's ``RandomCrop``).
    """

    def __init__(
        self, size: int | Sequence[int], cat_max_ratio: float = 0.75, ignore_index: int = IGNORE_INDEX, tries: int = 10
    ) -> None:
        super().__init__()
        self.size, self.cat_max_ratio, self.ignore_index, self.tries = _pair(size), cat_max_ratio, ignore_index, tries

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        masks = [inpt for inpt in flat_inputs if isinstance(inpt, tv_tensors.Mask)]
        for _ in range(self.tries):
            top, left = _randint(0, height - crop_h + 1), _randint(0, width - crop_w + 1)
            if not masks or self.cat_max_ratio >= 1:
                break
            classes, largest = dominant_fraction(
                masks[0][..., top : top + crop_h, left : left + crop_w], self.ignore_index
            )
            if classes > 1 and largest < self.cat_max_ratio:
                break
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, **params)


class PhotoMetricDistortion(v2.Transform):
    """The reference's colour jitter on images (masks untouched), each step with probability 0.5, in this order:

    brightness (add ``U(-brightness_delta, brightness_delta)``), contrast first with probability 0.5 (multiply by
    ``U(*contrast_range)``), saturation (scale HSV saturation by ``U(*saturation_range)``), hue (shift by an integer
    in ``[-hue_delta, hue_delta)`` OpenCV hue units of 2 degrees), contrast last otherwise. Values (0-255 scale) are
    clipped to [0, 255] after every step. Takes uint8 or float images and returns float32 images on the 0-255 scale
    (contiguous ``(3, H, W)``), ready for normalization: the reference rounds to uint8 after every step, this keeps
    the fractions.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        super().__init__()
        self.brightness_delta, self.hue_delta = brightness_delta, hue_delta
        self.contrast_range, self.saturation_range = contrast_range, saturation_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {  # drawn in the reference's order
            "brightness": _uniform(-self.brightness_delta, self.brightness_delta) if _coin() else None,
            "contrast_first": _coin(),
            "contrast": _uniform(*self.contrast_range) if _coin() else None,
            "saturation": _uniform(*self.saturation_range) if _coin() else None,
            "hue": _randint(-self.hue_delta, self.hue_delta) if _coin() else None,
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        source = inpt.as_subclass(torch.Tensor)
        image = torch.empty(source.shape, dtype=torch.float32)  # contiguous (3, H, W), 0-255: contiguous planes
        if params["brightness"] is not None:
            torch.add(source, params["brightness"], out=image).clamp_(0, 255)
        else:
            image.copy_(source)
        if params["contrast"] is not None and params["contrast_first"]:
            image.mul_(params["contrast"]).clamp_(0, 255)
        if params["saturation"] is not None or params["hue"] is not None:
            saturation = 1.0 if params["saturation"] is None else params["saturation"]
            adjust_hsv_(image, saturation, (params["hue"] or 0) / 180)
        if params["contrast"] is not None and not params["contrast_first"]:
            image.mul_(params["contrast"]).clamp_(0, 255)
        return tv_tensors.wrap(image, like=inpt)


def adjust_hsv_(image: torch.Tensor, saturation: float = 1.0, hue: float = 0.0) -> torch.Tensor:
    """Scale the HSV saturation of ``image`` by ``saturation`` (clipped to 1) and turn its hue by ``hue`` turns.

    ``image`` is a contiguous float ``(3, H, W)`` tensor on any scale, changed in place and returned. HSV value (the
    largest channel, ``high``) stays, so no HSV image is built: with ``spread = high - low`` (largest minus smallest
    channel), the new spread is ``min(saturation * spread, high)`` and each channel is ``high - new_spread * w`` where
    ``w`` is 1 minus the hue-to-RGB ramp of the new hue (the closed form of HSV -> RGB). Only element-wise ops that
    torch vectorises are used.
    """
    red, green, blue = image.unbind(dim=-3)
    high = torch.maximum(torch.maximum(red, green), blue)  # (H, W)
    low = torch.minimum(torch.minimum(red, green), blue)
    spread = high.sub(low).clamp_(min=1e-3)  # grey pixels: any hue, every channel ends at ``high``
    if hue == 0.0:  # saturation only: every channel keeps its place between the new minimum and ``high``
        keep = torch.div(high, spread).clamp_(max=saturation)
        return image.sub_(high).mul_(keep).add_(high)
    # hue in sixths of a turn: (G - B) / spread where R is largest, 2 + (B - R) / spread for G, 4 + (R - G) / spread
    is_red = torch.eq(red, high, out=torch.empty_like(high))  # 1.0 or 0.0
    is_green = torch.eq(green, high, out=low).mul_(1 - is_red)  # reuses ``low``'s memory
    sixths = (green - blue).mul_(is_red)
    sixths.add_((blue - red).add_(spread, alpha=2).mul_(is_green))
    is_blue = is_red.add_(is_green).neg_().add_(1)
    sixths.add_((red - green).add_(spread, alpha=4).mul_(is_blue))
    sixths.div_(spread).add_(6 * hue)
    sixths.sub_(torch.div(sixths, 6, out=is_green).floor_().mul_(6))  # in [0, 6)
    new_spread = torch.minimum(spread.mul_(saturation), high, out=spread)
    # channel = high - new_spread * (1 - its hue ramp), clamped to [0, 1]: R 2 - |H - 3|, G |H - 2| - 1, B |H - 4| - 1
    torch.sub(sixths, 3, out=red).abs_().neg_().add_(2)
    torch.sub(sixths, 2, out=green).abs_().sub_(1)
    torch.sub(sixths, 4, out=blue).abs_().sub_(1)
    return torch.addcmul(high, image.clamp_(0, 1), new_spread, value=-1, out=image)


class PadToSize(v2.Transform):
    """Pad images with ``fill`` and masks with ``ignore_index`` to at least ``size = (H, W)``, the original centred."""

    def __init__(self, size: int | Sequence[int], fill: float = 0.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.size, self.fill, self.ignore_index = _pair(size), fill, ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        extra_h, extra_w = max(self.size[0] - height, 0), max(self.size[1] - width, 0)
        top, left = extra_h // 2, extra_w // 2
        return {"padding": [left, top, extra_w - left, extra_h - top]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, params["padding"], fill=fill)


def train_transforms(
    crop_size: int | Sequence[int] = (512, 512),
    scale: Sequence[int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    *,
    flip_prob: float = 0.5,
    photometric: bool = True,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    ignore_index: int = IGNORE_INDEX,
) -> v2.Compose:
    """The reference training pipeline (see the module docstring), with sizes as parameters for small configs.

    Sample in: a uint8 ``(3, H, W)`` image and an ``(H, W)`` integer mask; out: ``{"image": (3, *crop_size)``
    normalized float32, ``"mask": crop_size`` int64 with ``ignore_index`` in the padding}``. ``crop_size = (H, W)``,
    ``scale = (long, short)``.
    """
    crop_size = _pair(crop_size)
    return v2.Compose(
        [
            as_tv_tensors,
            v2.ToDtype({tv_tensors.Mask: torch.int32, "others": None}),  # see "Speed" above
            RandomRescale(_pair(scale), ratio_range),
            RandomCropCatMax(crop_size, cat_max_ratio, ignore_index),
            v2.RandomHorizontalFlip(flip_prob),
            *([PhotoMetricDistortion()] if photometric else []),
            v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}),
            v2.Normalize(mean, std),
            PadToSize(crop_size, fill=0.0, ignore_index=ignore_index),
        ]
    )


def eval_transforms(
    scale: Sequence[int] = (2048, 512), *, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> v2.Compose:
    """The reference test pipeline: the image resized to ``scale`` and normalized, the mask left as it is."""
    return v2.Compose(
        [
            as_tv_tensors,
            RandomRescale(_pair(scale), None, resize_masks=False),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}),
            v2.Normalize(mean, std),
        ]
    )
