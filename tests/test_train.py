"""The training engine: the recipe's schedule and loss, learning, exact resume after SIGKILL, and DDP."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from filelock import FileLock
from PIL import Image
from torch import nn

from deeplab import build_model, get_config
from deeplab.data import build_dataset
from deeplab.data.balance import class_pixels, median_frequency_weights
from deeplab.data.datasets import DatasetError
from deeplab.data.loading import worker_count
from deeplab.engine import train as engine
from deeplab.engine.distributed import Distributed, torchrun_command
from deeplab.engine.precision import PrecisionError
from deeplab.engine.runlog import read_log
from deeplab.engine.train import Trainer, TrainingError, poly_factor, segmentation_loss, segmentation_losses
from deeplab.models.weights import CheckpointError, InitReport, load_fitting, save_checkpoint
from tests.conftest import TINY

CPU = Distributed(rank=0, world_size=1, device=torch.device("cpu"))


def deeplab_train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deeplab", "train", "--config", "toy-r50-d16", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def tiny_args(toy_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data-root", str(toy_root), "--out", str(out), *(f"--set={item}" for item in [*TINY, *extra])]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pth", weights_only=True)["model"]


def test_poly_schedule_matches_the_reference_scheduler():
    from ssseg.modules.models.schedulers.polyscheduler import PolyScheduler

    total, lr = 40, 0.01
    ours = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(ours, poly_factor(total, power=0.9, min_ratio=0.01))
    theirs = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    reference = PolyScheduler(power=0.9, optimizer=theirs, lr=lr, min_lr=lr * 0.01, max_epochs=1, iters_per_epoch=total)
    for iteration in range(total):
        reference.cur_iter = iteration
        assert math.isclose(ours.param_groups[0]["lr"], reference.updatelr(), rel_tol=1e-12), iteration
        ours.step()
        scheduler.step()
    assert math.isclose(ours.param_groups[0]["lr"], lr * 0.01)  # the minimum at the end
    assert poly_factor(100)(50) == pytest.approx(0.5**0.9 * 0.99 + 0.01, abs=1e-12)


def test_loss_ignores_255_and_adds_the_auxiliary_term_at_0_4():
    config = get_config("toy-r50-d16").train
    masks = torch.tensor([[[0, 1], [255, 2]]])  # (1, 2, 2)
    out, aux = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    valid = [(0, 0, 0), (0, 0, 1), (0, 1, 1)]

    def by_hand(logits):
        return torch.stack([-logits[n].log_softmax(0)[masks[n, i, j], i, j] for n, i, j in valid]).mean()

    torch.testing.assert_close(segmentation_loss({"out": out}, masks, config), by_hand(out))
    torch.testing.assert_close(
        segmentation_loss({"out": out, "aux": aux}, masks, config), by_hand(out) + 0.4 * by_hand(aux)
    )


@pytest.mark.slow
def test_class_weights_weigh_each_pixel_by_its_class_and_all_zero_weights_give_zero():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, 0] = 255
    weights = torch.tensor([0.5, 2.0, 1.0])
    config = get_config("toy-r50-d16").train
    loss = segmentation_losses({"out": logits}, masks, config, weights)["loss_cls"]
    valid = masks != 255
    per_pixel = F.cross_entropy(logits, masks.masked_fill(~valid, 0), reduction="none")[valid]
    expected = (weights[masks[valid]] * per_pixel).sum() / weights[masks[valid]].sum()
    torch.testing.assert_close(loss, expected)
    only_zero = torch.zeros_like(masks)  # every pixel of class 0, weighted 0: nothing to learn, and no NaN
    loss = segmentation_losses({"out": logits}, only_zero, config, torch.tensor([0.0, 1.0, 1.0]))["loss_cls"]
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_median_frequency_weights_from_the_training_masks(toy_root, tmp_path):
    pixels, holding = torch.tensor([30, 10, 0]), torch.tensor([48, 48, 0])  # the third class never occurs
    frequency = torch.tensor([30 / 48, 10 / 48])
    expected = torch.tensor([*(frequency.mean() / frequency), 1.0])  # the median of two values is their mean
    torch.testing.assert_close(median_frequency_weights(pixels, holding), expected)
    trainer = Trainer(get_config("toy-r50-d16", [*TINY, "train.class_weights=auto"]), toy_root, tmp_path, CPU)
    pixels, holding = class_pixels(build_dataset("toy", toy_root, "train"))
    assert pixels.sum() > 0 and bool((holding >= pixels).all())
    torch.testing.assert_close(trainer.class_weights, median_frequency_weights(pixels, holding))
    with pytest.raises(TrainingError, match=r"train.class_weights=1,2 gives 2 weights for the 6 classes of toy"):
        Trainer(get_config("toy-r50-d16", [*TINY, "train.class_weights=1,2"]), toy_root, tmp_path, CPU)


def test_overfits_one_batch_to_near_zero_loss():
    torch.manual_seed(0)
    config = get_config("toy-r50-d16", ["model.channels=32", "model.dropout=0"])
    model = build_model(config).train()
    images = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    masks[0, 8:40, 16:48], masks[1, 30:60, 4:30], masks[1, :6] = 1, 2, 255
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(80):
        loss = segmentation_loss(model(images), masks, config.train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 < 2 < losses[0]
    with torch.no_grad():  # still with this batch's BatchNorm statistics, as in the steps above
        accuracy = (model(images)["out"].argmax(1) == masks)[masks != 255].float().mean()
    assert accuracy > 0.99


@pytest.mark.slow
def test_trainer_learns_and_logs(toy_root, tmp_path):
    config = get_config("toy-r50-d16", TINY)
    records = []
    metrics = Trainer(config, toy_root, tmp_path, CPU).fit(progress=False, on_record=records.append)
    log = read_log(tmp_path / "metrics.jsonl")
    assert log == records
    losses = [record["loss"] for record in log if "loss" in record]
    assert [record["iter"] for record in log if "loss" in record] == [1, 2, 3, 4, 5, 6]
    assert losses[-1] < losses[0]
    assert log[-1]["iter"] == 6 and 0 <= log[-1]["miou"] <= 1 and len(log[-1]["iou"]) == 6
    assert json.loads((tmp_path / "metrics.json").read_text())["miou"] == metrics["miou"]
    assert torch.load(tmp_path / "last.pth", weights_only=True)["iteration"] == 6


@pytest.mark.slow
def test_evaluating_during_training_does_not_change_what_it_learns(toy_root, tmp_path):
    """Evaluation draws no random number that training uses: evaluating every epoch (twice here) and never end on
    the same weights, bit for bit (the model has dropout, so a shifted global RNG would show)."""
    weights = {}
    for every in (1, 1000):
        config = get_config("toy-r50-d16", [*TINY, "train.iterations=4", f"train.eval_every_epochs={every}"])
        Trainer(config, toy_root, tmp_path / str(every), CPU).fit(progress=False)
        weights[every] = final_weights(tmp_path / str(every))
    assert sum("miou" in record for record in read_log(tmp_path / "1" / "metrics.jsonl")) == 2
    assert all(torch.equal(weights[1][key], weights[1000][key]) for key in weights[1000])


def test_data_workers_are_at_most_one_per_available_core(toy_root, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert (worker_count(0), worker_count(1), worker_count(4)) == (0, 1, 2)
    trainer = Trainer(get_config("toy-r50-d16", [*TINY, "data.num_workers=4"]), toy_root, tmp_path, CPU)
    assert trainer.loader.num_workers == 2  # the reference's 4 on a 2-core machine: no oversubscription warning


@pytest.mark.slow
def test_resume_after_sigkill_gives_bit_identical_weights(toy_root, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert deeplab_train(*tiny_args(toy_root, straight, "train.checkpoint_every=2")).returncode == 0

    command = [sys.executable, "-m", "deeplab", "train", "--config", "toy-r50-d16", *tiny_args(toy_root, killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "last.pth").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert torch.load(killed / "last.pth", weights_only=True)["iteration"] < 6

    resumed = deeplab_train(*tiny_args(toy_root, killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    expected, actual = final_weights(straight), final_weights(killed)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert without_timing(read_log(killed / "metrics.jsonl")) == without_timing(read_log(straight / "metrics.jsonl"))


def without_timing(log: list[dict]) -> list[dict]:
    """Log records without the wall-clock fields, which differ from run to run."""
    return [{key: value for key, value in record.items() if key not in TIMING} for record in log]


TIMING = ("seconds_per_iter", "eta_seconds", "max_memory_mb")


def unlabel_training_masks(toy_root: Path, root: Path, count: int) -> Path:
    """A copy of ``toy_root`` under ``root`` whose first ``count`` training masks are all ``ignore`` (255)."""
    shutil.copytree(toy_root, root)
    toy = root / "toy"
    for name in (toy / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[:count]:
        path = toy / "SegmentationClass" / f"{name}.png"
        mask = Image.open(path)
        blank = Image.new("P", mask.size, 255)
        blank.putpalette(mask.getpalette())
        blank.save(path)
    return root


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_accumulation(toy_root, tmp_path):
    """... with micro-batches of no labelled pixel among them: the mean over the labelled ones is the same."""
    data = unlabel_training_masks(toy_root, tmp_path / "data", 6)  # 6 of 8: some micro-batches have no label
    exact = ["model.dropout=0", "train.amp=none", "train.iterations=4"]  # dropout draws differ between processes
    # One thread each: BatchNorm over 2 images makes some gradients so ill-conditioned that another thread
    # count's summation order alone changes them by percents.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = deeplab_train(*tiny_args(data, tmp_path / "one", *exact), env=env)
    assert single.returncode == 0, single.stderr
    command = torchrun_command(2, ["train", "--config", "toy-r50-d16", *tiny_args(data, tmp_path / "two", *exact)])
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    double = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert double.returncode == 0, double.stderr
    counts = [json.loads((tmp_path / run / "metrics.json").read_text())["empty_batches"] for run in ("one", "two")]
    assert counts[0] == counts[1] > 0
    one, two = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    parameters = dict(build_model(get_config("toy-r50-d16", TINY)).named_parameters())
    for name in parameters:  # not the BatchNorm running statistics: DDP keeps rank 0's
        torch.testing.assert_close(two[name], one[name], msg=name)


@pytest.mark.slow
def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(toy_root, tmp_path, monkeypatch):
    config = get_config("toy-r50-d16", [*TINY, "train.checkpoint_every=1"])
    trainer = Trainer(config, toy_root, tmp_path, CPU)

    def poisoned(outputs, masks, train_config, class_weights):
        losses = segmentation_losses(outputs, masks, train_config, class_weights)
        return {**losses, "loss_cls": losses["loss_cls"] * math.nan} if trainer.iteration == 2 else losses

    monkeypatch.setattr(engine, "segmentation_losses", poisoned)
    with pytest.raises(
        TrainingError, match=r"the loss is nan at iteration 3: training stopped; the last good checkpoint"
    ):
        trainer.fit(progress=False)
    kept = torch.load(tmp_path / "last.pth", weights_only=True)
    assert kept["iteration"] == 2
    assert all(torch.isfinite(value).all() for value in kept["model"].values() if value.is_floating_point())


def test_a_micro_batch_without_labelled_pixels_weighs_nothing(toy_root, tmp_path):
    """Accumulating a labelled micro-batch with an all-ignore one steps as the labelled one alone would."""
    exact = [*TINY, "model.dropout=0", "train.amp=none", "train.optimizer=sgd", "train.momentum=0"]
    config = get_config("toy-r50-d16", exact)
    one, two = (Trainer(config, toy_root, tmp_path / name, CPU) for name in ("one", "two"))
    images, masks = one._next_batch()
    one._batches = iter([(images, masks), (images.flip(-1), torch.full_like(masks, 255))])
    two._batches = iter([(images, masks), (images, masks)])  # the labelled batch twice: its mean gradient
    stepped = one.step(), two.step()
    assert stepped[0]["empty_batches"] == 1 and stepped[1]["empty_batches"] == 0
    for name in ("loss_cls", "loss_aux"):
        assert stepped[0][name] == pytest.approx(stepped[1][name], rel=1e-6) and stepped[0][name] > 0
    for (name, first), second in zip(one.network.named_parameters(), two.network.parameters(), strict=True):
        torch.testing.assert_close(first, second, msg=name)


@pytest.mark.slow
def test_data_without_labelled_pixels_trains_on_and_is_counted(toy_root, tmp_path):
    data = unlabel_training_masks(toy_root, tmp_path / "data", 8)
    trainer = Trainer(get_config("toy-r50-d16", TINY), data, tmp_path / "run", CPU)
    before = {name: value.clone() for name, value in trainer.network.named_parameters()}
    metrics = trainer.fit(progress=False)
    assert metrics["iterations"] == 6 and metrics["empty_batches"] == 6 * 2  # 2 micro-batches per step
    log = [record for record in read_log(tmp_path / "run" / "metrics.jsonl") if "seconds_per_iter" in record]
    assert [record["empty_batches"] for record in log] == [2] * 6 and not any("loss" in record for record in log)
    for name, value in trainer.network.named_parameters():  # no optimizer step without a labelled pixel
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize(
    ("name", "kind", "settings"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.9, "weight_decay": 5e-4}),
        ("adamw", torch.optim.AdamW, {"weight_decay": 5e-4}),
    ],
)
def test_the_optimizer_is_the_one_the_config_names(name, kind, settings):
    config = get_config("voc-r50-d8", [f"train.optimizer={name}", "train.lr=0.02"]).train
    optimizer = engine.build_optimizer(nn.Linear(2, 2).parameters(), config)
    assert type(optimizer) is kind
    assert optimizer.defaults["lr"] == 0.02
    assert {key: optimizer.defaults[key] for key in settings} == settings


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_fused_optimizer_steps_as_torchs_per_parameter_loop(name):
    config = get_config("voc-r50-d8", [f"train.optimizer={name}"]).train
    torch.manual_seed(0)
    fused, plain = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    plain.load_state_dict(fused.state_dict())
    start = fused.weight.detach().clone()
    optimizer = engine.build_optimizer(fused.parameters(), config)
    settings = {key: optimizer.defaults[key] for key in ("lr", "weight_decay")}
    kind = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
    extra = {"momentum": config.momentum} if name == "sgd" else {}
    reference = kind(plain.parameters(), **settings, **extra, foreach=False)
    assert optimizer.defaults["fused"]
    for step in range(3):
        gradients = [torch.randn_like(parameter) for parameter in fused.parameters()]
        for module, opt in ((fused, optimizer), (plain, reference)):
            for parameter, gradient in zip(module.parameters(), gradients, strict=True):
                parameter.grad = gradient.clone()
            opt.step()
        for a, b in zip(fused.parameters(), plain.parameters(), strict=True):
            torch.testing.assert_close(a, b, msg=f"step {step}")
    assert not torch.equal(fused.weight, start)  # the steps moved the weights


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("train.amp=fp16", PrecisionError, "train.amp=fp16 needs a GPU"),
        ("train.batch_per_process=1", TrainingError, "train.batch_per_process=1 gives BatchNorm a single image"),
        ("train.batch_size=5", TrainingError, "train.batch_size=5 is not a multiple of train.batch_per_process=2"),
    ],
)
def test_impossible_settings_are_refused_before_training(toy_root, tmp_path, override, error, message):
    with pytest.raises(error, match=message):
        Trainer(get_config("toy-r50-d16", [*TINY, override]), toy_root, tmp_path, CPU)


def test_the_reference_gpu_numerics_are_config_keys(toy_root, tmp_path):
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        Trainer(get_config("toy-r50-d16", TINY), toy_root, tmp_path, CPU)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        assert torch.backends.cudnn.benchmark
        Trainer(get_config("toy-r50-d16", [*TINY, "train.allow_tf32=true", "train.cudnn_benchmark=false"]), toy_root,
                tmp_path, CPU)  # fmt: skip
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = flags


@pytest.mark.slow
def test_the_log_holds_window_means_of_both_loss_terms(toy_root, tmp_path, monkeypatch):
    steps = []
    step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self: steps.append(step(self)) or steps[-1])
    config = get_config("toy-r50-d16", [*TINY, "train.log_every=3"])
    Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)
    log = [record for record in read_log(tmp_path / "metrics.jsonl") if "loss" in record]
    assert [record["iter"] for record in log] == [3, 6]
    for record, window in zip(log, (steps[:3], steps[3:]), strict=True):
        for name in ("loss", "loss_cls", "loss_aux"):
            assert record[name] == pytest.approx(sum(s[name] for s in window) / 3, rel=1e-12)
        assert record["loss"] == pytest.approx(record["loss_cls"] + record["loss_aux"])
        assert record["seconds_per_iter"] > 0 and "max_memory_mb" not in record  # GPU memory only on GPUs
    assert log[0]["eta_seconds"] == pytest.approx(3 * log[0]["seconds_per_iter"]) and log[1]["eta_seconds"] == 0
    assert log[0]["lr"] == pytest.approx(
        config.train.lr * engine.poly_factor(6, config.train.poly_power, config.train.min_lr_ratio)(2)
    )  # step 3's lr


@pytest.mark.slow
def test_resume_refuses_another_config(toy_root, tmp_path):
    Trainer(get_config("toy-r50-d16", [*TINY, "train.iterations=1"]), toy_root, tmp_path, CPU).fit(progress=False)
    other = Trainer(get_config("toy-r50-d16", [*TINY, "train.iterations=1", "train.lr=0.1"]), toy_root, tmp_path, CPU)
    with pytest.raises(Exception, match=r"trained with another config \(train.lr: 0.001 vs 0.1\)"):
        other.fit(resume=True, progress=False)


@pytest.mark.slow
def test_resume_on_another_process_count_is_refused_unless_replanned(toy_root, tmp_path):
    """A run saved by 2 processes (its checkpoint edited to say so, with a schedule of 4 steps) resumed by 1: refused
    in one line naming both counts and the two ways on; with ``replan`` it trains on to the saved schedule's end."""
    config = get_config("toy-r50-d16", [*TINY, "train.iterations=2"])
    Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)
    state = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (state["world_size"], state["total_steps"]) == (1, 2)
    torch.save({**state, "world_size": 2, "total_steps": 4}, tmp_path / "last.pth")
    with pytest.raises(CheckpointError, match="trained on 2 processes, this run has 1: resume with torchrun") as error:
        Trainer(config, toy_root, tmp_path, CPU).fit(resume=True, progress=False)
    assert "\n" not in str(error.value) and "--nproc-per-node=2" in str(error.value) and "--replan" in str(error.value)

    Trainer(config, toy_root, tmp_path, CPU).fit(resume=True, replan=True, progress=False)
    log = [record for record in read_log(tmp_path / "metrics.jsonl") if "loss" in record]
    assert [record["iter"] for record in log] == [1, 2, 3, 4]
    train = config.train
    assert log[2]["lr"] == pytest.approx(train.lr * poly_factor(4, train.poly_power, train.min_lr_ratio)(2))
    assert torch.load(tmp_path / "last.pth", weights_only=True)["iteration"] == 4


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_fresh_start_moves_the_earlier_run_aside(toy_root, tmp_path):
    """A run that starts afresh in a finished run's folder and stops early leaves neither the old metrics.json in
    the folder nor loses it: the earlier run's files are in previous/."""
    config = get_config("toy-r50-d16", [*TINY, "train.iterations=1"])
    Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)
    earlier = {name: (tmp_path / name).read_bytes() for name in ("metrics.json", "last.pth", "metrics.jsonl")}

    def stop(record: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, toy_root, tmp_path, CPU).fit(progress=False, on_record=stop)
    assert not (tmp_path / "metrics.json").exists()
    assert {name: (tmp_path / "previous" / name).read_bytes() for name in earlier} == earlier


