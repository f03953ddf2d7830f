"""``python -m benchmarks step``: the phases of the trainer's own step add up to the step."""

import pytest

from benchmarks import step
from deeplab import get_config
from deeplab.engine.train import Trainer
from tests.conftest import TINY


@pytest.mark.slow
def test_the_phases_of_a_step_add_up_and_each_is_timed(toy_root, tmp_path, monkeypatch):
    calls = []
    original = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self: calls.append(self.iteration) or original(self))
    trainer = Trainer(get_config("toy-r50-d16", TINY), toy_root, tmp_path, step.CPU)
    seconds = step.phase_seconds(trainer, steps=2, warmup=1)
    assert calls == [0, 1, 2]
    assert all(seconds[name] > 0 for name in (*step.COLUMNS, "step"))
    assert 0 <= seconds["other"] < seconds["step"]  # the phases lie within the step, none counted twice
    assert seconds["forward"] + seconds["backward"] > seconds["data"] + seconds["optimizer"]
    rows = step.table({"none": seconds, "bf16": {**seconds, "step": seconds["step"] / 2}})
    assert rows[2].startswith("| none |") and rows[2].endswith("| 1.00x |") and rows[3].endswith("| 2.00x |")


@pytest.mark.slow
def test_the_command_prints_the_table(toy_root, capsys):
    step.main(
        ["--data-root", str(toy_root), "--steps", "1", "--warmup", "0", "--amp", "none", *(f"--set={o}" for o in TINY)]
    )
    out = capsys.readouterr().out
    assert "# Where a train step of toy-r50-d16 goes" in out and "| none |" in out
