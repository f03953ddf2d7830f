"""Checkpoints: atomic save, safe load, clear errors, and ImageNet backbone files."""

import pytest
import torch
import torchvision

from deeplab.config import ModelConfig
from deeplab.models import CheckpointError, build_model, load_checkpoint, resnet_backbone, save_checkpoint
from deeplab.models import weights as weights_module


def tiny_model(num_classes: int = 5):
    return build_model(ModelConfig(num_classes=num_classes, output_stride=16))


@pytest.mark.slow
def test_round_trip_restores_every_tensor(tmp_path):
    model, other = tiny_model(), tiny_model()
    path = save_checkpoint(tmp_path / "ckpt.pth", model, iteration=7)
    checkpoint = load_checkpoint(path, other)
    assert checkpoint["iteration"] == 7
    for key, value in model.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value)


def test_ddp_module_prefix_is_accepted(tmp_path):
    model, other = tiny_model(), tiny_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": state}, tmp_path / "ddp.pth")
    load_checkpoint(tmp_path / "ddp.pth", other)
    torch.testing.assert_close(other.decoder.classifier.weight, model.decoder.classifier.weight)


@pytest.mark.slow
def test_other_number_of_classes_names_the_mismatched_keys(tmp_path):
    save_checkpoint(tmp_path / "ckpt.pth", tiny_model(num_classes=7))
    with pytest.raises(CheckpointError, match=r"4 shape mismatch: decoder.classifier.weight \(7, 512, 1, 1\) vs "):
        load_checkpoint(tmp_path / "ckpt.pth", tiny_model(num_classes=5))


def test_other_architecture_names_missing_and_unexpected_keys(tmp_path):
    save_checkpoint(tmp_path / "ckpt.pth", build_model(ModelConfig(num_classes=5, deep_stem=False)))
    with pytest.raises(CheckpointError, match=r"missing: backbone.stem.0.weight.*unexpected: backbone.conv1.weight"):
        load_checkpoint(tmp_path / "ckpt.pth", tiny_model())


@pytest.mark.slow
def test_truncated_file_says_so(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pth", tiny_model())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"ckpt.pth is truncated or corrupt .*download or save it again"):
        load_checkpoint(path, tiny_model())


@pytest.mark.slow
def test_missing_file_and_pickled_objects_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth", tiny_model())
    torch.save({"model": tiny_model()}, tmp_path / "pickled.pth")  # a whole module, not a state_dict
    with pytest.raises(CheckpointError, match="refused by weights_only loading"):
        load_checkpoint(tmp_path / "pickled.pth", tiny_model())


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt.pth", tiny_model(), iteration=1)
    before = path.read_bytes()

    def crash(obj, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(weights_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_model(), iteration=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_torchvision_imagenet_file_loads_into_the_standard_stem(tmp_path):
    reference = torchvision.models.resnet101(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet101.pth")
    backbone = resnet_backbone(101, 8, deep_stem=False, weights=tmp_path / "resnet101.pth")
    torch.testing.assert_close(backbone.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(backbone.layer4[2].bn3.running_var, reference.layer4[2].bn3.running_var)


def test_a_7x7_file_into_the_deep_stem_names_the_stem_keys(tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(CheckpointError, match=r"missing: stem.0.weight.*unexpected: conv1.weight"):
        resnet_backbone(50, 16, deep_stem=True, weights=tmp_path / "resnet50.pth")


def test_torchvision_weights_need_the_standard_stem():
    with pytest.raises(ValueError, match="deep_stem=False"):
        resnet_backbone(50, 16, deep_stem=True, weights="ResNet50_Weights.IMAGENET1K_V2")


def test_no_weights_means_no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    resnet_backbone(50, 16, deep_stem=False)
    build_model(ModelConfig())
