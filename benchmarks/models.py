"""Model speed: a DeepLabV3+ train step and eval forward, ours against segmentation_models_pytorch, torchvision
and the reference (sssegmentation 1.7), in fp32 and bf16 autocast (fp16 too on CUDA).

* train step: forward, cross-entropy on ``out`` (+ 0.4 x on ``aux`` where the model has an auxiliary head),
  backward, SGD step; batch 2 at 512 x 512. The reference runs its own ``TRAIN``-mode forward, which computes
  both losses itself.
* eval forward: batch 1 at 512 x 512 under ``torch.no_grad``; logits upsampled to the input size.

``ours-fast`` is what the package runs by default: :func:`deeplab.models.fast.optimize_for_inference` (BatchNorm
folded, channels_last) for eval, channels_last for training, and on the CPU glibc keeping freed memory
(:mod:`deeplab.engine.allocator`), as every process of the package does; the peers run with glibc's default. To
keep a CPU run under 15 minutes, there the plain ``ours`` is timed for eval only (its train step is ours-fast's in
the contiguous layout) and bf16 train steps at output stride 16 only. Each measurement
runs in its own process (median of ``--repeats`` after one warm-up) so that its peak resident memory (``ru_maxrss``,
on CUDA the peak allocated memory) is its own. GFLOP/s counts the forward with ``FlopCounterMode`` (a train step as
3x its forward) and is compared with the throughput of a 2048 x 2048 ``torch.mm`` measured in the same run.

    python -m benchmarks models            # full table, writes benchmarks/results/models.md
    python -m benchmarks models --quick    # R-50 OS16 at 256 x 256, 2 repeats
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import multiprocessing
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import deeplab
from deeplab.config import TrainConfig
from deeplab.engine.allocator import keep_freed_memory
from deeplab.engine.train import segmentation_loss
from deeplab.models.fast import optimize_for_inference

NUM_CLASSES = 21
TRAIN_CONFIG = TrainConfig()  # the reference loss: cross-entropy ignoring 255, + 0.4 x the auxiliary head's
RESULTS = Path(__file__).resolve().parent / "results" / "models.md"
IMPLEMENTATIONS = ("ours", "ours-fast", "smp", "torchvision", "reference")
BF16_IMPLEMENTATIONS = ("ours-fast", "smp")  # bf16 for these only, to keep a CPU run under 15 minutes
PEER_MODULES = {"smp": "segmentation_models_pytorch", "reference": "ssseg"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, targets) -> loss or logits


@dataclass(frozen=True)
class Case:
    """One measurement: an implementation at one config, mode and precision."""

    impl: str
    depth: int
    output_stride: int
    mode: str  # "train" or "eval"
    precision: str  # a key of DTYPES
    batch: int
    size: int
    repeats: int
    device: str
    threads: int

    @property
    def config(self) -> str:
        return f"R-{self.depth} OS{self.output_stride}"


@dataclass(frozen=True)
class Result:
    seconds: float  # median over the repeats
    gflop: float  # per step
    peak_mb: float


def _ours(case: Case) -> nn.Module:
    return deeplab.build_model(deeplab.get_config(f"voc-r{case.depth}-d{case.output_stride}"))


def _peer(case: Case) -> nn.Module:
    if case.impl == "smp":
        import segmentation_models_pytorch as smp

        return smp.DeepLabV3Plus(
            encoder_name=f"resnet{case.depth}",
            encoder_weights=None,
            encoder_output_stride=case.output_stride,
            classes=NUM_CLASSES,
        )
    from torchvision.models import segmentation

    build = {50: segmentation.deeplabv3_resnet50, 101: segmentation.deeplabv3_resnet101}[case.depth]
    return build(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=False)


def _forward(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, train: bool) -> torch.Tensor:
    """The loss of ``model`` on ``images`` ``(N, 3, H, W)`` in training, else its ``out`` logits ``(N, C, H, W)``."""
    outputs = model(images)
    if train:
        return segmentation_loss(outputs if isinstance(outputs, dict) else {"out": outputs}, targets, TRAIN_CONFIG)
    return outputs if isinstance(outputs, torch.Tensor) else outputs["out"]


def _reference_step(case: Case) -> tuple[nn.Module, Step]:
    """The sssegmentation model and a step calling its own forward (``TRAIN``: its loss; eval: upsampled logits)."""
    from ssseg.modules import SSSegInputStructure

    from tests.reference_ssseg import build_reference

    model = build_reference(case.depth, case.output_stride, NUM_CLASSES)
    if case.mode == "train":
        model.mode = "TRAIN"
        return model, lambda x, y: model(SSSegInputStructure(images=x, seg_targets=y, mode="TRAIN")).loss

    def logits(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        seg_logits = model(SSSegInputStructure(images=x, mode="TEST")).seg_logits  # (N, C, H/4, W/4)
        return F.interpolate(seg_logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return model, logits


def build_step(case: Case) -> tuple[nn.Module, Step, torch.memory_format]:
    """The model, its step (train: forward + loss; eval: forward) and the memory format its inputs take."""
    fast = case.impl == "ours-fast"
    if case.impl == "reference":
        model, step = _reference_step(case)
    else:
        model = _ours(case) if case.impl.startswith("ours") else _peer(case)
        if fast and case.mode == "eval":
            model = optimize_for_inference(model, inplace=True)
        step = functools.partial(_forward, model, train=case.mode == "train")
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model.to(case.device, memory_format=memory_format).train(case.mode == "train")
    return model, step, memory_format


def measure(case: Case) -> Result:
    """Time ``case`` in this process: one warm-up step (whose forward FLOPs are counted), then ``case.repeats``."""
    torch.manual_seed(0)
    torch.set_num_threads(case.threads)
    if case.impl.startswith("ours") and case.device == "cpu":
        keep_freed_memory()  # as the package's own processes run (distributed.setup); the peers keep glibc's default
    model, step, memory_format = build_step(case)
    images = torch.randn(case.batch, 3, case.size, case.size, device=case.device)
    images = images.contiguous(memory_format=memory_format)
    targets = torch.randint(NUM_CLASSES, (case.batch, case.size, case.size), device=case.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if case.mode == "train" else None
    device_type = torch.device(case.device).type

    def run(counter: FlopCounterMode | None = None) -> None:
        autocast = torch.autocast(device_type, dtype=DTYPES[case.precision], enabled=case.precision != "fp32")
        with torch.set_grad_enabled(optimizer is not None):
            with autocast, counter or contextlib.nullcontext():
                result = step(images, targets)
            if optimizer is not None:
                result.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()

    counter = FlopCounterMode(display=False)
    run(counter)
    seconds = []
    for _ in range(case.repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    flops = counter.get_total_flops() * (3 if optimizer is not None else 1)
    if device_type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Result(statistics.median(seconds), flops / 1e9, peak_mb)


def measure_in_child(case: Case) -> Result:
    """:func:`measure` in a fresh process, so that its peak memory is its own.

    The process is forked from a server that has imported the libraries but never computed (so no thread pool is
    forked), which spares each measurement the seconds of importing them again.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torchvision", "deeplab", "benchmarks.models", *PEER_MODULES.values()])
    with context.Pool(1) as pool:
        return pool.apply(measure, (case,))


