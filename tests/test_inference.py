"""Whole-image, sliding-window, multi-scale and flipped inference, and evaluation with the fast path, autocast and
DataLoader workers."""

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplab import build_model, get_config
from deeplab.data import build_dataset
from deeplab.data.datasets import DatasetError
from deeplab.data.transforms import eval_transforms
from deeplab.engine.distributed import Distributed
from deeplab.engine.evaluate import (
    Inference,
    channel_softmax,
    evaluate,
    predict_probabilities,
    sliding_window_logits,
)
from tests.conftest import TINY, randomize_batchnorm


class PixelModel(nn.Module):
    """A translation-equivariant stand-in: a 1x1 convolution, so windows see what the whole image sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x, output_size=None):
        logits = self.conv(x)
        return {"out": logits if output_size is None else F.interpolate(logits, output_size, mode="bilinear")}


def test_sliding_windows_equal_the_whole_image_for_a_pixelwise_model():
    model, image = PixelModel(), torch.randn(1, 3, 37, 53)
    whole = model(image)["out"]
    for window, stride in [((16, 16), (8, 8)), ((20, 30), (20, 30)), ((64, 64), (32, 32)), ((37, 10), (5, 7))]:
        torch.testing.assert_close(sliding_window_logits(model, image, window, stride), whole)


def test_windows_cover_every_pixel_and_count_overlaps():
    calls = []

    def model(x):
        calls.append(tuple(x.shape[-2:]))
        return {"out": torch.ones(1, 1, *x.shape[-2:])}

    logits = sliding_window_logits(model, torch.zeros(1, 3, 30, 50), (20, 20), (15, 15))
    torch.testing.assert_close(logits, torch.ones(1, 1, 30, 50))
    assert calls == [(20, 20)] * 6  # tops 0 and 10 (shifted back inside), lefts 0, 15 and 30


def test_probabilities_are_upsampled_to_the_label_size_and_sum_to_one():
    model, image = PixelModel(), torch.randn(1, 3, 20, 30)
    probabilities = predict_probabilities(model, image, (40, 60), Inference(scales=(0.5, 1.0, 1.5), flip=True))
    assert probabilities.shape == (1, 4, 40, 60)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(1, 40, 60))


def test_flip_of_a_pixelwise_model_changes_nothing():
    model, image = PixelModel(), torch.randn(1, 3, 20, 30)
    plain = predict_probabilities(model, image, (20, 30))
    torch.testing.assert_close(predict_probabilities(model, image, (20, 30), Inference(flip=True)), plain)


def test_probabilities_of_channels_last_logits_stay_channels_last():
    model = PixelModel().to(memory_format=torch.channels_last)
    image = torch.randn(1, 3, 20, 30).contiguous(memory_format=torch.channels_last)
    probabilities = predict_probabilities(model, image, (40, 60))
    assert probabilities.is_contiguous(memory_format=torch.channels_last)  # an argmax over classes reads them in a row
    torch.testing.assert_close(probabilities, model(image.contiguous(), (40, 60))["out"].softmax(dim=1))
    logits = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(channel_softmax(logits.contiguous(memory_format=torch.channels_last)), logits.softmax(1))
    assert channel_softmax(logits).is_contiguous()  # contiguous logits keep their layout too


# ---- evaluation as the commands run it: the fast path, autocast and DataLoader workers -------------------------------

CPU = Distributed(rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def toy_model_and_val_set(toy_root):
    """A toy-r50-d16 (TINY heads) with random BatchNorm statistics, and the toy validation set at the test scale."""
    config = get_config("toy-r50-d16", TINY)
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(config))
    val_set = build_dataset("toy", toy_root, "val", transforms=eval_transforms(scale=config.data.scale))
    return model, val_set


def confusion(model_and_set, inference: Inference, workers: int = 0) -> torch.Tensor:
    model, val_set = model_and_set
    metrics = evaluate(model, val_set, num_classes=model.decoder.classifier.out_channels, env=CPU,
                       inference=inference, workers=workers)  # fmt: skip
    return torch.as_tensor(metrics["confusion_matrix"])


@pytest.fixture(scope="module")
def plain_serial(toy_model_and_val_set) -> torch.Tensor:
    """The reference numbers: the model as it is, fp32, images read in this process."""
    return confusion(toy_model_and_val_set, Inference(fast=False))


def differing_pixels(a: torch.Tensor, b: torch.Tensor) -> float:
    """The share of pixels whose (label, prediction) cell differs: half the L1 distance of the matrices."""
    return (a - b).abs().sum().item() / 2 / a.sum().item()


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["none", "bf16"])
@pytest.mark.parametrize("fast", [True, False])
def test_every_inference_setting_agrees_with_the_plain_serial_path(toy_model_and_val_set, plain_serial, fast, amp):
    serial = confusion(toy_model_and_val_set, Inference(fast=fast, amp=amp))
    assert torch.equal(confusion(toy_model_and_val_set, Inference(fast=fast, amp=amp), workers=2), serial)
    assert serial.sum() == plain_serial.sum()  # every labelled pixel counted once
    # Folding BatchNorm changes float rounding (~1e-6 relative), which flips a pixel whose two best classes tie to
    # that precision: 1 pixel of 3.6 million on the trained demo model's toy validation set. bf16 keeps 8 bits.
    assert differing_pixels(serial, plain_serial) <= (1e-4 if amp == "none" else 0.02)


@pytest.mark.slow
def test_flip_and_windows_agree_on_the_fast_path(toy_model_and_val_set):
    for settings in ({"flip": True}, {"window": (64, 64), "stride": (48, 48)}, {"scales": (0.75, 1.0)}):
        fast = confusion(toy_model_and_val_set, Inference(**settings))
        plain = confusion(toy_model_and_val_set, Inference(fast=False, **settings))
        assert differing_pixels(fast, plain) <= 1e-4, settings


def test_evaluation_leaves_the_model_as_it_was(toy_model_and_val_set):
    model, val_set = toy_model_and_val_set
    before = {name: value.clone() for name, value in model.state_dict().items()}
    model.train()
    try:
        confusion(toy_model_and_val_set, Inference())
        assert model.training and model.aux_head is not None
        assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    finally:
        model.eval()


def test_a_corrupt_image_read_by_a_worker_is_its_one_line_error(toy_root, tmp_path, toy_model_and_val_set):
    shutil.copytree(toy_root, tmp_path / "data")
    model, val_set = toy_model_and_val_set
    corrupt = build_dataset("toy", tmp_path / "data", "val", transforms=val_set.transforms)
    image = corrupt.samples[-1].image
    image.write_bytes(image.read_bytes()[:200])  # a truncated JPEG
    with pytest.raises(DatasetError) as raised:
        confusion((model, corrupt), Inference(), workers=1)
    assert str(image) in str(raised.value) and "\n" not in str(raised.value)
