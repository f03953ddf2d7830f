"""deeplab.data.transforms: image and mask stay aligned, 255 survives, and each step does what the reference does."""

import colorsys

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from deeplab.data.transforms import (
    MEAN,
    STD,
    PadToSize,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomRescale,
    adjust_hsv_,
    dominant_fraction,
    eval_transforms,
    rescaled_size,
    train_transforms,
)

BLOCK, STEP = 16, 20  # coordinate blocks of 16 x 16 pixels; block (r, c) has colour (20 r, 20 c, 0)


def coordinate_sample(height: int = 192, width: int = 176) -> dict:
    """An image whose colour encodes the block ``(row, col)`` of every pixel and the mask that encodes the same."""
    rows = torch.arange(height).div(BLOCK, rounding_mode="floor")[:, None].expand(height, width)
    cols = torch.arange(width).div(BLOCK, rounding_mode="floor")[None, :].expand(height, width)
    image = torch.stack([rows * STEP, cols * STEP, torch.zeros_like(rows)]).to(torch.uint8)
    mask = rows * 12 + cols  # < 255 for up to 12 x 12 blocks
    mask[:3] = 255  # an ignored band must travel with the image too
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask), "id": "grid"}


def decoded_blocks(image: torch.Tensor) -> torch.Tensor:
    """The block code ``12 r + c`` that each pixel's colour ``(3, H, W)`` (0-255 scale) spells."""
    rows, cols = image[0].div(STEP).round().long(), image[1].div(STEP).round().long()
    return rows * 12 + cols


def agreement(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of labelled pixels whose image colour spells the mask's block code."""
    labelled = mask != 255
    return (decoded_blocks(image)[labelled] == mask[labelled]).float().mean().item()


def unnormalize(image: torch.Tensor) -> torch.Tensor:
    return image * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]


GEOMETRIC_STEPS = {
    "rescale": RandomRescale((320, 160), (0.5, 2.0)),
    "crop": RandomCropCatMax((96, 64)),
    "flip": v2.RandomHorizontalFlip(p=1.0),
    "pad": PadToSize((256, 256)),
}


