"""A user's own data through the command line: a hand-made folder dataset trained (fine-tuned from a checkpoint of
another number of classes), evaluated and predicted, and bad folders refused in one line each."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_image

from deeplab import build_model, get_config
from deeplab.__main__ import main
from deeplab.data import flat_palette
from deeplab.engine.runlog import read_log
from deeplab.models.weights import save_checkpoint
from tests.conftest import TINY

CLASSES = {"classes": ["background", "box", "bar"], "palette": [[0, 0, 0], [220, 40, 40], [40, 40, 220]]}
FOLDER_RUN = [*TINY, "model.pretrained=none", "train.eval_every_epochs=1"]


def write_pair(folder: Path, split: str, stem: str, rng: np.random.Generator, size: tuple[int, int] = (48, 64)):
    """One image with a box (class 1) and a bar (class 2) on noise, and its palette mask with an ignore border."""
    height, width = size
    image = rng.integers(90, 140, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    top, left = rng.integers(4, height // 2), rng.integers(4, width // 2)
    mask[top : top + 16, left : left + 16] = 1
    row = rng.integers(0, height - 6)
    mask[row : row + 5, :] = 2
    image[mask == 1], image[mask == 2] = (230, 60, 60), (60, 60, 230)
    mask[0, :] = 255
    for kind, array, suffix in (("images", image, ".jpg"), ("masks", mask, ".png")):
        path = folder / kind / split / f"{stem}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(array)
        if kind == "masks":  # an 8-bit palette PNG: the values stay the class indices
            picture.putpalette(flat_palette([tuple(color) for color in CLASSES["palette"]]))
        picture.save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A folder dataset made by hand: ``classes.json``, 8 training and 4 validation pairs in split sub-folders."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "classes.json").write_text(json.dumps(CLASSES))
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for index in range(count):
            write_pair(root, split, f"{split}_{index}", rng)
    return root


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a 6-class toy model, to fine-tune into the 3 classes of ``folder``."""
    path = tmp_path_factory.mktemp("toy") / "toy.pth"
    config = get_config("toy-r50-d16", TINY)
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(config), config={"name": "toy"})


