"""Pictures of masks, predictions and training runs: colourised masks, overlays, curves, per-class IoU, confusion.

Masks are ``(H, W)`` integer tensors of class indices, with ``ignore_index`` (255) for unlabelled pixels; a
palette gives one ``(R, G, B)`` colour per class (``deeplab.data.dataset_info(name).palette``) or is a ``(K, 3)``
uint8 tensor. The plotting functions build a :class:`matplotlib.figure.Figure` without pyplot and return it: it
shows in a notebook as the cell's value, ``figure.savefig("x.png")`` writes it, and nothing ever calls
``plt.show()``, so the functions work the same under the Agg backend on a server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torchvision.transforms.v2.functional import to_dtype
from torchvision.utils import draw_segmentation_masks

from deeplab.logs import LOSS_FIELDS, LogRecord, common_range

IGNORE_INDEX = 255
Color = tuple[int, int, int]
IGNORE_COLOR: Color = (224, 224, 192)  # unlabelled pixels in cream, as VOC's palette draws 255: no class's colour
Palette = Sequence[Color] | torch.Tensor  # K colours, or a (K, 3) uint8 tensor


class MaskError(ValueError):
    """A mask or image that cannot be drawn: wrong shape, or class values the palette has no colour for."""


def colorize_mask(
    mask: torch.Tensor, palette: Palette, *, ignore_index: int = IGNORE_INDEX, ignore_color: Color = IGNORE_COLOR
) -> torch.Tensor:
    """The ``(3, H, W)`` uint8 RGB picture of a ``(H, W)`` class mask: class ``k`` in ``palette[k]``, ignored
    pixels in ``ignore_color`` (cream by default, so that they never look like the black background)."""
    mask = _checked_mask(mask, len(palette), ignore_index)
    table = torch.cat([_palette_tensor(palette), torch.tensor([ignore_color], dtype=torch.uint8)])  # (K + 1, 3)
    index = torch.where(mask == ignore_index, len(palette), mask)
    return table[index].permute(2, 0, 1).contiguous()  # (3, H, W)


def overlay(
    image: torch.Tensor, mask: torch.Tensor, palette: Palette, *, alpha: float = 0.5, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``image (3, H, W)`` uint8 with each class of ``mask (H, W)`` painted over it in its colour at opacity
    ``alpha``; ignored pixels stay as they are. Returns ``(3, H, W)`` uint8 (``alpha=0`` gives the image back)."""
    mask = _checked_mask(mask, len(palette), ignore_index)
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[-2:] != mask.shape:
        raise MaskError(f"image {tuple(image.shape)} must be (3, H, W) with the mask's (H, W) = {tuple(mask.shape)}")
    classes = mask[mask != ignore_index].unique()  # (M,)
    if classes.numel() == 0:
        return image.clone()
    colors = _palette_tensor(palette)[classes].tolist()
    masks = mask[None] == classes[:, None, None]  # (M, H, W) bool
    return draw_segmentation_masks(image.cpu(), masks, alpha=alpha, colors=[tuple(color) for color in colors])


def add_class_legend(
    figure: Figure, classes: Sequence[str], palette: Palette, *, loc: str = "outside upper center"
) -> None:
    """A one-row legend of each class's colour on ``figure`` (made with ``layout="constrained"`` for the
    ``"outside ..."`` places), for the overlays and masks drawn in those colours."""
    colors = _palette_tensor(palette)[: len(classes)].tolist()
    patches = [
        Patch(color=[value / 255 for value in color], label=name) for name, color in zip(classes, colors, strict=True)
    ]
    figure.legend(handles=patches, loc=loc, ncols=len(patches), frameon=False)


