"""``python -m benchmarks gpu``, the one command prepared for a GPU lent for minutes, run on the CPU at tiny sizes so
that it cannot rot."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import gpu


@pytest.mark.slow
def test_the_gpu_command_runs_every_part_on_the_cpu(tmp_path):
    output = tmp_path / "gpu.md"
    gpu.main(["--cpu-test", "--output", str(output)])
    text = output.read_text()
    train = re.search(r"\| R-50-D16 \| 2 x 64 x 64 \| fp32 \| ([\d.]+) \| - \| ([\d.]+) \| - \| ([\d.]+)x \|", text)
    assert train, text  # (a) ours and the reference in the reference's numerics, their ratio
    ours, reference, ratio = map(float, train.groups())
    assert ratio == pytest.approx(reference / ours, abs=0.01)
    assert "| R-50-D16 | 2 x 64 x 128 | fp32 |" in text  # Cityscapes' crop
    assert "| R-50-D16 | 1 x 64 x 96 | fp32 |" in text  # (b) evaluation
    assert (
        "killed (SIGKILL) with its checkpoint at iteration 2; resumed with `--resume`, it ended at iteration 4" in text
    )
    projected = re.findall(r"^\| (\w+-r\d+-d\d+) \| ([\d,]+) \| (.+) \|$", text, flags=re.MULTILINE)
    assert len(projected) == 12  # (d) every reference config
    hours = dict((name, (int(iterations.replace(",", "")), cells)) for name, iterations, cells in projected)
    iterations, cells = hours["voc-r50-d16"]
    assert iterations == 39_660
    assert float(cells.split(" | ")[0]) == pytest.approx(iterations * ours / 3600, abs=0.06 + iterations * 5e-4 / 3600)
    assert hours["voc-r50-d8"][1].split(" | ")[0] == "-"  # not timed at the test's sizes


def test_nothing_starts_once_the_time_is_up(tmp_path):
    output = tmp_path / "gpu.md"
    gpu.main(["--cpu-test", "--minutes", "0", "--output", str(output)])
    text = output.read_text()
    assert "(c) The command line" in text and "Not run: the time was up." in text
    skipped = text.split("Skipped when the time was up: ")[1].split(".\n")[0].split(", ")
    assert skipped[:2] == ["ours R-50-D16 train fp32 (voc)", "reference R-50-D16 train fp32 (voc)"]
    assert "ours R-50-D16 eval fp32 (voc)" in skipped and "ours R-50-D16 train fp32 (cityscapes)" in skipped


def test_a_fp16_step_goes_through_the_gradient_scaler(monkeypatch):
    model = nn.Conv2d(3, gpu.NUM_CLASSES, 1)
    monkeypatch.setattr(gpu, "build", lambda case, device: (model, lambda x, y: F.cross_entropy(model(x).float(), y)))
    scales = []
    scale = torch.amp.GradScaler.scale
    monkeypatch.setattr(
        torch.amp.GradScaler, "scale", lambda self, loss: scales.append(self.get_scale()) or scale(self, loss)
    )
    before = model.weight.detach().clone()
    timing = gpu.time_case(gpu.Case("ours", 50, 16, "train", "fp16"), (2, 8, 8), torch.device("cpu"), repeats=1)
    assert timing.seconds > 0 and timing.peak_mb is None
    assert scales == [65536.0] * 3  # three steps (two warm-up), each scaled by the scaler's initial factor
    assert not torch.equal(model.weight, before)


def test_the_report_is_named_after_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert gpu.device_slug(torch.device("cuda")) == "nvidia-h100-80gb-hbm3"
    assert gpu.device_slug(torch.device("cpu")) == "cpu-test"
