"""deeplab.models.ablation: average outputs over images, and modules that output them instead of computing."""

import pytest
import torch
from torch import nn

from deeplab.models.ablation import ablated, average_outputs


def small_network() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()


def test_the_average_weighs_every_image_the_same_whatever_its_size():
    network = small_network()
    images = [torch.randn(1, 3, 5, 7), torch.randn(1, 3, 9, 4)]
    (first, second) = average_outputs(network, [network[0], network[2]], images)
    with torch.no_grad():
        expected = (network[0](images[0]).mean((0, 2, 3)) + network[0](images[1]).mean((0, 2, 3))) / 2
        last = (network(images[0]).mean((0, 2, 3)) + network(images[1]).mean((0, 2, 3))) / 2
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, last)
    assert not network[0]._forward_hooks and not network[2]._forward_hooks


def test_an_ablated_module_outputs_its_value_everywhere_and_the_hooks_go_on_leaving():
    network = small_network()
    value = torch.tensor([1.0, -2.0, 0.5, 3.0])
    image = torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        constant = value.view(1, 4, 1, 1).expand(2, 4, 6, 5)
        expected = network[2](network[1](constant.clone()))
        with ablated({network[0]: value}):
            inside = network(image)
        after = network(image)
        unchanged = network[2](network[1](network[0](image)))
    torch.testing.assert_close(inside, expected)
    torch.testing.assert_close(after, unchanged)
    assert not torch.allclose(inside, after)


def test_the_hooks_are_removed_after_an_error_inside_the_block():
    network = small_network()
    with pytest.raises(RuntimeError, match="inside"), ablated({network[0]: torch.zeros(4)}):
        raise RuntimeError("inside")
    assert not network[0]._forward_hooks


def test_no_images_is_one_line():
    network = small_network()
    with pytest.raises(ValueError, match="at least one image"):
        average_outputs(network, [network[0]], [])
