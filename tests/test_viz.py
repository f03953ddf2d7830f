"""Pictures: colours of masks and overlays exactly; figures by their axes, bars, labels and a PNG that opens."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from deeplab import viz

matplotlib.use("Agg")

PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
NAMES = ["background", "cat", "dog"]
MASK = torch.tensor([[0, 1, 2], [255, 2, 1]])


def test_colorize_mask_paints_each_class_in_its_colour():
    picture = viz.colorize_mask(MASK, PALETTE, ignore_color=(224, 224, 192))
    assert picture.shape == (3, 2, 3) and picture.dtype == torch.uint8
    pixels = picture.permute(1, 2, 0).tolist()
    assert pixels == [[[0, 0, 0], [128, 0, 0], [0, 128, 0]], [[224, 224, 192], [0, 128, 0], [128, 0, 0]]]


def test_colorize_mask_paints_ignored_pixels_cream_by_default_never_black_like_the_background():
    picture = viz.colorize_mask(MASK, torch.tensor(PALETTE, dtype=torch.uint8))
    assert picture[:, 1, 0].tolist() == list(viz.IGNORE_COLOR) != picture[:, 0, 0].tolist() == [0, 0, 0]


def test_colorize_mask_refuses_classes_without_a_colour():
    with pytest.raises(viz.MaskError, match=r"mask holds \[3\] but the palette has 3 colours") as error:
        viz.colorize_mask(torch.tensor([[0, 3]]), PALETTE)
    assert "\n" not in str(error.value)


def test_error_overlay_greys_the_image_and_paints_only_labelled_wrong_pixels():
    image = torch.tensor([[[200, 200, 200]], [[0, 0, 0]], [[100, 100, 100]]], dtype=torch.uint8)  # (3, 1, 3)
    mask, prediction = torch.tensor([[1, 1, 255]]), torch.tensor([[1, 2, 2]])
    picture = viz.error_overlay(image, prediction, mask)
    assert picture[:, 0, 1].tolist() == [255, 0, 0]  # wrong
    assert picture[:, 0, 0].tolist() == picture[:, 0, 2].tolist() == [100, 100, 100]  # right, unlabelled: grey
    with pytest.raises(viz.MaskError, match="all of the same H and W"):
        viz.error_overlay(image, prediction[:, :2], mask)


def test_overlay_blends_class_colours_and_leaves_ignored_pixels():
    image = torch.full((3, 2, 3), 100, dtype=torch.uint8)
    blended = viz.overlay(image, MASK, PALETTE, alpha=0.5)
    assert blended.shape == image.shape and blended.dtype == torch.uint8
    assert blended[:, 0, 1].tolist() == [114, 50, 50]  # 0.5 * 100 + 0.5 * (128, 0, 0)
    assert blended[:, 1, 0].tolist() == [100, 100, 100]  # ignored: the image itself


def test_overlay_with_alpha_zero_is_the_image():
    image = torch.randint(256, (3, 2, 3), dtype=torch.uint8)
    assert torch.equal(viz.overlay(image, MASK, PALETTE, alpha=0.0), image)
    assert torch.equal(viz.overlay(image, torch.full((2, 3), 255), PALETTE), image)  # nothing to paint


def test_overlay_refuses_a_mask_of_another_size():
    with pytest.raises(viz.MaskError, match="must be \\(3, H, W\\) with the mask's"):
        viz.overlay(torch.zeros(3, 4, 4, dtype=torch.uint8), MASK, PALETTE)


LOG = [
    {"iter": 10, "epoch": 0.5, "loss": 2.0, "lr": 0.01},
    {"iter": 20, "epoch": 1.0, "loss": 1.5, "lr": 0.009},
    {"iter": 20, "epoch": 1.0, "miou": 0.25, "pixel_accuracy": 0.7},
    {"iter": 30, "epoch": 1.5, "loss": 1.2, "lr": 0.008},
    {"iter": 40, "epoch": 2.0, "miou": 0.4, "pixel_accuracy": 0.8},
]


def test_training_curves_from_a_json_lines_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in LOG))
    figure = viz.plot_training_curves(path)
    loss, lr, miou = figure.axes
    assert [axes.get_title() for axes in figure.axes] == ["training loss", "learning rate", "validation mIoU (%)"]
    assert loss.lines[0].get_xdata().tolist() == [10, 20, 30]
    assert lr.lines[0].get_ydata().tolist() == [0.01, 0.009, 0.008]
    assert miou.lines[0].get_ydata().tolist() == [25.0, 40.0]


def test_long_logs_draw_each_loss_as_logged_and_as_a_window_mean():
    records = [{"iter": 10 * i, "loss": float(i % 2), "lr": 0.01} for i in range(1, 31)]  # 0, 1, 0, ... noisy
    records.append({"iter": 300, "miou": 0.5})
    figure = viz.plot_training_curves(records)
    loss, _, miou = figure.axes
    faint, mean = loss.lines
    assert faint.get_alpha() == 0.3 and faint.get_ydata().tolist()[:3] == [1.0, 0.0, 1.0]
    assert mean.get_label() == "total, mean of 3" and mean.get_ydata().tolist()[:4] == [1.0, 0.5, 2 / 3, 1 / 3]
    assert [text.get_text() for text in miou.texts] == ["50.0"]  # each evaluation labelled with its value


def test_training_curves_before_the_first_evaluation():
    figure = viz.plot_training_curves(LOG[:2])
    assert not figure.axes[2].lines and "no 'miou' records yet" in figure.axes[2].texts[0].get_text()


def test_per_class_iou_bars_sorted_with_the_mean():
    figure = viz.plot_per_class_iou([0.5, float("nan"), 0.9], NAMES, sort=True)
    axes = figure.axes[0]
    assert len(axes.patches) == 3
    assert [label.get_text() for label in axes.get_yticklabels()] == ["dog", "background", "cat"]
    assert [text.get_text() for text in axes.texts] == ["90.0", "50.0", "n/a"]
    assert axes.lines[0].get_xdata()[0] == pytest.approx(70.0)  # mIoU over the classes that are not NaN
    assert axes.get_legend().get_texts()[0].get_text() == "mIoU 70.0"


def test_confusion_matrix_rows_sum_to_one():
    figure = viz.plot_confusion_matrix([[8, 2, 0], [0, 0, 0], [1, 1, 2]], NAMES)
    heat_map, colour_bar = figure.axes
    values = heat_map.images[0].get_array()  # (3, 3), masked where a row has no pixel
    assert values[0].tolist() == pytest.approx([0.8, 0.2, 0.0]) and values[2].tolist() == pytest.approx(
        [0.25] * 2 + [0.5]
    )
    assert np.ma.getmaskarray(values)[1].all()  # no pixels of class 1: blank row
    assert [label.get_text() for label in heat_map.get_xticklabels()] == NAMES
    assert (heat_map.get_xlabel(), heat_map.get_ylabel()) == ("predicted", "ground truth")
    assert len(heat_map.texts) == 6  # annotated cells (blank ones have no text)


def test_show_samples_grid(tmp_path):
    images = torch.randint(256, (2, 3, 2, 3), dtype=torch.uint8)
    masks = torch.stack([MASK, MASK.flip(0)])
    figure = viz.show_samples(images, masks, masks, PALETTE)
    assert isinstance(figure, Figure) and len(figure.axes) == 6
    assert [axes.get_title() for axes in figure.axes[:3]] == ["image", "ground truth", "prediction"]
    assert figure.axes[0].images[0].get_array().tolist() == images[0].permute(1, 2, 0).tolist()
    assert len(viz.show_samples(images.float() / 255, masks, None, PALETTE).axes) == 4


def test_figures_save_as_png(tmp_path):
    figures = {
        "curves": viz.plot_training_curves(LOG),
        "iou": viz.plot_per_class_iou(torch.tensor([0.1, 0.2, 0.3]), NAMES),
        "confusion": viz.plot_confusion_matrix(torch.eye(3, dtype=torch.int64) * 5, NAMES, normalize=False),
    }
    for name, figure in figures.items():
        figure.savefig(tmp_path / f"{name}.png", dpi=50)
        with Image.open(tmp_path / f"{name}.png") as png:
            assert png.format == "PNG" and min(png.size) > 50


def test_the_class_legend_names_each_class_in_its_colour():
    figure = Figure(layout="constrained")
    viz.add_class_legend(figure, ["background", "disc"], [(0, 0, 0), (128, 0, 0), (0, 128, 0)])
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["background", "disc"]
    colors = [tuple(round(255 * value) for value in patch.get_facecolor()[:3]) for patch in legend.get_patches()]
    assert colors == [(0, 0, 0), (128, 0, 0)]