def test_a_failed_start_leaves_the_earlier_run_byte_identical(toy_root, tmp_path):
    config = get_config("toy-r50-d16", [*TINY, "train.iterations=1"])
    Trainer(config, toy_root, tmp_path / "run", CPU).fit(progress=False)
    before = folder_bytes(tmp_path / "run")
    torch.save({"model": {"head.weight": torch.zeros(3)}}, tmp_path / "other.pth")  # a typo'd model.init_from
    retry = get_config("toy-r50-d16", [*TINY, "train.iterations=1", f"model.init_from={tmp_path / 'other.pth'}"])
    with pytest.raises(CheckpointError, match="no tensor fits"):
        Trainer(retry, toy_root, tmp_path / "run", CPU).fit(progress=False)
    assert folder_bytes(tmp_path / "run") == before


def test_a_second_writer_of_a_run_folder_is_refused_in_one_line(toy_root, tmp_path):
    config = get_config("toy-r50-d16", [*TINY, "train.iterations=1"])
    (tmp_path / ".lock.holder").write_text("process 12 on lab-machine\n")
    with FileLock(tmp_path / ".lock"), pytest.raises(TrainingError) as refused:
        Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)
    assert str(refused.value) == (
        f"{tmp_path} is being written by another run (process 12 on lab-machine): wait for it to end, or train "
        "into another --out"
    )
    assert not (tmp_path / "last.pth").exists()


