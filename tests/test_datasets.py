"""deeplab.data.datasets on tiny trees in the official layouts: what they read, and one clear line for bad data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from deeplab.data import (
    ADE20k,
    Cityscapes,
    CorruptSampleError,
    DatasetError,
    DatasetNotFoundError,
    ToyDataset,
    UnknownDatasetError,
    VOCSegmentation,
    build_dataset,
    dataset_info,
    train_transforms,
)
from deeplab.data.classes import VOC_PALETTE
from tests.conftest import write_mask

RNG = np.random.default_rng(0)


def write_image(path: Path, height: int = 24, width: int = 32) -> np.ndarray:
    """A random RGB image saved as JPEG or PNG (by suffix), folders made; returns the pixels written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def random_mask(num_classes: int, height: int = 24, width: int = 32, low: int = 0) -> np.ndarray:
    mask = RNG.integers(low, num_classes, (height, width)).astype(np.uint8)
    mask[0, :5] = 255
    return mask


def make_voc(
    root: Path, folder: str = "VOCdevkit/VOC2012", splits=("train", "val", "train_aug"), num_classes: int = 21
) -> dict:
    """A VOC-layout tree; returns ``{(split, id): mask}`` of the masks the dataset should read."""
    base = root / folder
    expected = {}
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"], "train_aug": ["2007_000032", "2008_000002"]}
    for split in splits:
        (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids[split]) + "\n")
        for i in ids[split]:
            write_image(base / "JPEGImages" / f"{i}.jpg")
            masks = "SegmentationClassAug" if split == "train_aug" else "SegmentationClass"
            expected[split, i] = write_mask(base / masks / f"{i}.png", random_mask(num_classes))
    return expected


def make_ade(root: Path) -> dict:
    base, expected = root / "ADEChallengeData2016", {}
    for split, folder in (("train", "training"), ("val", "validation")):
        for i in range(2):
            name = f"ADE_{folder[:5]}_{i:08d}"
            write_image(base / "images" / folder / f"{name}.jpg")
            raw = random_mask(151)
            raw[0, :5] = 0  # ADE20k masks hold 0 ("other objects") .. 150, never 255
            raw[1, :3] = [0, 1, 150]
            expected[split, name] = write_mask(base / "annotations" / folder / f"{name}.png", raw, palette=False)
    return expected


