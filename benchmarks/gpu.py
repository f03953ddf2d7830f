"""One GPU, a few minutes: what the package does on it, measured by one prepared command.

    python -m benchmarks gpu               # on this machine's GPU, within --minutes (8); writes results/gpu-<gpu>.md
    python -m benchmarks gpu --cpu-test    # every part on the CPU at tiny sizes: checks the command itself

(a) **Train steps** of R-50/R-101 at OS8/OS16 with the reference's per-GPU batch and crop (VOC and ADE20k: 2 images
    of 512 x 512 on each of 8 GPUs; Cityscapes: 1 of 512 x 1024, timed with 2 and halved: on one GPU a batch of 1
    cannot train, since the image-pooling branch's BatchNorm would see one value per channel, where the reference's
    SyncBatchNorm sees 8), ours against sssegmentation's identical network
    (``tests/reference_ssseg.py``) in the same process: forward, the reference loss, backward and an SGD step, in the
    reference's numerics (fp32 with TF32 off, cuDNN autotuning on), with TF32 on, and under bf16 and fp16 autocast
    (fp16 with a gradient scaler). Ours runs as the trainer runs it (channels_last under autocast only). Median of
    ``--repeats`` steps after two warm-up steps; peak memory is ``torch.cuda.max_memory_allocated`` from the model's
    creation on (weights, gradients, momentum, activations).
(b) **Evaluation** of a VOC-sized image (500 x 375 at the test scale, 683 x 512): images/s of the forward with the
    logits upsampled to the image, fp32 and bf16; ours as ``evaluate`` runs it (BatchNorm folded, channels_last
    under autocast), the reference's ``TEST`` forward.
(c) **The command line on the GPU**: ``python -m deeplab train`` on toy data in fp16 with the gradient scaler for 200
    iterations, killed (SIGKILL) once its checkpoint at iteration 100 is written, then ``--resume``d to the end; the
    report says where it was killed, where it ended, and the loss at the start and the end.
(d) **Projected hours** of each of the 12 reference configs on 8 GPUs: the reference's iterations times (a)'s
    per-GPU step in each numerics, assuming perfect scaling (the gradient all-reduce, SyncBatchNorm, data loading and
    evaluation not included: a lower bound).

The parts run in the order (a) in the reference's numerics, (c), (b), then (a) in the other numerics and at
Cityscapes' crop; once ``--minutes`` have passed nothing new starts, and the report lists what was skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import deeplab
from benchmarks.models import Case as PeerCase
from benchmarks.models import available, build_step, machine_line
from deeplab.config import REFERENCE_CONFIGS, TRAIN_IMAGES, TrainConfig
from deeplab.engine.precision import cpu_computes_bf16, uses_channels_last
from deeplab.engine.runlog import read_log
from deeplab.engine.sampling import GlobalBatchSampler
from deeplab.engine.train import micro_batch_size, segmentation_loss, set_gpu_numerics
from deeplab.models.fast import optimize_for_inference

RESULTS = Path(__file__).resolve().parent / "results"
NUMERICS = ("fp32", "tf32", "bf16", "fp16")  # fp32: the reference's (TF32 off)
AMP = {"fp32": "none", "tf32": "none", "bf16": "bf16", "fp16": "fp16"}  # numerics -> the package's train.amp
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
IMPLEMENTATIONS = ("ours", "reference")
NUM_CLASSES = 21
GPUS = 8  # the reference's GPU count, which the projection assumes


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the per-GPU train shapes ``(batch, H, W)`` by crop, the eval image, the CLI run."""

    train: dict[str, tuple[int, int, int]]  # "voc" (VOC's and ADE20k's) or "cityscapes" -> (batch, H, W)
    eval_image: tuple[int, int]  # (H, W) at the test scale
    configs: tuple[tuple[int, int], ...]  # (depth, output stride)
    repeats: int
    cli_overrides: tuple[str, ...]  # the toy run's --set values
    cli_images: tuple[int, int]  # toy training and validation images


