"""Where a train step goes: loading the batch, forward and loss, backward, the optimizer, as the trainer runs them.

    python -m benchmarks step                       # the course's toy-r50-d16 on fresh toy data, fp32 (and bf16)
    python -m benchmarks step --steps 20 --amp none
    python -m benchmarks step --config voc-r50-d16 --data-root data --set model.pretrained=none --set train.batch_size=2

The trainer's own step (:meth:`deeplab.engine.train.Trainer.step`) runs under ``torch.profiler``: its named ranges
(``deeplab.engine.train.PHASES``) give each phase's wall time on the main thread; "other" is the rest of the step
(the loss terms' sum over processes, ``zero_grad``, the scheduler). Each precision gets a fresh trainer; the first
``--warmup`` steps are not counted, then the mean over ``--steps``. The profiler slows the step somewhat: compare
the total with the seconds per iteration a training run logs. On the CPU only: on a GPU the ranges would time the
kernel launches, not the kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.models import ceiling_line, machine_line
from deeplab.config import get_config
from deeplab.engine.distributed import Distributed
from deeplab.engine.precision import cpu_computes_bf16
from deeplab.engine.train import PHASES, Trainer

CPU = Distributed(rank=0, world_size=1, device=torch.device("cpu"))
COLUMNS = ("data", "forward", "backward", "optimizer")  # PHASES, as the table names them


def phase_seconds(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
    """Mean seconds per step of each phase of ``trainer.step``, ``"other"`` and the whole ``"step"``."""
    for _ in range(warmup):
        trainer.step()
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        total = time.perf_counter() - start
    spent = dict.fromkeys(PHASES, 0.0)
    for event in profiler.events():
        if event.name in spent:
            spent[event.name] += event.cpu_time_total / 1e6  # microseconds
    seconds = {column: spent[phase] / steps for column, phase in zip(COLUMNS, PHASES, strict=True)}
    return {**seconds, "other": total / steps - sum(seconds.values()), "step": total / steps}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Standard error (file descriptor 2) sent to /dev/null: the profiler's C++ side prints lines of its own there."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def table(results: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: seconds per step of each phase and its share, and each precision's speed-up over the first."""
    first = next(iter(results.values()))["step"]
    rows = [
        "| train.amp | data | forward | backward | optimizer | other | step (s) | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for amp, seconds in results.items():
        cells = [f"{seconds[name]:.3f} ({100 * seconds[name] / seconds['step']:.0f} %)" for name in (*COLUMNS, "other")]
        rows.append(f"| {amp} | {' | '.join(cells)} | {seconds['step']:.3f} | {first / seconds['step']:.2f}x |")
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="toy-r50-d16")
    parser.add_argument("--data-root", type=Path, default=None, help="default: fresh toy data in a temporary folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--amp", default=None, help="precisions to compare (default: none, and bf16 where computed)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; see the module docstring."""
    args = parse_args(argv)
    precisions = args.amp.split(",") if args.amp else ["none", *(["bf16"] if cpu_computes_bf16() else [])]
    with tempfile.TemporaryDirectory() as folder:
        data_root = args.data_root
        if data_root is None:
            from deeplab.prepare.toy import make_toy

            data_root = Path(folder) / "data"
            make_toy(data_root, train=32, val=2)
        results = {}
        for amp in precisions:
            config = get_config(args.config, [*args.set, f"train.amp={amp}"])
            results[amp] = phase_seconds(Trainer(config, data_root, Path(folder) / amp, CPU), args.steps, args.warmup)
    lines = [
        f"# Where a train step of {args.config} goes",
        "",
        f"{machine_line('cpu', torch.get_num_threads())} Mean of {args.steps} steps after {args.warmup}; "
        f"overrides: {', '.join(args.set) or 'none'}.",
        *(["", ceiling_line("cpu", "bf16")] if "bf16" in results else []),
        "",
        *table(results),
    ]
    if not cpu_computes_bf16() and not args.amp:
        lines += ["", "bf16 not timed: this CPU has no bf16 arithmetic (the trainer computes train.amp=bf16 in fp32)."]
    print("\n".join(lines))
