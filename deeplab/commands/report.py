"""What ``train`` and ``evaluate`` report: the per-class IoU table and the plots of a run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deeplab.engine.runlog import LOG, read_log


def iou_table(metrics: dict[str, Any], class_names: list[str]) -> str:
    """Per-class IoU and the summary numbers as a markdown table."""
    lines = ["| class | IoU (%) |", "|---|---:|"]
    for name, iou in zip(class_names, metrics["iou"], strict=True):
        lines.append(f"| {name} | {'—' if iou is None or math.isnan(iou) else f'{100 * iou:.2f}'} |")
    lines.append(f"| **mIoU** | **{100 * metrics['miou']:.2f}** |")
    lines.append(f"| pixel accuracy | {100 * metrics['pixel_accuracy']:.2f} |")
    return "\n".join(lines)


def save_plots(run_dir: Path, metrics: dict[str, Any], class_names: list[str]) -> list[Path]:
    """Training curves (if a log exists), per-class IoU bars and the confusion matrix as PNGs in ``run_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deeplab import viz

    figures = {
        "per_class_iou.png": viz.plot_per_class_iou(metrics["iou"], class_names),
        "confusion_matrix.png": viz.plot_confusion_matrix(metrics["confusion_matrix"], class_names),
    }
    if (run_dir / LOG).is_file():
        figures["training_curves.png"] = viz.plot_training_curves(read_log(run_dir / LOG))
    paths = []
    for name, figure in figures.items():
        figure.savefig(run_dir / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(run_dir / name)
    return paths