def test_a_corrupt_training_image_read_by_a_worker_is_its_one_line_error(toy_root, tmp_path):
    shutil.copytree(toy_root, tmp_path / "data")
    toy = tmp_path / "data" / "toy"
    for name in (toy / "ImageSets" / "Segmentation" / "train.txt").read_text().split():
        image = toy / "JPEGImages" / f"{name}.jpg"
        image.write_bytes(image.read_bytes()[:300])  # every one truncated: the first batch holds one
    trainer = Trainer(get_config("toy-r50-d16", [*TINY, "data.num_workers=1"]), tmp_path / "data", tmp_path, CPU)
    with pytest.raises(DatasetError) as raised:
        trainer.step()
    assert "unreadable image" in str(raised.value) and "\n" not in str(raised.value)


def scripted_evaluations(monkeypatch, miou_at: dict[int, float]) -> None:
    """Make ``Trainer.evaluate`` report ``miou_at[iteration]`` (the real evaluation is tested elsewhere)."""

    def evaluate(self):
        return {"miou": miou_at[self.iteration], "pixel_accuracy": 0.5, "iou": [0.0] * 6}

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


@pytest.mark.slow
def test_best_checkpoint_is_the_highest_miou_and_survives_a_crash_and_resume(toy_root, tmp_path, monkeypatch):
    """best.pth follows the evaluation with the highest mIoU; a crash after best.pth was written at iteration 4 but
    before last.pth caught up (checkpoint at 3) resumes at 3, evaluates 4 again and keeps both files right."""
    scripted_evaluations(monkeypatch, {2: 0.3, 4: 0.5, 6: 0.4})
    config = get_config("toy-r50-d16", [*TINY, "train.eval_every_epochs=1", "train.checkpoint_every=3"])

    def crash_at_5(record: dict) -> None:
        if record["iter"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, toy_root, tmp_path, CPU).fit(progress=False, on_record=crash_at_5)
    best = torch.load(tmp_path / "best.pth", weights_only=True)
    assert (best["iteration"], best["miou"], torch.load(tmp_path / "last.pth")["iteration"]) == (4, 0.5, 3)

    metrics = Trainer(config, toy_root, tmp_path, CPU).fit(resume=True, progress=False)
    best_after = torch.load(tmp_path / "best.pth", weights_only=True)
    assert (best_after["iteration"], best_after["miou"]) == (4, 0.5)
    assert all(torch.equal(best["model"][key], best_after["model"][key]) for key in best["model"])
    assert not all(torch.equal(best["model"][key], final_weights(tmp_path)[key]) for key in best["model"])
    assert metrics["best"] == {"miou": 0.5, "iteration": 4, "checkpoint": "best.pth"}
    assert json.loads((tmp_path / "metrics.json").read_text())["best"] == metrics["best"]
    assert best_after["config"] == best["config"] and best_after["classes"]["classes"][1] == "disc"


