"""``python -m deeplab data toy``: deterministic, in the VOC layout, loadable by ToyDataset, a real task."""

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage

from deeplab.data import TOY_CLASSES, ToyDataset
from deeplab.prepare import toy as make_toy


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = tree_bytes(make_toy.make_toy(tmp_path / "a", seed=3, train=4, val=2))
    again = tree_bytes(make_toy.make_toy(tmp_path / "b", seed=3, train=4, val=2))
    other = tree_bytes(make_toy.make_toy(tmp_path / "c", seed=4, train=4, val=2))
    assert first == again
    assert first.keys() == other.keys() and first != other


def test_writes_the_voc_layout_and_loads_through_toy_dataset(tmp_path):
    make_toy.main(["--root", str(tmp_path), "--train", "5", "--val", "3"])
    toy = tmp_path / "toy"
    assert (toy / "ImageSets/Segmentation/train.txt").read_text().split() == [f"train_{i:05d}" for i in range(5)]
    assert len(list((toy / "JPEGImages").glob("*.jpg"))) == 8
    assert len(list((toy / "SegmentationClass").glob("*.png"))) == 8
    for split, count in (("train", 5), ("val", 3)):
        dataset = ToyDataset(tmp_path, split)
        assert len(dataset) == count
        for sample in dataset:
            h, w = sample["mask"].shape
            assert sample["image"].shape == (3, h, w) and 64 <= h <= 320 and 64 <= w <= 320
            assert set(sample["mask"].unique().tolist()) <= {*range(len(TOY_CLASSES)), 255}


def test_every_class_appears_and_objects_are_not_tiny():
    areas = {cls: [] for cls in range(1, len(TOY_CLASSES))}
    for i in range(40):
        image, mask = make_toy.render_sample(np.random.default_rng([0, 0, i]))
        assert image.dtype == np.uint8 and image.shape == (*mask.shape, 3)
        for cls in np.unique(mask):
            if 0 < cls < 255:
                areas[cls].append(int((mask == cls).sum()))
    assert all(len(found) >= 3 for found in areas.values())
    assert min(min(found) for found in areas.values()) >= 32


@pytest.mark.parametrize("seed", range(3))
def test_ignore_outline_is_thin_and_separates_every_pair_of_labels(seed):
    image, mask = make_toy.render_sample(np.random.default_rng(seed), height=200, width=240)
    ignored = mask == 255
    assert 0 < ignored.mean() < 0.08
    assert scipy.ndimage.binary_erosion(ignored, np.ones((3, 3))).sum() <= 0.01 * ignored.sum()  # 1-2 pixels wide
    for a, b in ((mask[:-1], mask[1:]), (mask[:, :-1], mask[:, 1:])):  # vertical and horizontal neighbours
        labelled = (a != 255) & (b != 255)
        assert (a[labelled] == b[labelled]).all()  # two different labels never touch without ignore between


@pytest.mark.parametrize("shape", make_toy.SHAPES)
def test_shapes_differ_in_geometry(shape):
    v, u = np.mgrid[-1.2:1.2:241j, -1.2:1.2:241j]
    inside = make_toy.shape_mask(shape, u, v, np.random.default_rng(0))
    area = inside.mean() * 2.4**2
    centre, corner = inside[120, 120], inside[120 + 80, 120 + 80]  # (0, 0) and (0.8, 0.8)
    expected = {
        "disc": (np.pi, True, False),
        "ring": (np.pi * (1 - make_toy_ring_ratio() ** 2), False, False),
        "square": (1.7**2, True, True),
        "triangle": (None, True, False),
        "cross": (None, True, False),
    }[shape]
    if expected[0] is not None:
        assert area == pytest.approx(expected[0], rel=0.03)
    assert (bool(centre), bool(corner)) == expected[1:]


def make_toy_ring_ratio() -> float:
    """The inner radius the ring draws with ``default_rng(0)`` (its first random number)."""
    return np.random.default_rng(0).uniform(0.45, 0.6)


def test_unknown_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        make_toy.shape_mask("hexagon", np.zeros(1), np.zeros(1), np.random.default_rng(0))
