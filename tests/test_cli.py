"""``python -m deeplab``: the model zoo table and one-line errors.

The end-to-end test runs the commands as a user does, each in a process of its own; the others call what
``python -m deeplab`` runs (``deeplab.__main__.main``) in this process, which prints and exits the same way.
"""

import json
import subprocess
import sys

import pytest
from torchvision.io import decode_image

from deeplab.__main__ import main
from tests.conftest import TINY


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deeplab", *args], capture_output=True, text=True, timeout=300)


def cli(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """``python -m deeplab ARGS`` in this process: its exit status and what it printed."""
    try:
        status = main(list(args))
    except SystemExit as exit:  # argparse's --help and usage errors, and the commands' one-line errors
        status = exit.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, status or 0, out, err)


@pytest.mark.slow
def test_models_prints_parameters_and_flops(capsys):
    result = cli(capsys, "models", "--configs", "voc-r50-d8,cityscapes-r101-d16")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| voc") or line.startswith("| city")]
    assert len(rows) == 2
    assert "| voc-r50-d8 | ResNet-50 | 8 | 21 | 512 x 512 | 45,956,602 | 41,226,213 | 352.4 |" in rows[0]
    assert "| cityscapes-r101-d16 | ResNet-101 | 16 | 19 | 512 x 1024 |" in rows[1]


def test_unknown_config_is_one_line_and_exit_2(capsys):
    result = cli(capsys, "models", "--configs", "voc-r50-d9")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown config 'voc-r50-d9'; valid names:")
    assert result.stderr.count("\n") == 1


def test_help_lists_the_commands(capsys):
    result = cli(capsys, "--help")
    assert result.returncode == 0 and "models" in result.stdout


@pytest.mark.slow
def test_train_evaluate_predict_end_to_end(toy_root, tmp_path):
    run_dir = tmp_path / "run"
    settings = [f"--set={item}" for item in [*TINY, "train.iterations=2"]]
    trained = run("train", "--config", "toy-r50-d16", "--data-root", str(toy_root), "--out", str(run_dir), *settings)
    assert trained.returncode == 0, trained.stderr
    assert "| **mIoU** |" in trained.stdout and "| background |" in trained.stdout
    for name in (
        "last.pth",
        "metrics.jsonl",
        "metrics.json",
        "config.json",
        "training_curves.png",
        "per_class_iou.png",
    ):
        assert (run_dir / name).is_file(), name

    checkpoint = str(run_dir / "last.pth")
    evaluated = run(
        "evaluate", "--checkpoint", checkpoint, "--data-root", str(toy_root), "--flip", "--out", str(tmp_path)
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["miou"] >= 0

    image = next((toy_root / "toy" / "JPEGImages").glob("*.jpg"))
    predicted = run("predict", "--checkpoint", checkpoint, str(image), "--out", str(tmp_path / "masks"))
    assert predicted.returncode == 0, predicted.stderr
    mask = decode_image(str(tmp_path / "masks" / f"{image.stem}_mask.png"))
    assert mask.shape[1:] == decode_image(str(image)).shape[1:]
    assert (tmp_path / "masks" / f"{image.stem}_overlay.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.epoch=2"], "error: unknown config key 'train.epoch'; valid keys: train.epochs,"),
        (["--set", "train.epochs=two"], "error: train.epochs expects int, got 'two'"),
        (["--resume"], "error: no checkpoint to resume in"),
        (["--data-root", "/nonexistent"], "python -m deeplab data toy --root /nonexistent"),
    ],
)
def test_bad_training_input_is_one_line(toy_root, tmp_path, capsys, args, message):
    base = ["train", "--config", "toy-r50-d16", "--data-root", str(toy_root), "--out", str(tmp_path / "run")]
    result = cli(capsys, *base, *[f"--set={item}" for item in TINY], *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    result = cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "missing.pth"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "missing.pth" in result.stderr


def test_a_missing_imagenet_file_is_named_beside_the_missing_data(toy_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = cli(capsys, "train", "--config", "voc-r50-d16", "--data-root", str(toy_root))  # no VOC there either
    assert result.returncode == 2
    header, voc, weights = result.stderr.splitlines()
    assert header == "error: 2 problems stop the run before it starts:"
    assert voc.startswith(f"  {toy_root / 'VOCdevkit' / 'VOC2012'} not found: run `python -m deeplab data voc")
    assert weights.startswith("  ImageNet backbone weights weights/resnet50_v1c-2cccc1ad.pth not found")
    assert "python -m deeplab weights imagenet --root weights" in weights and "model.pretrained=none" in weights


def test_help_and_usage_errors_answer_without_importing_torch():
    """They run in a fresh process: this one has imported torch long ago."""
    script = """
import sys
from deeplab.__main__ import main
statuses = []
for argv in (["--help"], ["train", "--help"], ["train", "--bogus"], ["export", "--format", "png"]):
    try:
        main(argv)
    except SystemExit as exit:
        statuses.append(exit.code)
print(statuses, "torch imported:", "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[0, 0, 2, 2] torch imported: False"
    assert "the following arguments are required: --config" in result.stderr
    assert "invalid choice: 'png'" in result.stderr
