"""``python -m deeplab export``: each format's file computes the eager model's logits at two image sizes, says what
it is in its JSON file, and bad input ends in one line.

One TINY toy-r50-d16 checkpoint (random BatchNorm statistics, logits scaled to a trained model's tens) is exported
once per format, in-process through ``deeplab.__main__.main``; the files run in onnxruntime (ONNX) or torch.
"""

import dataclasses
import json
import warnings
from pathlib import Path

import onnxruntime
import pytest
import skimage
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as F

from deeplab import Segmenter, build_model, get_config
from deeplab.__main__ import main
from deeplab.data import TOY_CLASSES, dataset_info
from deeplab.data.transforms import MEAN, STD
from deeplab.models.export import FORMATS, SUFFIXES, load_exported
from tests.conftest import TINY, randomize_batchnorm

pytestmark = pytest.mark.filterwarnings("ignore:TorchScript \\(torch.jit\\) is deprecated:FutureWarning")

TOLERANCE = 1e-3  # on logits whose largest magnitude is about 10: the exported file computes the same function
SIZES = [(1, 64, 64), (2, 80, 96)]  # (batch, H, W): the export's example size, and another not traced


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, nn.Module]:
    """A checkpoint as the trainer saves it (weights and config) and its model in eval mode."""
    torch.manual_seed(0)
    config = get_config("toy-r50-d16", TINY)
    model = randomize_batchnorm(build_model(config))
    with torch.no_grad():
        model.decoder.classifier.weight.mul_(50)  # logits of a trained model's magnitude (random init: about 0.2)
    path = tmp_path_factory.mktemp("checkpoint") / "toy.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(config)}, path)
    return path, model


@pytest.fixture(scope="module")
def exported(trained: tuple[Path, nn.Module], tmp_path_factory) -> dict[str, Path]:
    """The exported file of each format: ONNX at the default path beside the checkpoint, the others at ``--out``
    in a folder that does not exist yet."""
    checkpoint, _ = trained
    folder = tmp_path_factory.mktemp("out") / "new"
    files = {}
    for fmt in FORMATS:
        argv = ["export", "--checkpoint", str(checkpoint), "--format", fmt]
        if fmt == "onnx":
            files[fmt] = checkpoint.with_suffix(".onnx")
        else:
            files[fmt] = folder / f"model{SUFFIXES[fmt]}"
            argv += ["--out", str(files[fmt])]
        assert main(argv) == 0
    return files


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("batch", "height", "width"), SIZES)
def test_exported_file_computes_the_eager_logits(
    exported: dict[str, Path], trained: tuple[Path, nn.Module], fmt: str, batch: int, height: int, width: int
) -> None:
    _, model = trained
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1)) * 255  # RGB 0-255
    with torch.no_grad():
        expected = model(F.normalize(images, MEAN, STD))["out"]
    actual = load_exported(exported[fmt])(images.numpy() if fmt == "onnx" else images)
    assert actual.shape == (batch, len(TOY_CLASSES), height, width) and actual.dtype == torch.float32
    assert expected.abs().max() > 5  # the tolerance is small against the logits
    difference = (actual - expected).abs().max().item()
    assert difference < TOLERANCE, f"max |logit difference| {difference:.2e}"
    assert torch.equal(actual.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("fmt", FORMATS)
def test_sidecar_describes_the_file(exported: dict[str, Path], trained: tuple[Path, nn.Module], fmt: str) -> None:
    checkpoint, _ = trained
    meta = json.loads(exported[fmt].with_name(exported[fmt].name + ".json").read_text())
    assert meta["format"] == fmt and meta["file"] == exported[fmt].name and meta["config"] == "toy-r50-d16"
    assert meta["checkpoint"] == str(checkpoint.resolve()) and meta["torch"] == torch.__version__
    assert meta["classes"] == list(TOY_CLASSES) and meta["num_classes"] == len(TOY_CLASSES)
    assert meta["palette"] == [list(color) for color in dataset_info("toy").palette]
    assert meta["input"]["shape"] == ["batch", 3, "height", "width"] and meta["input"]["range"] == [0, 255]
    assert meta["input"]["mean"] == list(MEAN) and meta["input"]["min_size"] == 17
    assert meta["output"]["shape"] == ["batch", len(TOY_CLASSES), "height", "width"]
    assert meta["dynamic_axes"] == {"batch": 0, "height": 2, "width": 3}
    checks = meta["verification"]["checks"]
    assert [(check["batch"], check["size"]) for check in checks] == [(1, [64, 64]), (2, [49, 49])]
    assert all(check["max_abs_diff"] <= 1e-4 * check["max_abs_logit"] for check in checks)


def test_onnx_axes_are_named(exported: dict[str, Path]) -> None:
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("images", ["batch", 3, "height", "width"])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 6, "height", "width"])]


