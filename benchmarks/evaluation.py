"""End-to-end evaluation speed: ``python -m deeplab evaluate`` as the user runs it, against the reference's forward.

A VOC-layout val set of ``--images`` VOC-sized photos (500 x 375, 375 x 500, 500 x 333, ... JPEGs of smooth,
textured content at quality 90, with palette PNG masks of classes 0-20 and 255 borders) is written to a temporary
folder, then for R-50/101 at output stride 8 and 16, in fp32 and bf16:

* **ours**: ``deeplab.__main__.main(["evaluate", "--checkpoint", F, "--data-root", ROOT, "--device", D, "--amp", A])``
  timed as a whole in a fresh process, on a checkpoint of random weights in our format (config inside): checkpoint
  loading, model set-up, reading and resizing the images with the command's own defaults, inference, the confusion
  matrix and the printed table. Only the imports (libraries and deeplab's modules) come before the clock starts.
* **reference**: sssegmentation 1.7's DeepLabV3+ (``tests/reference_ssseg.py``) at its best, in a fresh process: the
  same images decoded and resized to the test scale beforehand (``deeplab.data.transforms.eval_transforms``), one
  untimed warm-up, then per image its ``TEST`` forward under ``torch.no_grad`` (and ``torch.autocast`` for bf16), one
  bilinear upsampling to the label size and the ``argmax``; no metric is accumulated. On a GPU it runs with the
  reference's numerics (TF32 off, cuDNN autotuning on), as our command does.

Both use the same number of torch threads. GFLOP/s counts one forward of our model per image at the test scale
(``FlopCounterMode``, a multiply-add counting 2); the projection is the time the 1,449 images of VOC 2012 val take.

    python -m benchmarks evaluation            # 20 images, 4 configs, fp32 + bf16; writes results/evaluation.md
    python -m benchmarks evaluation --quick    # voc-r50-d16, 4 images, fp32
    python -m benchmarks evaluation --quick --precisions fp32,bf16 --images 8
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import deeplab
from benchmarks.models import DTYPES, PEER_MODULES, available, ceiling_line, machine_line, mm_gflops
from deeplab.config import config_names
from deeplab.data import build_dataset
from deeplab.data.classes import IGNORE_INDEX, VOC_PALETTE
from deeplab.data.transforms import eval_transforms, rescaled_size
from deeplab.engine.train import set_gpu_numerics
from deeplab.models.weights import save_checkpoint

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation.md"
CONFIGS = ("voc-r50-d8", "voc-r50-d16", "voc-r101-d8", "voc-r101-d16")
PRECISIONS = ("fp32", "bf16")
AMP = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}  # precision -> the evaluate command's --amp
IMPLEMENTATIONS = ("ours", "reference")
VOC_VAL_IMAGES = 1449
VOC_SIZES = ((375, 500), (500, 375), (333, 500), (375, 500), (500, 333), (400, 500))  # (H, W), cycled
NUM_CLASSES = 21
JPEG_QUALITY = 90
# what the evaluate command imports
COMMAND_MODULES = ("deeplab", "deeplab.__main__", "deeplab.commands.evaluate", "deeplab.errors")
BORDER = 5  # pixels: the width of the 255 band along object outlines, as in VOC's masks
Size = tuple[int, int]


@dataclass(frozen=True)
class Settings:
    """What a run measures: which configs, at which precisions, on how many images."""

    configs: tuple[str, ...] = CONFIGS
    precisions: tuple[str, ...] = PRECISIONS
    images: int = 20


QUICK = Settings(configs=("voc-r50-d16",), precisions=("fp32",), images=4)


@dataclass(frozen=True)
class Case:
    """One measurement: an implementation evaluating the val set at one config and precision."""

    impl: str  # "ours" or "reference"
    config: str  # a config name, e.g. "voc-r50-d16"
    precision: str  # a key of AMP
    device: str
    threads: int

    @property
    def depth(self) -> int:
        return deeplab.get_config(self.config).model.depth

    @property
    def output_stride(self) -> int:
        return deeplab.get_config(self.config).model.output_stride


# --- the val set ---


def image_sizes(count: int) -> list[Size]:
    """The ``(H, W)`` of each of ``count`` images: ``VOC_SIZES`` in turn."""
    return [VOC_SIZES[i % len(VOC_SIZES)] for i in range(count)]


def render_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like image ``(H, W, 3)`` uint8 and its class mask ``(H, W)`` uint8 (0-20, 255 along outlines).

    The image is random noise upsampled from 64, 16, 4 and 2 pixel cells (smooth shading, then texture), mostly in
    brightness as in photos, plus pixel noise; 1-3 ellipses of random classes lie on the background (class 0),
    each with its own tint in the image.
    """
    generator = torch.Generator().manual_seed(seed)
    image = (120 + 30 * torch.randn(1, 3, 1, 1, generator=generator)).expand(1, 3, height, width).clone()
    for cell, amplitude in ((64, 40.0), (16, 18.0), (4, 10.0), (2, 6.0)):
        coarse = torch.randn(1, 4, height // cell + 2, width // cell + 2, generator=generator)
        field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)  # (1, 4, H, W)
        image += amplitude * (field[:, :1] + 0.3 * field[:, 1:])  # brightness, and a little colour
    mask = torch.zeros(height, width, dtype=torch.int64)
    rows, cols = torch.arange(height).view(-1, 1), torch.arange(width).view(1, -1)
    for _ in range(int(torch.randint(1, 4, (), generator=generator))):
        cy, cx = (float(torch.rand((), generator=generator)) * side for side in (height, width))
        ry, rx = ((0.15 + 0.25 * float(torch.rand((), generator=generator))) * side for side in (height, width))
        inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1  # (H, W)
        mask[inside] = int(torch.randint(1, NUM_CLASSES, (), generator=generator))
        image[0] += inside * 40 * torch.randn(3, 1, 1, generator=generator)
    image += 3 * torch.randn(1, 1, height, width, generator=generator)  # sensor noise
    mask[outlines(mask, BORDER)] = IGNORE_INDEX
    pixels = image[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0)
    return pixels.numpy(), mask.to(torch.uint8).numpy()


