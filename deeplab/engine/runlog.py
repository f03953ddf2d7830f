"""What a run writes besides its checkpoints: the log of records (``metrics.jsonl``), the final metrics
(``metrics.json``), both as strict JSON and written so that a crash never leaves half a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

LOG = "metrics.jsonl"
FINAL_METRICS = "metrics.json"


class RunLog:
    """Metrics as JSON lines, one record per line, appended as training goes."""

    def __init__(
        self, path: Path, *, enabled: bool = True, on_record: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.path, self.enabled, self.on_record = path, enabled, on_record

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            record = jsonable(record)
            with self.path.open("a") as file:
                file.write(json.dumps(record, allow_nan=False) + "\n")
            if self.on_record:
                self.on_record(record)

    def clear(self) -> None:
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def truncate_after(self, iteration: int) -> None:
        """Drop records written after ``iteration`` (by a run that crashed before its next checkpoint)."""
        if self.enabled and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["iter"] <= iteration]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def jsonable(value: Any) -> Any:
    """``value`` with tensors as lists and NaN (the IoU of a class absent from data and prediction) as ``None``."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON (see ``jsonable``) atomically."""
    atomic_write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
