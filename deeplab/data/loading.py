"""Reading samples in ``DataLoader`` worker processes without losing the one-line error of a bad file, and how many
such processes a machine takes (:func:`worker_count`).

A ``DatasetError`` raised in a worker reaches the main process re-raised with the worker's traceback in its
message. :class:`CarryErrors` returns the error as the sample instead, and :func:`raise_carried` raises it, as it
was, in the process that iterates the loader.
"""

from __future__ import annotations

import os
from typing import Any

from torch.utils.data import Dataset

from deeplab.data.datasets import DatasetError


class CarryErrors(Dataset):
    """``dataset`` with each ``DatasetError`` of ``dataset[i]`` returned as ``{"error": error}``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except DatasetError as error:
            return {"error": error}


def raise_carried(sample: Any) -> Any:
    """``sample``, unless it carries a worker's error: then that error is raised."""
    if isinstance(sample, dict) and "error" in sample:
        raise sample["error"]
    return sample


def worker_count(requested: int) -> int:
    """``requested`` DataLoader worker processes, at most one per CPU core this process may run on (the most PyTorch
    suggests: more only compete for the cores, and it warns)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(requested, cores)
