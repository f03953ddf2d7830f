"""``deeplab.commands.reproduce``: papermill runs per config, results.md, skipping, resuming, failures and the CLI."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from deeplab import get_config
from deeplab.__main__ import main
from deeplab.commands.reproduce import REPORTED, SMOKE_OVERRIDES, Outcome, record_outcome, reproduce, results_table
from deeplab.engine.distributed import Distributed
from deeplab.engine.runlog import read_log
from deeplab.engine.train import Trainer
from deeplab.models.backbone import resnet_backbone

REPO = Path(__file__).resolve().parents[1]
HEADER = (
    "| dataset (crop, batch, epochs) | config | reported | released checkpoint evaluated here | trained here "
    "| status | wall time |"
)
FAILING, RESUMED, FRESH = "ade20k-r50-d16", "voc-r50-d16", "cityscapes-r50-d16"
DONE = [RESUMED, FRESH]
# Narrow heads (smaller checkpoints) and two steps with a checkpoint after each, so that a run stopped after step 1
# is unfinished but resumable.
TWO_STEPS = ["model.channels=32", "train.iterations=2", "train.checkpoint_every=1"]


class Stop(Exception):
    """Raised from ``on_record`` to interrupt a training run."""


@dataclass
class Batch:
    """What the batch of the ``batch`` fixture left: its folder, its outcomes by config and results.md."""

    out: Path
    outcomes: dict[str, Outcome]
    results: str  # results.md as the batch left it


def table_rows(results: str) -> dict[str, list[str]]:
    """The cells of results.md's rows by config name (an escaped ``\\|`` stays inside its cell)."""
    lines = [line for line in results.splitlines() if line.startswith("| ") and line != HEADER]
    rows = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))] for line in lines]
    return {cells[1]: cells for cells in rows}


def injected_parameters(notebook: Path) -> str:
    """The source of the cell papermill added with the run's parameters."""
    cells = json.loads(notebook.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if "injected-parameters" in c["metadata"].get("tags", []))


@pytest.fixture(scope="module")
def batch(toy_root, tmp_path_factory) -> Batch:
    """One smoke batch of three configs on the toy data, run as ``reproduce`` meets them after an interruption:
    FAILING's folder holds a checkpoint of another config, RESUMED's an unfinished run stopped after step 1, and
    FRESH starts from nothing."""
    out = tmp_path_factory.mktemp("repro")
    run_dir = out / RESUMED / "run"

    def stop_at_step_2(record: dict) -> None:
        if record["iter"] == 2:  # logged before step 2's checkpoint: last.pth stays at step 1
            raise Stop

    cpu = Distributed(rank=0, world_size=1, device=torch.device("cpu"))
    trainer = Trainer(get_config(RESUMED, [*SMOKE_OVERRIDES, *TWO_STEPS]), toy_root, run_dir, cpu)
    with pytest.raises(Stop):
        trainer.fit(progress=False, on_record=stop_at_step_2)
    assert torch.load(run_dir / "last.pth", weights_only=True)["iteration"] == 1
    assert not (run_dir / "metrics.json").exists()
    (out / FAILING / "run").mkdir(parents=True)
    shutil.copy(run_dir / "last.pth", out / FAILING / "run" / "last.pth")

    outcomes = reproduce([FAILING, RESUMED, FRESH], toy_root, out, smoke=True, overrides=TWO_STEPS)
    return Batch(out, {outcome.name: outcome for outcome in outcomes}, (out / "results.md").read_text())


@pytest.mark.slow
def test_each_config_folder_holds_the_executed_notebook_its_log_and_metrics(batch):
    statuses = {name: outcome.status for name, outcome in batch.outcomes.items()}
    assert statuses == {FAILING: "failed", RESUMED: "done", FRESH: "done"}
    for name in DONE:
        folder = batch.out / name
        assert f'config_name = "{name}"' in injected_parameters(folder / "07_training.ipynb")
        cells = json.loads((folder / "07_training.ipynb").read_text())["cells"]
        assert not [cell for cell in cells if "solution" in cell["metadata"].get("tags", [])]  # the lesson alone
        assert f"{name}: 100%" in (folder / "notebook.log").read_text()  # the progress bar, at 2/2
        assert not (folder / "error.txt").exists()
        metrics = json.loads((folder / "run" / "metrics.json").read_text())
        assert metrics["iterations"] == 2 and 0 <= metrics["miou"] <= 1
        assert metrics["miou"] == batch.outcomes[name].metrics["miou"]