GPU_SIZES = Sizes(
    train={"voc": (2, 512, 512), "cityscapes": (2, 512, 1024)},
    eval_image=(512, 683),
    configs=((50, 8), (50, 16), (101, 8), (101, 16)),
    repeats=5,
    cli_overrides=(
        "train.amp=fp16", "train.iterations=200", "train.checkpoint_every=100", "train.eval_every_epochs=1000",
        "train.log_every=10",
    ),
    cli_images=(64, 16),
)  # fmt: skip
CPU_TEST_SIZES = Sizes(
    train={"voc": (2, 64, 64), "cityscapes": (2, 64, 128)},
    eval_image=(64, 96),
    configs=((50, 16),),
    repeats=1,
    cli_overrides=(
        "train.amp=none", "train.iterations=4", "train.checkpoint_every=2", "train.eval_every_epochs=1000",
        "train.log_every=1", "data.crop_size=64,64", "data.scale=96,64", "data.num_workers=0", "model.channels=32",
        "train.batch_size=2", "train.batch_per_process=2",
    ),
    cli_images=(4, 2),
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One timed step: an implementation at one config, crop and numerics, training or evaluating."""

    impl: str  # "ours" or "reference"
    depth: int
    output_stride: int
    mode: str  # "train" or "eval"
    numerics: str  # a key of AMP
    crop: str = "voc"  # a key of Sizes.train (train mode)

    @property
    def config(self) -> str:
        return f"R-{self.depth}-D{self.output_stride}"


@dataclass(frozen=True)
class Timing:
    seconds: float | None  # median per step; None: out of memory
    peak_mb: float | None  # None on the CPU, where the process's peak is not the step's


@dataclass(frozen=True)
class CliRun:
    """What became of part (c)'s run: where the kill found it and where the resumed run ended."""

    killed_at: int | None  # the checkpoint's iteration when killed; None: it ended before the kill
    final_iteration: int
    first_loss: float  # the first logged window
    last_loss: float  # the last logged window
    seconds: float
    error: str = ""


# --- (a) and (b): timed steps ---


@contextlib.contextmanager
def numerics(name: str) -> Iterator[None]:
    """The reference's GPU numerics (TF32 off, cuDNN autotuning on), with TF32 on for ``"tf32"``; restored after."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    set_gpu_numerics(TrainConfig(allow_tf32=name == "tf32", cudnn_benchmark=True))
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = flags


def build(case: Case, device: torch.device) -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The model on ``device`` and its step: ``(images, targets) -> loss`` in training, ``-> logits`` ``(N, C, H,
    W)`` in evaluation, with the inputs in the memory format the model runs in."""
    if case.impl == "reference":
        peer = PeerCase("reference", case.depth, case.output_stride, case.mode, "fp32", 1, 1, 1, device.type, 1)
        model, step, _ = build_step(peer)
        return model.to(device), step
    config = deeplab.get_config(f"voc-r{case.depth}-d{case.output_stride}")
    model = deeplab.build_model(config)
    channels_last = uses_channels_last(True, device, AMP[case.numerics])
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if case.mode == "eval":
        model = optimize_for_inference(model, inplace=True, channels_last=channels_last)
    model.to(device, memory_format=memory_format).train(case.mode == "train")

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = model(images.contiguous(memory_format=memory_format))
        return segmentation_loss(outputs, targets, config.train) if case.mode == "train" else outputs["out"]

    return model, step


def time_case(case: Case, shape: tuple[int, int, int], device: torch.device, repeats: int) -> Timing:
    """Median seconds of ``repeats`` steps of ``case`` on inputs ``shape`` = ``(N, H, W)`` after two warm-up steps
    (cuDNN's autotuning), and the peak memory from the model's creation on; ``Timing(None, None)`` when the GPU's
    memory does not hold it."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    train = case.mode == "train"
    try:
        with numerics(case.numerics):
            model, step = build(case, device)
            batch, height, width = shape
            images = torch.randn(batch, 3, height, width, device=device)
            targets = torch.randint(NUM_CLASSES, (batch, height, width), device=device)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if train else None
            scaler = torch.amp.GradScaler(device.type, enabled=case.numerics == "fp16")
            dtype = AUTOCAST.get(case.numerics)

            def run() -> None:
                with torch.set_grad_enabled(train), torch.autocast(device.type, dtype, enabled=dtype is not None):
                    result = step(images, targets)
                if optimizer is not None:
                    scaler.scale(result).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                if cuda:
                    torch.cuda.synchronize(device)

            seconds = []
            for index in range(2 + repeats):
                start = time.perf_counter()
                run()
                if index >= 2:
                    seconds.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
        return Timing(statistics.median(seconds), peak)
    except torch.cuda.OutOfMemoryError:
        return Timing(None, None)
    finally:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()


# --- (c): the command line, killed and resumed ---


def cli_run(folder: Path, device: torch.device, sizes: Sizes) -> CliRun:
    """Train the toy config through ``python -m deeplab train`` on ``device`` with ``sizes.cli_overrides``, SIGKILL it
    once its first checkpoint is written, resume it with ``--resume`` to the end, and read its log."""
    from deeplab.prepare.toy import make_toy

    train_images, val_images = sizes.cli_images
    data, run = folder / "data", folder / "run"
    make_toy(data, train=train_images, val=val_images)
    command = [sys.executable, "-m", "deeplab", "train", "--config", "toy-r50-d16", "--data-root", str(data)]
    command += ["--out", str(run), "--device", device.type]
    command += [argument for override in sizes.cli_overrides for argument in ("--set", override)]
    start = time.perf_counter()
    with open(folder / "first.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while not (run / "last.pth").exists() and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        killed = process.wait() == -signal.SIGKILL
    killed_at = torch.load(run / "last.pth", weights_only=True)["iteration"] if killed else None
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if resumed.returncode != 0:
        last_line = (resumed.stderr.strip().splitlines() or ["no error message"])[-1]
        return CliRun(killed_at, 0, float("nan"), float("nan"), seconds, error=last_line)
    losses = [record for record in read_log(run / "metrics.jsonl") if "loss" in record]
    final = torch.load(run / "last.pth", weights_only=True)["iteration"]
    return CliRun(killed_at, final, losses[0]["loss"], losses[-1]["loss"], seconds)


# --- (d): the projection ---


def reference_iterations(config_name: str) -> int:
    """The iterations of a reference config's run on 8 GPUs (epochs times the reference sampler's steps)."""
    config = REFERENCE_CONFIGS[config_name]
    sampler = GlobalBatchSampler(
        TRAIN_IMAGES[config.data.dataset], batch_per_process=micro_batch_size(config.train, GPUS), world_size=GPUS
    )
    return config.train.iterations or config.train.epochs * sampler.steps_per_epoch


def projection(timings: dict[Case, Timing], sizes: Sizes) -> list[str]:
    """Markdown rows: each reference config's iterations and the hours of its run on 8 GPUs in each numerics (a step
    timed with more images per GPU than the config's counted pro rata)."""
    rows = [
        f"| config | iterations | {' | '.join(f'hours, {name}' for name in NUMERICS)} |",
        "|---|---:|" + "---:|" * len(NUMERICS),
    ]
    for name, config in REFERENCE_CONFIGS.items():
        crop = "cityscapes" if config.data.dataset == "cityscapes" else "voc"
        share = micro_batch_size(config.train, GPUS) / sizes.train[crop][0]  # Cityscapes: half the timed step of two
        iterations = reference_iterations(name)
        cells = []
        for number in NUMERICS:
            case = Case("ours", config.model.depth, config.model.output_stride, "train", number, crop)
            seconds = timings[case].seconds if case in timings else None
            cells.append("-" if seconds is None else f"{iterations * seconds * share / 3600:.1f}")
        rows.append(f"| {name} | {iterations:,} | {' | '.join(cells)} |")
    return rows


