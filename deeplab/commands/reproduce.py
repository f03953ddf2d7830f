"""Batch reproduction: run the training notebook once per config with papermill, then tabulate the results.

Each config gets ``OUT/<config>/``: the executed notebook, its log, and the run folder with checkpoints and the
``metrics.json`` the notebook's training writes. Re-running skips configs whose ``metrics.json`` exists (and was
trained with the same settings) and resumes the others from their last checkpoint; a config that fails is reported
and the others go on.
With ``released=True`` it evaluates the reference's released checkpoint of each config instead (fetched on first
use, see :mod:`deeplab.weights.released`) into ``OUT/<config>/released/metrics.json``.

``results.json`` keeps the latest outcome of each config of each kind, with the hardware and data behind it, and
``results.md`` lays it out like the reference table: reported, released checkpoint evaluated here and trained here
in separate columns.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeplab.config import absolute_path_overrides, config_differences, get_config
from deeplab.extras import require
from deeplab.models.weights import require_backbone_weights
from deeplab.models.zoo import RELEASED

# mIoU (%) reported in the DeepLabV3+ README of the sssegmentation toolbox (single scale), in table order.
REPORTED = {name: model.reported_miou for name, model in RELEASED.items()}
KINDS = {"released": "released checkpoint evaluated here", "trained": "trained here"}  # results.md's own columns
DATASET_ROWS = {
    "voc": "VOC trainaug/val (512x512, 16, 60)",
    "ade20k": "ADE20k train/val (512x512, 16, 130)",
    "cityscapes": "Cityscapes train/val (512x1024, 8, 220)",
}
# Smoke mode: every config's machinery on the toy data, one tiny step each.
SMOKE_OVERRIDES = [
    "data.dataset=toy", "data.train_split=train", "data.crop_size=64,64", "data.scale=96,64",
    "data.num_workers=0", "train.batch_size=2", "train.batch_per_process=0", "train.iterations=1",
    "train.log_every=1", "model.pretrained=none",
]  # fmt: skip


@dataclass
class Outcome:
    """What became of one config: ``done``, ``skipped`` (finished earlier) or ``failed``; ``kind`` says whether it
    was trained here or is the released checkpoint evaluated here."""

    name: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""
    kind: str = "trained"


def run_config(
    name: str, data_root: Path, out: Path, *, overrides: list[str], device: str | None, nproc_per_node: int
) -> Outcome:
    """Execute the training notebook for ``name`` into ``out/name`` (resuming if a checkpoint is there).

    A finished run is skipped only if it was trained with the same config and overrides; otherwise it would put
    another experiment's numbers (e.g. a smoke run's) in the table, so the config is reported as failed.
    """
    require("papermill", "nbformat", extra="course", purpose="reproduce (the training notebook under papermill)")
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
    notebook = training_notebook()  # outside the try: no repository is the command's error, not one config's
    try:
        with open(folder / "notebook.log", "a") as log:  # a resumed run keeps the earlier sessions' log
            papermill.execute_notebook(
                _lesson_copy(notebook, folder),
                folder / "07_training.ipynb",
                parameters=parameters,
                cwd=notebook.parent,
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


def training_notebook() -> Path:
    """Notebook 07 of the course's repository (:func:`deeplab.course.repository`), the body of every training run;
    a :class:`~deeplab.course.RepositoryError` outside a clone."""
    from deeplab.course import repository

    return repository() / "notebooks" / "07_training.ipynb"


def _lesson_copy(notebook: Path, folder: Path) -> Path:
    """The training ``notebook`` without its exercise solutions (they train toy models of their own), in
    ``folder``."""
    import nbformat

    from deeplab.course.student import without_solutions

    path = folder / "07_training.lesson.ipynb"
    nbformat.write(without_solutions(nbformat.read(notebook, as_version=4)), path)
    return path


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


def results_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """``results.md`` from ``results.json``'s entries (config -> kind -> entry): the reference table's layout with
    reported, released-checkpoint and trained-here mIoU in separate columns, and the hardware and data of each."""
    lines = [
        "# DeepLabV3+ results",
        "",
        "mIoU (%), single scale, from three sources kept apart:",
        "- reported: the DeepLabV3+ README of the sssegmentation toolbox (trained and evaluated by its authors);",
        *_provenance(results),
        "",
        "| dataset (crop, batch, epochs) | config | reported | released checkpoint evaluated here | trained here "
        "| status | wall time |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    groups = {label: [n for n in REPORTED if n.startswith(f"{dataset}-")] for dataset, label in DATASET_ROWS.items()}
    groups["other configs (not in the reference)"] = [n for n in results if n not in REPORTED]
    for label, names in groups.items():
        for index, name in enumerate(names):
            entries = results.get(name, {})
            reported = f"{REPORTED[name]:.2f}" if name in REPORTED else "—"
            released, trained = (_miou_cell(entries.get(kind)) for kind in KINDS)
            status = "; ".join(f"{kind}: {_status(entry)}" for kind, entry in entries.items()) or "not run"
            status = status.replace("|", "\\|")  # a '|' in an error message would split the table's cell
            wall = "; ".join(f"{kind} {e['seconds'] / 60:.1f} min" for kind, e in entries.items() if e["seconds"])
            cells = [label if index == 0 else "", name, reported, released, trained, status, wall or "—"]
            lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _provenance(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per kind and (hardware, data): which configs were measured where, on what."""
    lines = []
    for kind, column in KINDS.items():
        where: dict[tuple[str, str], list[str]] = {}
        for name, entries in results.items():
            if entries.get(kind, {}).get("miou") is not None:
                where.setdefault((entries[kind]["hardware"], entries[kind]["data"]), []).append(name)
        for (machine, data), names in where.items():
            lines.append(f"- {column}: {', '.join(names)} on {machine}; data: {data};")
    return lines or ["- nothing measured here yet."]


