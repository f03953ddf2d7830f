"""The folder dataset (a user's own images and masks) and its classes.json: both layouts, and one line per problem."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab.data import (
    TOY_CLASSES,
    ClassesFileError,
    DatasetInfo,
    FolderDataset,
    ToyDataset,
    UnknownDatasetError,
    build_dataset,
    dataset_info,
    datasets,
    eval_transforms,
    read_classes_file,
    train_transforms,
)
from deeplab.data.classes import VOC_COLORMAP
from deeplab.data.datasets import read_mask_file
from deeplab.errors import USER_ERRORS
from deeplab.prepare import toy as make_toy
from tests.conftest import write_mask

HEIGHT, WIDTH = 32, 48
CLASSES = {"classes": ["background", "cat", "dog"], "palette": [[0, 0, 0], [200, 0, 0], [0, 200, 0]]}
# id -> split of the tiny folder: 5 train (one nested under city_a/) and 3 val pairs
IDS = {"a": "train", "b": "train", "c": "train", "city_a/d": "train", "e": "train", "f": "val", "g": "val", "h": "val"}


def write_image(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Save ``pixels`` ``(H, W, 3)`` (or a mask ``(H, W)``) under ``path``, folders made; return them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def random_pair(rng: np.random.Generator, num_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = rng.integers(0, num_classes, (HEIGHT, WIDTH)).astype(np.uint8)
    mask[0, :4] = 255
    return image, mask


def make_folder(root: Path, layout: str = "subfolders", classes: dict | None = CLASSES) -> dict:
    """The 8 pairs of ``IDS`` in ``layout`` (``subfolders`` or ``lists``) under ``root``, masks alternately palette
    and grayscale PNGs, image ``a`` a JPEG; returns ``{id: (image, mask)}`` as written."""
    rng = np.random.default_rng(0)
    written = {}
    for index, (sample_id, split) in enumerate(IDS.items()):
        where = f"{split}/{sample_id}" if layout == "subfolders" else sample_id
        image, mask = random_pair(rng)
        suffix = ".jpeg" if sample_id == "a" else ".png"
        write_image(root / "images" / f"{where}{suffix}", image)
        write_mask(root / "masks" / f"{where}.png", mask, palette=index % 2 == 0)
        written[sample_id] = image, mask
    if layout == "lists":
        (root / "splits").mkdir()
        for split in ("train", "val"):
            (root / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i, s in IDS.items() if s == split))
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    return written


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("folder")
    return root, make_folder(root)


def one_line(error_types: tuple[type, ...], make, *names: str) -> str:
    """The message of the error ``make()`` raises: one of ``error_types``, one line, containing every ``names``."""
    with pytest.raises(error_types) as raised:
        make()
    message = str(raised.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message
    return message


@pytest.mark.parametrize("layout", ["subfolders", "lists"])
def test_both_layouts_read_ids_images_and_masks(tmp_path, layout):
    written = make_folder(tmp_path, layout)
    write_image(tmp_path / "images/train/.ipynb_checkpoints/a.png", written["b"][0])  # hidden: skipped
    assert FolderDataset.available_splits(tmp_path) == ["train", "val"]
    train = build_dataset("folder", tmp_path, "train")
    assert type(train) is FolderDataset and train.base == tmp_path and train.classes == ("background", "cat", "dog")
    assert train.palette == ((0, 0, 0), (200, 0, 0), (0, 200, 0)) and train.num_classes == 3
    assert [sample["id"] for sample in train] == ["a", "b", "c", "city_a/d", "e"]
    for sample in [*train, *build_dataset("folder", tmp_path, "val")]:
        image, mask = written[sample["id"]]
        assert sample["image"].shape == (3, HEIGHT, WIDTH) and sample["mask"].dtype == torch.int64
        np.testing.assert_array_equal(sample["mask"].numpy(), mask)
        if sample["id"] != "a":  # a JPEG: lossy
            np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), image)


def test_palette_and_grayscale_masks_give_the_same_indices(folder):
    root, written = folder
    modes = {Image.open(root / "masks/train" / f"{i}.png").mode for i in ("a", "b")}
    assert modes == {"P", "L"}
    dataset = build_dataset("folder", root, "train")
    for sample in (dataset[0], dataset[1]):
        np.testing.assert_array_equal(sample["mask"].numpy(), written[sample["id"]][1])


@pytest.mark.parametrize("colors", [2, 4, 16])
def test_palette_masks_of_1_2_and_4_bits_give_their_indices(tmp_path, colors):
    """Pillow writes a palette of at most 16 colours with 1, 2 or 4 bits per pixel, which torchvision's decoder
    unpacks wrongly; such a hand-made mask must still give its class indices."""
    values = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % colors).astype(np.uint8)
    image = Image.fromarray(values)
    image.putpalette([channel for index in range(colors) for channel in VOC_COLORMAP[index]])
    image.save(tmp_path / "mask.png")
    bits = {2: 1, 4: 2, 16: 4}[colors]
    assert (tmp_path / "mask.png").read_bytes()[24:26] == bytes([bits, 3])  # IHDR: bit depth, palette colour type
    np.testing.assert_array_equal(read_mask_file(tmp_path / "mask.png")[0].numpy(), values)


def test_transforms_apply_to_image_and_mask_together(folder):
    root, _ = folder
    train = build_dataset("folder", root, "train", train_transforms(crop_size=24, scale=(48, 32), photometric=False))
    sample = train[1]
    assert sample["image"].shape == (3, 24, 24) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (24, 24) and set(sample["mask"].unique().tolist()) <= {0, 1, 2, 255}
    val = build_dataset("folder", root, "val", eval_transforms(scale=(96, 64)))
    sample = val[0]
    assert sample["image"].shape == (3, 64, 96) and sample["mask"].shape == (HEIGHT, WIDTH)


def test_classes_file_default_palette_and_dict_round_trip(tmp_path):
    (tmp_path / "classes.json").write_text('{"classes": ["background", "object"]}')
    info = read_classes_file(tmp_path / "classes.json")
    assert info == DatasetInfo("folder", ("background", "object"), tuple(VOC_COLORMAP[:2]))
    assert dataset_info("folder", tmp_path) == info and dataset_info("voc").num_classes == 21
    stored = json.loads(json.dumps(info.to_dict()))
    assert stored == {"name": "folder", "classes": ["background", "object"], "palette": [[0, 0, 0], [128, 0, 0]]}
    assert DatasetInfo.from_dict(stored) == info
    one_line(ClassesFileError, lambda: DatasetInfo.from_dict({**stored, "palette": [[0, 0, 0]]}), "dataset info")
    assert "folder" in str(one_line(UnknownDatasetError, lambda: dataset_info("coco")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "classes.json not found: write the class names there"),
        ('{"classes": ["a", "b"],\n "palette": [[0, 0, 0] [1, 1, 1]]}', "invalid JSON at line 2, column 24"),
        ('["a", "b"]', "expected a JSON object with the keys classes, palette"),
        ('{"palette": []}', "'classes' is missing"),
        ('{"classes": []}', "classes must be a list of 2 to 255 names, got 0 names"),
        ('{"classes": ["cell"]}', 'got only \'cell\': name the background too, e.g. ["background", "cell"]'),
        ('{"classes": ["a", " "]}', "class 1 is ' '; give every class a non-empty name"),
        ('{"classes": ["cat", "dog", "cat"]}', "class name 'cat' appears twice"),
        (
            '{"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [1, 1, 1]]}',
            "palette has 2 colours for 3 classes; give",
        ),
        (
            '{"classes": ["a", "b"], "palette": [[0, 0, 0], [256, 0, 0]]}',
            "palette colour 1 is [256, 0, 0]; write it as",
        ),
        ('{"classes": ["a", "b"], "palette": [[0, 0, 0], [0, 0, 0.5]]}', "palette colour 1 is [0, 0, 0.5]"),
        ('{"classes": ["a"], "colours": []}', "unknown key 'colours'; use only classes, palette"),
    ],
)
def test_classes_file_problems_are_one_line_naming_the_file(tmp_path, text, expected):
    make_folder(tmp_path, classes=None)
    if text is not None:
        (tmp_path / "classes.json").write_text(text)
    message = one_line(ClassesFileError, lambda: build_dataset("folder", tmp_path, "train"), str(tmp_path), expected)
    assert message.startswith(str(tmp_path / "classes.json"))
    assert issubclass(ClassesFileError, USER_ERRORS)


def unlink(path: Path) -> None:
    path.unlink()


def write_rgb_mask(path: Path) -> None:
    write_image(path, np.zeros((HEIGHT, WIDTH, 3), np.uint8))


def write_out_of_range(path: Path) -> None:
    values = np.zeros((HEIGHT, WIDTH), np.uint8)
    values[3, 3] = 7
    write_mask(path, values)


# (what to damage, how, the split to read, what the one-line message must say)
BAD_FOLDERS = {
    "image without mask": ("masks/train/b.png", unlink, "train", "images/train/b.png: no mask in"),
    "mask without image": ("images/val/g.png", unlink, "val", "masks/val/g.png: no image in"),
    "two images, one id": ("images/train/c.jpg", lambda p: write_image(p, np.zeros((8, 8, 3), np.uint8)), "train",
                           "images/train/c.jpg and c.png: two files with one id (1 such id); keep one"),
    "rgb mask": ("masks/train/a.png", write_rgb_mask, "train", "masks/train/a.png: mask has 3 channels; masks must "
                 "be single-channel class indices (palette or grayscale PNG); convert colour masks with"),
    "size mismatch": ("masks/train/a.png", lambda p: write_mask(p, np.zeros((HEIGHT, 20), np.uint8)), "train",
                      "masks/train/a.png: mask size (32, 20) differs from its image a.jpeg (32, 48); fix or remove"),
    "values out of range": ("masks/train/a.png", write_out_of_range, "train",
                            "masks/train/a.png: mask values [7] outside [0, 3) and 255; fix or remove the pair"),
    "unreadable image": ("images/train/a.jpeg", lambda p: p.write_bytes(b"not an image"), "train",
                         "images/train/a.jpeg: unreadable image"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_bad_folders_raise_one_line_naming_the_file(tmp_path, case):
    make_folder(tmp_path)
    relative, damage, split, expected = BAD_FOLDERS[case]
    damage(tmp_path / relative)

    def read():
        for _ in build_dataset("folder", tmp_path, split):
            pass

    message = one_line(USER_ERRORS, read, str(tmp_path / expected.split(" ")[0].rstrip(":")), expected)
    assert "python -m deeplab data check" in message
    if case == "rgb mask":
        assert f"python -m deeplab data check {tmp_path} --convert-rgb" in message


def test_lists_layout_names_a_listed_id_without_files(tmp_path):
    make_folder(tmp_path, "lists")
    with (tmp_path / "splits/val.txt").open("a") as file:
        file.write("missing\n")
    one_line(
        USER_ERRORS, lambda: build_dataset("folder", tmp_path, "val"), f"{tmp_path / 'images/missing'}.*: listed in"
    )


def test_unknown_split_and_empty_folders(tmp_path):
    make_folder(tmp_path)
    one_line(
        USER_ERRORS,
        lambda: build_dataset("folder", tmp_path, "test"),
        f"unknown split 'test' for folder: {tmp_path} holds train, val; add {tmp_path / 'images' / 'test'}",
        "--set data.train_split=NAME / data.val_split=NAME",
    )
    one_line(USER_ERRORS, lambda: build_dataset("folder", tmp_path / "nowhere", "train"), str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    one_line(USER_ERRORS, lambda: FolderDataset.available_splits(tmp_path / "empty"), "no splits in")


def test_make_toy_folder_layout_holds_the_voc_layout_samples(tmp_path):
    make_toy.main(["--root", str(tmp_path), "--train", "3", "--val", "2", "--layout", "folder", "--seed", "5"])
    make_toy.make_toy(tmp_path, seed=5, train=3, val=2)
    for split in ("train", "val"):
        folder, voc = build_dataset("folder", tmp_path / "toy-folder", split), ToyDataset(tmp_path, split)
        assert folder.classes == TOY_CLASSES and folder.palette == voc.palette
        assert [s.id for s in folder.samples] == [s.id for s in voc.samples]
        for ours, theirs in zip(folder, voc, strict=True):
            torch.testing.assert_close(ours["image"], theirs["image"], rtol=0, atol=0)
            torch.testing.assert_close(ours["mask"], theirs["mask"], rtol=0, atol=0)


def test_every_pair_is_checked_once_and_a_second_check_reads_only_what_changed(tmp_path, monkeypatch):
    make_folder(tmp_path)
    write_mask(tmp_path / "masks/train/e.png", np.full((HEIGHT, WIDTH), 7, dtype=np.uint8))  # 7: no such class
    train = FolderDataset(tmp_path, "train")
    one_line(USER_ERRORS, train.check_pairs, str(tmp_path / "masks/train/e.png"), "mask values [7]")
    write_mask(tmp_path / "masks/train/e.png", np.zeros((HEIGHT, WIDTH), dtype=np.uint8))
    train.check_pairs()
    read, reader = [], datasets.read_mask_file
    monkeypatch.setattr(datasets, "read_mask_file", lambda path, hint: read.append(path.name) or reader(path, hint))
    FolderDataset(tmp_path, "train").check_pairs()
    assert read == []  # every pair passed before and none changed
    write_mask(tmp_path / "masks/train/b.png", np.ones((HEIGHT, WIDTH + 1), dtype=np.uint8))
    one_line(USER_ERRORS, FolderDataset(tmp_path, "train").check_pairs, "b.png: mask size (32, 49) differs")
    assert read == ["b.png"]
