"""Batch reproduction: run the training notebook once per config with papermill, then tabulate the results.

Each config gets ``OUT/<config>/``: the executed notebook, its log, and the run folder with checkpoints and the
``metrics.json`` the notebook's training writes. Re-running skips configs whose ``metrics.json`` exists (and was
trained with the same settings) and resumes the others from their last checkpoint; a config that fails is reported
and the others go on.
``results.md`` lays the numbers out like the reference table, with reported and measured columns apart.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeplab.config import config_differences, get_config

TRAINING_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_training.ipynb"

# mIoU (%) reported in the DeepLabV3+ README of the sssegmentation toolbox (single scale).
REPORTED = {
    "voc-r50-d8": 77.43, "voc-r50-d16": 76.92, "voc-r101-d8": 79.19, "voc-r101-d16": 78.31,
    "ade20k-r50-d8": 44.51, "ade20k-r50-d16": 43.21, "ade20k-r101-d8": 45.72, "ade20k-r101-d16": 45.22,
    "cityscapes-r50-d8": 80.38, "cityscapes-r50-d16": 79.73, "cityscapes-r101-d8": 81.09, "cityscapes-r101-d16": 80.20,
}  # fmt: skip
DATASET_ROWS = {
    "voc": "VOC trainaug/val (512x512, 16, 60)",
    "ade20k": "ADE20k train/val (512x512, 16, 130)",
    "cityscapes": "Cityscapes train/val (512x1024, 8, 220)",
}
# Smoke mode: every config's machinery on the toy data, one tiny step each.
SMOKE_OVERRIDES = [
    "data.dataset=toy", "data.train_split=train", "data.crop_size=64,64", "data.scale=96,64",
    "data.num_workers=0", "train.batch_size=2", "train.iterations=1", "train.log_every=1",
]  # fmt: skip


@dataclass
class Outcome:
    """What became of one config: ``done``, ``skipped`` (finished earlier) or ``failed``."""

    name: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""


def run_config(
    name: str, data_root: Path, out: Path, *, overrides: list[str], device: str | None, nproc_per_node: int
) -> Outcome:
    """Execute the training notebook for ``name`` into ``out/name`` (resuming if a checkpoint is there).

    A finished run is skipped only if it was trained with the same config and overrides; otherwise it would put
    another experiment's numbers (e.g. a smoke run's) in the table, so the config is reported as failed.
    """
    import papermill

    folder = out / name
    metrics_file = folder / "run" / "metrics.json"
    if metrics_file.is_file():
        changed = _changed_settings(folder / "run" / "config.json", name, overrides)
        if not changed:
            return Outcome(name, "skipped", json.loads(metrics_file.read_text()))
        error = (
            f"{folder / 'run'} holds a finished run with other settings ({changed}): "
            "use another output folder, or delete that one to train again"
        )
        (folder / "error.txt").write_text(error + "\n")
        return Outcome(name, "failed", error=error)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "error.txt").unlink(missing_ok=True)  # left by an earlier, failed attempt
    start = time.perf_counter()
    parameters = {
        "config_name": name,
        "data_root": str(data_root.resolve()),
        "run_dir": str((folder / "run").resolve()),
        "overrides": overrides,
        "device": device,
        "resume": (folder / "run" / "last.pth").is_file(),
        "nproc_per_node": nproc_per_node,
    }
    try:
        with open(folder / "notebook.log", "a") as log:  # a resumed run keeps the earlier sessions' log
            papermill.execute_notebook(
                TRAINING_NOTEBOOK,
                folder / "07_training.ipynb",
                parameters=parameters,
                cwd=TRAINING_NOTEBOOK.parent,
                log_output=True,
                stdout_file=log,
                stderr_file=log,
                progress_bar=False,
            )
    except Exception as error:  # noqa: BLE001 - one failed config must not stop the others
        (folder / "error.txt").write_text(traceback.format_exc())
        last_line = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        return Outcome(name, "failed", seconds=time.perf_counter() - start, error=last_line)
    return Outcome(name, "done", json.loads(metrics_file.read_text()), time.perf_counter() - start)


def _changed_settings(config_file: Path, name: str, overrides: list[str]) -> str:
    """How a run's ``config.json`` differs from ``name`` with ``overrides`` (empty when they are the same)."""
    saved = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return config_differences(saved, dataclasses.asdict(get_config(name, overrides)))


def hardware() -> str:
    """A short description of the machine that ran the batch."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    processor = platform.processor() or platform.machine()
    return f"CPU ({processor}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def results_table(outcomes: list[Outcome], *, data_note: str, machine: str) -> str:
    """``results.md``: the reference table's layout, reported and measured mIoU in separate columns."""
    lines = [
        "# DeepLabV3+ results",
        "",
        f"Measured here on: {machine}. Data: {data_note}.",
        "Reported: the DeepLabV3+ README of the sssegmentation toolbox (mIoU %, single scale).",
        "",
        "| dataset (crop, batch, epochs) | config | reported mIoU (%) | measured here mIoU (%) | status | wall time |",
        "|---|---|---:|---:|---|---:|",
    ]
    by_name = {outcome.name: outcome for outcome in outcomes}
    groups = {label: [n for n in REPORTED if n.startswith(f"{dataset}-")] for dataset, label in DATASET_ROWS.items()}
    groups["other configs (not in the reference)"] = [n for n in by_name if n not in REPORTED]
    for label, names in groups.items():
        for index, name in enumerate(names):
            outcome = by_name.get(name)
            reported = f"{REPORTED[name]:.2f}" if name in REPORTED else "—"
            measured = f"{100 * outcome.metrics['miou']:.2f}" if outcome and "miou" in outcome.metrics else "—"
            status = "not run" if outcome is None else outcome.status + (f": {outcome.error}" if outcome.error else "")
            status = status.replace("|", "\\|")  # a '|' in an error message would split the table's cell
            wall = f"{outcome.seconds / 60:.1f} min" if outcome and outcome.seconds else "—"
            lines.append(f"| {label if index == 0 else ''} | {name} | {reported} | {measured} | {status} | {wall} |")
    return "\n".join(lines) + "\n"


def reproduce(
    names: list[str],
    data_root: str | Path,
    out: str | Path,
    *,
    smoke: bool = False,
    overrides: list[str] | None = None,
    device: str | None = None,
    nproc_per_node: int = 1,
) -> list[Outcome]:
    """Run every config in ``names`` (``["all"]`` for the 12), print a line per config, write ``results.md``.

    ``results.md`` is rewritten (atomically) after each config, so an interrupted batch leaves a current table.
    """
    from deeplab.engine.train import atomic_write_text

    names = list(REPORTED) if names == ["all"] else names
    extra = [*(SMOKE_OVERRIDES if smoke else []), *(overrides or [])]
    for name in names:
        get_config(name, extra)  # fails early, in one line, on a misspelt name or override
    out, data_root = Path(out), Path(data_root)
    out.mkdir(parents=True, exist_ok=True)
    data_note = "the toy dataset with one-step smoke schedules (not comparable)" if smoke else f"{data_root}"
    machine = hardware()
    outcomes = []
    for name in names:
        outcome = run_config(name, data_root, out, overrides=extra, device=device, nproc_per_node=nproc_per_node)
        shown = f"mIoU {100 * outcome.metrics['miou']:.2f}" if "miou" in outcome.metrics else outcome.error
        print(f"{name}: {outcome.status} {shown} ({outcome.seconds:.0f} s)", flush=True)
        outcomes.append(outcome)
        atomic_write_text(out / "results.md", results_table(outcomes, data_note=data_note, machine=machine))
    return outcomes
