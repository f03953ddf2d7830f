"""``python -m deeplab data check``: every problem of a folder dataset at once, the class balance, --convert-rgb."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_folder_dataset import CLASSES, HEIGHT, WIDTH, make_folder, write_image, write_mask
from torchvision.io import decode_image

from deeplab.data import build_dataset
from deeplab.prepare import check as check_folder
from deeplab.prepare import toy as make_toy


def test_a_good_folder_passes_and_writes_the_report(tmp_path, capsys):
    make_folder(tmp_path / "good")
    assert check_folder.main([str(tmp_path / "good"), "--out", str(tmp_path / "out"), "--overlays", "3"]) == 0
    out = capsys.readouterr().out
    assert "error:" not in out and "no errors" in out
    assert "| train | 5 | 5 |" in out and "| val | 3 | 3 |" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith(f"# Check of {tmp_path / 'good'}") and "3 classes (background, cat, dog)" in report
    overlays = decode_image(str(tmp_path / "out" / "overlays.png"))
    assert overlays.shape[0] in (3, 4) and overlays.shape[1] > 3 * 200  # three rows of samples
    assert overlays.shape[2] > 800  # three panels a row: the image, the mask in the legend's colours, both together
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["overlays.png", "report.md"]


def test_a_bad_folder_fails_listing_every_problem(tmp_path, capsys):
    root = tmp_path / "bad"
    make_folder(root)
    (root / "masks/train/b.png").unlink()  # an image without a mask
    (root / "images/val/g.png").unlink()  # a mask without an image
    (root / "images/train/c.png").write_bytes(b"garbage")  # undecodable
    write_image(root / "masks/train/e.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))  # RGB
    write_mask(root / "masks/val/f.png", np.zeros((HEIGHT, 20), np.uint8))  # size mismatch
    values = np.zeros((HEIGHT, WIDTH), np.uint8)
    values[1, 1], values[2, 2] = 3, 9
    write_mask(root / "masks/val/h.png", values)  # out of range
    assert check_folder.main([str(root), "--out", str(tmp_path / "out")]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error: ")]
    expected = [
        "images/train/b.png: no mask in",
        "masks/val/g.png: no image in",
        "images/train/c.png: unreadable image",
        "masks/train/e.png: mask has 3 channels",
        "masks/val/f.png: mask size (32, 20) differs",
        "masks/val/h.png: mask values [3, 9] outside [0, 3) and 255",
    ]
    assert len(errors) == len(expected)
    for line, fragment in zip(sorted(errors), sorted(f"error: {root / e}" for e in expected), strict=True):
        assert line.startswith(fragment), line
    assert "## Errors (6)" in (tmp_path / "out" / "report.md").read_text()


def test_a_broken_classes_file_is_one_error_and_the_pairs_are_still_listed(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "classes.json").write_text("{")
    (tmp_path / "masks/train/b.png").unlink()
    report = check_folder.check_folder(tmp_path, progress=False)
    assert [e.split(":")[0] for e in report.errors] == [
        str(tmp_path / "classes.json"),
        str(tmp_path / "images/train/b.png"),
    ]
    assert [(s.name, s.pairs, s.read) for s in report.splits] == [("train", 4, 0), ("val", 3, 0)]


def test_class_balance_on_a_hand_made_folder(tmp_path):
    """train: mask 1 = 30 background + 10 cat + 8 ignored pixels, mask 2 = all ignored; val: 47 background + 1 dog."""
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    first = np.zeros((6, 8), np.uint8)
    first[:2, :5], first[5] = 1, 255
    third = np.zeros((6, 8), np.uint8)
    third[3, 3] = 2
    for name, mask, split in (
        ("one", first, "train"),
        ("two", np.full((6, 8), 255), "train"),
        ("three", third, "val"),
    ):
        write_image(tmp_path / f"images/{split}/{name}.png", np.zeros((6, 8, 3), np.uint8))
        write_mask(tmp_path / f"masks/{split}/{name}.png", mask, palette=False)
    report = check_folder.check_folder(tmp_path, progress=False)
    assert report.ok
    train, val = report.splits
    assert train.pixels.tolist() == [30, 10, 0] and train.images.tolist() == [1, 1, 0]
    torch.testing.assert_close(train.shares(), torch.tensor([0.75, 0.25, 0.0]))
    assert (train.ignored, train.total) == (8 + 48, 96) and val.pixels.tolist() == [47, 0, 1]
    assert report.warnings[1:] == [  # the first: 2 training images, fewer than the configs' batch
        "split 'train': no pixels of 1 of the 3 classes: dog",
        f"split 'train': 1 of 2 masks are all ignore (255), e.g. {tmp_path / 'masks/train/two.png'}: "
        "they teach nothing; check them",
        "split 'val': no pixels of 1 of the 3 classes: cat",
    ]
    assert "| cat | 25.0% | 1 |" in report.tables() and "| train | 2 | 2 | 58.3% |" in report.tables()


@pytest.mark.parametrize(
    ("classes", "values", "expected"),
    [
        (["background", "object"], (0, 255), "masks hold only 0 and 255: 255 means ignore"),
        (["background", "cat", "dog"], (0, 1), "masks hold only 0 and 1 but classes.json lists 3 classes"),
    ],
)
def test_the_binary_pitfall_is_a_warning(tmp_path, classes, values, expected):
    (tmp_path / "classes.json").write_text(json.dumps({"classes": classes}))
    mask = np.full((6, 8), values[0], np.uint8)
    mask[2:4, 2:6] = values[1]
    write_image(tmp_path / "images/train/x.png", np.zeros((6, 8, 3), np.uint8))
    write_mask(tmp_path / "masks/train/x.png", mask)
    report = check_folder.check_folder(tmp_path, progress=False)
    assert report.ok and any(w.startswith(expected) for w in report.warnings), report.warnings


def test_convert_rgb_rewrites_colour_masks_as_palette_indices(tmp_path, capsys):
    make_folder(tmp_path)
    palette = np.array([*CLASSES["palette"], *[[0, 0, 0]] * 252, [224, 224, 192]], np.uint8)  # 255: VOC's cream
    expected = np.asarray(Image.open(tmp_path / "masks/train/c.png"))
    write_image(tmp_path / "masks/train/c.png", palette[expected])  # the same mask as an RGB picture
    unknown = palette[expected].copy()
    unknown[4, 5] = (9, 9, 9)
    write_image(tmp_path / "masks/val/f.png", unknown)
    before = (tmp_path / "masks/val/f.png").read_bytes()
    assert check_folder.main([str(tmp_path), "--out", str(tmp_path / "out"), "--convert-rgb"]) == 1
    out = capsys.readouterr().out
    assert f"converted: {tmp_path / 'masks/train/c.png'}" in out
    assert f"error: {tmp_path / 'masks/val/f.png'}: colour (9, 9, 9) is no class colour of classes.json" in out
    assert (tmp_path / "masks/val/f.png").read_bytes() == before  # nothing written for the unknown colour
    converted = Image.open(tmp_path / "masks/train/c.png")
    assert converted.mode == "P" and converted.getpalette()[3:6] == [200, 0, 0]
    np.testing.assert_array_equal(np.asarray(converted), expected)
    sample = next(s for s in build_dataset("folder", tmp_path, "train") if s["id"] == "c")
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


def test_make_toy_folder_passes_the_checker(tmp_path):
    base = make_toy.make_toy(tmp_path, train=2, val=1, layout="folder")
    report = check_folder.check_folder(base, overlays=0, progress=False)
    assert report.ok and [s.read for s in report.splits] == [2, 1] and not report.samples


def test_the_checker_warns_of_what_train_would_refuse(tmp_path):
    make_folder(tmp_path)
    for kind in ("images", "masks"):
        for path in (tmp_path / kind / "val").iterdir():
            path.rename(tmp_path / kind / "train" / path.name)
        (tmp_path / kind / "val").rmdir()
    report = check_folder.check_folder(tmp_path, overlays=0, progress=False)
    assert report.ok and report.warnings[:2] == [
        "no split 'val': the folder-* configs use data.val_split=val; add it, or train with --set data.val_split=NAME",
        "8 training images, fewer than the folder-* configs' global batch of 16: train with --set "
        "train.batch_size=N, N at most 8",
    ]