def make_cityscapes(root: Path) -> dict:
    base, expected = root / "cityscapes", {}
    for split, city in (("train", "aachen"), ("train", "bochum"), ("val", "frankfurt")):
        name = f"{city}_000000_000019"
        write_image(base / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png")
        mask_path = base / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png"
        expected[split, name] = write_mask(mask_path, random_mask(19), palette=False)
        write_mask(base / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", random_mask(34), palette=False)
    return expected


def check_sample(sample: dict, expected_mask: np.ndarray) -> None:
    image, mask = sample["image"], sample["mask"]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert image.shape[-2:] == mask.shape
    np.testing.assert_array_equal(mask.numpy(), expected_mask)


@pytest.mark.parametrize("split", ["train", "val", "train_aug"])
def test_voc_reads_images_and_palette_indices(tmp_path, split):
    expected = make_voc(tmp_path)
    dataset = VOCSegmentation(tmp_path, split)
    assert len(dataset) == sum(s == split for s, _ in expected)
    assert dataset.num_classes == 21 and dataset.classes[0] == "background" and dataset.ignore_index == 255
    for sample in dataset:
        check_sample(sample, expected[split, sample["id"]])


def test_voc_train_aug_reads_segmentation_class_aug(tmp_path):
    expected = make_voc(tmp_path)
    shared = "2007_000032"  # listed in train and train_aug, with different masks in the two folders
    assert not np.array_equal(expected["train", shared], expected["train_aug", shared])
    aug = {s["id"]: s["mask"] for s in VOCSegmentation(tmp_path, "train_aug")}
    np.testing.assert_array_equal(aug[shared].numpy(), expected["train_aug", shared])


def test_ade20k_maps_zero_to_ignore_and_shifts_the_rest(tmp_path):
    expected = make_ade(tmp_path)
    for split in ("train", "val"):
        dataset = ADE20k(tmp_path, split)
        assert len(dataset) == 2 and dataset.num_classes == 150
        for sample in dataset:
            raw = expected[split, sample["id"]].astype(np.int64)
            check_sample(sample, np.where(raw == 0, 255, raw - 1))
            assert sample["mask"][1, :3].tolist() == [255, 0, 149]


def test_cityscapes_pairs_images_with_train_id_masks_per_city(tmp_path):
    expected = make_cityscapes(tmp_path)
    dataset = Cityscapes(tmp_path, "train")
    assert [s.id for s in dataset.samples] == ["aachen_000000_000019", "bochum_000000_000019"]
    assert dataset.num_classes == 19 and dataset.classes[:2] == ("road", "sidewalk")
    for sample in dataset:
        check_sample(sample, expected["train", sample["id"]])
    assert len(Cityscapes(tmp_path, "val")) == 1


def test_toy_reads_the_voc_layout_under_toy(tmp_path):
    expected = make_voc(tmp_path, folder="toy", splits=("train", "val"), num_classes=6)
    dataset = ToyDataset(tmp_path, "train")
    assert isinstance(dataset, VOCSegmentation) and dataset.classes == dataset_info("toy").classes
    for sample in dataset:
        check_sample(sample, expected["train", sample["id"]])


def test_build_dataset_and_joint_transforms(tmp_path):
    make_voc(tmp_path)
    dataset = build_dataset("voc", tmp_path, "train", transforms=train_transforms(crop_size=16, scale=(48, 24)))
    assert type(dataset) is VOCSegmentation
    sample = dataset[0]
    assert sample["image"].shape == (3, 16, 16) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (16, 16) and sample["mask"].dtype == torch.int64 and sample["id"] == "2007_000032"


def test_a_dataloader_batches_fixed_size_crops(tmp_path):
    make_voc(tmp_path)
    dataset = build_dataset("voc", tmp_path, "train_aug", transforms=train_transforms(crop_size=16, scale=(48, 24)))
    collate = lambda samples: (torch.stack([s["image"] for s in samples]), torch.stack([s["mask"] for s in samples]))  # noqa: E731
    for images, masks in DataLoader(dataset, batch_size=2, collate_fn=collate):
        assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 16, 16) and masks.dtype == torch.int64


def one_line_error(error_type: type, match: str, make) -> str:
    with pytest.raises(error_type, match=match) as info:
        make()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_root_names_the_script(tmp_path):
    for cls, command in ((VOCSegmentation, "voc"), (ADE20k, "ade20k"), (Cityscapes, "cityscapes")):
        message = one_line_error(DatasetNotFoundError, "not found", lambda cls=cls: cls(tmp_path, "train"))
        assert f"python -m deeplab data {command} --root {tmp_path}" in message
    assert "python -m deeplab data toy" in one_line_error(
        DatasetNotFoundError, "not found", lambda: ToyDataset(tmp_path, "train")
    )


def test_unknown_split_or_dataset(tmp_path):
    make_voc(tmp_path)
    one_line_error(
        DatasetError, "unknown split 'test'.*train, val, trainval, train_aug", lambda: VOCSegmentation(tmp_path, "test")
    )
    one_line_error(UnknownDatasetError, "unknown dataset 'coco'", lambda: build_dataset("coco", tmp_path, "train"))


def test_missing_or_empty_split_file(tmp_path):
    make_voc(tmp_path)
    lists = tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation"
    message = one_line_error(
        DatasetNotFoundError, "trainval.txt not found", lambda: VOCSegmentation(tmp_path, "trainval")
    )
    assert "python -m deeplab data voc" in message
    (lists / "val.txt").write_text("\n")
    one_line_error(DatasetNotFoundError, "split 'val' .* is empty", lambda: VOCSegmentation(tmp_path, "val"))


@pytest.mark.parametrize("which", ["JPEGImages/2007_000039.jpg", "SegmentationClass/2007_000039.png"])
def test_listed_id_with_a_missing_file(tmp_path, which):
    make_voc(tmp_path)
    (tmp_path / "VOCdevkit/VOC2012" / which).unlink()
    message = one_line_error(
        DatasetNotFoundError, r"not found \(1 of the 4 images and masks", lambda: VOCSegmentation(tmp_path, "train")
    )
    assert message.startswith(str(tmp_path / "VOCdevkit/VOC2012" / which)) and "python -m deeplab data voc" in message


def test_cityscapes_without_train_ids_says_to_convert(tmp_path):
    make_cityscapes(tmp_path)
    next((tmp_path / "cityscapes/gtFine/val").rglob("*labelTrainIds.png")).unlink()
    message = one_line_error(DatasetNotFoundError, "labelTrainIds.png", lambda: Cityscapes(tmp_path, "val"))
    assert "python -m deeplab data cityscapes" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image(tmp_path, damage):
    make_voc(tmp_path)
    path = tmp_path / "VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg"
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    dataset = VOCSegmentation(tmp_path, "val")
    assert str(path) in one_line_error(CorruptSampleError, "unreadable image", lambda: dataset[0])


def test_mask_size_differs_from_image(tmp_path):
    make_voc(tmp_path)
    write_mask(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png", random_mask(21, 20, 32))
    dataset = VOCSegmentation(tmp_path, "val")
    one_line_error(
        CorruptSampleError, r"2007_000033.png: mask size \(20, 32\) differs .* \(24, 32\)", lambda: dataset[0]
    )


@pytest.mark.parametrize("bad_value", [21, 254])
def test_mask_values_out_of_range(tmp_path, bad_value):
    make_voc(tmp_path)
    values = random_mask(21)
    values[5, 5] = bad_value
    write_mask(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png", values)
    dataset = VOCSegmentation(tmp_path, "val")
    one_line_error(CorruptSampleError, rf"mask values \[{bad_value}\] outside \[0, 21\)", lambda: dataset[0])


@pytest.mark.parametrize("bad_value", [151, 255])
def test_ade20k_values_above_150_are_rejected(tmp_path, bad_value):
    make_ade(tmp_path)
    path = next((tmp_path / "ADEChallengeData2016/annotations/validation").glob("*.png"))
    values = random_mask(151)
    values[0, :5] = 0
    values[2, 2] = bad_value
    write_mask(path, values, palette=False)
    error = rf"mask values \[{bad_value}\] outside \[0, 151\);"
    one_line_error(CorruptSampleError, error, lambda: ADE20k(tmp_path, "val")[0])


def test_rgb_mask_is_rejected(tmp_path):
    make_voc(tmp_path)
    write_image(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png")
    dataset = VOCSegmentation(tmp_path, "val")
    one_line_error(CorruptSampleError, "mask has 3 channels", lambda: dataset[0])


def test_class_names_and_palettes():
    voc, ade, city, toy = (dataset_info(name) for name in ("voc", "ade20k", "cityscapes", "toy"))
    assert (voc.num_classes, ade.num_classes, city.num_classes, toy.num_classes) == (21, 150, 19, 6)
    assert voc.palette[1] == (128, 0, 0) and voc.palette[15] == (192, 128, 128)  # aeroplane, person: VOC devkit
    assert len(VOC_PALETTE) == 768 and VOC_PALETTE[-3:] == [224, 224, 192]  # 255 (ignore) is cream
    assert ade.classes[:3] == ("wall", "building", "sky") and ade.palette[0] == (120, 120, 120)
    assert city.classes[-1] == "bicycle" and city.palette[0] == (128, 64, 128)  # road
    assert all(len(info.palette) == info.num_classes for info in (voc, ade, city, toy))
