"""deeplab.models.zoo and ``python -m deeplab weights released``: the reference's released checkpoints, served locally.

The release is stood in for by two full-size files made once per module from sssegmentation's own network (random
weights): voc-r50-d16 in today's layout and voc-r50-d8 in the 2020 one (the same tensors: output strides 8 and 16
share every shape). The error cases use tiny files.
"""

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import torch

from deeplab import build_model, get_config
from deeplab.config import REFERENCE_CONFIGS
from deeplab.data import build_dataset
from deeplab.data.transforms import eval_transforms
from deeplab.engine.metrics import ConfusionMatrix
from deeplab.models import zoo
from deeplab.models.weights import CheckpointError, load_checkpoint
from deeplab.prepare import download
from deeplab.weights import released as checkpoints
from tests import test_downloads
from tests.conftest import TINY
from tests.reference_ssseg import build_reference, reference_logits
from tests.test_downloads import RangeServer
from tests.test_reference_equivalence import randomized_reference

server = test_downloads.server  # the local HTTP server fixture (127.0.0.1, Range requests), shared


D16, D8 = zoo.RELEASED["voc-r50-d16"], zoo.RELEASED["voc-r50-d8"]
LOG = (
    "[EPOCH]: 1/60, [BATCH]: 50/661, [LEARNING_RATE]: 0.0099, [DATASET]: VOCDataset\n"
    "[LOSS]: loss_aux 0.4100, loss_cls 1.2000, total 1.6100\n"
)
OPTIMIZER = {"state": {}, "param_groups": [{"lr": 1e-4, "momentum": 0.9, "weight_decay": 5e-4, "params": [0, 1]}]}


def train_name(filename: str) -> str:
    """The name a release asset had before Nov 2023: ``_train`` before the extension."""
    return filename.replace(".", "_train.")


def checkpoint_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def manifest_entry(path: Path, config: str, layout: str) -> dict[str, object]:
    """What ``manifest.json`` should say of the file served from ``path``."""
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"config": config, "sha256": sha256, "size": path.stat().st_size, "layout": layout}


def stride4_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Our decoder's logits before the upsampling, as :func:`reference_logits` gives the reference's."""
    with torch.no_grad():
        features = model.backbone(x)
        return model.decoder(model.aspp(features["out"]), features["low_level"])


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A folder with D16's checkpoint in today's layout and D8's in the 2020 one, under its ``_train`` name, and the
    reference state dict both hold."""
    state = randomized_reference(50, 16).state_dict()
    folder = tmp_path_factory.mktemp("release")
    torch.save({"cur_epoch": 60, "cur_iter": 39660, "optimizer": OPTIMIZER, "model": state}, folder / D16.checkpoint)
    renamed = {key.replace("aspp_net.bottleneck.", "aspp_net.fuse_layer."): value for key, value in state.items()}
    torch.save({"epoch": 60, "model": renamed, "optimizer": OPTIMIZER}, folder / train_name(D8.checkpoint))
    return folder, state


@pytest.fixture
def release_url(server: RangeServer, monkeypatch: pytest.MonkeyPatch) -> RangeServer:
    """The local server as ``$DEEPLAB_MODELSTORE_URL``."""
    monkeypatch.setenv(zoo.URL_VARIABLE, server.url("").rstrip("/"))
    return server


def test_registry_names_every_reference_config_and_reads_the_url_at_call_time(monkeypatch: pytest.MonkeyPatch):
    assert list(zoo.RELEASED) == list(REFERENCE_CONFIGS)
    model = zoo.RELEASED["cityscapes-r101-d16"]
    assert (model.checkpoint, model.log, model.reported_miou) == (
        "deeplabv3plus_resnet101os16_cityscapes.pth",
        "deeplabv3plus_resnet101os16_cityscapes.log",
        80.20,
    )
    assert zoo.RELEASED["voc-r50-d8"].reported_miou == 77.43 and zoo.RELEASED["ade20k-r101-d8"].reported_miou == 45.72
    monkeypatch.delenv(zoo.URL_VARIABLE, raising=False)
    assert D8.checkpoint_urls() == (
        "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_deeplabv3plus/"
        "deeplabv3plus_resnet50os8_voc.pth",
        "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_deeplabv3plus/"
        "deeplabv3plus_resnet50os8_voc_train.pth",
    )
    monkeypatch.setenv(zoo.URL_VARIABLE, "http://mirror.example/zoo/")
    assert D8.log_urls() == (
        "http://mirror.example/zoo/deeplabv3plus_resnet50os8_voc.log",
        "http://mirror.example/zoo/deeplabv3plus_resnet50os8_voc_train.log",
    )