def _miou_cell(entry: dict[str, Any] | None) -> str:
    return "—" if entry is None or entry.get("miou") is None else f"{100 * entry['miou']:.2f}"


def _status(entry: dict[str, Any]) -> str:
    return entry["status"] + (f": {entry['error']}" if entry.get("error") else "")


def record_outcome(results: dict[str, dict[str, dict[str, Any]]], outcome: Outcome, machine: str, data: str) -> None:
    """Put ``outcome`` into ``results`` (``results.json``'s content); a skipped config keeps the hardware and data
    it was measured on, when known."""
    earlier = results.get(outcome.name, {}).get(outcome.kind, {})
    if outcome.status == "skipped" and earlier.get("miou") is not None:
        machine, data = earlier["hardware"], earlier["data"]
    results.setdefault(outcome.name, {})[outcome.kind] = {
        "miou": outcome.metrics.get("miou"),
        "status": outcome.status,
        "error": outcome.error,
        "seconds": outcome.seconds or earlier.get("seconds", 0.0),
        "hardware": machine,
        "data": data,
    }


def run_overrides(name: str, overrides: list[str]) -> list[str]:
    """``overrides`` plus absolute paths for the config's files (papermill's kernel runs elsewhere), after checking
    that they exist: a missing ImageNet backbone stops the batch before any config starts, in one line."""
    config = get_config(name, overrides)
    weights = config.model.backbone_weights_file
    if weights is not None:
        require_backbone_weights(weights)
    return [*overrides, *absolute_path_overrides(config, Path.cwd())]


def evaluate_released(
    name: str, data_root: Path, out: Path, *, overrides: list[str], device: str | None, released_root: Path
) -> Outcome:
    """Evaluate the reference's released checkpoint of ``name`` (single scale, whole image, the config's validation
    split) into ``out/name/released/metrics.json``; a config already evaluated there is skipped."""
    from deeplab.commands.evaluate import evaluate_checkpoint, model_from_checkpoint
    from deeplab.engine.evaluate import Inference
    from deeplab.engine.runlog import FINAL_METRICS, atomic_write_json
    from deeplab.errors import USER_ERRORS
    from deeplab.weights.released import RELEASED_NAME, resolve_checkpoint

    metrics_file = out / name / "released" / FINAL_METRICS
    if metrics_file.is_file():
        return Outcome(name, "skipped", json.loads(metrics_file.read_text()), kind="released")
    start = time.perf_counter()
    try:
        checkpoint = resolve_checkpoint(RELEASED_NAME, name, released_root)
        config, model = model_from_checkpoint(checkpoint, name, overrides)
        metrics, _ = evaluate_checkpoint(config, model, data_root, split=None, inference=Inference(), device=device)
    except USER_ERRORS as error:
        return Outcome(name, "failed", seconds=time.perf_counter() - start, error=str(error), kind="released")
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(metrics_file, metrics)
    return Outcome(name, "done", metrics, time.perf_counter() - start, kind="released")


def reproduce(
    names: list[str],
    data_root: str | Path,
    out: str | Path,
    *,
    smoke: bool = False,
    overrides: list[str] | None = None,
    device: str | None = None,
    nproc_per_node: int = 1,
    released: bool = False,
    released_root: str | Path = "weights/released",
) -> list[Outcome]:
    """Train every config in ``names`` (``["all"]`` for the 12), or with ``released`` evaluate the reference's
    released checkpoints; print a line per config and update ``results.json`` and ``results.md``.

    Both files are rewritten (atomically) after each config, so an interrupted batch leaves a current table.
    """
    from deeplab.engine.runlog import atomic_write_json, atomic_write_text

    names = list(REPORTED) if names == ["all"] else names
    extra = [*(SMOKE_OVERRIDES if smoke else []), *(overrides or [])]
    for name in names:
        get_config(name, extra)  # fails early, in one line, on a misspelt name or override
    per_config = {name: extra if released else run_overrides(name, extra) for name in names}
    out, data_root = Path(out), Path(data_root)
    out.mkdir(parents=True, exist_ok=True)
    data_note = "the toy dataset with one-step smoke schedules (not comparable)" if smoke else f"{data_root}"
    machine = hardware()
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    outcomes = []
    for name in names:
        if released:
            outcome = evaluate_released(
                name, data_root, out, overrides=per_config[name], device=device, released_root=Path(released_root)
            )
        else:
            outcome = run_config(
                name, data_root, out, overrides=per_config[name], device=device, nproc_per_node=nproc_per_node
            )
        shown = f"mIoU {100 * outcome.metrics['miou']:.2f}" if "miou" in outcome.metrics else outcome.error
        print(f"{name} ({outcome.kind}): {outcome.status} {shown} ({outcome.seconds:.0f} s)", flush=True)
        outcomes.append(outcome)
        record_outcome(results, outcome, machine, data_note if smoke else outcome.metrics.get("data", data_note))
        atomic_write_json(results_file, results)
        atomic_write_text(out / "results.md", results_table(results))
    return outcomes


def run(args: argparse.Namespace) -> int:
    """The command line's ``reproduce``: exit status 1 when a config failed."""
    outcomes = reproduce(
        args.configs.split(","),
        args.data_root,
        args.out,
        smoke=args.smoke,
        overrides=args.set,
        device=args.device,
        nproc_per_node=args.nproc_per_node,
        released=args.released,
        released_root=args.released_root,
    )
    print(f"results: {Path(args.out) / 'results.md'}")
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0
