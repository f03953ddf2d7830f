"""TensorBoard logging of a training run: losses, learning rate, validation metrics per class, prediction pictures.

:class:`TensorBoardLog` turns the records of the run log (``metrics.jsonl``) into scalars at their iteration, and at
each evaluation draws the first few validation images side by side with their ground truth and the network's
prediction. ``tensorboard --logdir runs`` (or, in a notebook, ``%load_ext tensorboard`` then
``%tensorboard --logdir ../runs``) shows them while the run trains.

Tags: ``train/{loss, loss_cls, loss_aux, lr, seconds_per_iter, max_memory_mb}``, ``val/mIoU``,
``val/pixel_accuracy``, ``val/IoU/<class name>`` and ``val/overlays/<sample id>``. Only the main process writes
(``enabled``), and only then is the ``tensorboard`` package imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F
from torchvision.utils import make_grid

from deeplab.data.transforms import MEAN, STD
from deeplab.engine.evaluate import predict_probabilities
from deeplab.extras import require
from deeplab.viz import IGNORE_INDEX, Palette, colorize_mask

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

TRAIN_SCALARS = ("loss", "loss_cls", "loss_aux", "lr", "seconds_per_iter", "max_memory_mb")
PADDING = 2  # white pixels around and between the three panels of a picture
EVENT_FILES = "events.out.tfevents.*"


class TensorBoardLog:
    """Scalars and validation pictures of one run, written to TensorBoard event files in ``log_dir``.

    ``class_names`` name the ``val/IoU/...`` scalars and ``palette`` colours the masks (one ``(R, G, B)`` per class,
    as ``deeplab.data.dataset_info(name)`` gives them). ``start`` is the iteration the run starts from: 0 deletes the
    event files an earlier run left in ``log_dir``; after a resume from iteration ``start``, what an interrupted run
    wrote after it is hidden (TensorBoard's ``purge_step``), as ``metrics.jsonl`` drops those records. ``count``
    validation images are drawn at each evaluation. With ``enabled=False`` (every process but the main one) nothing
    is imported or written. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        log_dir: str | Path,
        class_names: Sequence[str],
        palette: Palette,
        *,
        enabled: bool = True,
        start: int = 0,
        count: int = 4,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.class_names, self.palette = list(class_names), palette
        self.count, self.ignore_index = count, ignore_index
        self.writer = summary_writer(Path(log_dir), start) if enabled else None

    def write(self, record: Mapping[str, Any]) -> None:
        """The scalars of one log record, at ``record["iter"]``: a training record's losses, lr, speed (and GPU
        memory) under ``train/``, an evaluation record's ``miou``, ``pixel_accuracy`` and per-class ``iou`` under
        ``val/``. Keys a record lacks, ``None`` and NaN (the IoU of a class absent from labels and predictions)
        are skipped."""
        if self.writer is None:
            return
        scalars = {f"train/{key}": record.get(key) for key in TRAIN_SCALARS}
        scalars |= {"val/mIoU": record.get("miou"), "val/pixel_accuracy": record.get("pixel_accuracy")}
        if "iou" in record:
            scalars |= {f"val/IoU/{name}": iou for name, iou in zip(self.class_names, record["iou"], strict=True)}
        for tag, value in scalars.items():
            if value is not None and not math.isnan(value):
                self.writer.add_scalar(tag, value, record["iter"])

    def add_predictions(self, network: nn.Module, dataset: Dataset, step: int) -> None:
        """Pictures of image | ground truth | prediction for the first ``count`` samples of ``dataset``, under
        ``val/overlays/<sample id>`` at ``step``.

        ``dataset[i]`` is ``{"image": (3, h, w) normalized, "mask": (H, W), "id": str}`` as the eval transforms give
        it. ``network`` predicts in eval mode (under ``torch.inference_mode``) and is then put back in the mode it
        was in.
        """
        if self.writer is None:
            return
        was_training = network.training
        network.eval()
        try:
            for index in range(min(self.count, len(dataset))):
                sample = dataset[index]
                picture = self.comparison(sample["image"], sample["mask"], predict(network, sample["image"]))
                self.writer.add_image(f"val/overlays/{sample['id']}", picture, step)
        finally:
            network.train(was_training)

    def comparison(self, image: torch.Tensor, mask: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """The normalized ``image (3, h, w)``, its ground truth ``mask (H, W)`` (resized to ``(h, w)``, nearest;
        unlabelled pixels cream) and ``prediction (h, w)`` coloured, side by side on white: a
        ``(3, h + 4, 3 w + 8)`` uint8 picture."""
        size = list(image.shape[-2:])
        truth = F.resize(tv_tensors.Mask(mask[None]), size, interpolation=F.InterpolationMode.NEAREST)[0]
        panels = [
            displayable(image),
            colorize_mask(truth, self.palette, ignore_index=self.ignore_index),
            colorize_mask(prediction, self.palette),
        ]
        return make_grid(panels, nrow=len(panels), padding=PADDING, pad_value=255)

    def flush(self) -> None:
        """Write what is pending to disk (TensorBoard otherwise flushes every two minutes)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def summary_writer(log_dir: Path, start: int) -> SummaryWriter:
    """A ``SummaryWriter`` on ``log_dir`` for a run starting at iteration ``start`` (see :class:`TensorBoardLog`);
    :class:`~deeplab.extras.MissingExtraError` when the ``tensorboard`` package is not installed."""
    require("tensorboard", extra="course", purpose="TensorBoard logging (train.tensorboard=true)")
    from torch.utils.tensorboard import SummaryWriter

    if start == 0:
        for stale in log_dir.glob(EVENT_FILES):
            stale.unlink()
    return SummaryWriter(str(log_dir), purge_step=start + 1 if start else None)  # keeps what step `start` wrote


def predict(network: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The class ``(h, w)`` int64 (on the CPU) that ``network`` gives each pixel of a normalized ``image (3, h, w)``."""
    device = next(network.parameters()).device
    probabilities = predict_probabilities(network, image[None].to(device), tuple(image.shape[-2:]))  # (1, C, h, w)
    return probabilities.argmax(dim=1)[0].cpu()


def displayable(image: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """A normalized ``image (3, h, w)`` back as the ``(3, h, w)`` uint8 picture, the eval transforms' normalization
    (``mean``, ``std`` on the 0-255 scale) undone."""
    image = torch.Tensor.as_subclass(image, torch.Tensor).cpu()
    pixels = image * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return pixels.round().clamp(0, 255).to(torch.uint8)
