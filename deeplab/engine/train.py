"""The training loop: SGD with the poly schedule, AMP, DDP/SyncBatchNorm, atomic checkpoints and exact resume.

One code path for the CPU, one GPU and many (``torchrun``). ``batch_size`` is the global batch: each step every
process runs ``accumulation`` micro-batches of ``batch_per_process`` images, so that
``batch_size = world_size * accumulation * batch_per_process`` whatever the number of GPUs.

``best.pth`` keeps the weights of the evaluation with the highest validation mIoU so far (its mIoU and iteration
inside, and in ``metrics.json``). ``model.init_from`` starts a run from what fits of another checkpoint (fine-tuning
into another number of classes: :func:`deeplab.models.weights.load_fitting`).

Resuming from ``last.pth`` restores the model, optimizer, scheduler, gradient scaler, RNG states and the data
position (the step count, from which ``GlobalBatchSampler`` finds the epoch and the place in it): on the CPU the
final weights equal, bit for bit, those of a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import random
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from filelock import FileLock, Timeout
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from deeplab.config import Config, TrainConfig, config_differences, with_dataset_classes
from deeplab.data import DatasetInfo, FolderDataset, SegmentationDataset, build_dataset
from deeplab.data.balance import class_pixels, median_frequency_weights
from deeplab.data.loading import CarryErrors, raise_carried, worker_count
from deeplab.data.transforms import eval_transforms, train_transforms
from deeplab.engine import distributed
from deeplab.engine.distributed import Distributed
from deeplab.engine.evaluate import evaluate
from deeplab.engine.precision import autocast_dtype, emulation_note, uses_channels_last
from deeplab.engine.runlog import FINAL_METRICS, LOG, RunLog, atomic_write_json
from deeplab.engine.sampling import GlobalBatchSampler, SeededAugmentation
from deeplab.engine.tensorboard import TensorBoardLog
from deeplab.engine.window import LossWindow
from deeplab.models import build_model
from deeplab.models.weights import (
    CheckpointError,
    InitReport,
    atomic_save,
    load_fitting,
    read_checkpoint,
    save_checkpoint,
)

CHECKPOINT = "last.pth"
BEST_CHECKPOINT = "best.pth"
INIT_REPORT = "init_from.json"
TENSORBOARD = "tb"
CONFIG_FILE = "config.json"
PREVIOUS = "previous"  # where a fresh start moves the files of the run it replaces
LOCK = ".lock"  # held by the process that writes the run folder, for the whole run
# The named ranges of a step (torch.profiler.record_function) that `python -m benchmarks step` adds up: loading the
# batch, forward and loss, backward, and the optimizer step with its checks.
PHASES = ("train.data", "train.forward", "train.backward", "train.optimizer")
RUN_FILES = (CHECKPOINT, BEST_CHECKPOINT, LOG, FINAL_METRICS, INIT_REPORT, CONFIG_FILE, TENSORBOARD)


class TrainingError(RuntimeError):
    """Training cannot go on: a diverged loss or an impossible batch layout."""


def poly_factor(total_steps: int, power: float = 0.9, min_ratio: float = 0.01) -> Callable[[int], float]:
    """The reference's poly schedule as a multiplier of the initial lr, for ``LambdaLR``.

    ``lr(t) = (lr0 - lr_min) (1 - t / T) ** power + lr_min`` with ``lr_min = min_ratio * lr0``.
    """

    def factor(step: int) -> float:
        return (1 - min(step, total_steps) / total_steps) ** power * (1 - min_ratio) + min_ratio

    return factor


def segmentation_losses(
    outputs: dict[str, torch.Tensor],
    masks: torch.Tensor,
    config: TrainConfig,
    class_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The reference's loss terms: ``loss_cls``, the cross-entropy over valid pixels on ``out``, and (with an
    ``aux`` output) ``loss_aux``, ``aux_weight`` times that on ``aux``; with ``class_weights`` ``(C,)``, each pixel
    weighs its class's weight (the weighted mean of ``F.cross_entropy``).

    Shapes: logits ``(N, C, H, W)``, masks ``(N, H, W)`` int64 with ``ignore_index`` for unlabelled pixels. A batch
    with no valid pixel (or none of weight > 0) gets 0 with zero gradients for both, where the mean would be 0/0 = NaN.
    """
    valid = masks != config.ignore_index  # (N, H, W); no host sync below, so steps on a GPU do not wait
    if class_weights is None:
        labelled = valid.any()
    else:  # the weighted mean's denominator, once for both heads: 0 and zero gradients where nothing weighs
        weight_sum = (class_weights[masks.masked_fill(~valid, 0)] * valid).sum()
        weight_sum = weight_sum.clamp(min=torch.finfo(torch.float32).tiny)

    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:  # in fp32
        if class_weights is None:
            loss = F.cross_entropy(logits.float(), masks, ignore_index=config.ignore_index)
            return torch.where(labelled, loss, torch.zeros_like(loss))
        total = F.cross_entropy(
            logits.float(), masks, weight=class_weights, ignore_index=config.ignore_index, reduction="sum"
        )
        return total / weight_sum

    losses = {"loss_cls": cross_entropy(outputs["out"])}
    if "aux" in outputs:
        losses["loss_aux"] = config.aux_weight * cross_entropy(outputs["aux"])
    return losses


