"""Images and masks as real tools write them: 16-bit PNGs, EXIF-turned phone photos, BMP, TIFF and WebP, and masks
in a format that is not read, through the readers, the checker, ``train``, ``evaluate`` and ``predict``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from deeplab.__main__ import main
from deeplab.data import FolderDataset
from deeplab.data.datasets import CorruptSampleError, DatasetError, read_image, read_mask_file
from deeplab.prepare.check import check_folder
from tests.conftest import TINY

CLASSES = {"classes": ["background", "box", "bar"], "palette": [[0, 0, 0], [220, 40, 40], [40, 40, 220]]}
ORIENTATION = 0x0112  # EXIF: 6 = turn 90 degrees clockwise to show
RUN = [*TINY, "model.pretrained=none", "train.iterations=2", "train.batch_size=2", "train.batch_per_process=2"]


def sixteen_bit_png(path: Path, values: np.ndarray) -> Path:
    """``values`` ``(H, W)`` written as a 16-bit greyscale PNG."""
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


def exif_turned_jpeg(path: Path, shown: np.ndarray) -> Path:
    """A JPEG whose stored pixels are ``shown`` ``(H, W, 3)`` turned back, with the EXIF orientation (6) that shows
    them as ``shown``: what a phone held upright writes."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(np.rot90(shown, k=1).copy()).save(path, exif=exif, quality=95)
    return path


def scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An image ``(H, W, 3)`` uint8 with a red box (class 1) and a blue bar (class 2) and its mask ``(H, W)``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[4:20, 4:20], mask[height - 8 : height - 3, :] = 1, 2
    image[mask == 1], image[mask == 2] = (230, 60, 60), (60, 60, 230)
    return image, mask


def test_a_16_bit_mask_reads_as_class_indices_and_too_large_values_are_one_line(tmp_path):
    values = np.array([[0, 1], [2, 255]])
    mask = read_mask_file(sixteen_bit_png(tmp_path / "mask.png", values))
    assert mask.dtype == torch.uint8 and mask.tolist() == [values.tolist()]
    with pytest.raises(CorruptSampleError, match=r"16-bit mask with values up to 300; .* 8 bits per pixel$"):
        read_mask_file(sixteen_bit_png(tmp_path / "wide.png", np.array([[0, 300]])))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_image_is_scaled_over_its_full_range(tmp_path, suffix):
    path = sixteen_bit_png(tmp_path / f"image{suffix}", np.array([[0, 100 * 256, 65535]]))
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 1, 3)
    assert image[:, 0].tolist() == [[0, 100, 255]] * 3


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".webp"])
def test_bmp_tiff_and_webp_images_read_as_their_pixels(tmp_path, suffix):
    pixels, _ = scene(24, 32, seed=1)
    path = tmp_path / f"image{suffix}"
    Image.fromarray(pixels).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    assert torch.equal(read_image(path), torch.from_numpy(pixels).permute(2, 0, 1))


def test_an_exif_turned_photo_is_read_as_shown(tmp_path):
    shown, _ = scene(40, 24, seed=2)  # (H, W) = (40, 24) upright; stored as 24 x 40
    image = read_image(exif_turned_jpeg(tmp_path / "photo.jpg", shown))
    with Image.open(tmp_path / "photo.jpg") as stored:
        assert stored.size == (40, 24)
        expected = torch.from_numpy(np.array(ImageOps.exif_transpose(stored))).permute(2, 0, 1)
    assert image.shape == (3, 40, 24)
    assert (image.int() - expected.int()).abs().max() <= 2  # two JPEG decoders, the same picture


def own_folder(root: Path) -> Path:
    """A folder dataset as real tools leave one: BMP, TIFF, WebP and an EXIF-turned JPEG (its mask drawn on the
    photo as shown), 16-bit and 8-bit masks."""
    (root / "classes.json").parent.mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
    for index, suffix in enumerate((".bmp", ".tif", ".webp", ".jpg")):
        image, mask = scene(48, 40, seed=index)
        if suffix == ".jpg":
            exif_turned_jpeg(root / "images" / "train" / f"shot_{index}.jpg", image)
        else:
            Image.fromarray(image).save(root / "images" / "train" / f"shot_{index}{suffix}")
        sixteen_bit_png(root / "masks" / "train" / f"shot_{index}.png", mask)
    for index in range(2):
        image, mask = scene(48, 40, seed=10 + index)
        Image.fromarray(image).save(root / "images" / "val" / f"val_{index}.png")
        Image.fromarray(mask).save(root / "masks" / "val" / f"val_{index}.png")
    return root


@pytest.mark.slow
def test_real_tool_files_go_through_the_checker_train_evaluate_and_predict(tmp_path):
    data = own_folder(tmp_path / "shots")
    report = check_folder(data, overlays=0, progress=False)
    assert report.ok, report.errors
    run = tmp_path / "run"
    settings = [f"--set={item}" for item in RUN]
    assert main(["train", "--config", "folder-r50-d16", "--data-root", str(data), "--out", str(run), *settings]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "last.pth"), "--data-root", str(data)]) == 0
    photo = data / "images" / "train" / "shot_3.jpg"
    assert main(["predict", "--checkpoint", str(run / "last.pth"), str(photo), "--out", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "shot_3_mask.png") as mask:
        assert mask.size == (40, 48)  # (W, H) as the photo is shown, not as stored (48 x 40)


def test_a_mask_drawn_on_the_stored_pixels_of_a_turned_photo_is_named_with_the_fix(tmp_path):
    data = own_folder(tmp_path / "shots")
    _, mask = scene(48, 40, seed=3)
    sixteen_bit_png(data / "masks" / "train" / "shot_3.png", np.rot90(mask, k=1))  # fits the stored pixels
    dataset = FolderDataset(data, "train")
    with pytest.raises(CorruptSampleError, match="shown turned by its EXIF orientation.*without the orientation tag"):
        dataset[3]


def test_a_mask_in_a_format_that_is_not_read_is_named(tmp_path):
    data = own_folder(tmp_path / "shots")
    mask = data / "masks" / "val" / "val_0.png"
    Image.open(mask).convert("L").save(mask.with_suffix(".jpg"))
    mask.unlink()
    with pytest.raises(DatasetError, match=r"val_0.png \(not read: .*val_0.jpg; masks are .png\): no mask in"):
        FolderDataset(data, "val")