@pytest.mark.slow
def test_a_fresh_start_forgets_an_earlier_runs_best_checkpoint(toy_root, tmp_path, monkeypatch):
    scripted_evaluations(monkeypatch, {2: 0.9, 4: 0.2})
    config = get_config("toy-r50-d16", [*TINY, "train.eval_every_epochs=1", "train.iterations=4"])
    Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)
    scripted_evaluations(monkeypatch, {2: 0.1, 4: 0.3})
    assert Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)["best"]["iteration"] == 4


@pytest.mark.slow
def test_fine_tuning_a_21_class_checkpoint_into_the_6_class_toy_set(toy_root, tmp_path):
    """What fits loads, the two classifiers start afresh, the report names them, and training goes on from there."""
    source = build_model(get_config("toy-r50-d16", [*TINY, "model.num_classes=21"]))
    save_checkpoint(tmp_path / "voc.pth", source, config={"name": "a 21-class run"})
    config = get_config("toy-r50-d16", [*TINY, "train.iterations=2", f"model.init_from={tmp_path / 'voc.pth'}"])
    trainer = Trainer(config, toy_root, tmp_path / "run", CPU)
    report = trainer.start_from_checkpoint().to_dict()
    classifiers = ["decoder.classifier.weight", "decoder.classifier.bias", "aux_head.2.weight", "aux_head.2.bias"]
    assert sorted(report["new"]) == sorted(classifiers) and report["unused"] == classifiers[:0]
    assert report["new"]["decoder.classifier.weight"] == "(6, 32, 1, 1) vs (21, 32, 1, 1)"
    loaded = trainer.network.state_dict()
    assert len(report["loaded"]) == len(loaded) - 4
    assert all(torch.equal(loaded[key], source.state_dict()[key]) for key in report["loaded"])

    metrics = trainer.fit(progress=False)
    assert metrics["iterations"] == 2 and len(metrics["iou"]) == 6
    assert json.loads((tmp_path / "run" / "init_from.json").read_text()) == report  # written when the run starts
    trained = final_weights(tmp_path / "run")
    assert not torch.equal(trained["aspp.fuse.0.weight"], source.state_dict()["aspp.fuse.0.weight"])


