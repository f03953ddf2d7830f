"""One code path for one process and many: ``torchrun`` sets the environment, this module reads it.

Run ``torchrun --nproc-per-node=8 -m deeplab train ...`` for 8 GPUs; add ``--nnodes``, ``--node-rank`` and
``--rdzv-endpoint`` for several machines. Without ``torchrun`` everything runs in this one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deeplab.engine.allocator import keep_freed_memory


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank among ``world_size`` processes and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Distributed:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPUs) and pick this process's device.

    ``device`` is ``"cpu"``, ``"cuda"`` or ``None`` for a GPU when there is one. A CPU process keeps freed memory
    for reuse (:mod:`deeplab.engine.allocator`).
    """
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
    else:
        keep_freed_memory()  # glibc reuses freed activations instead of mapping fresh pages every step
    where = torch.device(kind, local_rank) if kind == "cuda" else torch.device(kind)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if kind == "cuda" else "gloo", device_id=where if kind == "cuda" else None
        )
    return Distributed(rank, world_size, where)


def teardown() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: object) -> list[object]:
    """``obj`` from every process, in rank order (``[obj]`` alone without a process group)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def sum_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all processes (in place; a no-op without a process group)."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor
