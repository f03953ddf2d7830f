"""The fast paths compute what the plain model does.

Inference: BatchNorm folded into the convolutions, channels_last, bf16 autocast. Training: channels_last memory
and bf16 autocast, the two speed settings of the trainer (``train.channels_last``, ``train.amp``).
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deeplab
from deeplab.engine.train import segmentation_loss
from deeplab.models.fast import optimize_for_inference
from tests.conftest import randomize_batchnorm


@pytest.fixture(scope="module", params=["voc-r50-d8", "voc-r50-d16"])
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(deeplab.build_model(deeplab.get_config(request.param)))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
def test_fused_model_matches_plain_model(model: nn.Module, images: torch.Tensor) -> None:
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fast.aux_head is None
    with torch.no_grad():
        expected = model(images)["out"]
        actual = fast(images.contiguous(memory_format=torch.channels_last))["out"]
    assert actual.shape == expected.shape == (1, 21, 65, 65)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_original_model_is_untouched(model: nn.Module) -> None:
    before = {key: value.clone() for key, value in model.state_dict().items()}
    optimize_for_inference(model)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert model.aux_head is not None
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0


@pytest.mark.slow
def test_inplace_changes_and_returns_the_model_itself(model: nn.Module, images: torch.Tensor) -> None:
    own = copy.deepcopy(model)
    with torch.no_grad():
        expected = optimize_for_inference(model)(images)["out"]
        fast = optimize_for_inference(own, inplace=True)
        actual = fast(images)["out"]
    assert fast is own and own.aux_head is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in own.modules())
    torch.testing.assert_close(actual, expected)


@pytest.mark.slow
def test_bf16_channels_last_is_close(model: nn.Module, images: torch.Tensor) -> None:
    fast = optimize_for_inference(model)
    with torch.no_grad():
        expected = model(images)["out"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = fast(images.contiguous(memory_format=torch.channels_last))["out"]
    assert actual.dtype == torch.bfloat16
    similarity = F.cosine_similarity(actual.float().flatten(), expected.flatten(), dim=0)
    assert similarity > 0.99, f"cosine similarity {similarity:.4f}"


@pytest.mark.slow
def test_convolution_weights_stored_in_bf16_give_autocasts_result_to_the_bit(
    model: nn.Module, images: torch.Tensor
) -> None:
    """Autocast casts every convolution's float32 weight to bf16 at each call; the copy made for bf16 holds them in
    bf16 already (the shifted depthwise convolutions, which compute in float32, keep theirs) and computes the same."""
    stored = optimize_for_inference(model, autocast_dtype=torch.bfloat16)
    dtypes = {type(m).__name__: m.weight.dtype for m in stored.modules() if isinstance(m, nn.Conv2d)}
    assert dtypes == {"Conv2d": torch.bfloat16, "DepthwiseConv2d": torch.float32}
    x = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = optimize_for_inference(model)(x)["out"]
        actual = stored(x)["out"]
    assert torch.equal(actual, expected)


TRAIN_CONFIG = deeplab.get_config("toy-r50-d16", ["model.channels=32"])


def _loss_and_gradients(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, channels_last: bool, bf16: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training forward and backward of ``model`` on ``images`` ``(N, 3, H, W)``: the loss and the gradients."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout masks in every call
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        outputs = model(images.to(next(model.parameters()).dtype).contiguous(memory_format=memory_format))
        loss = segmentation_loss(outputs, masks, TRAIN_CONFIG.train)
    loss.backward()
    return loss.detach(), {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


@pytest.fixture(scope="module")
def training_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A narrow toy model, two images ``(2, 3, 64, 64)`` and their masks ``(2, 64, 64)`` with an ignored band."""
    torch.manual_seed(2)
    model = deeplab.build_model(TRAIN_CONFIG)
    images = torch.randn(2, 3, 64, 64)
    masks = torch.randint(0, TRAIN_CONFIG.model.num_classes, (2, 64, 64))
    masks[:, :4] = 255
    return model, images, masks


@pytest.mark.slow
def test_channels_last_training_step_is_the_same_computation(training_batch) -> None:
    """In float64 the two memory formats agree to rounding noise, gradients of all 300-odd tensors included.

    (In float32 they differ by more: a freshly initialised ResNet trained with BatchNorm on two images is
    ill-conditioned, and different summation orders give gradients a few percent apart; float64 removes that.)
    """
    model, images, masks = training_batch
    model = copy.deepcopy(model).double()
    loss, gradients = _loss_and_gradients(model, images, masks, channels_last=False)
    loss_cl, gradients_cl = _loss_and_gradients(model, images, masks, channels_last=True)
    torch.testing.assert_close(loss_cl, loss)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradients_cl[name], gradient, msg=name)


@pytest.mark.slow
def test_bf16_training_step_is_close(training_batch) -> None:
    """bf16 autocast keeps the loss and the classifier's gradients: cosine similarity > 0.95 to float32.

    Deep in the freshly initialised backbone the bf16 gradients are not comparable (the same ill-conditioning,
    at bf16's 3 significant digits); on a trained model they are (cosine 0.998 over all parameters).
    """
    model, images, masks = training_batch
    loss, gradients = _loss_and_gradients(model, images, masks, channels_last=False)
    loss_bf16, gradients_bf16 = _loss_and_gradients(model, images, masks, channels_last=True, bf16=True)
    torch.testing.assert_close(loss_bf16, loss, atol=0.02, rtol=0.01)
    for name in ("decoder.classifier.weight", "decoder.classifier.bias", "aux_head.2.weight"):
        similarity = F.cosine_similarity(gradients_bf16[name].flatten(), gradients[name].flatten(), dim=0)
        assert similarity > 0.95, f"{name}: cosine similarity {similarity:.4f}"