def test_fine_tuning_from_imagenet_backbone_weights_alone(tmp_path):
    backbone = build_model(get_config("toy-r50-d16", TINY)).backbone.state_dict()
    torch.save({**backbone, "fc.weight": torch.zeros(1000, 2048)}, tmp_path / "resnet50.pth")
    model = build_model(get_config("toy-r50-d16", TINY))
    report = load_fitting(model, tmp_path / "resnet50.pth")
    assert len(report.loaded) == len(backbone) and report.unused == []
    assert all(key.startswith(("aspp.", "decoder.", "aux_head.")) for key in report.new)
    assert f"loaded {len(backbone)} of {len(model.state_dict())} tensors" in report.summary()


def test_a_checkpoint_of_which_nothing_fits_is_refused(tmp_path):
    torch.save({"model": {"head.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other.pth: no tensor fits this model"):
        load_fitting(build_model(get_config("toy-r50-d16", TINY)), tmp_path / "other.pth")


def test_a_checkpoint_that_gives_little_of_the_model_is_refused_unless_allowed(tmp_path):
    """A few BatchNorm tensors that happen to share names and shapes (as an unrelated ResNet's would) are no start."""
    model = build_model(get_config("toy-r50-d16", TINY))
    stem = {key: value for key, value in model.state_dict().items() if key.startswith("backbone.stem.1.")}
    torch.save({"model": stem}, tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError, match=r"only 0\.0\d?% of the model's weights \(5 of \d+ tensors fit .*0\.5"):
        load_fitting(model, tmp_path / "resnet18.pth", min_loaded=0.5)
    assert len(load_fitting(model, tmp_path / "resnet18.pth", min_loaded=0.0).loaded) == 5


def test_the_fine_tuning_report_is_one_bounded_line():
    new = {f"decoder.conv{index}.weight": "absent" for index in range(6)} | {"aux_head.2.bias": "absent"}
    line = InitReport("other.pth", ["backbone.conv1.weight"], new, []).summary()
    assert "decoder.conv3.weight (absent), ... and 3 more (decoder 2, aux_head 1; all in init_from.json)" in line
    assert "decoder.conv4" not in line


@pytest.mark.slow
def test_tensorboard_receives_the_losses_lr_per_class_iou_and_overlays(toy_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = get_config("toy-r50-d16", [*TINY, "train.iterations=2", "train.tensorboard=true"])
    metrics = Trainer(config, toy_root, tmp_path, CPU).fit(progress=False)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2]
    assert [event.step for event in events.Scalars("train/lr")] == [1, 2]
    assert events.Scalars("val/mIoU")[-1].value == pytest.approx(metrics["miou"])
    assert {f"val/IoU/{name}" for name in ("disc", "square")} <= set(tags["scalars"])
    assert len(tags["images"]) == 4 and all(tag.startswith("val/overlays/") for tag in tags["images"])