def segmentation_loss(outputs: dict[str, torch.Tensor], masks: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The training loss: the sum of :func:`segmentation_losses`."""
    return sum(segmentation_losses(outputs, masks, config).values())


def build_optimizer(parameters: Iterator[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``parameters``: SGD with momentum (the reference recipe) or AdamW.

    Both use torch's fused kernels (one pass over all parameters; the same update as the per-parameter loop, to
    rounding): on 2 CPU cores an AdamW step over the toy model's 32M parameters takes 0.022 s fused against 0.074 s
    (SGD: 0.017 against 0.029; AMD Zen 4).
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    raise TrainingError(f"train.optimizer={config.optimizer!r} is not one of sgd, adamw")


def collate(samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor] | dict[str, Exception]:
    """Stack equally sized samples into images ``(N, 3, H, W)`` float and masks ``(N, H, W)`` int64; a sample that
    carries a worker's error (``CarryErrors``) is passed on instead, for the main process to raise."""
    for sample in samples:
        if "error" in sample:
            return sample
    return torch.stack([s["image"] for s in samples]), torch.stack([s["mask"] for s in samples]).long()


def micro_batch_size(config: TrainConfig, world_size: int) -> int:
    """Images per forward in each process: ``batch_per_process``, or (when 0) the reference's global batch / world
    size, e.g. 2 per GPU for VOC and ADE20k and 1 for Cityscapes on 8 GPUs."""
    if config.batch_per_process:
        return config.batch_per_process
    share, rest = divmod(config.batch_size, world_size)
    if rest or not share:
        raise TrainingError(
            f"train.batch_size={config.batch_size} does not split over {world_size} processes: use a process count "
            "that divides it, or set train.batch_per_process to a divisor (gradient accumulation fills the batch)"
        )
    return share


def accumulation_steps(config: TrainConfig, world_size: int) -> int:
    """How many micro-batches each process runs per step to make up the global batch."""
    per_step = micro_batch_size(config, world_size) * world_size
    if config.batch_size % per_step:
        raise TrainingError(
            f"train.batch_size={config.batch_size} is not a multiple of train.batch_per_process="
            f"{micro_batch_size(config, world_size)} x {world_size} processes: change one of them"
        )
    return config.batch_size // per_step


def set_gpu_numerics(config: TrainConfig) -> None:
    """TF32 and cuDNN autotuning as ``config`` says (the reference: TF32 off, benchmark on); GPUs only read them.

    The legacy ``allow_tf32`` flags, as the reference sets them: mixing them with ``fp32_precision`` is an error.
    """
    torch.backends.cuda.matmul.allow_tf32 = config.allow_tf32
    torch.backends.cudnn.allow_tf32 = config.allow_tf32
    torch.backends.cudnn.benchmark = config.cudnn_benchmark


class Trainer:
    """Trains ``config`` on the data in ``data_root``, writing checkpoints and logs into ``run_dir``."""

    def __init__(self, config: Config, data_root: str | Path, run_dir: str | Path, env: Distributed) -> None:
        self.config, self.env = with_dataset_classes(config, data_root), env
        config = self.config
        self.run_dir = Path(run_dir)
        train_config = config.train
        self.batch_per_process = micro_batch_size(train_config, env.world_size)
        self.accumulation = accumulation_steps(train_config, env.world_size)
        self._check_batchnorm_batch()
        self.amp_dtype = autocast_dtype(train_config.amp, env.device, option="train.amp")
        channels_last = uses_channels_last(train_config.channels_last, env.device, train_config.amp)
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format
        set_gpu_numerics(train_config)
        self.model = self._build_model()  # first, so that missing ImageNet weights stop the run before data loads
        data = config.data
        augment = train_transforms(
            crop_size=data.crop_size, scale=data.scale, ratio_range=data.ratio_range, cat_max_ratio=data.cat_max_ratio
        )
        train_set = build_dataset(data.dataset, data_root, data.train_split)
        self.classes = DatasetInfo(data.dataset, train_set.classes, train_set.palette)
        self.val_set = build_dataset(
            data.dataset, data_root, data.val_split, transforms=eval_transforms(scale=data.scale)
        )
        for dataset in (train_set, self.val_set):
            if isinstance(dataset, FolderDataset):  # your own data: every pair read once, before any step
                dataset.check_pairs()
        self._check_batch_fits(len(train_set))
        self.class_weights = self._class_weights(train_set)
        self.sampler = GlobalBatchSampler(
            len(train_set),
            batch_per_process=self.batch_per_process,
            accumulation=self.accumulation,
            rank=env.rank,
            world_size=env.world_size,
            seed=train_config.seed,
        )
        on_gpu, workers = env.device.type == "cuda", worker_count(data.num_workers)
        self.loader = DataLoader(
            CarryErrors(SeededAugmentation(train_set, augment, seed=train_config.seed)),
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=on_gpu,
            persistent_workers=on_gpu and workers > 0,
            generator=torch.Generator(),  # keeps DataLoader seeding off the global RNG that dropout uses
        )
        self.total_steps = train_config.iterations or train_config.epochs * self.sampler.steps_per_epoch
        self.optimizer = build_optimizer(self.model.parameters(), train_config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule(self.total_steps))
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=self.amp_dtype == torch.float16)
        self.iteration = 0
        self.empty_batches = 0  # micro-batches without a labelled pixel, all processes, since the start
        self.best: dict[str, float] | None = None  # {"miou", "iteration"} of best.pth
        self._batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    # ---- set-up -------------------------------------------------------------------------------------------------
    def _check_batchnorm_batch(self) -> None:
        spans_gpus = self.env.device.type == "cuda" and self.env.world_size > 1 and self.config.train.sync_bn
        if self.batch_per_process < 2 and not spans_gpus:
            raise TrainingError(
                f"train.batch_per_process={self.batch_per_process} gives BatchNorm a single image (the ASPP "
                "image-pooling branch then fails): use 2 or more, or SyncBatchNorm over several GPUs"
            )

    def _check_batch_fits(self, images: int) -> None:
        """Refuse a global batch larger than the ``images`` of the training split (an epoch would have no step)."""
        batch, unit = self.config.train.batch_size, self.batch_per_process * self.env.world_size
        if images < batch:
            fitting = max(images // unit * unit, unit)
            raise TrainingError(
                f"train.batch_size={batch} (the global batch) is larger than the {images} training images of "
                f"{self.config.data.dataset} split {self.config.data.train_split!r}: set --set "
                f"train.batch_size={fitting} or fewer, or add training images"
            )

    def _class_weights(self, train_set: SegmentationDataset) -> torch.Tensor | None:
        """``train.class_weights`` as ``(C,)`` float32 on the device: ``None`` for "none", median frequency balancing
        over the training split's masks for "auto" (:mod:`deeplab.data.balance`), else the numbers given."""
        setting = self.config.train.class_weights
        if setting == "none":
            return None
        if setting == "auto":
            weights = median_frequency_weights(*class_pixels(train_set))
        else:
            weights = torch.tensor([float(weight) for weight in setting.split(",")])
            if len(weights) != train_set.num_classes:
                raise TrainingError(
                    f"train.class_weights={setting} gives {len(weights)} weights for the {train_set.num_classes} "
                    f"classes of {self.config.data.dataset}: give one per class, in class order, or auto"
                )
        if self.env.is_main:
            named = ", ".join(f"{name} {weight:.3g}" for name, weight in zip(train_set.classes, weights, strict=True))
            print(f"class weights of the loss ({setting}): {named}", flush=True)
        return weights.to(self.env.device)

    def _build_model(self) -> nn.Module:
        torch.manual_seed(self.config.train.seed)  # the same initial weights in every process
        model = build_model(self.config, weights=self.config.model.backbone_weights)
        if self.env.device.type == "cuda" and self.env.world_size > 1 and self.config.train.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.env.device, memory_format=self.memory_format)
        torch.manual_seed(self.config.train.seed + self.env.rank)  # dropout differs between processes
        if self.env.world_size > 1:
            device_ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids)
        return model

    @property
    def network(self) -> nn.Module:
        """The model without its ``DistributedDataParallel`` wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    # ---- one step -----------------------------------------------------------------------------------------------
    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            if self._batches is None:
                epoch, step = divmod(self.iteration, self.sampler.steps_per_epoch)
                self.sampler.set_epoch(epoch, step)
                self._batches = iter(self.loader)
            try:
                images, masks = raise_carried(next(self._batches))
            except StopIteration:
                self._batches = None
                continue
            images = images.to(self.env.device, non_blocking=True, memory_format=self.memory_format)
            return images, masks.to(self.env.device, non_blocking=True)

    def step(self) -> dict[str, float]:
        """One optimizer step over the global batch; returns its ``loss``, the terms ``loss_cls`` and ``loss_aux``
        (weighted; 0 without an aux head), and ``empty_batches``, how many micro-batches had no labelled pixel.

        The losses are means over the micro-batches of all processes that have labelled pixels; the gradient is
        rescaled to that same mean, so an all-``ignore`` micro-batch weighs nothing. A step where none has labelled
        pixels leaves the weights alone (the schedule still advances) and has no loss terms.
        """
        self.model.train()
        terms = torch.zeros(3, device=self.env.device)  # loss_cls, loss_aux, labelled micro-batches of this process
        for micro in range(self.accumulation):
            with record_function(PHASES[0]):
                images, masks = self._next_batch()
            last = micro == self.accumulation - 1
            no_sync = self.model.no_sync() if isinstance(self.model, DistributedDataParallel) and not last else None
            with no_sync or contextlib.nullcontext():
                with (
                    record_function(PHASES[1]),
                    torch.autocast(self.env.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None),
                ):
                    losses = segmentation_losses(self.model(images), masks, self.config.train, self.class_weights)
                    loss = sum(losses.values()) / self.accumulation
                with record_function(PHASES[2]):
                    self.scaler.scale(loss).backward()
            labelled = (masks != self.config.train.ignore_index).any().float()
            aux = losses.get("loss_aux", terms.new_zeros(()))
            terms += torch.stack([losses["loss_cls"], aux, labelled]).detach()  # values only: no graph in the sum
        loss_cls, loss_aux, labelled = distributed.sum_across_processes(terms).tolist()
        micro_batches = self.accumulation * self.env.world_size
        result = {"empty_batches": micro_batches - round(labelled)}
        if labelled:
            with record_function(PHASES[3]):
                result |= self._optimizer_step(loss_cls / labelled, loss_aux / labelled, micro_batches / labelled)
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a step without labels skips the optimizer on purpose
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler.step\(\)` before", UserWarning)
            self.scheduler.step()
        self.iteration += 1
        return result

    def _optimizer_step(self, loss_cls: float, loss_aux: float, gradient_scale: float) -> dict[str, float]:
        """Check the loss, rescale the gradients (the mean over labelled micro-batches) and step the optimizer."""
        loss_value = loss_cls + loss_aux
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingError(
                f"the loss is {loss_value} at iteration {self.iteration + 1}: training stopped; the last good "
                f"checkpoint stays in {self.run_dir / CHECKPOINT} (try a lower train.lr, or train.amp=none)"
            )
        if gradient_scale != 1:
            for parameter in self.model.parameters():
                if parameter.grad is not None:
                    parameter.grad.mul_(gradient_scale)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": loss_value, "loss_cls": loss_cls, "loss_aux": loss_aux}

    # ---- checkpoints --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.env.device)
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "total_steps": self.total_steps,
            "world_size": self.env.world_size,
            "empty_batches": self.empty_batches,
            "config": dataclasses.asdict(self.config),
            "classes": self.classes.to_dict(),
            "rng": distributed.all_gather_objects(rng),
        }

    def save(self) -> Path:
        """Write ``last.pth`` atomically (main process; every process takes part in gathering RNG states)."""
        state = self.state_dict()
        path = self.run_dir / CHECKPOINT
        if self.env.is_main:
            atomic_save(state, path)
        return path

    def keep_if_best(self, metrics: dict[str, Any]) -> None:
        """Write ``best.pth`` (weights, config, classes, its mIoU and iteration) atomically when ``metrics`` beat every
        earlier evaluation of this run; ties keep the earlier one."""
        if self.best is not None and metrics["miou"] <= self.best["miou"]:
            return
        self.best = {"miou": metrics["miou"], "iteration": self.iteration}
        if self.env.is_main:
            extra = {"config": dataclasses.asdict(self.config), "classes": self.classes.to_dict(), **self.best}
            save_checkpoint(self.run_dir / BEST_CHECKPOINT, self.network, **extra)

    def start_from_checkpoint(self) -> InitReport | None:
        """Fine-tuning: load what fits of ``model.init_from`` into the model; returns what was loaded and what is
        new, by name (``None`` without ``model.init_from``)."""
        source = self.config.model.init_checkpoint
        return None if source is None else load_fitting(self.network, source, self.config.model.init_min_loaded)

    def _set_aside_earlier_run(self) -> None:
        """Move the files an earlier run left in the folder to ``previous/`` (replacing what an even earlier start
        moved there): a new start never deletes a run's results."""
        earlier = [self.run_dir / name for name in RUN_FILES if (self.run_dir / name).exists()]
        if not earlier:
            return
        aside = self.run_dir / PREVIOUS
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for path in earlier:
            path.rename(aside / path.name)
        print(f"the earlier run's files in {self.run_dir} are now in {aside}", flush=True)

    def _read_best(self) -> dict[str, float] | None:
        """The mIoU and iteration of this run's ``best.pth``, if it has one: the file itself is the record, so a
        crash between writing it and the next ``last.pth`` loses nothing."""
        path = self.run_dir / BEST_CHECKPOINT
        if not path.is_file():
            return None
        state = read_checkpoint(path)
        return {"miou": state["miou"], "iteration": state["iteration"]}

    def resume(self, *, replan: bool = False) -> None:
        """Continue from ``run_dir/last.pth``: weights, optimizer, schedule, scaler, RNG and data position.

        On another number of processes than the run's, the data position and the epoch length would change under
        the saved schedule: refused, unless ``replan``, which keeps the run's schedule length and goes on with this
        process count's data order (the random state too starts afresh: the run is no longer the uninterrupted one).
        """
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume in {self.run_dir}: run without --resume to start afresh")
        state = read_checkpoint(path)
        changed = config_differences(state.get("config") or {}, dataclasses.asdict(self.config))
        if changed:
            raise CheckpointError(
                f"{path} was trained with another config ({changed}): resume with the same --config and --set values"
            )
        processes = state.get("world_size", len(state["rng"]))  # one RNG state per process before it was saved
        replanned = processes != self.env.world_size
        if replanned and not replan:
            raise CheckpointError(
                f"{path} was trained on {processes} processes, this run has {self.env.world_size}: resume with "
                f"torchrun --nproc-per-node={processes} (times the nodes), or add --replan to go on with "
                f"{self.env.world_size} (the same schedule, another data order from here)"
            )
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if replanned:
            self._keep_schedule(state.get("total_steps", self.total_steps))
        self.iteration = state["iteration"]
        self.empty_batches = state.get("empty_batches", 0)  # absent from checkpoints written before it was counted
        self.best = self._read_best()
        self._batches = None
        rngs = state["rng"]
        if len(rngs) == self.env.world_size:
            rng = rngs[self.env.rank]
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            if "cuda" in rng and self.env.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.env.device)

    def _schedule(self, total_steps: int) -> Callable[[int], float]:
        """The config's poly schedule over ``total_steps``, as a factor of the initial learning rate."""
        return poly_factor(total_steps, self.config.train.poly_power, self.config.train.min_lr_ratio)

    def _keep_schedule(self, total_steps: int) -> None:
        """Train to ``total_steps`` with the poly schedule over that many steps (a resumed run's, re-planned)."""
        self.total_steps = total_steps
        self.scheduler.lr_lambdas = [self._schedule(total_steps)] * len(self.optimizer.param_groups)
        self.scheduler.last_epoch -= 1
        self.scheduler.step()  # the learning rate of the step it stands at, by the new factor

    # ---- the whole run ------------------------------------------------------------------------------------------
    def _start(self, log: RunLog, *, resume: bool, replan: bool = False) -> None:
        """Resume (dropping log records after the checkpoint), or start afresh: load ``model.init_from``, then move
        what an earlier run left in the folder aside. Every check comes before the folder is touched. Writes
        ``config.json`` (and ``init_from.json``) and says what the backbone starts from."""
        report = None
        if resume:
            self.resume(replan=replan)
            log.truncate_after(self.iteration)
        else:
            report = self.start_from_checkpoint()
            if self.env.is_main:
                self._set_aside_earlier_run()
                log.clear()
        if self.env.is_main:
            (self.run_dir / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.config), indent=2))
            print(_backbone_start(self.config), flush=True)
            if note := emulation_note(self.config.train.amp, self.env.device, option="train.amp"):
                print(note, flush=True)
            if report is not None:
                atomic_write_json(self.run_dir / INIT_REPORT, report.to_dict())
                print(report.summary(), flush=True)

    @contextlib.contextmanager
    def _only_writer(self) -> Iterator[None]:
        """Hold ``run_dir/.lock`` (main process) for the whole run: a second run writing into the same folder is
        refused in one line. The operating system frees the lock of a killed process, so ``--resume`` after
        ``kill -9`` takes it over."""
        if not self.env.is_main:
            yield
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock, holder = FileLock(self.run_dir / LOCK), self.run_dir / f"{LOCK}.holder"
        try:
            lock.acquire(timeout=0)
        except Timeout:
            who = holder.read_text().strip() if holder.is_file() else "another process"
            raise TrainingError(
                f"{self.run_dir} is being written by another run ({who}): wait for it to end, or train into another "
                "--out"
            ) from None
        try:
            holder.write_text(f"process {os.getpid()} on {socket.gethostname()}\n")
            yield
        finally:
            holder.unlink(missing_ok=True)
            lock.release()

    @staticmethod
    def _write(record: dict[str, Any], log: RunLog, board: TensorBoardLog) -> None:
        """One record to ``metrics.jsonl`` and (with ``train.tensorboard``) to TensorBoard."""
        log.write(record)
        board.write(record)

    def _tensorboard(self) -> TensorBoardLog:
        """The run's TensorBoard log in ``<run>/tb`` (``train.tensorboard``; main process), from this iteration."""
        enabled = self.config.train.tensorboard and self.env.is_main
        names, palette = self.classes.classes, self.classes.palette
        return TensorBoardLog(self.run_dir / TENSORBOARD, names, palette, enabled=enabled, start=self.iteration)

    def evaluate(self) -> dict[str, Any]:
        """mIoU and friends on the validation split, computed across all processes."""
        return evaluate(
            self.network,
            self.val_set,
            num_classes=self.config.model.num_classes,
            env=self.env,
            workers=self.config.data.num_workers,
        )

    def fit(
        self,
        *,
        resume: bool = False,
        replan: bool = False,
        progress: bool | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Train to ``total_steps``, evaluating every ``eval_every_epochs`` and at the end; returns final metrics.

        ``resume`` continues from ``last.pth`` (``replan``: on another number of processes, see :meth:`resume`);
        ``on_record`` (main process) sees every record written to the log, e.g. to draw live curves.
        """
        with self._only_writer():
            return self._fit(resume=resume, replan=replan, progress=progress, on_record=on_record)

    def _fit(
        self,
        *,
        resume: bool,
        replan: bool,
        progress: bool | None,
        on_record: Callable[[dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        log = RunLog(self.run_dir / LOG, enabled=self.env.is_main, on_record=on_record)
        self._start(log, resume=resume, replan=replan)
        train_config, steps_per_epoch = self.config.train, self.sampler.steps_per_epoch
        show = self.env.is_main and (
            sys.stderr.isatty() or "ipykernel" in sys.modules if progress is None else progress
        )
        metrics: dict[str, Any] = {}
        window = LossWindow(self.total_steps)
        start = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.iteration, disable=not show, desc=self.config.name, unit="it")
        with bar, self._tensorboard() as board:  # both closed on errors too: an error message starts its own line
            while self.iteration < self.total_steps:
                step_start, lr = time.perf_counter(), self.scheduler.get_last_lr()[0]  # the lr this step uses
                losses = self.step()
                window.add(losses, time.perf_counter() - step_start)
                self.empty_batches += losses["empty_batches"]
                bar.update(1)
                if "loss" in losses:
                    bar.set_postfix(loss=f"{losses['loss']:.4f}")
                if self.iteration % train_config.log_every == 0 or self.iteration == self.total_steps:
                    record = {"iter": self.iteration, "epoch": self.iteration / steps_per_epoch,
                              "lr": lr, **window.record(self.iteration, self.env.device)}  # fmt: skip
                    self._write(record, log, board)
                    if not show and self.env.is_main:
                        print(_log_line(record, self.total_steps), flush=True)
                epoch_done = self.iteration % steps_per_epoch == 0
                epoch = self.iteration // steps_per_epoch
                if self.iteration == self.total_steps or (epoch_done and epoch % train_config.eval_every_epochs == 0):
                    metrics = self.evaluate()
                    self.keep_if_best(metrics)
                    record = {"iter": self.iteration, "epoch": self.iteration / steps_per_epoch, **_scalars(metrics)}
                    self._write(record, log, board)
                    board.add_predictions(self.network, self.val_set, self.iteration)
                if self.iteration % train_config.checkpoint_every == 0 or self.iteration == self.total_steps:
                    self.save()
        if not metrics:  # resumed after the end: evaluate the finished model
            metrics = self.evaluate()
            self.keep_if_best(metrics)
        metrics = {
            **metrics,
            "iterations": self.iteration,
            "empty_batches": self.empty_batches,
            "best": {**(self.best or {}), "checkpoint": BEST_CHECKPOINT},
            "train_seconds_this_session": time.perf_counter() - start,
        }
        if self.env.is_main:
            atomic_write_json(self.run_dir / FINAL_METRICS, metrics)
        return metrics


def _log_line(record: dict[str, Any], total_steps: int) -> str:
    """One printed line per log record: window means, lr, speed, time left and any all-ignore micro-batches."""
    losses = (
        f"loss {record['loss']:.4f} (cls {record['loss_cls']:.4f} aux {record['loss_aux']:.4f})"
        if "loss" in record
        else "no labelled pixel in the window"
    )
    empty = f" ({record['empty_batches']} micro-batches without labels)" if record.get("empty_batches") else ""
    return (
        f"iter {record['iter']}/{total_steps} {losses} lr {record['lr']:.6f} {record['seconds_per_iter']:.2f} s/it "
        f"eta {record['eta_seconds'] / 60:.0f} min{empty}"
    )


def _backbone_start(config: Config) -> str:
    """What the backbone starts from, as the run log says it."""
    weights, init = config.model.backbone_weights, config.model.init_checkpoint
    if init is not None:
        return f"{config.name}: the model starts from what fits of model.init_from={init} (the next line says what)"
    if weights is None:
        return f"{config.name}: the backbone starts from random weights (model.pretrained=none)"
    return f"{config.name}: the backbone starts from the ImageNet weights {weights}"


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in metrics.items()
        if isinstance(value, int | float | list) and key != "confusion_matrix"
    }


def train(
    config: Config,
    data_root: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    replan: bool = False,
    device: str | None = None,
    timeout: datetime.timedelta = distributed.TIMEOUT,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` in this process (and its ``torchrun`` peers); returns the final validation metrics.

    Writes ``run_dir/{last.pth, best.pth, metrics.jsonl, metrics.json, config.json}`` (and ``init_from.json`` when
    fine-tuning); ``resume`` and ``replan`` as :meth:`Trainer.fit` takes them; ``timeout``: how long a collective
    waits for the other processes; ``on_record`` sees each log record.
    """
    env = distributed.setup(device, timeout)
    try:
        return Trainer(config, data_root, run_dir, env).fit(resume=resume, replan=replan, on_record=on_record)
    finally:
        distributed.teardown()
