"""Our DeepLabV3+ is sssegmentation's: its weights load into ours by key mapping and give the same outputs."""

import pytest
import torch
import torch.nn.functional as F

from deeplab import build_model, get_config
from deeplab.engine.evaluate import predict_probabilities
from deeplab.models.weights import (
    CheckpointError,
    convert_reference_state_dict,
    load_backbone_weights,
    load_checkpoint,
    load_fitting,
)
from tests.reference_ssseg import build_reference, reference_logits

VARIANTS = [(50, 8), (50, 16), (101, 8), (101, 16)]
PARAMETERS = {50: 45_956_602, 101: 64_948_730}  # VOC, auxiliary head included


def randomized_reference(depth: int, output_stride: int, num_classes: int = 21) -> torch.nn.Module:
    """The reference in eval mode with BatchNorm statistics and affine parameters made non-trivial."""
    torch.manual_seed(depth + output_stride)
    reference = build_reference(depth, output_stride, num_classes)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return reference


def upsampled_reference_logits(reference: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference's stride-4 logits upsampled as its evaluation does: ``(N, C, H, W)``."""
    return F.interpolate(reference_logits(reference, x), size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize(("depth", "output_stride"), VARIANTS)
def test_reference_weights_give_our_model_the_same_outputs(depth, output_stride):
    reference = randomized_reference(depth, output_stride)
    ours = build_model(get_config(f"voc-r{depth}-d{output_stride}")).eval()
    assert sum(p.numel() for p in reference.parameters()) == PARAMETERS[depth]
    assert sum(p.numel() for p in ours.parameters()) == PARAMETERS[depth]
    ours.load_state_dict(convert_reference_state_dict(reference.state_dict()), strict=True)

    x = torch.randn(1, 3, 65, 63)
    with torch.no_grad():
        difference = (ours(x)["out"] - upsampled_reference_logits(reference, x)).abs().max().item()
    assert difference < 1e-4


def test_a_reference_checkpoint_file_loads_through_the_public_loader(tmp_path):
    reference = randomized_reference(50, 16)
    path = tmp_path / "deeplabv3plus_resnet50os16_voc.pth"
    torch.save({"model": reference.state_dict(), "cur_epoch": 60}, path)  # as the reference's trainer saves
    ours = build_model(get_config("voc-r50-d16")).eval()
    load_checkpoint(path, ours)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["out"], upsampled_reference_logits(reference, x), atol=1e-4, rtol=0)


def test_a_v1c_imagenet_file_loads_into_the_backbone(tmp_path):
    backbone_state = {
        key.removeprefix("backbone_net."): value
        for key, value in randomized_reference(50, 8).state_dict().items()
        if key.startswith("backbone_net.")
    }
    path = tmp_path / "resnet50_v1c.pth"
    classifier = {"fc.weight": torch.randn(1000, 2048), "fc.bias": torch.randn(1000)}
    torch.save({"state_dict": {**backbone_state, **classifier}}, path)  # the open-mmlab file layout
    ours = build_model(get_config("voc-r50-d8"))
    load_backbone_weights(ours.backbone, path)
    loaded = ours.backbone.state_dict()
    assert loaded.keys() == backbone_state.keys()
    assert all(torch.equal(loaded[key], backbone_state[key]) for key in backbone_state)


def test_a_reference_checkpoint_for_other_classes_names_the_mismatched_keys(tmp_path):
    path = tmp_path / "ade20k.pth"
    torch.save({"model": build_reference(50, 16, 150).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"decoder\.classifier\.weight") as error:
        load_checkpoint(path, build_model(get_config("voc-r50-d16")))
    assert "\n" not in str(error.value)


def test_evaluation_upsamples_once_from_stride_4_to_the_label_size_as_the_reference_does():
    reference = randomized_reference(50, 16)
    ours = build_model(get_config("voc-r50-d16")).eval()
    ours.load_state_dict(convert_reference_state_dict(reference.state_dict()))
    image, label_size = torch.randn(1, 3, 70, 94), (96, 129)  # the test scale, then VOC's ~1.37x larger label
    theirs = F.interpolate(reference_logits(reference, image), label_size, mode="bilinear", align_corners=False)
    probabilities = predict_probabilities(ours, image, label_size)
    torch.testing.assert_close(probabilities, theirs.softmax(dim=1), atol=1e-5, rtol=0)
    with torch.no_grad():  # going through the test-scale size first gives other logits, far beyond that tolerance
        once = ours(image, output_size=label_size)["out"]
        twice = F.interpolate(ours(image)["out"], label_size, mode="bilinear", align_corners=False)
    error_once, error_twice = (once - theirs).abs().max().item(), (twice - theirs).abs().max().item()
    assert error_once < 1e-6 and error_twice > 1e-4  # measured: 0 and 1.2e-3 (smooth random-weight logits)


def test_a_reference_checkpoint_of_other_classes_fine_tunes_into_ours(tmp_path):
    """Released checkpoints are sssegmentation's: ``model.init_from`` renames them, loads everything but the two
    classifiers, and names those."""
    path = tmp_path / "ade20k.pth"
    reference = build_reference(50, 16, 150).state_dict()
    torch.save({"model": reference}, path)
    model = build_model(get_config("voc-r50-d16"))
    report = load_fitting(model, path)
    assert sorted(report.new) == ["aux_head.2.bias", "aux_head.2.weight", "decoder.classifier.bias",
                                  "decoder.classifier.weight"]  # fmt: skip
    assert report.new["decoder.classifier.weight"] == "(21, 512, 1, 1) vs (150, 512, 1, 1)"
    converted = convert_reference_state_dict(reference)
    assert all(torch.equal(model.state_dict()[key], converted[key]) for key in report.loaded)
    assert len(report.loaded) == len(model.state_dict()) - 4
