"""``python -m deeplab weights imagenet``: backbone downloads from a local server, checked by SHA-256 prefix and keys.

The published files are replaced by tiny checkpoints of a tiny stand-in backbone, each named after its own
SHA-256 prefix as open-mmlab names theirs; one test checks the real deep-stem backbone's key names.
"""

import hashlib
import io
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from deeplab.models.weights import CheckpointError, load_backbone_weights
from deeplab.prepare import download
from deeplab.weights import imagenet as pretrained
from tests import test_downloads
from tests.test_downloads import RangeServer

server = test_downloads.server  # the local HTTP server fixture (127.0.0.1, Range requests), shared


def tiny_backbone(depth: int = 50) -> nn.Module:
    """A stand-in for the ResNet backbone with a few of its key names: ``stem.0``, ``stem.1`` and ``layer1.0``."""
    stem = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    return nn.Sequential(OrderedDict(stem=stem, layer1=nn.Sequential(nn.Conv2d(4, depth // 10, 1))))


def checkpoint_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def good_checkpoint() -> bytes:
    """Like open-mmlab's files: ``{"state_dict": ...}`` with the ImageNet classifier ``fc.*`` besides the backbone."""
    return checkpoint_bytes({"state_dict": {**tiny_backbone().state_dict(), "fc.weight": torch.zeros(10, 5)}})


def prefix_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch):
    """Check files against the tiny backbone; ``tiny(data, base_url, prefix=None)`` makes ResNet-50's published file
    ``base_url/resnet50_v1c-<prefix>.pth`` (default prefix: the SHA-256 prefix of ``data``) and returns its name."""
    monkeypatch.setattr(pretrained, "build_backbone", tiny_backbone)

    def tiny_(data: bytes, base_url: str = "http://127.0.0.1:9", prefix: str | None = None) -> str:
        prefix = prefix or prefix_of(data)
        name = f"resnet50_v1c-{prefix}.pth"
        monkeypatch.setitem(
            pretrained.BACKBONES, 50, download.Resource(name, (f"{base_url}/{name}",), f"sha256:{prefix}")
        )
        return name

    return tiny_


@pytest.fixture
def publish(server: RangeServer, tiny):
    """``publish(data, prefix=None)``: ``tiny``'s file, served by the local server; returns its name."""

    def publish_(data: bytes, prefix: str | None = None) -> str:
        name = tiny(data, server.url("").rstrip("/"), prefix)
        (server.directory / name).write_bytes(data)
        return name

    return publish_


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_download_is_checked_and_the_training_option_printed(
    publish, server: RangeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = good_checkpoint()
    name = publish(data)
    root = tmp_path / "weights"
    pretrained.main(["--root", str(root), "--depth", "50"])
    assert (root / name).read_bytes() == data and not (root / f"{name}.part").exists()
    assert f"--set model.pretrained={(root / name).as_posix()}" in capsys.readouterr().out
    pretrained.main(["--root", str(root), "--depth", "50"])  # found and checked again, not downloaded again
    assert server.requests == [(name, None)]


def test_checksum_mismatch_is_one_clear_line_and_leaves_no_file(
    publish, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = good_checkpoint()
    wrong = "00000000" if not prefix_of(data).startswith("0") else "ffffffff"
    name = publish(data, prefix=wrong)
    root = tmp_path / "weights"
    with pytest.raises(download.ChecksumError) as error:
        pretrained.obtain(50, root, None)
    message = str(error.value)
    assert name in message and hashlib.sha256(data).hexdigest() in message and "deleted it; run again" in message
    assert "\n" not in message
    assert list(root.iterdir()) == []
    with pytest.raises(SystemExit) as exit_info:
        pretrained.main(["--root", str(root), "--depth", "50"])
    assert exit_info.value.code == 1 and len(error_lines(capsys)) == 1 and list(root.iterdir()) == []


def test_file_option_checks_and_copies_into_root(
    publish, server: RangeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = good_checkpoint()
    name = publish(data)
    mine, root = tmp_path / "downloads" / name, tmp_path / "weights"
    mine.parent.mkdir()
    mine.write_bytes(data)
    pretrained.main(["--root", str(root), "--depth", "50", "--file", str(mine)])
    assert (root / name).read_bytes() == data and mine.read_bytes() == data and server.requests == []
    mine.write_bytes(data[:-10])
    with pytest.raises(SystemExit):
        pretrained.main(["--root", str(tmp_path / "other"), "--depth", "50", "--archive", str(mine)])
    (line,) = error_lines(capsys)
    assert str(mine) in line and f"not the published {name}" in line and not (tmp_path / "other").exists()
    with pytest.raises(SystemExit):
        pretrained.main(["--root", str(root), "--file", str(tmp_path / "renamed.pth")])
    assert "expected a file named one of" in error_lines(capsys)[0]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>not found</html>", "is not a PyTorch checkpoint"),
        (good_checkpoint()[:300], "is not a PyTorch checkpoint"),
        (checkpoint_bytes([torch.zeros(2)]), "holds a list, not a state dict"),
    ],
    ids=["html", "truncated", "list"],
)
def test_a_file_that_is_no_state_dict_is_a_clear_error(publish, tmp_path: Path, data: bytes, reason: str):
    publish(data)
    root = tmp_path / "weights"
    with pytest.raises(download.PrepareError, match=reason) as error:
        pretrained.obtain(50, root, None)
    assert "\n" not in str(error.value) and "deleted it; run again" in str(error.value)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "counts"),
    [
        (lambda state: {k.replace("stem.0.", "conv1."): v for k, v in state.items()}, "1 missing: .*1 unexpected"),
        (lambda state: {**state, "layer1.0.weight": torch.zeros(1, 4, 1, 1)}, r"\(1 shape mismatch: layer1\.0\.weight"),
        (lambda state: {k: v for k, v in state.items() if "num_batches" not in k}, None),
        (lambda state: {"backbone." + key: value for key, value in state.items()}, None),
    ],
    ids=["7x7-stem-name", "shape", "no-batchnorm-counters-is-fine", "backbone-prefix-is-fine"],
)
def test_keys_that_do_not_fit_name_their_counts(tiny, tmp_path: Path, change, counts: str | None):
    """A file already in ROOT that fails is kept (it is the user's) and the message says to delete it."""
    data = checkpoint_bytes(change(tiny_backbone().state_dict()))
    name, root = tiny(data), tmp_path / "weights"
    root.mkdir()
    (root / name).write_bytes(data)
    if counts is None:
        assert pretrained.obtain(50, root, None) == root / name
        return
    with pytest.raises(download.PrepareError, match=counts) as error:
        pretrained.obtain(50, root, None)
    assert f"delete {root / name} and run again" in str(error.value) and (root / name).exists()


def test_real_backbone_loads_open_mmlab_v1c_key_names(tmp_path: Path):
    backbone = pretrained.build_backbone(50)
    state = backbone.state_dict()
    for key in ["stem.0.weight", "stem.4.running_var", "stem.7.weight", "layer1.0.downsample.1.weight"]:
        assert key in state
    assert state["stem.0.weight"].shape == (32, 3, 3, 3) and "layer3.5.conv3.weight" in state
    imagenet = {**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    torch.save(imagenet, tmp_path / "v1c.pth")
    load_backbone_weights(backbone, tmp_path / "v1c.pth")
    torch.save({key.replace("stem.0.", "conv1."): value for key, value in imagenet.items()}, tmp_path / "v1b.pth")
    with pytest.raises(CheckpointError, match="1 missing: stem.0.weight; 1 unexpected: conv1.weight"):
        load_backbone_weights(backbone, tmp_path / "v1b.pth")


def test_help_describes_the_options(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        pretrained.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "ResNetV1c" in out and "--file" in out and "--depth" in out
