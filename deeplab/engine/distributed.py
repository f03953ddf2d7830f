"""One code path for one process and many: ``torchrun`` sets the environment, this module reads it.

Run ``torchrun --standalone --nproc-per-node=8 -m deeplab train ...`` for 8 GPUs (``--standalone``: on a free port,
so that several runs can share a machine); for several machines, ``--nnodes``, ``--node-rank`` and
``--rdzv-endpoint`` instead, with the run folder, the data and ``weights/`` on a filesystem they all share. Without
``torchrun`` everything runs in this one process.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deeplab.choices import DIST_TIMEOUT_MINUTES
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


TIMEOUT = datetime.timedelta(minutes=DIST_TIMEOUT_MINUTES)  # how long a collective waits for the other processes


def setup(device: str | None = None, timeout: datetime.timedelta = TIMEOUT) -> Distributed:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPUs) and pick this process's device.

    ``device`` is ``"cpu"``, ``"cuda"`` or ``None`` for a GPU when there is one; ``timeout`` is how long a
    collective waits for the other processes. A CPU process keeps freed memory for reuse
    (:mod:`deeplab.engine.allocator`).
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
            backend="nccl" if kind == "cuda" else "gloo", device_id=where if kind == "cuda" else None, timeout=timeout
        )
    return Distributed(rank, world_size, where)


def torchrun_command(nproc_per_node: int, arguments: Sequence[str]) -> list[str]:
    """The command that runs ``python -m deeplab ARGUMENTS`` in ``nproc_per_node`` processes on this machine.

    ``torch.distributed.run`` is the module behind the ``torchrun`` script (run with this interpreter, so that its
    environment is the caller's); ``--standalone`` picks a free port, so that two runs can share the machine.
    """
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}"]
    return [*launcher, "-m", "deeplab", *arguments]


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
