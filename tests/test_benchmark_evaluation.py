"""The pieces of ``python -m benchmarks evaluation`` that can fail without timing anything."""

import types

import numpy as np
import pytest
import torch

import benchmarks.__main__ as dispatch
from benchmarks import models
from benchmarks.evaluation import (
    QUICK,
    Case,
    evaluate_argv,
    gflop_per_image,
    header,
    image_sizes,
    parse_args,
    plan,
    render_pair,
    settings_of,
    table,
    write_val_set,
)
from deeplab.__main__ import build_parser
from deeplab.data import build_dataset
from deeplab.data.transforms import rescaled_size


def test_val_set_loads_as_voc_with_the_requested_sizes(tmp_path):
    sizes = write_val_set(tmp_path, 3)
    dataset = build_dataset("voc", tmp_path, "val")
    assert sizes == image_sizes(3) == [(375, 500), (500, 375), (333, 500)]
    for index, size in enumerate(sizes):
        sample = dataset[index]
        assert tuple(sample["image"].shape) == (3, *size)
        values = set(sample["mask"].unique().tolist())
        assert 255 in values and 0 in values and values - {255} <= set(range(21))


def test_rendering_is_seeded():
    first, second = render_pair(40, 60, seed=3), render_pair(40, 60, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], render_pair(40, 60, seed=4)[0])


def test_quick_plan_and_overrides():
    assert settings_of(parse_args(["--quick"])) == QUICK
    assert plan(QUICK, "cpu", 2) == [
        Case("ours", "voc-r50-d16", "fp32", "cpu", 2),
        Case("reference", "voc-r50-d16", "fp32", "cpu", 2),
    ]
    settings = settings_of(parse_args(["--quick", "--precisions", "fp32,bf16", "--images", "6"]))
    assert (settings.configs, settings.precisions, settings.images) == (("voc-r50-d16",), ("fp32", "bf16"), 6)
    assert len(plan(settings_of(parse_args([])), "cpu", 2, reference=False)) == 8  # 4 configs x 2 precisions


def test_evaluate_arguments_parse_as_the_command_expects(tmp_path):
    case = Case("ours", "voc-r50-d16", "bf16", "cpu", 2)
    args = build_parser().parse_args(evaluate_argv(case, tmp_path / "model.pth", tmp_path, workers=0))
    assert (args.command, args.amp, args.device, args.plain) == ("evaluate", "bf16", "cpu", False)
    assert (args.checkpoint, args.data_root, args.set) == (
        str(tmp_path / "model.pth"),
        tmp_path,
        ["data.num_workers=0"],
    )


def test_table_ratio_gflops_and_projection():
    ours, reference = (Case(impl, "voc-r50-d16", "fp32", "cpu", 2) for impl in ("ours", "reference"))
    bf16 = Case("ours", "voc-r50-d16", "bf16", "cpu", 2)
    peaks = {"fp32": 600.0, "bf16": 14490.0}
    rows = table({ours: 2.0, reference: 0.5, bf16: 1449 / 30}, {"voc-r50-d16": 150.0}, peaks)
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]
    assert cells[0] == ["voc-r50-d16", "fp32", "2.00", "0.50", "4.00x", "300", "50 %", "-", "12.1 min", "48.3 min"]
    # no reference measured in bf16; 48.3 img/s against fp32's 2.0
    assert cells[1] == ["voc-r50-d16", "bf16", "48.30", "-", "-", "7245", "50 %", "24.15x", "30 s", "-"]
    text = "\n".join(header([ours], image_sizes(4), {"voc-r50-d16": 150.0}, wall=90.0, peaks=peaks))
    assert "4 synthetic" in text and "2 x 500x375 (683x512), 1 x 375x500 (512x683)" in text and "1.5 min" in text
    assert "fp32 600 GFLOP/s, bf16 14490 GFLOP/s" in text


def test_the_ceiling_line_gives_the_hardwares_ratios_of_bf16_over_fp32(monkeypatch):
    rates = {torch.float32: (200.0, 220.0), torch.bfloat16: (460.0, 440.0)}  # (torch.mm, convolution)
    monkeypatch.setattr(models, "mm_gflops", lambda dtype, device, repeats: rates[dtype][0])
    monkeypatch.setattr(models, "conv_gflops", lambda dtype, device, repeats: rates[dtype][1])
    line = models.ceiling_line("cpu", "bf16")
    assert "`torch.mm` 2048 x 2048 200 -> 460 GFLOP/s (**2.30x**)" in line
    assert "64 x 64, batch 4) 220 -> 440 GFLOP/s (**2.00x**)" in line
    rates[torch.float32] = (None, 220.0)  # torch.mm must not be measured again where the caller has its peaks
    assert "`torch.mm` 2048 x 2048 250 -> 500 GFLOP/s (**2.00x**)" in models.ceiling_line(
        "cpu", "bf16", {"fp32": 250.0, "bf16": 500.0}
    )


def test_the_convolution_throughput_counts_its_flops(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(models.time, "perf_counter", lambda: next(clock) / 2)  # every convolution takes 0.5 s
    flops = 2 * (4 * 64 * 64) * 256 * (256 * 3 * 3)  # a multiply-add per output value and weight of its window
    assert models.conv_gflops(torch.float32, "cpu", repeats=1) == pytest.approx(flops / 0.5 / 1e9)


def test_gflops_average_over_the_images():
    sizes = [(375, 500), (375, 500), (500, 375)]
    landscape, portrait = (gflop_per_image("voc-r50-d16", [size]) for size in sizes[1:])
    assert gflop_per_image("voc-r50-d16", sizes) == pytest.approx((2 * landscape + portrait) / 3)
    assert rescaled_size(375, 500, (2048, 512)) == (512, 683) and 100 < landscape < 300


def test_no_benchmark_named_runs_models_then_evaluation(monkeypatch):
    calls = []
    fake = lambda name: types.SimpleNamespace(main=lambda argv: calls.append((name, argv)))  # noqa: E731
    monkeypatch.setattr(dispatch.importlib, "import_module", fake)
    dispatch.main(["--quick"])
    dispatch.main(["evaluation", "--images", "3"])
    assert calls == [
        ("benchmarks.models", ["--quick"]),
        ("benchmarks.evaluation", ["--quick"]),
        ("benchmarks.evaluation", ["--images", "3"]),
    ]