def mm_gflops(dtype: torch.dtype, device: str, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` throughput of an ``n x n`` ``torch.mm`` in GFLOP/s."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / best_seconds(lambda: torch.mm(a, b), device, repeats) / 1e9


def best_seconds(run: Callable[[], object], device: str, repeats: int) -> float:
    """The fastest of ``repeats + 1`` calls of ``run`` (the first warms up), waiting for a GPU to finish each."""
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def conv_gflops(dtype: torch.dtype, device: str, repeats: int = 20) -> float:
    """Best-of-``repeats`` throughput in GFLOP/s of a 3x3 convolution, 256 to 256 channels over ``(4, 256, 64,
    64)`` in channels_last, inference only: the layer these networks spend most of their time in, at the speed the
    library reaches with it (on CPUs above ``torch.mm``'s)."""
    x = torch.randn(4, 256, 64, 64, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = best_seconds(lambda: torch.nn.functional.conv2d(x, weight, padding=1), device, repeats)
    return 2 * 4 * 256 * 256 * 9 * 64 * 64 / seconds / 1e9


def ceiling_line(device: str, precision: str, peaks: dict[str, float] | None = None, repeats: int = 20) -> str:
    """What the hardware gives ``precision`` over fp32 in this run: ``torch.mm``'s and a 3x3 convolution's
    throughput in both and their ratios. A network that is ~90% convolutions gains at most about the latter.
    ``peaks``: the ``torch.mm`` GFLOP/s by precision that the caller measured already (the rest are measured)."""
    names = ("fp32", precision)
    mm = [(peaks or {}).get(name) or mm_gflops(DTYPES[name], device, repeats=repeats) for name in names]
    conv = [conv_gflops(DTYPES[name], device, repeats=repeats) for name in names]
    return (
        f"What this hardware gives {precision} over fp32, measured in the same run: `torch.mm` 2048 x 2048 "
        f"{mm[0]:.0f} -> {mm[1]:.0f} GFLOP/s (**{mm[1] / mm[0]:.2f}x**), a 3x3 convolution (256 channels, 64 x 64, "
        f"batch 4) {conv[0]:.0f} -> {conv[1]:.0f} GFLOP/s (**{conv[1] / conv[0]:.2f}x**): convolutions are most of "
        f"the time, so the second ratio bounds the speed-up of a forward or a train step."
    )


def available(impl: str) -> bool:
    """Whether the package behind ``impl`` is installed."""
    module = PEER_MODULES.get(impl)
    return module is None or importlib.util.find_spec(module) is not None


def plan(quick: bool, repeats: int | None, device: str, threads: int) -> list[Case]:
    """The cases to run: R-50/101 at OS8/16 (quick: R-50 OS16 at 256 x 256), train and eval."""
    configs = [(50, 16)] if quick else [(depth, os) for depth in (50, 101) for os in (8, 16)]
    precisions = ["fp32", "bf16"] + (["fp16"] if device == "cuda" else [])
    size = 256 if quick else 512
    repeats = repeats or (3 if device == "cuda" else 2)  # a CPU step at 512 x 512 takes up to ~30 s
    cases = []
    for depth, output_stride in configs:
        for mode, batch in (("train", 2), ("eval", 1)):
            for precision in precisions:
                for impl in IMPLEMENTATIONS:
                    if precision != "fp32" and impl not in BF16_IMPLEMENTATIONS and device != "cuda":
                        continue
                    if (impl == "torchvision" and output_stride != 8) or not available(impl):
                        continue
                    if (
                        device != "cuda"
                        and mode == "train"
                        and (impl == "ours" or _slow_bf16(precision, output_stride))
                    ):
                        continue
                    cases.append(
                        Case(impl, depth, output_stride, mode, precision, batch, size, repeats, device, threads)
                    )
    return cases


def _slow_bf16(precision: str, output_stride: int) -> bool:
    """bf16 train steps at OS8 (2 of a CPU run's minutes, with the speed-up over fp32 that OS16 shows)."""
    return precision == "bf16" and output_stride == 8


def _label(impl: str) -> str:
    return "torchvision (V3, no decoder)" if impl == "torchvision" else impl


def table(results: dict[Case, Result], peaks: dict[str, float]) -> list[str]:
    """Markdown rows; the last column is how many times faster ours-fast is than the row's implementation."""
    rows = [
        "| implementation | config | mode | precision | median s | img/s | GFLOP/s | % of mm peak | peak MB "
        "| ours-fast speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, result in results.items():
        fast = results.get(replace(case, impl="ours-fast"))
        speedup = f"{result.seconds / fast.seconds:.2f}x" if fast and case.impl != "ours-fast" else "-"
        gflops = result.gflop / result.seconds
        rows.append(
            f"| {_label(case.impl)} | {case.config} | {case.mode} | {case.precision} | {result.seconds:.3f} "
            f"| {case.batch / result.seconds:.2f} | {gflops:.0f} | {100 * gflops / peaks[case.precision]:.0f} % "
            f"| {result.peak_mb:.0f} | {speedup} |"
        )
    return rows


def header(cases: Sequence[Case], peaks: dict[str, float], wall: float) -> list[str]:
    case = cases[0]
    mm = ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items())
    return [
        "# Model speed: train step and eval forward",
        "",
        machine_line(case.device, case.threads),
        f"`torch.mm` 2048 x 2048 peak in this run: {mm}.",
        f"Train: batch 2 at {case.size} x {case.size} (forward, CE on out + 0.4 aux where present, backward, SGD); "
        f"eval: batch 1 at {case.size} x {case.size}, no_grad. Median of {case.repeats} after 1 warm-up, each "
        "measurement in its own process (peak MB: its max RSS, on CUDA its peak allocated memory).",
        "GFLOP/s: forward FLOPs from FlopCounterMode, a train step counted as 3x the forward. "
        f"On CPU, to keep the run short: reduced precision only for {', '.join(BF16_IMPLEMENTATIONS)} and bf16 train "
        "steps at OS16 only; plain ours timed for eval only. "
        "torchvision's DeepLabV3 has no decoder and is OS8 only. Speed-up: row's time / ours-fast's time. "
        "On CPU, ours runs with glibc keeping freed memory, as the package's processes do "
        "(deeplab.engine.allocator); the peers with glibc's default.",
        f"Wall time of the run: {wall / 60:.1f} min.",
        "",
    ]


def machine_line(device: str, threads: int) -> str:
    """The header line naming the device, the thread count and the versions a run measured."""
    return (
        f"Device: {device_name(device)}, {threads} threads; torch {torch.__version__}, "
        f"Python {platform.python_version()}."
    )


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="R-50 OS16 only, 256 x 256, 2 repeats")
    parser.add_argument("--repeats", type=int, help="timed steps per measurement (default: 2 on CPU, 3 on CUDA)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"markdown file to write (default: {RESULTS})")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    cases = plan(args.quick, args.repeats, device, args.threads)
    peaks = {name: mm_gflops(DTYPES[name], device) for name in sorted({case.precision for case in cases})}
    results = {}
    for case in cases:
        results[case] = measure_in_child(case)
        print(f"{_label(case.impl)} {case.config} {case.mode} {case.precision}: {results[case].seconds:.3f} s")
    lines = header(cases, peaks, time.perf_counter() - start) + table(results, peaks)
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
