"""Window means for the training log: the reference logs each loss averaged over the last 50 iterations.

Each step's losses are already averaged over the processes (``Trainer.step``), so a window mean is the mean over
iterations and processes, the number the reference's released ``.log`` files hold. Counts (``empty_batches``, the
micro-batches with no labelled pixel) are summed over the window instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

COUNTS = ("empty_batches",)  # summed over the window, not averaged


class LossWindow:
    """Sums of each step's losses and seconds since the last :meth:`record`, for a run of ``total_steps`` steps."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.sums: dict[str, float] = {}
        self.steps_with: dict[str, int] = {}  # per name: the steps that had it (a step of empty batches has no loss)
        self.seconds, self.count = 0.0, 0

    def add(self, losses: Mapping[str, float], seconds: float) -> None:
        """Count one optimizer step: its losses (and counts) and the wall time it took."""
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0) + value
            self.steps_with[name] = self.steps_with.get(name, 0) + 1
        self.seconds += seconds
        self.count += 1

    def record(self, iteration: int, device: torch.device) -> dict[str, float]:
        """The window means, ``seconds_per_iter``, ``eta_seconds`` to ``total_steps`` after ``iteration`` and, on a
        GPU, ``max_memory_mb`` (peak allocated since the start); then the window starts afresh."""
        if not self.count:
            raise ValueError("no step was added to the window since the last record")
        seconds = self.seconds / self.count
        record = {name: total if name in COUNTS else total / self.steps_with[name] for name, total in self.sums.items()}
        record |= {"seconds_per_iter": seconds, "eta_seconds": seconds * (self.total_steps - iteration)}
        if device.type == "cuda":
            record["max_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        self.sums, self.steps_with, self.seconds, self.count = {}, {}, 0.0, 0
        return record