@pytest.mark.slow
def test_both_layouts_are_verified_recorded_and_load_as_the_reference(
    release, release_url: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """D8's 2020 file exists only under its ``_train`` name; D16's comes as ``--archive``."""
    folder, state = release
    (release_url.directory / train_name(D8.checkpoint)).symlink_to(folder / train_name(D8.checkpoint))
    (release_url.directory / train_name(D8.log)).write_text(LOG)
    (release_url.directory / D16.log).write_text(LOG)
    root = tmp_path / "released"
    arguments = ["--root", str(root), "--configs", "voc-r50-d16,voc-r50-d8"]
    checkpoints.main([*arguments, "--archive", str(folder / D16.checkpoint)])

    sources = {
        D16.checkpoint: (folder / D16.checkpoint, "voc-r50-d16", "current"),
        D16.log: (release_url.directory / D16.log, "voc-r50-d16", "log"),
        D8.checkpoint: (folder / train_name(D8.checkpoint), "voc-r50-d8", "2020"),
        D8.log: (release_url.directory / train_name(D8.log), "voc-r50-d8", "log"),
    }
    expected = {name: manifest_entry(path, config, layout) for name, (path, config, layout) in sources.items()}
    assert json.loads((root / zoo.MANIFEST).read_text()) == expected
    assert sorted(path.name for path in root.iterdir()) == sorted([*sources, zoo.MANIFEST])
    asked = [D16.log, D8.checkpoint, train_name(D8.checkpoint), D8.log, train_name(D8.log)]  # 404, then _train
    assert release_url.requests == [(name, None) for name in asked]
    out = capsys.readouterr().out
    for name in ("voc-r50-d16", "voc-r50-d8"):
        assert f"python -m deeplab evaluate --config {name} --checkpoint released --data-root DATA" in out

    x = torch.randn(1, 3, 64, 64)
    for name, output_stride in (("voc-r50-d16", 16), ("voc-r50-d8", 8)):
        ours = build_model(get_config(name)).eval()
        load_checkpoint(zoo.released_checkpoint(name, root), ours)
        reference = build_reference(50, output_stride, 21)
        reference.load_state_dict(state)
        torch.testing.assert_close(stride4_logits(ours, x), reference_logits(reference.eval(), x), atol=1e-4, rtol=0)

    def must_not_run(*args: object, **kwargs: object) -> str:
        raise AssertionError("a file the manifest recorded was checked again")

    monkeypatch.setattr(checkpoints, "verify_checkpoint", must_not_run)
    monkeypatch.setattr(checkpoints, "verify_log", must_not_run)
    release_url.requests.clear()
    checkpoints.main(arguments)  # every file found as recorded: nothing downloaded, nothing loaded
    assert release_url.requests == []


TINY_STATE = {"aspp_net.bottleneck.conv.weight": torch.zeros(2, 2), "backbone_net.stem.0.weight": torch.zeros(2)}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<!DOCTYPE html><html><body>Not Found</body></html>", "is not a PyTorch checkpoint"),
        (checkpoint_bytes({"cur_epoch": 60, "model": TINY_STATE})[:-200], "is not a PyTorch checkpoint"),
        (
            checkpoint_bytes(
                {
                    "model": {"decoder.3.weight": torch.zeros(150, 1, 1, 1)}
                    | {f"backbone_net.layer3.{block}.conv1.weight": torch.zeros(1) for block in range(6)}
                }
            ),
            r"is a checkpoint for ade20k-r50-d8 or ade20k-r50-d16 \(150 classes, ResNet-50\), "
            r"not for voc-r50-d16 \(21 classes, ResNet-50\)",
        ),
        (checkpoint_bytes({"model": {"backbone_net.stem.0.weight": torch.zeros(2)}}), "no aspp_net.fuse_layer"),
        (
            checkpoint_bytes({"model": TINY_STATE}),
            r"does not fit this model \(\d+ missing: .*; 1 unexpected: aspp\.fuse\.conv\.weight",
        ),
    ],
    ids=["html", "truncated", "other-config", "no-layout", "other-keys"],
)
def test_a_bad_checkpoint_is_one_line_and_leaves_no_file(
    release_url: RangeServer, tmp_path: Path, capsys, data: bytes, reason: str
):
    (release_url.directory / D16.checkpoint).write_bytes(data)
    root = tmp_path / "released"
    with pytest.raises(SystemExit) as exit_info:
        checkpoints.main(["--root", str(root), "--configs", "voc-r50-d16"])
    (line,) = error_lines(capsys)
    assert exit_info.value.code == 1 and str(root / f"{D16.checkpoint}.part") in line
    assert re.search(reason, line) and "deleted it; run again" in line
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\x80\x03 pickled", "is not text"), (b"<html>Not Found</html>", "has no line with 'loss' in it")],
    ids=["binary", "html"],
)
def test_a_bad_log_is_an_error_and_leaves_no_file(release_url: RangeServer, tmp_path: Path, data: bytes, reason):
    (release_url.directory / D16.log).write_bytes(data)
    resource, root = download.Resource(D16.log, D16.log_urls(), checkpoints.NO_CHECKSUM), tmp_path / "released"
    with pytest.raises(download.VerificationError, match=reason) as error:
        checkpoints.obtain(resource, D16.config, checkpoints.verify_log, root, None)
    assert D16.log in str(error.value) and "\n" not in str(error.value)
    assert list(root.iterdir()) == []


def test_no_network_points_to_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv(zoo.URL_VARIABLE, "http://127.0.0.1:9")  # the discard port: connection refused
    root = tmp_path / "released"
    with pytest.raises(SystemExit):
        checkpoints.main(["--root", str(root), "--configs", "voc-r50-d16"])
    (line,) = error_lines(capsys)
    assert f"could not download {D16.checkpoint}" in line and "127.0.0.1:9" in line
    assert f"pass --archive PATH/{D16.checkpoint}" in line
    assert not root.exists() or list(root.iterdir()) == []


def test_released_checkpoint_rechecks_the_sha256(tmp_path: Path):
    path = tmp_path / D8.checkpoint
    fix = f"; run python -m deeplab weights released --root {tmp_path} --configs voc-r50-d8"
    with pytest.raises(CheckpointError, match=re.escape(f"{path} not found{fix}")):
        zoo.released_checkpoint("voc-r50-d8", tmp_path)
    path.write_bytes(b"weights")
    with pytest.raises(CheckpointError, match=re.escape(f"{path} not verified (not in manifest.json){fix}")):
        zoo.released_checkpoint("voc-r50-d8", tmp_path)
    zoo.write_manifest(tmp_path, {D8.checkpoint: zoo.file_entry(path, D8.config, "2020")})
    assert zoo.released_checkpoint("voc-r50-d8", tmp_path) == path
    path.write_bytes(b"weighTs")  # same size, other bytes
    with pytest.raises(CheckpointError, match=re.escape(f"{path} changed since it was verified")) as error:
        zoo.released_checkpoint("voc-r50-d8", tmp_path)
    assert str(error.value).endswith(fix) and "\n" not in str(error.value)


def test_a_changed_file_is_checked_again_and_kept(release_url: RangeServer, tmp_path: Path, capsys):
    path = tmp_path / D16.checkpoint
    path.write_bytes(b"verified")
    zoo.write_manifest(tmp_path, {D16.checkpoint: zoo.file_entry(path, D16.config, "current")})
    path.write_bytes(b"modified")
    with pytest.raises(SystemExit):
        checkpoints.main(["--root", str(tmp_path), "--configs", "voc-r50-d16"])
    (line,) = error_lines(capsys)
    assert f"{path} is not a PyTorch checkpoint" in line and f"delete {path} and run again" in line
    assert path.read_bytes() == b"modified" and release_url.requests == []


