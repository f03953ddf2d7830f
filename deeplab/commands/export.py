"""What ``python -m deeplab export`` does: a checkpoint as an ONNX, TorchScript or ExportedProgram file, checked
against the model it came from, with a JSON file beside it that says what goes in and what comes out.

The file computes :class:`deeplab.models.export.DeploymentModel` (float32 RGB 0-255 images ``(N, 3, H, W)`` ->
logits ``(N, num_classes, H, W)``, normalisation inside). Before anything is kept, the exported file is run on two
image sizes, the example size at batch 1 and an odd size near 3/4 of it at batch 2, and compared with the eager
model (the checkpoint's network as trained, in eval mode): a file whose logits differ by more than
``TOLERANCE`` (relative to the largest logit) is removed and the export refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

from deeplab.data.transforms import MEAN, STD
from deeplab.engine.runlog import atomic_write_json
from deeplab.engine.train import set_gpu_numerics
from deeplab.models.export import (
    DYNAMIC_AXES,
    FILE_SUFFIXES,
    FORMATS,
    INPUT_NAME,
    OUTPUT_NAME,
    SUFFIXES,
    TORCHSCRIPT_DEPRECATED,
    ExportError,
    Runner,
    deployment_model,
    export_model,
    load_exported,
)
from deeplab.models.zoo import DEFAULT_ROOT
from deeplab.paths import output_folder
from deeplab.segmenter import Trained, load_trained
from deeplab.weights.released import resolve_checkpoint

TOLERANCE = 1e-4  # largest |exported - eager| logit difference, as a fraction of the largest |eager| logit (>= 1)


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison of the exported file with the eager model on ``batch`` random images of ``size = (H, W)``."""

    size: tuple[int, int]
    batch: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float  # fraction of pixels whose predicted class is the same

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= TOLERANCE * max(1.0, self.max_abs_logit)

    def summary(self) -> str:
        height, width = self.size
        return (
            f"{self.batch} x {height}x{width}: max |logit difference| {self.max_abs_diff:.2e} "
            f"(largest logit {self.max_abs_logit:.1f}), argmax agrees on {100 * self.argmax_agreement:.3f}% of pixels"
        )