# --- the plan and the report ---


def plan(sizes: Sizes, reference: bool, device: torch.device) -> list[Case]:
    """Every timed case in the order they run: the reference's numerics first (then (c) runs), then evaluation,
    then the other numerics, then Cityscapes' crop."""
    impls = [impl for impl in IMPLEMENTATIONS if impl == "ours" or reference]
    computed = [number for number in NUMERICS if computed_here(number, device)]

    def cases(mode: str, numbers: Sequence[str], crop: str = "voc") -> list[Case]:
        return [
            Case(impl, *config, mode, number, crop)
            for number in numbers
            if number in computed
            for config in sizes.configs
            for impl in impls
        ]

    return [
        *cases("train", ["fp32"]),
        *cases("eval", ["fp32", "bf16"]),
        *cases("train", NUMERICS[1:]),
        *cases("train", NUMERICS, "cityscapes"),
    ]


def computed_here(number: str, device: torch.device) -> bool:
    """Whether ``device`` computes in the numerics ``number``: on a CPU fp32, and bf16 where the CPU has bf16
    arithmetic (TF32 is the GPUs'; emulated bf16 or fp16 take minutes for one R-50 step)."""
    if device.type == "cuda":
        return True
    return number == "fp32" or (number == "bf16" and cpu_computes_bf16())


