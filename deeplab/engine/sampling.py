"""Which images each process trains on at each step, reproducible across restarts and world sizes.

Every epoch shuffles the dataset with a generator seeded by ``seed + epoch`` and, as ``DistributedSampler`` does,
pads the permutation with its own first images to a multiple of ``world_size`` (``ceil(N / world_size)`` images
per process). Step ``s`` takes the ``G = world_size * accumulation * batch_per_process`` images
``permutation[s*G:(s+1)*G]`` and splits them into consecutive micro-batches: micro-batch ``j`` of rank ``r`` is
number ``j * world_size + r``; a final partial step is dropped, as the reference's ``drop_last`` DataLoader drops
its last partial batch. So an epoch has ``ceil(N / world_size) // (accumulation * batch_per_process)`` steps, the
reference's count: on 8 processes VOC trainaug 661, ADE20k 1263, Cityscapes 372 (2975 images padded to 2976).

2 processes x 1 micro-batch and 1 process x 2 accumulated micro-batches see the very same groups of images
(BatchNorm statistics included), as long as padding gives both the same number of steps, and a run resumed at
step ``s`` continues exactly where it stopped.

Random augmentation is seeded per ``(seed, epoch, index)`` too, inside a forked RNG: an image gets the same crop
and flip whichever process or DataLoader worker loads it, and the global RNG (dropout's) is left untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

Key = tuple[int, int]  # (epoch, dataset index)


class GlobalBatchSampler(Sampler[list[Key]]):
    """Yields this process's micro-batches of ``(epoch, index)`` keys; a final partial step is dropped."""

    def __init__(
        self,
        dataset_size: int,
        *,
        batch_per_process: int,
        accumulation: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        self.global_batch = batch_per_process * accumulation * world_size
        self.dataset_size = dataset_size
        self.batch_per_process, self.accumulation = batch_per_process, accumulation
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch, self.start_step = 0, 0
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the dataset has {dataset_size} images, fewer than one global batch of {self.global_batch}"
            )

    @property
    def epoch_size(self) -> int:
        """Images per epoch: the dataset padded to a multiple of ``world_size``, as ``DistributedSampler`` pads it."""
        return math.ceil(self.dataset_size / self.world_size) * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.epoch_size // self.global_batch

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Shuffle for ``epoch`` and skip its first ``start_step`` optimizer steps (when resuming)."""
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self) -> Iterator[list[Key]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(self.dataset_size, generator=generator).tolist()
        permutation += permutation[: self.epoch_size - self.dataset_size]
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.accumulation):
                start = step * self.global_batch + (micro * self.world_size + self.rank) * self.batch_per_process
                yield [(self.epoch, index) for index in permutation[start : start + self.batch_per_process]]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulation


class SeededAugmentation(Dataset):
    """Applies ``transforms`` to ``dataset[index]`` with torch's RNG seeded by ``(seed, epoch, index)``.

    Indexed by the ``(epoch, index)`` keys of ``GlobalBatchSampler``; ``transforms(sample) -> sample``.
    """

    def __init__(self, dataset: Dataset, transforms: Callable[[Any], Any], seed: int = 0) -> None:
        self.dataset, self.transforms, self.seed = dataset, transforms, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key) -> Any:
        epoch, index = key
        sample = self.dataset[index]
        seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transforms(sample)