def test_bad_options_are_one_line(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        checkpoints.main(["--configs", "voc-r50-d8,voc-r18-d8"])
    assert exit_info.value.code == 2 and "unknown voc-r18-d8; choose all or from voc-r50-d8" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        checkpoints.main(["--root", str(tmp_path), "--configs", "voc-r50-d8", "--archive", str(tmp_path / "x.pth")])
    (line,) = error_lines(capsys)
    assert exit_info.value.code == 1 and f"expected a file named one of {D8.checkpoint}, {D8.log}" in line


def voc_layout_copy(toy_root: Path, target: Path) -> Path:
    """A data root whose ``VOCdevkit/VOC2012`` is the toy dataset (the same layout, 6 of VOC's 21 labels)."""
    shutil.copytree(toy_root / "toy", target / "VOCdevkit" / "VOC2012")
    return target


def reference_miou(state: dict[str, torch.Tensor], output_stride: int, dataset) -> float:
    """mIoU of the reference network holding ``state``, run as the reference evaluates: stride-4 logits upsampled
    once to the label's size, areas summed over the set."""
    reference = build_reference(50, output_stride, 21)
    reference.load_state_dict(state)
    matrix = ConfusionMatrix(21)
    for sample in dataset:
        logits = reference_logits(reference, sample["image"][None])
        logits = torch.nn.functional.interpolate(logits, sample["mask"].shape, mode="bilinear", align_corners=False)
        matrix.update(logits.argmax(dim=1)[0], sample["mask"])
    return matrix.compute()["miou"]


@pytest.mark.slow
def test_released_checkpoints_are_fetched_on_first_use_and_evaluated_as_the_reference_does(
    release, release_url: RangeServer, toy_root: Path, tmp_path: Path
):
    """``reproduce --released`` from the CLI: both layouts downloaded, verified, evaluated into results.md."""
    folder, state = release
    for name in (D16.checkpoint, train_name(D8.checkpoint)):  # D8 only under its old name, in the 2020 layout
        (release_url.directory / name).symlink_to(folder / name)
    for name in (D16.log, D8.log):
        (release_url.directory / name).write_text(LOG)
    data_root, out, root = voc_layout_copy(toy_root, tmp_path / "data"), tmp_path / "out", tmp_path / "released"
    command = [sys.executable, "-m", "deeplab", "reproduce", "--released", "--configs", "voc-r50-d16,voc-r50-d8"]
    options = ["--data-root", str(data_root), "--out", str(out), "--released-root", str(root)]
    scale = "data.scale=128,96"  # small test-scale images: the full-size network on the CPU
    result = subprocess.run([*command, *options, "--set", scale], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert {entry["layout"] for entry in json.loads((root / zoo.MANIFEST).read_text()).values()} == {
        "current", "2020", "log"
    }  # fmt: skip

    val_set = build_dataset("voc", data_root, "val", transforms=eval_transforms(scale=(128, 96)))
    rows = {line.split(" | ")[1]: line.split(" | ") for line in (out / "results.md").read_text().splitlines()[1:]
            if line.startswith("| ") and " voc-r50-d" in line}  # fmt: skip
    for name, output_stride in (("voc-r50-d16", 16), ("voc-r50-d8", 8)):
        measured = json.loads((out / name / "released" / "metrics.json").read_text())["miou"]
        assert measured == pytest.approx(reference_miou(state, output_stride, val_set), abs=1e-9)
        assert rows[name][3:6] == [f"{100 * measured:.2f}", "—", "released: done"]
    provenance = "- released checkpoint evaluated here: voc-r50-d16, voc-r50-d8 on CPU ("
    assert provenance in (out / "results.md").read_text()
    assert f"; data: voc val ({len(val_set)} images) in {data_root};" in (out / "results.md").read_text()
    again = subprocess.run([*command, *options, "--set", scale], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("(released): skipped") == 2, again.stderr

    image = next((data_root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    predict = ["predict", "--config", "voc-r50-d16", "--checkpoint", "released", "--released-root", str(root)]
    result = subprocess.run(
        [sys.executable, "-m", "deeplab", *predict, str(image), "--out", str(tmp_path / "masks")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "masks" / f"{image.stem}_overlay.png").is_file()


@pytest.mark.slow
def test_notebook_11_segments_the_photographs_with_the_released_model_fetched_on_first_use(
    release, release_url: RangeServer, toy_root: Path, tmp_path: Path
):
    """The photograph cells of notebook 11 run on the released model (the stand-in, from the local server): the
    checkpoint is downloaded into ``released_root``, no cell prints the offline line, every photo cell shows its
    figure or table. The toy model is a 6-iteration run of the tiny config."""
    folder, _ = release
    (release_url.directory / D16.checkpoint).symlink_to(folder / D16.checkpoint)
    (release_url.directory / D16.log).write_text(LOG)
    root = tmp_path / "released"
    parameters = {
        "data_root": str(toy_root),
        "run_dir": str(tmp_path / "run"),
        "overrides": TINY,
        "images": 4,
        "band_widths": [1, 4],
        "released_root": str(root),
        "photo_scale": [96, 128],
    }
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "11_a_trained_network_up_close.ipynb"
    papermill.execute_notebook(notebook, tmp_path / "11.ipynb", parameters=parameters, progress_bar=False)

    assert (root / D16.checkpoint).is_file()
    cells = [cell for cell in nbformat.read(tmp_path / "11.ipynb", as_version=4).cells if cell.cell_type == "code"]
    text = "\n".join(out.get("text", "") for cell in cells for out in cell.outputs if out.output_type == "stream")
    assert "skipped:" not in text and "released model: voc-r50-d16, 21 classes" in text
    assert "3 photographs segmented" in text and text.count("pixels changed") == 2  # shortcut, then OS8
    photo_cells = [cell for cell in cells if "how_to_get_released(released_config" in cell.source]
    assert len(photo_cells) >= 5
    for cell in photo_cells[:4]:  # the figures, the table, the two comparisons; the own-photo solution is last
        kinds = {kind for out in cell.outputs for kind in out.get("data", {})}
        assert kinds & {"image/png", "text/markdown"}, cell.source[:80]
    markdown = [
        out.data["text/markdown"] for cell in cells for out in cell.outputs if "text/markdown" in out.get("data", {})
    ]
    (table,) = [text for text in markdown if text.startswith("| photograph | class |")]
    assert {row.split(" | ")[0].removeprefix("| ") for row in table.splitlines()[2:]} == {
        "astronaut",
        "chelsea",
        "coffee",
    }