def docs_snippet() -> str:
    """The Python block of docs/deployment.md that runs an ONNX file as ``predict`` does."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    after = text.split("<!-- tests/test_export.py runs this block", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_onnxruntime_snippet_agrees_with_predict_on_a_photograph(
    exported: dict[str, Path], trained: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    photo = tmp_path / "cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo)  # a real photograph, 451 x 300
    code = docs_snippet().replace('"runs/folder-r50-d16/best.onnx", "photo.jpg"', f'"{exported["onnx"]}", "{photo}"')
    scope: dict = {}
    exec(compile(code, "docs/deployment.md", "exec"), scope)  # noqa: S102 - the documented snippet, as printed
    expected = Segmenter.from_checkpoint(trained[0]).predict(Image.open(photo)).numpy()
    assert scope["classes"].shape == expected.shape == (300, 451)
    assert (scope["classes"] == expected).mean() >= 0.98


@pytest.mark.slow
def test_exported_program_takes_sizes_from_min_size(exported: dict[str, Path]) -> None:
    run = load_exported(exported["exported-program"])
    assert run(torch.zeros(1, 3, 17, 17)).shape == (1, 6, 17, 17)
    with pytest.raises(AssertionError, match=">= 17"):  # the program's shape guard
        run(torch.zeros(1, 3, 16, 16))


def test_torchscript_warns_once_that_it_is_deprecated(exported: dict[str, Path]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_exported(exported["torchscript"])
    assert [str(w.message) for w in caught if w.category is FutureWarning] == [
        "TorchScript (torch.jit) is deprecated in PyTorch 2.14: prefer the exported-program or onnx format where "
        "C++ libtorch is not required"
    ]


@pytest.mark.slow
def test_a_file_that_computes_other_logits_is_refused_and_removed(
    trained: tuple[Path, nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    import deeplab.commands.export

    def off_by_a_little(path: Path):
        run = load_exported(path)
        return lambda images: run(images) + 0.05

    monkeypatch.setattr(deeplab.commands.export, "load_exported", off_by_a_little)
    out = tmp_path / "model.pt2"
    assert main(["export", "--checkpoint", str(trained[0]), "--format", "exported-program", "--out", str(out)]) == 2
    output = capfd.readouterr()
    assert "FAILED  1 x 64x64: max |logit difference| 5.00e-02" in output.out
    assert output.err.count("\n") == 1 and "computes other logits" in output.err
    assert not out.exists() and not (tmp_path / "model.pt2.json").exists()


BAD_INPUT = {
    "missing checkpoint": (["--checkpoint", "{tmp}/none.pth", "--format", "onnx"], "none.pth not found"),
    "--out a folder": (["--format", "onnx", "--out", "{tmp}"], "is a folder: name the file"),
    "--out of another format": (["--format", "onnx", "--out", "{tmp}/m.pt2"], "does not end in .onnx"),
    "--size too small": (["--format", "onnx", "--size", "24,64"], "pass a height and width of at least 32"),
    "--size not a size": (["--format", "onnx", "--size", "64x64"], "expected H,W"),
    "unknown format": (["--format", "tflite"], "invalid choice: 'tflite'"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line(
    case: str, trained: tuple[Path, nn.Module], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    args, message = BAD_INPUT[case]
    argv = ["export", "--checkpoint", str(trained[0]), *(arg.format(tmp=tmp_path) for arg in args)]
    try:
        status = main(argv)
    except SystemExit as usage:  # argparse's own errors
        status = usage.code
    err = capfd.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []
