"""The sssegmentation reference oracle builds as published: module names, parameter counts, stride-4 logits."""

import pytest
import torch
from reference_ssseg import build_reference, reference_config, reference_logits

# Published VOC (21 classes) sizes with BatchNorm2d, auxiliary head included; OS8 and OS16 share them.
VOC_PARAMETERS = {50: 45_956_602, 101: 64_948_730}
AUX_PARAMETERS = 4_730_389


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("depth", [50, 101])
def test_parameter_counts_match_the_published_ones(depth: int, output_stride: int) -> None:
    model = build_reference(depth, output_stride, num_classes=21)
    assert sum(p.numel() for p in model.parameters()) == VOC_PARAMETERS[depth]
    assert sum(p.numel() for p in model.auxiliary_decoder.parameters()) == AUX_PARAMETERS


def test_top_level_modules_and_eval_mode() -> None:
    model = build_reference(50, 16, num_classes=21)
    names = [name for name, _ in model.named_children()]
    assert names == ["backbone_net", "aspp_net", "shortcut", "decoder", "auxiliary_decoder"]
    assert not model.training
    assert model.mode == "TEST"


@pytest.mark.parametrize("output_stride", [8, 16])
def test_logits_are_at_stride_4_and_not_upsampled(output_stride: int) -> None:
    model = build_reference(50, output_stride, num_classes=3)
    logits = reference_logits(model, torch.randn(1, 3, 65, 63))
    assert logits.shape == (1, 3, 17, 16)  # ceil(ceil(65 / 2) / 2), ceil(ceil(63 / 2) / 2)
    assert torch.isfinite(logits).all()


def test_training_model_is_refused() -> None:
    model = build_reference(50, 16, num_classes=3).train()
    with pytest.raises(ValueError, match="eval mode"):
        reference_logits(model, torch.randn(1, 3, 33, 33))


@pytest.mark.parametrize(("depth", "output_stride"), [(34, 16), (50, 32)])
def test_non_reference_variants_are_refused(depth: int, output_stride: int) -> None:
    with pytest.raises(ValueError, match="not a reference variant"):
        reference_config(depth, output_stride, num_classes=21)
