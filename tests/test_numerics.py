"""Where the package picks its numerics and layout: autocast dtypes, channels_last by device, glibc's allocator."""

import platform

import pytest
import torch

from deeplab import get_config
from deeplab.engine import precision
from deeplab.engine.allocator import SWITCH, keep_freed_memory
from deeplab.engine.distributed import Distributed
from deeplab.engine.evaluate import Inference, inference_model
from deeplab.engine.precision import (
    PrecisionError,
    amp_for_device,
    autocast_dtype,
    emulation_note,
    uses_channels_last,
)
from deeplab.engine.runlog import RunLog
from deeplab.engine.train import Trainer
from tests.conftest import TINY

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_autocast_dtypes_by_name_and_fp16_only_on_gpus(monkeypatch):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    assert autocast_dtype("none", CPU, option="--amp") is None
    assert autocast_dtype("bf16", CPU, option="--amp") is torch.bfloat16
    assert autocast_dtype("fp16", CUDA, option="--amp") is torch.float16
    with pytest.raises(PrecisionError, match="--amp=fp16 needs a GPU"):
        autocast_dtype("fp16", CPU, option="--amp")
    with pytest.raises(PrecisionError, match="train.amp='fp8' is not one of none, bf16, fp16"):
        autocast_dtype("fp8", CPU, option="train.amp")


def test_bf16_on_a_cpu_that_would_emulate_it_runs_in_fp32_and_the_trainer_says_so(
    monkeypatch, toy_root, tmp_path, capsys
):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert autocast_dtype("bf16", CPU, option="train.amp") is None
    assert amp_for_device("cpu") == "none"
    note = "train.amp=bf16: this CPU (AVX2) has no bf16 arithmetic, only a slow emulation: computing in fp32"
    assert emulation_note("bf16", CPU, option="train.amp") == note
    assert emulation_note("none", CPU, option="train.amp") is None and emulation_note("bf16", CUDA, option="x") is None
    trainer = Trainer(get_config("toy-r50-d16", TINY), toy_root, tmp_path, Distributed(0, 1, CPU))
    assert trainer.amp_dtype is None
    trainer._start(RunLog(tmp_path / "metrics.jsonl"), resume=False)
    assert note in capsys.readouterr().out.splitlines()


def test_the_cpu_check_agrees_with_onednn():
    assert precision.cpu_computes_bf16() is torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.parametrize(("capability", "amp"), [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_bf16_where_the_gpu_computes_in_it_and_fp16_on_older_gpus(monkeypatch, capability, amp):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert amp_for_device("cuda") == amp and amp_for_device("cpu") == "bf16"
    if amp == "fp16":  # a T4: bf16 would be emulated, so it is refused in one line that names the fix
        with pytest.raises(PrecisionError, match=r"^train.amp=bf16 is emulated on this GPU \(Tesla T4\), slowly: use"):
            autocast_dtype("bf16", CUDA, option="train.amp")
    else:
        assert autocast_dtype("bf16", CUDA, option="train.amp") is torch.bfloat16


def test_channels_last_on_cpus_and_under_autocast_on_gpus():
    assert uses_channels_last(True, CPU, "none") and uses_channels_last(True, CUDA, "bf16")
    assert not uses_channels_last(True, CUDA, "none")  # a GPU in fp32 keeps the reference's layout
    assert not uses_channels_last(False, CPU, "bf16")


def test_the_trainer_and_the_fast_path_are_channels_last_on_the_cpu(toy_root, tmp_path):
    env = Distributed(rank=0, world_size=1, device=CPU)
    trainer = Trainer(get_config("voc-r50-d16", [*TINY, "model.pretrained=none", "data.dataset=toy",
                                                 "data.train_split=train", "model.num_classes=6"]),
                      toy_root, tmp_path, env)  # fmt: skip
    weight = trainer.network.backbone.layer1[0].conv2.weight  # 3x3; a reference config, no override of the layout
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    fast = inference_model(trainer.network, Inference())
    assert fast.backbone.layer1[0].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    plain = inference_model(trainer.network, Inference(fast=False))
    assert plain is trainer.network and not plain.training


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_is_told_to_keep_freed_memory_unless_switched_off(monkeypatch):
    assert keep_freed_memory()
    monkeypatch.setenv(SWITCH, "0")
    assert not keep_freed_memory()