@pytest.mark.slow
def test_results_md_has_the_reference_layout_with_reported_and_measured_apart(batch):
    assert HEADER in batch.results
    trained_line = next(line for line in batch.results.splitlines() if line.startswith("- trained here: "))
    assert trained_line.startswith(f"- trained here: {RESUMED}, {FRESH} on CPU (") and ", torch " in trained_line
    assert trained_line.endswith("; data: the toy dataset with one-step smoke schedules (not comparable);")
    assert not any(line.startswith("- released checkpoint") for line in batch.results.splitlines())
    rows = table_rows(batch.results)
    assert list(rows) == list(REPORTED)
    assert rows["voc-r50-d8"][0] == "VOC trainaug/val (512x512, 16, 60)" and rows["voc-r50-d16"][0] == ""
    assert rows["ade20k-r50-d8"][0] == "ADE20k train/val (512x512, 16, 130)"
    assert rows["cityscapes-r50-d8"][0] == "Cityscapes train/val (512x1024, 8, 220)"
    spot_checks = {"voc-r101-d8": "79.19", "ade20k-r50-d8": "44.51", "cityscapes-r50-d16": "79.73"}  # the README's
    assert {name: rows[name][2] for name in spot_checks} == spot_checks
    for name, cells in rows.items():
        assert cells[2] == f"{REPORTED[name]:.2f}"
        if name in DONE:
            miou = json.loads((batch.out / name / "run" / "metrics.json").read_text())["miou"]
            assert cells[3:6] == ["—", f"{100 * miou:.2f}", "trained: done"] and cells[6].endswith(" min")
        elif name != FAILING:
            assert cells[3:] == ["—", "—", "not run", "—"]


@pytest.mark.slow
def test_a_failed_config_is_reported_and_the_next_ones_still_run(batch):
    failed = batch.outcomes[FAILING]
    assert failed.error.startswith("CheckpointError: ") and "trained with another config" in failed.error
    assert failed.error.splitlines() == [failed.error]
    assert "CheckpointError: " in (batch.out / FAILING / "error.txt").read_text()
    assert not (batch.out / FAILING / "run" / "metrics.json").exists()
    cells = table_rows(batch.results)[FAILING]
    assert cells[3:5] == ["—", "—"] and cells[5] == f"trained: failed: {failed.error}"
    assert [batch.outcomes[name].status for name in DONE] == ["done", "done"]  # both ran after the failure


@pytest.mark.slow
def test_an_unfinished_config_resumes_from_its_checkpoint(batch):
    folder = batch.out / RESUMED
    assert "resume = True" in injected_parameters(folder / "07_training.ipynb")
    assert "resume = False" in injected_parameters(batch.out / FRESH / "07_training.ipynb")
    assert [record["iter"] for record in read_log(folder / "run" / "metrics.jsonl") if "loss" in record] == [1, 2]
    assert torch.load(folder / "run" / "last.pth", weights_only=True)["iteration"] == 2


@pytest.mark.slow
def test_rerun_skips_finished_configs_without_executing_them(batch, toy_root):
    notebooks = [batch.out / name / "07_training.ipynb" for name in DONE]
    before = [path.stat().st_mtime_ns for path in notebooks]
    again = reproduce(DONE, toy_root, batch.out, smoke=True, overrides=TWO_STEPS)
    assert [outcome.status for outcome in again] == ["skipped", "skipped"]
    assert [outcome.metrics["miou"] for outcome in again] == [batch.outcomes[name].metrics["miou"] for name in DONE]
    assert [path.stat().st_mtime_ns for path in notebooks] == before
    rows = table_rows((batch.out / "results.md").read_text())
    assert rows[RESUMED][4:6] == [f"{100 * batch.outcomes[RESUMED].metrics['miou']:.2f}", "trained: skipped"]


@pytest.mark.slow
def test_a_finished_run_with_other_settings_is_not_taken_for_this_one(batch, toy_root, tmp_path):
    (tmp_path / RESUMED / "run").mkdir(parents=True)
    for file in ("metrics.json", "config.json"):  # a smoke run's results, then a real run into the same folder
        shutil.copy(batch.out / RESUMED / "run" / file, tmp_path / RESUMED / "run" / file)
    (outcome,) = reproduce([RESUMED], toy_root, tmp_path, overrides=["model.pretrained=none"])
    assert outcome.status == "failed" and "holds a finished run with other settings (" in outcome.error
    assert "data.dataset" in outcome.error and "train.iterations" in outcome.error
    assert not (tmp_path / RESUMED / "07_training.ipynb").exists()
    assert outcome.error in (tmp_path / RESUMED / "error.txt").read_text()
    assert table_rows((tmp_path / "results.md").read_text())[RESUMED][3] == "—"


