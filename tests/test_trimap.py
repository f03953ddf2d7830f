"""deeplab.engine.trimap: label boundaries and boundary bands, checked against scikit-image and SciPy."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries

from deeplab.engine.trimap import boundary_band, label_boundaries


def random_masks() -> list[torch.Tensor]:
    """Label maps of blocky regions (classes 0-3 and the ignore label 255), a few sizes, odd and even."""
    generator = torch.Generator().manual_seed(0)
    masks = []
    for height, width in ((7, 9), (16, 16), (23, 30)):
        coarse = torch.randint(0, 5, (height // 3 + 1, width // 3 + 1), generator=generator)
        mask = coarse.repeat_interleave(3, 0).repeat_interleave(3, 1)[:height, :width]
        masks.append(torch.where(mask == 4, 255, mask))
    return masks


@pytest.mark.parametrize("index", range(3))
def test_boundaries_are_scikit_images_thick_boundaries_in_the_8_neighbourhood(index):
    mask = random_masks()[index]
    expected = find_boundaries(mask.numpy(), connectivity=2, mode="thick")
    assert np.array_equal(label_boundaries(mask).numpy(), expected)


@pytest.mark.parametrize("width", [0, 1, 2, 5])
def test_a_band_is_the_boundary_dilated_by_a_square_of_side_2_width_plus_1(width):
    for mask in random_masks():
        boundary = label_boundaries(mask).numpy()
        square = np.ones((2 * width + 1, 2 * width + 1), dtype=bool)
        expected = ndimage.binary_dilation(boundary, structure=square) if width else boundary
        assert np.array_equal(boundary_band(mask, width).numpy(), expected)


def test_a_square_on_background_has_a_two_pixel_boundary_and_the_ignore_label_counts_as_a_label():
    mask = torch.zeros(8, 8, dtype=torch.int64)
    mask[2:5, 2:5] = 1
    boundary = label_boundaries(mask)
    assert boundary.sum() == boundary[1:6, 1:6].sum() == 25 - 1 and not boundary[3, 3]  # both sides; centre inside
    mask[6, 6] = 255
    assert label_boundaries(mask)[5:8, 5:8].all()
    assert not label_boundaries(torch.full((4, 4), 3)).any()


def test_a_negative_width_is_one_line_naming_the_value():
    with pytest.raises(ValueError, match="^band width -1 is negative: use 0"):
        boundary_band(torch.zeros(4, 4, dtype=torch.int64), -1)