def outlines(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels ``(H, W)`` bool within ``width // 2`` pixels of a change of class in ``mask`` ``(H, W)``."""
    labels = mask[None, None].float()
    high = F.max_pool2d(labels, width, stride=1, padding=width // 2)
    low = -F.max_pool2d(-labels, width, stride=1, padding=width // 2)
    return (high != low)[0, 0]


def write_val_set(root: Path, count: int, seed: int = 0) -> list[Size]:
    """``count`` images in the VOC layout under ``root`` (``VOCdevkit/VOC2012/{JPEGImages, SegmentationClass,
    ImageSets/Segmentation/val.txt}``); returns their ``(H, W)``. The same seed gives the same files."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    sizes = image_sizes(count)
    ids = [f"2007_{i:06d}" for i in range(count)]
    for i, (sample_id, (height, width)) in enumerate(zip(ids, sizes, strict=True)):
        with one_thread():  # these small operations are several times faster without a thread pool
            image, mask = render_pair(height, width, seed * 1_000_003 + i)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{sample_id}.jpg", quality=JPEG_QUALITY)
        png = Image.fromarray(mask)  # mode "L"; the palette makes it "P" with the values unchanged, as VOC's
        png.putpalette(VOC_PALETTE)
        png.save(voc / "SegmentationClass" / f"{sample_id}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))
    return sizes


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread, then restore the number there was."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def describe_sizes(sizes: Sequence[Size], scale: Size) -> str:
    """``"3 x 500x375 (683x512), ..."``: how many images have each ``width x height``, most common
    first, and the size the eval transforms resize them to for ``scale = (long, short)``."""
    parts = []
    for (height, width), count in collections.Counter(sizes).most_common():
        scaled_height, scaled_width = rescaled_size(height, width, scale)
        parts.append(f"{count} x {width}x{height} ({scaled_width}x{scaled_height})")
    return ", ".join(parts)


# --- the model: checkpoint and FLOPs ---


def write_checkpoint(config_name: str, folder: Path) -> Path:
    """A checkpoint of ``config_name``'s model with random weights, in our format (``{"model", "config"}``)."""
    config = deeplab.get_config(config_name)
    torch.manual_seed(0)
    model = deeplab.build_model(config)
    return save_checkpoint(folder / f"{config_name}.pth", model, config=dataclasses.asdict(config))


@functools.cache
def meta_model(config_name: str) -> nn.Module:
    """``config_name``'s model on the meta device (shapes only, no memory), in eval mode."""
    with torch.device("meta"):
        return deeplab.build_model(deeplab.get_config(config_name)).eval()


def gflop_per_image(config_name: str, sizes: Sequence[Size]) -> float:
    """Forward GFLOPs of our model averaged over images of ``sizes`` ``(H, W)`` at the config's test scale.

    Each distinct size is counted once, on the meta device (nothing is computed).
    """
    scale = deeplab.get_config(config_name).data.scale
    flops = {}
    for size in set(sizes):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            meta_model(config_name)(torch.empty(1, 3, *rescaled_size(*size, scale), device="meta"))
        flops[size] = counter.get_total_flops()
    return sum(flops[size] for size in sizes) / len(sizes) / 1e9


# --- the measurements, each in a fresh process ---


def evaluate_argv(case: Case, checkpoint: Path, root: Path, workers: int | None = None) -> list[str]:
    """The ``python -m deeplab`` arguments that evaluate ``checkpoint`` on the val set in ``root`` for ``case``."""
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(root), "--device", case.device]
    argv += ["--amp", AMP[case.precision]]
    return argv + (["--set", f"data.num_workers={workers}"] if workers is not None else [])


def time_ours(case: Case, checkpoint: Path, root: Path, workers: int | None) -> float:
    """Seconds the evaluate command takes in this process, from its arguments to its printed table.

    Its output (the IoU table, the progress bar) is kept and shown only if the command fails. The DataLoader
    workers start as in a fresh ``python -m deeplab`` (this process, started by a forkserver, would otherwise start
    them through a new forkserver of its own, which imports torch again: seconds per worker).
    """
    import deeplab.__main__
    import deeplab.commands.evaluate  # noqa: F401  (the command's own imports, done before the clock starts as the reference's are)
    import deeplab.errors  # noqa: F401

    multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)  # the platform's default
    torch.set_num_threads(case.threads)
    output = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = deeplab.__main__.main(evaluate_argv(case, checkpoint, root, workers))
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(
            f"python -m deeplab {' '.join(evaluate_argv(case, checkpoint, root, workers))} failed:\n"
            f"{output.getvalue()[-3000:]}"
        )
    return seconds


def time_reference(case: Case, root: Path) -> float:
    """Seconds the reference takes for the val set in ``root``: the sum over images of forward + upsampling +
    argmax, the images decoded and resized to the test scale beforehand, after one untimed warm-up."""
    from ssseg.modules import SSSegInputStructure

    from tests.reference_ssseg import build_reference

    torch.set_num_threads(case.threads)
    config = deeplab.get_config(case.config)
    set_gpu_numerics(config.train)  # as the evaluate command (and the reference toolbox) set them
    dataset = build_dataset("voc", root, "val", transforms=eval_transforms(scale=config.data.scale))
    samples = [dataset[i] for i in range(len(dataset))]
    images = [sample["image"].unsqueeze(0).to(case.device) for sample in samples]  # (1, 3, h, w) each
    label_sizes = [tuple(sample["mask"].shape[-2:]) for sample in samples]  # (H, W) each
    model = build_reference(case.depth, case.output_stride, NUM_CLASSES).to(case.device)
    device_type = torch.device(case.device).type

    def predict(image: torch.Tensor, label_size: Size) -> torch.Tensor:
        """The class map ``(1, H, W)`` of ``image`` ``(1, 3, h, w)``."""
        autocast = torch.autocast(device_type, dtype=DTYPES[case.precision], enabled=case.precision != "fp32")
        with torch.no_grad(), autocast:
            seg_logits = model(SSSegInputStructure(images=image, mode="TEST")).seg_logits  # (1, C, h/4, w/4)
            logits = F.interpolate(seg_logits, size=label_size, mode="bilinear", align_corners=False)
            prediction = logits.argmax(1)
        if device_type == "cuda":
            torch.cuda.synchronize()
        return prediction

    predict(images[0], label_sizes[0])  # warm-up
    seconds = 0.0
    for image, label_size in zip(images, label_sizes, strict=True):
        start = time.perf_counter()
        predict(image, label_size)
        seconds += time.perf_counter() - start
    return seconds


def in_child(function: Callable[..., float], *args: Any) -> float:
    """``function(*args)`` in a fresh process forked from a server that has imported the libraries but never
    computed, so that its threads and memory are its own. (Not a ``multiprocessing.Pool``: its daemonic workers
    could not start the evaluate command's DataLoader workers.)"""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torchvision", *COMMAND_MODULES, *PEER_MODULES.values()])
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


# --- the plan and the table ---


def plan(settings: Settings, device: str, threads: int, *, reference: bool = True) -> list[Case]:
    """The cases to run, ours then the reference (if ``reference``) for each config and precision."""
    impls = IMPLEMENTATIONS if reference else ("ours",)
    return [
        Case(impl, config, precision, device, threads)
        for config in settings.configs
        for precision in settings.precisions
        for impl in impls
    ]


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"12.1 min"`` or ``"2.3 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(throughput: dict[Case, float], gflops: dict[str, float], peaks: dict[str, float]) -> list[str]:
    """Markdown rows, one per config and precision, from images/s per case, GFLOPs per image per config and the
    ``torch.mm`` peak GFLOP/s per precision measured in the same run."""
    rows = [
        "| config | precision | ours img/s | reference img/s | ours/reference | ours GFLOP/s | % of mm peak "
        f"| ours vs fp32 | VOC val ({VOC_VAL_IMAGES:,} images) ours | reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, ours in throughput.items():
        if case.impl != "ours":
            continue
        reference = throughput.get(dataclasses.replace(case, impl="reference"))
        ratio = f"{ours / reference:.2f}x" if reference else "-"
        reference_cells = (f"{reference:.2f}", format_duration(VOC_VAL_IMAGES / reference)) if reference else ("-",) * 2
        fp32 = throughput.get(dataclasses.replace(case, precision="fp32"))
        speedup = f"{ours / fp32:.2f}x" if fp32 and case.precision != "fp32" else "-"
        achieved = gflops[case.config] * ours
        share = f"{100 * achieved / peaks[case.precision]:.0f} %" if case.precision in peaks else "-"
        rows.append(
            f"| {case.config} | {case.precision} | {ours:.2f} | {reference_cells[0]} | {ratio} | {achieved:.0f} "
            f"| {share} | {speedup} | {format_duration(VOC_VAL_IMAGES / ours)} | {reference_cells[1]} |"
        )
    return rows


def header(
    cases: Sequence[Case],
    sizes: Sequence[Size],
    gflops: dict[str, float],
    wall: float,
    workers: int | None = None,
    peaks: dict[str, float] | None = None,
) -> list[str]:
    """The markdown lines above the table: device, threads, versions, the images and how each side is timed."""
    case = cases[0]
    config = deeplab.get_config(case.config)
    readers = (
        f"data.num_workers={config.data.num_workers}, the default"
        if workers is None
        else f"--set data.num_workers={workers}"
    )
    per_image = ", ".join(f"{name} {value:.0f}" for name, value in gflops.items())
    return [
        "# End-to-end evaluation: `python -m deeplab evaluate` against the reference's forward",
        "",
        machine_line(case.device, case.threads),
        f"{len(sizes)} synthetic VOC-sized images, width x height (at the test scale {config.data.scale}): "
        f"{describe_sizes(sizes, config.data.scale)}; JPEG quality {JPEG_QUALITY}, palette PNG masks. "
        f"GFLOPs per image (our forward): {per_image}.",
        "Ours: the whole `python -m deeplab evaluate --checkpoint F --data-root R --device D --amp A` in a fresh "
        "process (modules imported beforehand, as the reference's): checkpoint loading, model set-up, image "
        f"reading ({readers}), inference, confusion matrix, table. "
        "Reference: sssegmentation 1.7's DeepLabV3+ at its best: images decoded and resized beforehand, one "
        "untimed warm-up, then per image forward (no_grad, autocast for bf16/fp16) + one bilinear upsampling to "
        "the label size + argmax; no metrics.",
        "img/s = images / seconds; ours/reference: how many times faster ours is; GFLOP/s = GFLOPs per image x "
        "img/s, and its share of this run's `torch.mm` 2048 x 2048 peak in the same precision"
        f"{' (' + ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peaks.items()) + ')' if peaks else ''}; "
        "ours vs fp32: the command's speed-up over its own fp32; "
        f"VOC val: the time {VOC_VAL_IMAGES:,} images take at that speed.",
        f"Wall time of the run: {wall / 60:.1f} min.",
        "",
    ]


# --- the command line ---


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options; see the module docstring. ``--quick`` sets what ``--configs/--precisions/--images`` leave."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="voc-r50-d16, 4 images, fp32 (unless given below)")
    parser.add_argument("--configs", type=_names, help=f"comma-separated VOC configs (default: {','.join(CONFIGS)})")
    parser.add_argument("--precisions", type=_names, help=f"comma-separated, of {', '.join(AMP)} (default: fp32,bf16)")
    parser.add_argument("--images", type=int, help="images in the val set (default: 20)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--workers", type=int, help="pass --set data.num_workers=K (default: the command's own)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"markdown file to write (default: {RESULTS})")
    args = parser.parse_args(argv)
    unknown = set(args.precisions or ()) - set(AMP)
    if unknown:
        parser.error(f"unknown precisions {sorted(unknown)}: choose from {', '.join(AMP)}")
    voc = [name for name in config_names() if deeplab.get_config(name).data.dataset == "voc"]
    unknown = set(args.configs or ()) - set(voc)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}: the val set is VOC's, choose from {', '.join(voc)}")
    if args.images is not None and args.images < 1:
        parser.error("--images must be >= 1")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    """The configs, precisions and image count that ``args`` ask for."""
    defaults = QUICK if args.quick else Settings()
    return Settings(
        configs=args.configs or defaults.configs,
        precisions=args.precisions or defaults.precisions,
        images=args.images or defaults.images,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; see the module docstring."""
    args = parse_args(argv)
    start = time.perf_counter()
    settings = settings_of(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and "fp16" in settings.precisions:
        raise SystemExit("fp16 runs on GPUs only (the evaluate command's --amp fp16): drop it from --precisions")
    cases = plan(settings, device, args.threads, reference=available("reference"))
    throughput: dict[Case, float] = {}
    with tempfile.TemporaryDirectory(prefix="deeplab-evaluation-benchmark-") as folder:
        root = Path(folder)
        sizes = write_val_set(root / "data", settings.images)
        gflops = {name: gflop_per_image(name, sizes) for name in settings.configs}
        for name in settings.configs:
            checkpoint = write_checkpoint(name, root)
            for case in (case for case in cases if case.config == name):
                if case.impl == "ours":
                    seconds = in_child(time_ours, case, checkpoint, root / "data", args.workers)
                else:
                    seconds = in_child(time_reference, case, root / "data")
                throughput[case] = settings.images / seconds
                print(f"{case.impl} {case.config} {case.precision}: {throughput[case]:.2f} img/s", flush=True)
            checkpoint.unlink()
    peaks = {name: mm_gflops(DTYPES[name], device, repeats=20) for name in settings.precisions}
    ceilings = [ceiling_line(device, precision, peaks) for precision in settings.precisions if precision != "fp32"]
    lines = header(cases, sizes, gflops, time.perf_counter() - start, args.workers, peaks)
    lines += [*ceilings, ""] if ceilings else []
    lines += table(throughput, gflops, peaks)
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