def timing_table(timings: dict[Case, Timing], sizes: Sizes, mode: str) -> list[str]:
    """Markdown rows of ``mode``'s cases; ratio: the reference's time over ours at the same config and numerics."""
    unit = "step" if mode == "train" else "image"
    rows = [
        f"| config | crop | numerics | ours s/{unit} | ours peak MB | reference s/{unit} | reference peak MB "
        "| reference / ours |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for case, ours in timings.items():
        if case.impl != "ours" or case.mode != mode:
            continue
        theirs = timings.get(dataclasses.replace(case, impl="reference"))
        batch, height, width = input_shape(case, sizes)
        ratio = (
            "-" if theirs is None or None in (theirs.seconds, ours.seconds) else f"{theirs.seconds / ours.seconds:.2f}x"
        )
        rows.append(
            f"| {case.config} | {batch} x {height} x {width} | {case.numerics} | {_seconds(ours)} | {_mb(ours)} "
            f"| {_seconds(theirs)} | {_mb(theirs)} | {ratio} |"
        )
    return rows


def input_shape(case: Case, sizes: Sizes) -> tuple[int, int, int]:
    """The ``(N, H, W)`` of ``case``'s inputs: its crop's batch in training, one test-scale image in evaluation."""
    return sizes.train[case.crop] if case.mode == "train" else (1, *sizes.eval_image)


def _seconds(timing: Timing | None) -> str:
    if timing is None:
        return "-"
    return "out of memory" if timing.seconds is None else f"{timing.seconds:.3f}"


def _mb(timing: Timing | None) -> str:
    return "-" if timing is None or timing.peak_mb is None else f"{timing.peak_mb:.0f}"


def cli_lines(result: CliRun | None, sizes: Sizes) -> list[str]:
    """Part (c)'s paragraph."""
    if result is None:
        return ["Not run: the time was up."]
    settings = " ".join(f"--set {override}" for override in sizes.cli_overrides)
    lines = [f"`python -m deeplab train --config toy-r50-d16 {settings}` on {sum(sizes.cli_images)} toy images:", ""]
    if result.error:
        return [*lines, f"- the resumed run failed: {result.error}"]
    killed = (
        f"killed (SIGKILL) with its checkpoint at iteration {result.killed_at}"
        if result.killed_at is not None
        else "it ended before it could be killed"
    )
    return [
        *lines,
        f"- {killed}; resumed with `--resume`, it ended at iteration {result.final_iteration};",
        f"- loss of the first logged window {result.first_loss:.4f}, of the last {result.last_loss:.4f} "
        f"({'falling' if result.last_loss < result.first_loss else 'not falling'});",
        f"- {result.seconds:.0f} s in all, both processes' start-up and the toy data included.",
    ]


def report(
    timings: dict[Case, Timing],
    cli: CliRun | None,
    skipped: Sequence[Case],
    sizes: Sizes,
    device: torch.device,
    wall: float,
) -> str:
    """The whole markdown report."""
    versions = f" CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}." if device.type == "cuda" else ""
    lines = [
        "# The package on one GPU",
        "",
        f"{machine_line(device.type, torch.get_num_threads())}{versions} Wall time {wall / 60:.1f} min.",
        "",
        "## (a) Train steps: per-GPU batch and crop of the reference",
        "",
        *timing_table(timings, sizes, "train"),
        "",
        "## (b) Evaluation of a VOC-sized image (logits upsampled to the image)",
        "",
        *timing_table(timings, sizes, "eval"),
        "",
        "## (c) The command line, killed and resumed",
        "",
        *cli_lines(cli, sizes),
        "",
        f"## (d) Projected hours of the 12 reference configs on {GPUS} GPUs",
        "",
        "Iterations x the per-GPU step time of (a) (ours), scaling assumed perfect: the all-reduce, SyncBatchNorm, "
        "data loading and evaluation are not included, so these are lower bounds.",
        "",
        *projection(timings, sizes),
    ]
    if skipped:
        lines += ["", "Skipped when the time was up: " + ", ".join(_case_name(case) for case in skipped) + "."]
    if missing := [number for number in NUMERICS if not computed_here(number, device)]:
        lines += ["", f"Not timed: {', '.join(missing)}: on this CPU TF32 does not exist and the others are emulated."]
    return "\n".join(lines) + "\n"


def _case_name(case: Case) -> str:
    return f"{case.impl} {case.config} {case.mode} {case.numerics} ({case.crop})"


def device_slug(device: torch.device) -> str:
    """A file-name form of the GPU's name (``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu-test"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-test", action="store_true", help="every part on the CPU at tiny sizes")
    parser.add_argument("--minutes", type=float, default=8.0, help="start nothing new after this (default: 8)")
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/results/gpu-<gpu>.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; see the module docstring."""
    args = parse_args(argv)
    if not args.cpu_test and not torch.cuda.is_available():
        sys.exit("python -m benchmarks gpu: no CUDA GPU here; --cpu-test checks the command on the CPU")
    device = torch.device("cpu" if args.cpu_test else "cuda")
    sizes = CPU_TEST_SIZES if args.cpu_test else GPU_SIZES
    reference = available("reference")
    if not reference:
        print("sssegmentation is not installed (pip install -e '.[dev]'): ours alone is timed", flush=True)
    start, deadline = time.perf_counter(), time.perf_counter() + 60 * args.minutes
    cases = plan(sizes, reference, device)
    first_others = next(index for index, case in enumerate(cases) if case.mode == "eval")
    timings: dict[Case, Timing] = {}
    skipped: list[Case] = []
    cli = None
    for index, case in enumerate(cases):
        if index == first_others and time.perf_counter() < deadline:
            with tempfile.TemporaryDirectory() as folder:
                cli = cli_run(Path(folder), device, sizes)
            print(f"(c) {cli_lines(cli, sizes)[-2:]}", flush=True)
        if time.perf_counter() >= deadline:
            skipped.append(case)
            continue
        timings[case] = time_case(case, input_shape(case, sizes), device, sizes.repeats)
        print(f"{_case_name(case)}: {_seconds(timings[case])} s", flush=True)
    text = report(timings, cli, skipped, sizes, device, time.perf_counter() - start)
    output = args.output or RESULTS / f"gpu-{device_slug(device)}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text + f"\nwritten to {output}")