@pytest.mark.parametrize("name", GEOMETRIC_STEPS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_geometric_step_keeps_image_and_mask_aligned(name, seed):
    torch.manual_seed(seed)
    sample = coordinate_sample()
    out = GEOMETRIC_STEPS[name](sample)
    assert out["image"].shape[-2:] == out["mask"].shape
    inside = out["mask"] != 255
    if name == "pad":
        inside[:32] = inside[-32:] = False  # padding rows: image 0, mask 255
    exact = name != "rescale"  # bilinear blends colours across block edges; everything else copies pixels
    assert agreement(out["image"].float(), torch.where(inside, out["mask"], 255)) >= (1.0 if exact else 0.9)


def test_flip_really_flips_both():
    sample = coordinate_sample()
    out = v2.RandomHorizontalFlip(p=1.0)(sample)
    assert torch.equal(out["mask"], sample["mask"].flip(-1))
    assert torch.equal(out["image"], sample["image"].flip(-1))


@pytest.mark.parametrize("seed", range(4))
def test_whole_training_pipeline_keeps_alignment_and_sizes(seed):
    torch.manual_seed(seed)
    transform = train_transforms(crop_size=(128, 112), scale=(384, 192), photometric=False)
    out = transform(coordinate_sample())
    assert out["image"].shape == (3, 128, 112) and out["image"].dtype == torch.float32
    assert out["mask"].shape == (128, 112) and out["mask"].dtype == torch.int64
    assert agreement(unnormalize(out["image"]), out["mask"]) >= 0.9


def test_ignore_label_and_mask_values_survive_the_pipeline():
    sample = coordinate_sample()
    values = set(sample["mask"].unique().tolist())
    seen = set()
    for seed in range(6):
        torch.manual_seed(seed)
        out = train_transforms(crop_size=96, scale=(256, 128))(sample)
        seen |= set(out["mask"].unique().tolist())
    assert 255 in seen and seen <= values


def test_masks_resize_with_nearest_neighbours():
    mask = torch.randint(0, 21, (30, 40))
    mask[::7] = 255
    out = RandomRescale((80, 60))(
        {"image": tv_tensors.Image(torch.zeros(3, 30, 40, dtype=torch.uint8)), "mask": tv_tensors.Mask(mask)}
    )
    assert out["mask"].shape == (60, 80)
    assert torch.equal(out["mask"], mask.repeat_interleave(2, 0).repeat_interleave(2, 1))  # 2x nearest = copies


def test_rescale_follows_the_reference_rule():
    assert rescaled_size(375, 500, (2048, 512)) == (512, 683)  # short side limits
    assert rescaled_size(500, 375, (2048, 512)) == (683, 512)  # portrait: the same rule on long/short sides
    assert rescaled_size(1024, 2048, (2048, 1024)) == (1024, 2048)
    assert rescaled_size(100, 1000, (2048, 512)) == (205, 2048)  # long side limits
    sizes = set()
    for seed in range(20):
        torch.manual_seed(seed)
        image = tv_tensors.Image(torch.zeros(3, 375, 500, dtype=torch.uint8))
        sizes.add(tuple(RandomRescale((2048, 512), (0.5, 2.0))(image).shape[-2:]))
    assert len(sizes) > 10 and all(256 <= h <= 1024 and abs(w / h - 500 / 375) < 0.01 for h, w in sizes)


def test_dominant_fraction_ignores_ignored_pixels():
    mask = torch.full((1000,), 255)
    mask[:50], mask[50:80] = 0, 1
    assert dominant_fraction(mask) == (2, 50 / 80)
    assert dominant_fraction(torch.full((5, 5), 255)) == (0, 1.0)


def corner_mask() -> torch.Tensor:
    """128 x 128: class 1 in a 48 x 48 top-left corner, class 0 elsewhere: most 64 x 64 crops are over 75 % class 0."""
    mask = torch.zeros(128, 128, dtype=torch.int64)
    mask[:48, :48] = 1
    return mask


def balanced(mask: torch.Tensor, top: int, left: int, size: int = 64) -> bool:
    classes, largest = dominant_fraction(mask[top : top + size, left : left + size])
    return classes > 1 and largest < 0.75


@pytest.mark.parametrize("seed", range(8))
def test_cat_max_crop_takes_the_first_balanced_try_else_the_last(seed):
    mask = corner_mask()
    torch.manual_seed(seed)
    params = RandomCropCatMax(64).make_params([tv_tensors.Mask(mask)])
    torch.manual_seed(seed)  # replay the same ten draws
    tries = [(int(torch.randint(0, 65, ())), int(torch.randint(0, 65, ()))) for _ in range(10)]
    good = [t for t in tries if balanced(mask, *t)]
    assert (params["top"], params["left"]) == (good[0] if good else tries[-1])


def test_cat_max_crop_beats_a_plain_random_crop():
    mask, image = corner_mask(), torch.zeros(3, 128, 128, dtype=torch.uint8)
    rates = {}
    for tries in (1, 10):
        crop, hits = RandomCropCatMax(64, tries=tries), 0
        for seed in range(60):
            torch.manual_seed(seed)
            out = crop({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
            classes, largest = dominant_fraction(out["mask"])
            hits += classes > 1 and largest < 0.75
        rates[tries] = hits / 60
    assert rates[10] > 2 * rates[1] and rates[10] > 0.4


def test_crop_is_smaller_where_the_image_is_smaller():
    sample = coordinate_sample(40, 176)
    out = RandomCropCatMax((64, 64))(sample)
    assert out["image"].shape == (3, 40, 64) and out["mask"].shape == (40, 64)


def test_pad_centres_and_fills_image_with_zero_and_mask_with_ignore():
    image = tv_tensors.Image(torch.full((3, 50, 40), 7.0))
    mask = tv_tensors.Mask(torch.ones(50, 40, dtype=torch.int64))
    out = PadToSize((64, 64))({"image": image, "mask": mask})
    assert out["image"].shape == (3, 64, 64) and out["mask"].shape == (64, 64)
    top, left = 7, 12
    assert torch.equal(out["mask"][top : top + 50, left : left + 40], mask)
    assert (out["image"][:, top : top + 50, left : left + 40] == 7).all()
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[top : top + 50, left : left + 40] = False
    assert (out["mask"][outside] == 255).all() and (out["image"][:, outside] == 0).all()


def test_normalization_uses_the_imagenet_statistics_on_0_255():
    image = torch.tensor([0, 128, 255], dtype=torch.uint8)[:, None, None].expand(3, 8, 8).contiguous()
    out = eval_transforms(scale=(8, 8))({"image": image, "mask": torch.zeros(8, 8, dtype=torch.int64)})
    expected = (torch.tensor([0.0, 128.0, 255.0]) - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(out["image"][:, 0, 0], expected)


def test_eval_resizes_the_image_only():
    image = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8)
    mask = torch.randint(0, 21, (375, 500))
    out = eval_transforms(scale=(2048, 512))({"image": image, "mask": mask})  # plain tensors, as from a user
    assert out["image"].shape == (3, 512, 683) and out["image"].dtype == torch.float32
    assert torch.equal(out["mask"], mask)


def hsv_reference(pixel: list[float], saturation: float = 1.0, hue_shift: float = 0.0) -> list[float]:
    """One RGB pixel (0-255) with its HSV saturation scaled (clipped to 1) and hue shifted (fraction of a turn)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in pixel))
    return [c * 255 for c in colorsys.hsv_to_rgb((h + hue_shift) % 1.0, min(s * saturation, 1.0), v)]


@pytest.mark.parametrize("factor", [0.5, 1.3, 3.0])
def test_saturation_scales_hsv_saturation(factor):
    pixels = [[200.0, 100.0, 50.0], [10.0, 200.0, 120.0], [90.0, 90.0, 90.0], [0.0, 0.0, 0.0], [30.0, 60.0, 255.0]]
    image = torch.tensor(pixels).T[:, :, None]  # (3, 5, 1)
    expected = torch.tensor([hsv_reference(p, saturation=factor) for p in pixels]).T[:, :, None]
    torch.testing.assert_close(adjust_hsv_(image.clone(), factor), expected, atol=1e-3, rtol=1e-5)


def test_photometric_steps_follow_the_reference_formulas():
    pixels = [[200.0, 100.0, 50.0], [10.0, 200.0, 120.0], [250.0, 5.0, 128.0]]
    image = tv_tensors.Image(torch.tensor(pixels, dtype=torch.uint8).T[:, :, None])  # (3, 3, 1)
    distortion = PhotoMetricDistortion()
    off = {"brightness": None, "contrast": None, "saturation": None, "hue": None, "contrast_first": True}
    as_rows = lambda out: out[:, :, 0].T.float()  # noqa: E731
    bright = distortion.transform(image, {**off, "brightness": 20.0})
    assert torch.equal(as_rows(bright), (torch.tensor(pixels) + 20).clamp(0, 255))
    contrast = distortion.transform(image, {**off, "contrast": 1.4})
    torch.testing.assert_close(as_rows(contrast), (torch.tensor(pixels) * 1.4).clamp(0, 255))
    hue = distortion.transform(image, {**off, "hue": 10})  # 10 OpenCV units = 20 degrees
    expected = torch.tensor([hsv_reference(p, hue_shift=10 / 180) for p in pixels])
    torch.testing.assert_close(as_rows(hue), expected, atol=5e-3, rtol=1e-5)
    torch.testing.assert_close(distortion.transform(image, off), image.float())  # nothing drawn: only float32
    assert bright.dtype == torch.float32 and isinstance(bright, tv_tensors.Image)  # no rounding before normalize


def test_photometric_distortion_leaves_masks_alone_and_draws_each_step_half_the_time():
    sample = coordinate_sample()
    drawn = {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0}
    distortion = PhotoMetricDistortion()
    for seed in range(200):
        torch.manual_seed(seed)
        params = distortion.make_params([sample["image"]])
        for key in drawn:
            drawn[key] += params[key] is not None
        assert params["hue"] is None or -18 <= params["hue"] < 18
        assert params["brightness"] is None or -32 <= params["brightness"] <= 32
    assert all(60 <= count <= 140 for count in drawn.values())
    out = distortion(sample)
    assert torch.equal(out["mask"], sample["mask"])


def test_same_seed_same_augmentation():
    transform = train_transforms(crop_size=64, scale=(256, 128))
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(transform(coordinate_sample()))
    assert torch.equal(outs[0]["image"], outs[1]["image"]) and torch.equal(outs[0]["mask"], outs[1]["mask"])


@pytest.mark.parametrize(("units", "saturation"), [(-18, 1.0), (-7, 0.6), (5, 1.0), (17, 1.4), (3, 4.0)])
def test_hue_shift_with_saturation_matches_hsv_on_every_colour_sector(units, saturation):
    pixels = torch.randint(0, 256, (64, 3), generator=torch.Generator().manual_seed(units + 100)).float()
    pixels[:3] = torch.tensor([[0.0, 0.0, 0.0], [255.0, 255.0, 255.0], [90.0, 90.0, 90.0]])  # greys have no hue
    image = pixels.T[:, :, None].contiguous()  # (3, 64, 1)
    expected = [hsv_reference(p.tolist(), saturation=saturation, hue_shift=units / 180) for p in pixels]
    expected = torch.tensor(expected).T[:, :, None]
    torch.testing.assert_close(adjust_hsv_(image, saturation, units / 180), expected, atol=5e-3, rtol=1e-4)
