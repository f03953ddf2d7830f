"""Whole-image, sliding-window, multi-scale and flipped inference."""

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.engine.evaluate import Inference, predict_probabilities, sliding_window_logits


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