def error_overlay(
    image: torch.Tensor,
    prediction: torch.Tensor,
    mask: torch.Tensor,
    *,
    color: Color = (255, 0, 0),
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """``image (3, H, W)`` uint8 in grey with the wrong pixels (labelled in ``mask (H, W)`` and predicted as another
    class in ``prediction (H, W)``) in ``color``: the errors stand out whatever the objects' own colours. Unlabelled
    pixels are never wrong. Returns ``(3, H, W)`` uint8."""
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[-2:] != mask.shape or prediction.shape != mask.shape:
        raise MaskError(
            f"image {tuple(image.shape)} must be (3, H, W), prediction {tuple(prediction.shape)} and mask "
            f"{tuple(mask.shape)} (H, W), all of the same H and W"
        )
    grey = to_dtype(image.cpu(), torch.float32, scale=True).mean(0, keepdim=True).expand(3, -1, -1)
    wrong = (prediction.cpu() != mask.cpu()) & (mask.cpu() != ignore_index)  # (H, W)
    picture = torch.where(wrong, torch.tensor(color, dtype=torch.float32)[:, None, None] / 255, grey)
    return to_dtype(picture, torch.uint8, scale=True)


def _palette_tensor(palette: Palette) -> torch.Tensor:
    colors = torch.as_tensor(palette, dtype=torch.uint8)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise MaskError(f"palette must hold (R, G, B) colours, got shape {tuple(colors.shape)}")
    return colors  # (K, 3)


def _checked_mask(mask: torch.Tensor, num_colors: int, ignore_index: int) -> torch.Tensor:
    if mask.ndim != 2 or mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise MaskError(f"mask must be (H, W) class indices, got {mask.dtype} of shape {tuple(mask.shape)}")
    mask = torch.Tensor.as_subclass(mask, torch.Tensor).long().cpu()
    unknown = mask[((mask < 0) | (mask >= num_colors)) & (mask != ignore_index)].unique()
    if unknown.numel():
        raise MaskError(
            f"mask holds {unknown[:5].tolist()} but the palette has {num_colors} colours (0..{num_colors - 1}) "
            f"and the ignore index is {ignore_index}: pass the dataset's palette"
        )
    return mask


def plot_training_curves(log: Sequence[Mapping[str, Any]] | str | Path) -> Figure:
    """Training loss, learning rate and validation mIoU against the iteration, side by side.

    ``log`` is a list of records or the path of a JSON-lines file of them (a run's ``metrics.jsonl``): training
    records look like ``{"iter": 100, "loss": 0.8, "loss_cls": 0.6, "loss_aux": 0.2, "lr": 0.009}``, each loss the
    mean over the iterations since the previous record (older logs have only ``loss``), evaluation records like
    ``{"iter": 1000, "miou": 0.61}`` (mIoU as a fraction, drawn in %, each point labelled with its value). The loss
    panel draws the total and, when the log has them, its two parts: the decoder's cross-entropy and the auxiliary
    head's, weighted; with more than 20 records each is drawn faintly as logged and boldly as the mean of a window
    of about a tenth of the records, so that the trend shows through the noise of small batches.
    """
    records = _read_records(log) if isinstance(log, str | Path) else list(log)
    figure = Figure(figsize=(13, 3.5), layout="constrained")
    loss, lr, miou = figure.subplots(1, 3)
    window = len([record for record in records if "loss" in record]) // 10 if len(records) > 20 else 1
    _plot_keys(
        loss,
        records,
        {"loss": "total", "loss_cls": "loss_cls (decoder)", "loss_aux": "loss_aux (0.4 x aux)"},
        window=window,
    )
    _plot_keys(lr, records, {"lr": "learning rate"})
    _plot_keys(miou, records, {"miou": "mIoU"}, scale=100, marker="o")
    for x, y in zip(*(miou.lines[0].get_data() if miou.lines else ((), ())), strict=True):
        miou.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    miou.margins(y=0.15)  # room for the labels
    for axes, title in zip(figure.axes, ("training loss", "learning rate", "validation mIoU (%)"), strict=True):
        axes.set(title=title, xlabel="iteration")
        axes.grid(alpha=0.3)
    return figure


def _plot_keys(
    axes: Axes,
    records: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    *,
    scale: float = 1,
    marker: str | None = None,
    window: int = 1,
) -> None:
    """One line per key of ``labels`` that some record holds, against ``"iter"``; a note if none does. With
    ``window > 1`` each key is a faint line of its values and a bold one of their trailing mean over ``window``."""
    for key, label in labels.items():
        points = [(record["iter"], scale * record[key]) for record in records if record.get(key) is not None]
        if not points:
            continue
        iterations, values = zip(*points, strict=True)
        if window <= 1:
            axes.plot(iterations, values, marker=marker, label=label)
            continue
        (faint,) = axes.plot(iterations, values, alpha=0.3, linewidth=1, label=f"_{label}, as logged")
        means = _trailing_means(values, window)
        axes.plot(iterations, means, color=faint.get_color(), linewidth=2, label=f"{label}, mean of {window}")
    if not axes.lines:
        first = next(iter(labels))
        axes.text(0.5, 0.5, f"no '{first}' records yet", ha="center", va="center", transform=axes.transAxes)
    elif len(axes.get_legend_handles_labels()[1]) > 1:
        axes.legend()


def _trailing_means(values: Sequence[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    return [math.fsum(values[max(0, i + 1 - window) : i + 1]) / min(i + 1, window) for i in range(len(values))]


def plot_log_comparison(
    ours: Sequence[LogRecord], reference: Sequence[LogRecord], *, labels: tuple[str, str] = ("ours", "reference")
) -> Figure:
    """Two training runs' window-mean losses (left) and learning rates (right) against the iteration.

    ``ours`` and ``reference`` are rows of :mod:`deeplab.logs` (``read_our_log``, ``read_reference_log``).
    Each run has its colour; the total is solid, ``loss_cls`` dashed and ``loss_aux`` dotted (where logged). The
    iteration axis ends where the shorter run does, so a short run is not squeezed against a long one.
    """
    figure = Figure(figsize=(12, 4), layout="constrained")
    loss, lr = figure.subplots(1, 2)
    for color, rows, label in zip(("C0", "C1"), (ours, reference), labels, strict=True):
        for field, style in zip(LOSS_FIELDS, ("-", "--", ":"), strict=True):
            points = [(row.iteration, getattr(row, field)) for row in rows if getattr(row, field) is not None]
            if points:
                loss.plot(*zip(*points, strict=True), style, color=color, label=f"{label} {field}")
        lr.plot([row.iteration for row in rows], [row.lr for row in rows], color=color, label=label)
    _, last = common_range(ours, reference)
    for axes, title in ((loss, "training loss (window means)"), (lr, "learning rate")):
        axes.set(title=title, xlabel="iteration", xlim=(0, last))
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def _read_records(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_per_class_iou(
    iou: Sequence[float | None] | torch.Tensor, class_names: Sequence[str], *, sort: bool = False
) -> Figure:
    """One horizontal bar per class with its IoU in %, and the mIoU as a dashed line.

    ``iou`` holds ``C`` fractions, NaN (or ``None``, as in ``metrics.json``) for a class absent from both labels
    and predictions (an empty bar
    labelled "n/a" and left out of the mean). ``sort=True`` orders the bars from best to worst.
    """
    values = torch.tensor([math.nan if v is None else float(v) for v in iou], dtype=torch.float64) * 100  # (C,)
    if len(values) != len(class_names):
        raise MaskError(f"{len(values)} IoU values but {len(class_names)} class names")
    order = (
        torch.sort(values.nan_to_num(-1.0), descending=True, stable=True).indices if sort else torch.arange(len(values))
    )
    shown, names = values[order], [class_names[i] for i in order]
    figure = Figure(figsize=(7, 1 + 0.28 * len(names)), layout="constrained")
    axes = figure.subplots()
    bars = axes.barh(range(len(names)), shown.nan_to_num(0.0).tolist(), color="C0")
    axes.bar_label(bars, labels=["n/a" if math.isnan(v) else f"{v:.1f}" for v in shown.tolist()], padding=2)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()  # first class on top
    if not values.isnan().all():
        mean = float(values.nanmean())
        axes.axvline(mean, color="black", linestyle="--", label=f"mIoU {mean:.1f}")
        axes.legend(loc="lower right")
    axes.set(xlim=(0, 105), xlabel="IoU (%)", title="IoU per class")
    return figure


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | torch.Tensor, class_names: Sequence[str], *, normalize: bool = True
) -> Figure:
    """Heat map of a ``(C, C)`` confusion matrix (rows: ground truth, columns: prediction).

    ``normalize=True`` divides each row by its total, so row ``t`` reads "of the pixels of class ``t``, which share
    went to each class" and the diagonal is the per-class accuracy (empty rows stay blank). Cells are annotated
    when there are at most 12 classes, and tick labels shown up to 40 classes.
    """
    counts = torch.as_tensor(matrix, dtype=torch.float64)
    if counts.shape != (len(class_names), len(class_names)):
        raise MaskError(f"confusion matrix {tuple(counts.shape)} does not match {len(class_names)} class names")
    values = counts / counts.sum(dim=1, keepdim=True) if normalize else counts
    size = min(20.0, 3.0 + 0.35 * len(class_names))
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    if len(class_names) <= 12:
        darkest = float(values.nan_to_num(0.0).max()) or 1.0
        for (row, column), value in np.ndenumerate(values.numpy()):
            if not np.isnan(value):  # white text on the darker half of the colour scale
                color = "white" if value > darkest / 2 else "black"
                text = f"{value:.2f}" if normalize else f"{value:.0f}"
                axes.text(column, row, text, ha="center", va="center", color=color, fontsize=8)
    shown = list(class_names) if len(class_names) <= 40 else []
    axes.set_xticks(range(len(shown)), shown, rotation=90)
    axes.set_yticks(range(len(shown)), shown)
    figure.colorbar(image, ax=axes, label="share of the row" if normalize else "pixels")
    axes.set(
        xlabel="predicted",
        ylabel="ground truth",
        title="confusion matrix, rows sum to 1" if normalize else "confusion matrix",
    )
    return figure


def show_samples(
    images: torch.Tensor | Sequence[torch.Tensor],
    masks: torch.Tensor | Sequence[torch.Tensor],
    preds: torch.Tensor | Sequence[torch.Tensor] | None,
    palette: Palette,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> Figure:
    """A grid with one row per sample: the image, its ground truth and (if given) the prediction, colourised.

    ``images`` are ``(N, 3, H, W)`` (or a list of ``(3, H, W)``), uint8 or float in ``[0, 1]``; ``masks`` and
    ``preds`` are ``(N, H, W)`` class indices (``preds=None`` leaves the prediction column out).
    """
    columns = ["image", "ground truth"] + (["prediction"] if preds is not None else [])
    rows = list(zip(images, masks, preds, strict=True) if preds is not None else zip(images, masks, strict=True))
    figure = Figure(figsize=(3 * len(columns), 3 * len(rows)), layout="constrained")
    grid = figure.subplots(len(rows), len(columns), squeeze=False)
    for row, (image, *label_maps) in zip(grid, rows, strict=True):
        pictures = [to_dtype(image.cpu(), torch.uint8, scale=True)]
        pictures += [colorize_mask(label, palette, ignore_index=ignore_index) for label in label_maps]
        for axes, picture in zip(row, pictures, strict=True):
            axes.imshow(picture.permute(1, 2, 0).numpy())
            axes.set_axis_off()
    for axes, title in zip(grid[0], columns, strict=True):
        axes.set_title(title)
    return figure