@pytest.fixture(scope="module")
def trained(folder, toy_checkpoint, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    settings = [f"--set={item}" for item in [*FOLDER_RUN, f"model.init_from={toy_checkpoint}"]]
    argv = ["train", "--config", "folder-r50-d16", "--data-root", str(folder), "--out", str(run), *settings]
    assert main(argv) == 0
    return run


@pytest.mark.slow
def test_training_on_a_folder_fine_tunes_and_keeps_best_and_last(trained, capsys):
    last, best = (torch.load(trained / name, weights_only=True) for name in ("last.pth", "best.pth"))
    assert last["config"]["model"]["num_classes"] == 3  # 0 in the config: the count of classes.json
    assert best["classes"] == {"name": "folder", **CLASSES}
    assert last["model"]["decoder.classifier.weight"].shape[0] == 3
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["best"]["iteration"] in (2, 4, 6) and metrics["best"]["miou"] == best["miou"]
    evaluations = [record["miou"] for record in read_log(trained / "metrics.jsonl") if "miou" in record]
    assert len(evaluations) == 3 and best["miou"] == max(evaluations)
    report = json.loads((trained / "init_from.json").read_text())
    assert sorted(report["new"]) == [
        "aux_head.2.bias",
        "aux_head.2.weight",
        "decoder.classifier.bias",
        "decoder.classifier.weight",
    ]


def test_evaluate_names_the_folders_classes(trained, folder, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(trained / "best.pth"), "--data-root", str(folder), "--out", str(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| box |" in table and "| bar |" in table
    assert len(json.loads((tmp_path / "metrics.json").read_text())["iou"]) == 3


def test_predict_a_folder_keeps_its_structure_in_the_folders_palette(trained, folder, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(folder / "images" / "val", photos / "street")
    shutil.copy(folder / "images" / "train" / "train_0.jpg", photos / "one.jpg")
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(trained / "last.pth"), str(photos), "--out", str(out), "--flip"]
    assert main(argv) == 0
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*.png"))
    stems = ["one", *(f"street/val_{index}" for index in range(4))]
    assert written == sorted(f"{stem}_{kind}.png" for stem in stems for kind in ("mask", "overlay"))
    mask = Image.open(out / "one_mask.png")  # class indices, shown in the folder's colours
    assert mask.mode == "P" and set(np.unique(np.asarray(mask))) <= {0, 1, 2}
    assert mask.getpalette()[:9] == [channel for color in CLASSES["palette"] for channel in color]


@pytest.mark.slow
def test_predict_takes_multi_scale_and_sliding_windows(trained, folder, tmp_path):
    image = folder / "images" / "val" / "val_0.jpg"
    argv = ["predict", "--checkpoint", str(trained / "last.pth"), str(image), "--out", str(tmp_path), "--multi-scale"]
    assert main([*argv, "--slide"]) == 0
    assert decode_image(str(tmp_path / "val_0_mask.png")).shape == (1, 48, 64)


def broken(folder: Path, tmp: Path, change) -> Path:
    copy = tmp / "broken"
    shutil.copytree(folder, copy)
    change(copy)
    return copy


def rgb_mask(root: Path) -> None:
    path = root / "masks" / "train" / "train_3.png"
    Image.open(path).convert("RGB").save(path)


def out_of_range_mask(root: Path) -> None:
    """A label no class has, in the last validation mask: no training step reads it, evaluation would, at the end."""
    path = root / "masks" / "val" / "val_3.png"
    Image.fromarray(np.full(Image.open(path).size[::-1], 9, dtype=np.uint8)).save(path)


def without_val_split(root: Path) -> None:
    for kind in ("images", "masks"):
        shutil.rmtree(root / kind / "val")


def three_training_pairs(root: Path) -> None:
    """Fewer training images (3) than the global batch of ``TINY`` (4)."""
    for index in range(3, 8):
        (root / "images" / "train" / f"train_{index}.jpg").unlink()
        (root / "masks" / "train" / f"train_{index}.png").unlink()


BAD_FOLDERS = {
    "no classes file": (lambda root: (root / "classes.json").unlink(), "classes.json"),
    "one class": (lambda root: (root / "classes.json").write_text('{"classes": ["box"]}'), "name the background"),
    "a mask no step reads": (out_of_range_mask, "val_3.png: mask values [9]"),
    "no validation split": (without_val_split, "--set data.train_split=NAME / data.val_split=NAME"),
    "batch larger than the training set": (three_training_pairs, "set --set train.batch_size=2 or fewer"),
    "mask without image": (lambda root: (root / "images" / "train" / "train_2.jpg").unlink(), "train_2"),
    "colour mask": (rgb_mask, "train_3.png"),
    "bad classes file": (lambda root: (root / "classes.json").write_text("{"), "classes.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_a_bad_folder_is_refused_in_one_line(case, folder, tmp_path, capsys):
    change, named = BAD_FOLDERS[case]
    root = broken(folder, tmp_path, change)
    settings = [f"--set={item}" for item in FOLDER_RUN]
    argv = ["train", "--config", "folder-r50-d16", "--data-root", str(root), "--out", str(tmp_path / "run"), *settings]
    assert main(argv) == 2
    err = capsys.readouterr().err  # a progress bar may come first, on a line of its own
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in err, err
    assert named in errors[0], err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before the run started


def test_a_class_count_that_disagrees_with_the_classes_file_is_refused(folder, tmp_path, capsys):
    settings = [f"--set={item}" for item in [*FOLDER_RUN, "model.num_classes=5"]]
    argv = ["train", "--config", "folder-r50-d16", "--data-root", str(folder), "--out", str(tmp_path), *settings]
    assert main(argv) == 2
    assert "model.num_classes=5 but" in capsys.readouterr().err


def test_every_missing_precondition_is_named_at_once_before_anything_is_written(folder, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file where the run folder would go")
    settings = [f"--set={item}" for item in [*FOLDER_RUN, "model.pretrained=/nowhere/resnet50_v1c.pth"]]
    settings.append(f"--set=model.init_from={tmp_path / 'gone.pth'}")
    argv = ["train", "--config", "folder-r50-d16", "--data-root", str(tmp_path / "nowhere")]
    assert main([*argv, "--out", str(tmp_path / "notes.txt" / "run"), *settings]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "error: 4 problems stop the run before it starts:"
    assert [line[:2] for line in lines[1:]] == ["  "] * 4
    for named in (str(tmp_path / "nowhere"), "/nowhere/resnet50_v1c.pth", "gone.pth", "notes.txt"):
        assert sum(named in line for line in lines[1:]) == 1, (named, lines)