def export_command(
    checkpoint: str | Path,
    fmt: str,
    out: Path | None = None,
    *,
    config_name: str | None = None,
    released_root: Path = DEFAULT_ROOT,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
) -> Path:
    """Export the checkpoint (a file or ``"released"``) as ``fmt``, one of ``FORMATS``, to ``out`` (default: beside
    the checkpoint, ``<stem>.onnx`` / ``<stem>.torchscript.pt`` / ``<stem>.pt2``), traced at ``size = (H, W)``
    (default: the config's crop size) on ``device``; verify it (see the module's docstring), write ``<file>.json``
    and return the file's path."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    source = resolve_checkpoint(checkpoint, config_name, released_root)
    target = export_path(source, fmt, out)
    trained = load_trained(source, config_name, [])
    size = size or trained.config.data.crop_size
    check_size(size, trained.config.model.output_stride)
    eager = trained.model.to(device)
    if _device(eager).type == "cuda":
        set_gpu_numerics(trained.config.train)  # fp32 with TF32 off, so that the comparison is exact enough
    start = time.perf_counter()
    export_model(deployment_model(eager, mean=MEAN, std=STD), target, fmt, example_size=size)
    print(f"exported {target} ({target.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    with warnings.catch_warnings():  # TorchScript's deprecation was shown by the export already
        warnings.filterwarnings("ignore", re.escape(TORCHSCRIPT_DEPRECATED), FutureWarning)
        run = load_exported(target)
    checks = verify(run, eager, (size, three_quarters(size)))
    for check in checks:
        print(f"  {'ok' if check.passed else 'FAILED'}  {check.summary()}")
    if not all(check.passed for check in checks):
        target.unlink()
        raise ExportError(
            f"the {fmt} file computes other logits than the checkpoint's model (tolerance {TOLERANCE:g} of the "
            "largest logit, see above), so it was removed: try another --format, or another PyTorch version"
        )
    metadata = sidecar(fmt, target, source, trained, checks)
    atomic_write_json(sidecar_path(target), metadata)
    print(f"wrote {sidecar_path(target)} (classes, input and output, verification)")
    return target


def export_path(checkpoint: Path, fmt: str, out: Path | None) -> Path:
    """Where the file of ``fmt`` goes: ``out`` (its folder made), or ``<checkpoint stem><suffix>`` beside it."""
    if out is None:
        return checkpoint.with_name(checkpoint.stem + SUFFIXES[fmt])
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder: name the file to write, e.g. {out / ('model' + SUFFIXES[fmt])}")
    if out.suffix != FILE_SUFFIXES[fmt]:
        raise ExportError(f"--out {out} does not end in {FILE_SUFFIXES[fmt]}, the suffix of {fmt} files")
    output_folder(out.parent, "the folder of --out")
    return out


def check_size(size: tuple[int, int], output_stride: int) -> None:
    """Refuse an example size whose sides are under twice the output stride (its 3/4 must still exceed it)."""
    if len(size) != 2 or min(size) < 2 * output_stride:
        raise ExportError(
            f"--size {','.join(map(str, size))} is too small for output stride {output_stride}: "
            f"pass a height and width of at least {2 * output_stride}"
        )


def three_quarters(size: tuple[int, int]) -> tuple[int, int]:
    """The second verification size: 3/4 of each side, made odd (``(64, 64)`` -> ``(49, 49)``)."""
    return (3 * size[0] // 4) | 1, (3 * size[1] // 4) | 1


def _device(model: nn.Module) -> torch.device:
    """Where the weights of ``model`` are."""
    return next(model.parameters()).device


def verify(run: Runner, eager: nn.Module, sizes: tuple[tuple[int, int], ...], seed: int = 0) -> list[Check]:
    """Compare ``run`` (an exported file, images -> logits) with ``eager`` (normalised images -> ``{"out": ...}``)
    on random images, batch 1 at the first size and batch 2 at the others."""
    generator = torch.Generator().manual_seed(seed)
    checks = []
    for index, size in enumerate(sizes):
        batch = 1 if index == 0 else 2
        images = torch.rand(batch, 3, *size, generator=generator) * 255  # (N, 3, H, W) float32 RGB 0-255
        with torch.inference_mode():
            expected = eager(F.normalize(images.to(_device(eager)), MEAN, STD))["out"].float().cpu()
        actual = run(images)
        checks.append(
            Check(
                size=size,
                batch=batch,
                max_abs_diff=float((actual - expected).abs().max()),
                max_abs_logit=float(expected.abs().max()),
                argmax_agreement=float((actual.argmax(1) == expected.argmax(1)).float().mean()),
            )
        )
    return checks


def sidecar_path(path: Path) -> Path:
    """``<file>.json`` beside the exported file."""
    return path.with_name(path.name + ".json")


def sidecar(fmt: str, path: Path, source: Path, trained: Trained, checks: list[Check]) -> dict[str, Any]:
    """What a deployment needs to know about the exported file ``path``: classes, input and output, provenance."""
    config = trained.config
    num_classes = config.model.num_classes
    return {
        "format": fmt,
        "file": path.name,
        "config": config.name,
        "checkpoint": str(source.resolve()),
        "torch": torch.__version__,
        "num_classes": num_classes,
        "classes": list(trained.classes.classes),
        "palette": [list(color) for color in trained.classes.palette],
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, "height", "width"],
            "dtype": "float32",
            "channels": "RGB",
            "range": [0, 255],
            "normalization": "built in: (images - mean) / std per channel",
            "mean": list(MEAN),
            "std": list(STD),
            "min_size": config.model.output_stride + 1,
            "test_scale": list(config.data.scale),  # (long, short): resize keeping the aspect ratio to fit it
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", num_classes, "height", "width"],
            "dtype": "float32",
            "meaning": "class logits at the input's resolution; argmax over axis 1 gives the class index",
        },
        "dynamic_axes": {name: axis for axis, name in DYNAMIC_AXES.items()},
        "verification": {"tolerance": TOLERANCE, "checks": [dataclasses.asdict(check) for check in checks]},
    }


def run(args: argparse.Namespace) -> None:
    """The command line's ``export``."""
    export_command(
        args.checkpoint,
        args.format,
        args.out,
        config_name=args.config,
        released_root=args.released_root,
        size=args.size,
    )