def test_results_table_lists_other_configs_and_keeps_errors_in_their_cell():
    results: dict = {}
    record_outcome(results, Outcome("voc-r50-d8", "failed", error="ValueError: a | b"), "CPU", "data")
    record_outcome(results, Outcome("toy-r50-d16", "done", {"miou": 0.4081}, seconds=90.0), "CPU", "toy")
    rows = table_rows(results_table(results))
    assert len(rows) == len(REPORTED) + 1
    assert rows["voc-r50-d8"][5] == "trained: failed: ValueError: a \\| b"
    assert rows["toy-r50-d16"][0] == "other configs (not in the reference)"
    assert rows["toy-r50-d16"][2:] == ["—", "—", "40.81", "trained: done", "trained 1.5 min"]


def test_the_three_sources_stay_in_their_columns_each_with_its_hardware_and_data():
    results: dict = {}
    released = Outcome("voc-r50-d16", "done", {"miou": 0.7702}, seconds=30.0, kind="released")
    record_outcome(results, released, "1 x NVIDIA H200", "data/VOCdevkit")
    record_outcome(results, Outcome("voc-r50-d16", "done", {"miou": 0.7651}, seconds=600.0), "8 x A100", "data")
    record_outcome(results, Outcome("voc-r50-d16", "skipped", {"miou": 0.7651}), "CPU", "elsewhere")
    table = results_table(results)
    assert table_rows(table)["voc-r50-d16"][2:] == [
        "76.92", "77.02", "76.51", "released: done; trained: skipped", "released 0.5 min; trained 10.0 min"
    ]  # fmt: skip
    assert "- released checkpoint evaluated here: voc-r50-d16 on 1 x NVIDIA H200; data: data/VOCdevkit;" in table
    assert "- trained here: voc-r50-d16 on 8 x A100; data: data;" in table  # a skipped run keeps where it ran


@pytest.mark.slow
def test_cli_names_an_unknown_config_in_one_line_and_exits_2(tmp_path):
    command = [sys.executable, "-m", "deeplab", "reproduce", "--configs", "nonsense", "--data-root", "X"]
    result = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown config 'nonsense'; valid names: voc-r50-d8, ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_misspelt_override_before_running_anything(tmp_path, capsys):
    args = ["reproduce", "--configs", "voc-r50-d16", "--set", "train.iteratons=2", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: unknown config key 'train.iteratons'")
    assert not (tmp_path / "out").exists()


def readme_commands(prefix: str) -> list[list[str]]:
    """The shell lines of the README and the pages in ``docs/`` that start with ``prefix``, as arguments (comments and
    line continuations gone)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages).replace("\\\n", " ")
    return [shlex.split(line.split("  #")[0]) for line in text.splitlines() if line.startswith(prefix)]


def as_smoke_run(arguments: list[str]) -> list[str]:
    """``arguments`` in smoke mode on one config and one process, the rest (relative paths included) unchanged."""
    one = {"--configs": "voc-r50-d16", "--nproc-per-node": "1"}
    changed = [one.get(previous, argument) for previous, argument in zip(["", *arguments[:-1]], arguments, strict=True)]
    return [*changed, "--smoke"]


@pytest.mark.slow
def test_the_readmes_reproduce_commands_run_in_smoke_mode_with_relative_paths(toy_root, tmp_path):
    """Run from a folder of its own, as a user would from the repository: ``data/``, ``weights/`` and ``runs/``
    are relative to it (papermill's kernel runs in ``notebooks/``). The ImageNet file is a random stand-in. As smoke
    runs (one config, one process) the README's two commands differ only in ``--out``: the second runs here, and
    tests/test_docs.py checks that both parse."""
    commands = [command for command in readme_commands("python -m deeplab reproduce") if "--released" not in command]
    assert len(commands) == 2 and commands[0][4:8] == ["--configs", "all", "--nproc-per-node", "8"]
    commands = commands[1:]
    shutil.copytree(toy_root / "toy", tmp_path / "data" / "toy")
    weights = tmp_path / "weights" / "resnet50_v1c-2cccc1ad.pth"
    weights.parent.mkdir()
    torch.save(resnet_backbone(50, 16, deep_stem=True).state_dict(), weights)
    for command in commands:
        smoke = [*as_smoke_run(command), "--set", "model.pretrained=weights/resnet50_v1c-2cccc1ad.pth"]
        result = subprocess.run([sys.executable, *smoke[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        out = tmp_path / (smoke[smoke.index("--out") + 1] if "--out" in smoke else "runs/repro")
        config = json.loads((out / "voc-r50-d16" / "run" / "config.json").read_text())
        assert config["model"]["pretrained"] == str(weights)  # resolved against the caller's folder
        assert table_rows((out / "results.md").read_text())["voc-r50-d16"][5] == "trained: done"
        assert "starts from the ImageNet weights " + str(weights) in (out / "voc-r50-d16" / "notebook.log").read_text()
