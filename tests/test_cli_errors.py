"""Bad input through the command line, as a new user would give it: each case ends in at most three lines that
name the culprit, with a non-zero exit status and no traceback.

The commands run in-process (``deeplab.__main__.main``), so an exception that escapes them fails the test with its
traceback; the shared fixtures are one toy data root and one small checkpoint with random weights.
"""

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from deeplab import build_model, get_config
from deeplab.__main__ import main
from tests.conftest import TINY

Setup = Callable[[Path, Path, Path], list[str]]  # (toy data root, checkpoint, tmp_path) -> argv


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Our checkpoint format (weights and config) of a TINY toy-r50-d16 with random weights."""
    config = get_config("toy-r50-d16", TINY)
    path = tmp_path_factory.mktemp("checkpoint") / "toy.pth"
    torch.save({"model": build_model(config).state_dict(), "config": dataclasses.asdict(config)}, path)
    return path


def text_file(tmp: Path, name: str, text: str = "not what it claims to be\n") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def broken_copy(toy: Path, tmp: Path, damage: Callable[[Path, Path], None]) -> Path:
    """A copy of the toy data root whose first validation image and mask ``damage(image, mask)`` has changed."""
    root = tmp / "data"
    shutil.copytree(toy, root)
    first = (root / "toy" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    damage(root / "toy" / "JPEGImages" / f"{first}.jpg", root / "toy" / "SegmentationClass" / f"{first}.png")
    return root


def truncate(image: Path, _: Path) -> None:
    image.write_bytes(image.read_bytes()[:300])


def shrink_mask(_: Path, mask: Path) -> None:
    png = Image.open(mask)
    png.resize((png.width // 2, png.height // 2), Image.NEAREST).save(mask)


def paint_label_40(_: Path, mask: Path) -> None:
    png = Image.open(mask)
    png.paste(40, (0, 0, 8, 8))  # the toy dataset has 6 classes
    png.save(mask)


def train(*extra: str) -> Setup:
    return lambda toy, ckpt, tmp: ["train", "--config", "toy-r50-d16", "--data-root", str(toy), *extra]


def evaluate(*extra: str, damage: Callable[[Path, Path], None] | None = None) -> Setup:
    def argv(toy: Path, ckpt: Path, tmp: Path) -> list[str]:
        root = broken_copy(toy, tmp, damage) if damage else toy
        return ["evaluate", "--checkpoint", str(ckpt), "--data-root", str(root), "--device", "cpu", *extra]

    return argv


def predict(image: Callable[[Path, Path], Path], *extra: str) -> Setup:
    return lambda toy, ckpt, tmp: ["predict", "--checkpoint", str(ckpt), str(image(toy, tmp)), *extra]


def a_toy_image(toy: Path, _: Path) -> Path:
    return next((toy / "toy" / "JPEGImages").glob("*.jpg"))


OUR_RECORD = '{"iter": 50, "epoch": 0.1, "lr": 0.01, "loss": 1.0, "loss_cls": 0.7, "loss_aux": 0.3}\n'

# (argv, what the message must name)
CATALOG: dict[str, tuple[Setup, str]] = {
    # train: configs and overrides
    "unknown config": (lambda toy, ckpt, tmp: ["train", "--config", "toy-r51-d16"], "toy-r51-d16"),
    "unknown key": (train("--set", "train.epoch=2"), "train.epoch"),
    "override without =": (train("--set", "train.epochs"), "train.epochs"),
    "override of the wrong type": (train("--set", "train.lr=fast"), "train.lr"),
    "batch size 0": (train("--set", "train.batch_size=0"), "train.batch_size"),
    "empty crop": (train("--set", "data.crop_size=0,512"), "data.crop_size"),
    "ratios out of order": (train("--set", "data.ratio_range=2.0,0.5"), "data.ratio_range"),
    "unknown optimizer": (train("--set", "train.optimizer=adam"), "train.optimizer"),
    "unknown dataset": (train("--set", "data.dataset=coco"), "data.dataset"),
    "learning rate nan": (train("--set", "train.lr=nan"), "train.lr"),
    "fp16 on the CPU": (train("--device", "cpu", "--set", "train.amp=fp16"), "train.amp=fp16"),
    "replan without resume": (train("--replan"), "--replan goes with --resume"),
    "process-group timeout 0": (train("--dist-timeout", "0"), "--dist-timeout"),
    "batch that cannot split": (train(*(f"--set={s}" for s in TINY), "--set", "train.batch_size=5"), "batch_size=5"),
    "missing ImageNet file": (train("--set", "model.pretrained=weights/nowhere.pth"), "weights/nowhere.pth"),
    # train: data and folders
    "missing data root": (lambda toy, ckpt, tmp: train()(tmp / "nowhere", ckpt, tmp), "nowhere"),
    "resume without a checkpoint": (train("--resume", "--out", "{tmp}/run"), "run"),
    "--out is a file": (train("--out", "{tmp}/notes.txt"), "notes.txt"),
    # evaluate: checkpoints
    "missing checkpoint": (lambda toy, ckpt, tmp: ["evaluate", "--checkpoint", f"{tmp}/gone.pth"], "gone.pth"),
    "checkpoint that is text": (
        lambda toy, ckpt, tmp: ["evaluate", "--checkpoint", str(text_file(tmp, "model.pth"))],
        "model.pth",
    ),
    "checkpoint of another config": (evaluate("--config", "voc-r50-d8"), "toy.pth"),
    "released without --config": (lambda toy, ckpt, tmp: ["evaluate", "--checkpoint", "released"], "--config"),
    # evaluate: data, options, folders
    "dataset not prepared": (lambda toy, ckpt, tmp: evaluate()(tmp / "empty", ckpt, tmp), "empty"),
    "unknown split": (evaluate("--split", "test"), "test"),
    "corrupt JPEG": (evaluate(damage=truncate), ".jpg"),
    "mask of the wrong size": (evaluate(damage=shrink_mask), ".png"),
    "label out of range": (evaluate(damage=paint_label_40), "40"),
    "inference fp16 on the CPU": (evaluate("--amp", "fp16"), "--amp=fp16"),
    "unknown amp": (evaluate("--amp", "fp8"), "fp8"),
    "evaluate --out is a file": (evaluate("--out", "{tmp}/notes.txt"), "notes.txt"),
    "bad override of a stored config": (evaluate("--set", "data.scale=0,0"), "data.scale"),
    # predict
    "image that is not an image": (predict(lambda toy, tmp: text_file(tmp, "photo.jpg"), "--out", "{tmp}/m"), "photo"),
    "missing image": (predict(lambda toy, tmp: tmp / "gone.jpg", "--out", "{tmp}/m"), "gone.jpg"),
    "folder without images": (predict(lambda toy, tmp: tmp, "--out", "{tmp}/m"), "holds no images (JPEG, PNG,"),
    "predict --out is a file": (predict(a_toy_image, "--out", "{tmp}/notes.txt"), "notes.txt"),
    "predict --out under a file": (predict(a_toy_image, "--out", "{tmp}/notes.txt/masks"), "notes.txt"),
    "predict without --out": (predict(a_toy_image), "--out"),
    # the other commands
    "models of an unknown config": (lambda toy, ckpt, tmp: ["models", "--configs", "voc-r42-d8"], "voc-r42-d8"),
    "reproduce an unknown config": (lambda toy, ckpt, tmp: ["reproduce", "--configs", "voc-r42-d8"], "voc-r42-d8"),
    "reproduce on 0 processes": (lambda toy, ckpt, tmp: ["reproduce", "--nproc-per-node", "0"], "--nproc-per-node"),
    "compare an empty run log": (
        lambda toy, ckpt, tmp: [
            "compare-logs",
            "--ours",
            str(text_file(tmp, "metrics.jsonl", "{}\n")),
            "--reference",
            str(text_file(tmp, "train.log", "hello\n")),
        ],
        "metrics.jsonl",
    ),  # fmt: skip
    "compare with a reference that is no log": (
        lambda toy, ckpt, tmp: [
            "compare-logs",
            "--ours",
            str(text_file(tmp, "metrics.jsonl", OUR_RECORD)),
            "--reference",
            str(text_file(tmp, "train.log", "hello\n")),
        ],
        "train.log",
    ),  # fmt: skip
    "compare a missing run": (
        lambda toy, ckpt, tmp: ["compare-logs", "--ours", f"{tmp}/run", "--reference", f"{tmp}/x.log"],
        "run",
    ),
    "unknown device": (evaluate("--device", "tpu"), "tpu"),
}


def test_the_catalog_is_large():
    assert len(CATALOG) >= 25


@pytest.mark.parametrize("case", CATALOG)
def test_bad_input_is_at_most_three_lines_naming_the_culprit(case, toy_root, checkpoint, tmp_path, capsys):
    setup, culprit = CATALOG[case]
    text_file(tmp_path, "notes.txt")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in setup(toy_root, checkpoint, tmp_path)]
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status not in (0, None), (out, err)
    assert "Traceback" not in out + err
    assert 1 <= len(lines) <= 3, err
    assert culprit in err, err
