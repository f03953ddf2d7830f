"""The package stands alone: its wheel, installed outside the clone with the core dependencies alone, makes data,
trains, evaluates, predicts, exports, fetches a released model and saves it in the Hugging Face layout.

The wheel is built from the repository and installed with ``pip install --target`` into a folder of its own, put
first on ``PYTHONPATH`` (before the virtual environment's site-packages, where the clone's editable install is). One
process, working in a folder outside the clone, in which every module of the extras' distributions fails to import
(as if only the core dependencies were installed), runs the commands through ``deeplab.__main__.main`` and the
public API, and checks that no module of the clone or of the extras was imported, and that the one command that
needs an extra (``export --format onnx``) says so in one line. The released model is a stand-in (the reference's
network, random weights, today's layout) served from a local HTTP server.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests import test_downloads, test_zoo
from tests.conftest import TINY
from tests.test_downloads import RangeServer
from tests.test_extras import CORE_ONLY, extras_modules
from tests.test_reference_equivalence import randomized_reference

REPOSITORY = Path(__file__).resolve().parents[1]
server, release_url = test_downloads.server, test_zoo.release_url  # the local HTTP server as the model store
RELEASED = test_zoo.D16  # voc-r50-d16's files
DONE = "the wheel stands alone"

# setuptools' build folders outside the clone: a build/lib left by an earlier build would put modules deleted since
# into the wheel, and two builds at once would share it. DIST_EXTRA_CONFIG names this file (setup.cfg's format).
BUILD_FOLDERS = """
[build]
build_base = {folder}/build
[egg_info]
egg_base = {folder}
"""

# Run from a working folder outside the clone: python DRIVER SITE REPOSITORY TINY..., after HIDDEN = [...] and
# tests.test_extras.CORE_ONLY, which hides the extras' modules.
DRIVER = """
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import deeplab
from deeplab.__main__ import main

site, repository, tiny = Path(sys.argv[1]), Path(sys.argv[2]), [f"--set={item}" for item in sys.argv[3:]]
assert Path(deeplab.__file__).is_relative_to(site), f"deeplab imported from {deeplab.__file__}, not {site}"
print("imported", deeplab.__file__)


def run(*argv):
    status = main(list(argv))
    assert status == 0, f"python -m deeplab {' '.join(argv)}: exit status {status}"
    print("ran", *argv[:2])


run("data", "toy", "--root", "data", "--train", "4", "--val", "2")
images = sorted(Path("data/toy/JPEGImages").glob("*.jpg"))
assert len(images) == 6, images
run("train", "--config", "toy-r50-d16", "--data-root", "data", "--out", "run", *tiny)
run("evaluate", "--checkpoint", "run/last.pth", "--data-root", "data", "--out", "evaluation")
assert Path("evaluation/metrics.json").is_file()
run("predict", "--checkpoint", "run/last.pth", "data/toy/JPEGImages", "--out", "pred")
toy = deeplab.Segmenter.from_checkpoint("run/last.pth")
colours = [value for colour in toy.classes.palette for value in colour]
for image in images:
    mask = Image.open(f"pred/{image.stem}_mask.png")
    assert mask.mode == "P", f"{image.stem}_mask.png: mode {mask.mode}"
    assert mask.getpalette()[: len(colours)] == colours, f"{image.stem}_mask.png: not the classes' colours"
    expected = toy.predict(Image.open(image)).numpy()
    assert np.array_equal(np.asarray(mask), expected), f"{image.stem}_mask.png differs from Segmenter.predict"
print("checked", len(images), "masks against Segmenter.predict")

run("export", "--checkpoint", "run/last.pth", "--format", "torchscript")
assert main(["export", "--checkpoint", "run/last.pth", "--format", "onnx"]) == 2  # needs the [export] extra
logits = torch.jit.load("run/last.torchscript.pt")(torch.zeros(1, 3, 64, 64))
assert logits.shape == (1, toy.classes.num_classes, 64, 64), logits.shape
print("checked the TorchScript file")

run("weights", "released", "--root", "released", "--configs", "voc-r50-d16")
released = deeplab.Segmenter.from_released("voc-r50-d16", root="released")
image = Image.open(images[0])
mask = released.predict(image)
assert mask.shape == (image.height, image.width) and released.classes.num_classes == 21, (mask.shape, image.size)
released.save_pretrained("pretrained")
assert sorted(path.name for path in Path("pretrained").iterdir()) == ["README.md", "config.json", "model.safetensors"]
assert torch.equal(deeplab.Segmenter.from_pretrained("pretrained").predict(image), mask)
print("checked the released model and its saved folder")

clone = sorted(
    name
    for name, module in list(sys.modules.items())
    if (file := getattr(module, "__file__", None))
    and Path(file).resolve().is_relative_to(repository)
    and not Path(file).resolve().is_relative_to(Path(sys.prefix).resolve())
)
assert not clone, f"imported from the clone: {clone}"
extras = sorted(name for name in sys.modules if name.partition(".")[0] in HIDDEN)
assert not extras, f"imported from the extras: {extras}"
print(DONE)
"""


def pip(*args: str, **environment: str) -> None:
    """``python -m pip ARGS`` with ``environment`` added to this process's."""
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **environment})
    assert result.returncode == 0, result.stdout + result.stderr


def package_files(root: Path) -> set[str]:
    """The files of the ``deeplab`` package under ``root``, relative to it: no caches, no hidden files."""
    return {
        path.relative_to(root).as_posix()
        for path in (root / "deeplab").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
    }


@pytest.mark.slow
def test_the_installed_wheel_runs_every_command_outside_the_clone(release_url: RangeServer, tmp_path: Path):
    """Every file of the package is in the wheel, and :data:`DRIVER` runs to its end on the installed copy."""
    settings = tmp_path / "build.cfg"
    settings.write_text(BUILD_FOLDERS.format(folder=tmp_path))
    wheel_options = ["--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")]
    pip("wheel", *wheel_options, str(REPOSITORY), DIST_EXTRA_CONFIG=str(settings))
    assert (tmp_path / "build").is_dir()  # setuptools read BUILD_FOLDERS: it wrote nothing into the clone
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-compile", "--target", str(site), str(wheel))
    missing = package_files(REPOSITORY) - package_files(site)
    assert not missing, f"not in the wheel: {sorted(missing)}"

    state = randomized_reference(50, 16).state_dict()
    served = release_url.directory / RELEASED.checkpoint
    torch.save({"cur_epoch": 60, "cur_iter": 39660, "optimizer": test_zoo.OPTIMIZER, "model": state}, served)
    (release_url.directory / RELEASED.log).write_text(test_zoo.LOG)

    work = tmp_path / "work"
    work.mkdir()
    hidden = f"HIDDEN = {sorted(extras_modules())!r}\n{textwrap.dedent(CORE_ONLY)}"
    (work / "driver.py").write_text(f"DONE = {DONE!r}\n{hidden}\n{textwrap.dedent(DRIVER)}")
    command = [sys.executable, "driver.py", str(site), str(REPOSITORY), *TINY, "train.iterations=2"]
    environment = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=work, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == DONE, result.stdout
    missing_extra = (
        "error: ONNX files: onnx, onnxscript not installed; pip install onnx onnxscript (or the "
        "deeplabv3plus-course package's [export] extra: pip install -e '.[export]' in a clone)"
    )
    assert "Traceback" not in result.stderr and missing_extra in result.stderr.splitlines(), result.stderr

    manifest = json.loads((work / "released" / "manifest.json").read_text())
    assert manifest[RELEASED.checkpoint]["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    assert manifest[RELEASED.checkpoint]["layout"] == "current"
