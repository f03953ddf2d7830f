"""Training logs side by side: our ``metrics.jsonl`` and the reference's released ``.log`` files, as the same rows.

Both trainers log *window means*: every few iterations, the mean of each loss over the iterations since the last
line. A row here (:class:`LogRecord`) is one such line: the global optimizer step it was written at (counted from
1: the first step is iteration 1), the learning rate, the total loss and, where the log has them, its two parts:
``loss_cls`` (cross-entropy of the decoder logits) and ``loss_aux`` (that of the auxiliary FCN head, already
multiplied by its weight 0.4).

Our log (``deeplab.engine.train``) is JSON lines; training records carry ``loss`` (the total), evaluation
records do not and are skipped::

    {"iter": 50, "epoch": 0.0756, "lr": 0.00998, "loss": 1.23, "loss_cls": 0.9, "loss_aux": 0.33, ...}

The reference (GitHub SegmentationBLWX/sssegmentation) logs every 50 iterations on rank 0, means over those 50
iterations and over all GPUs (each loss is all-reduced before it is stored), in one of two formats. Both start
with a timestamp and level; everything else its log holds (the config dump, "Start epoch 3...", evaluation
results, warnings) is neither and is ignored.

**The 2020 trainer** (``ssseg/train.py`` and ``ssseg/modules/utils/logger.py`` of Nov 2020, through Python's
``logging`` with ``'%(asctime)s %(levelname)-8s %(message)s'``) writes two lines per record, the losses on the
second one, which starts with a tab, in the order of the config's ``LOSSES_CFG`` and then ``total``, each
``'%s %.4f, '``::

    2020-11-22 14:03:27 INFO     [EPOCH]: 2/60, [BATCH]: 39/661, [LEARNING_RATE]: 0.00997731, [DATASET]: voc
        [LOSS]: loss_aux 0.5213, loss_cls 1.1022, total 1.6235,

Epochs and batches are both counted from 1 there (``for epoch in range(start_epoch, end_epoch + 1)`` with
``start_epoch = 1``; the batch printed is ``batch_idx + 1``), so epoch ``e``, batch ``b`` of ``n`` is the global
step ``(e - 1) * n + b`` (the line above: 661 + 39 = 700). The 2022 versions of that trainer wrote the same
pairs with ``[Epoch]``/``[Batch]`` and extra fields (``[Segmentor]``), which are read the same way.

**The 1.x trainer** (since Oct 2023: ``ssseg/train.py`` with ``TrainingLoggingManager.getlogdict`` in
``ssseg/modules/utils/logger.py``) writes one Python dict (its ``repr``) per line after ``'<time> <LEVEL>  '``,
with the global step ``cur_iter`` (incremented by ``scheduler.step()`` before the line is written, so also from
1), ``learning_rate`` and the loss means under their config names plus ``total`` (``loss_total`` after Nov 2023)::

    2023-10-30 09:12:45 INFO  {'cur_epoch': 2, 'max_epochs': 60, 'cur_iter': 700, 'max_iters': 39660,
    'cur_iter_in_cur_epoch': 39, 'max_iters_in_cur_epoch': 661, 'segmentor': 'Deeplabv3Plus', 'backbone':
    'resnet50conv3x3stem', 'dataset': 'VOCDataset', 'learning_rate': 0.00997731, 'loss_aux': 0.5213,
    'loss_cls': 1.1022, 'loss_total': 1.6235}

(one line in the file). The short-lived dicts of mid-2023 with only ``'epoch'`` and ``'batch'`` do not say how
many batches an epoch has, so their steps cannot be known; they are not read.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal


class LogError(ValueError):
    """A training log that cannot be read, or two logs that cannot be compared."""


@dataclasses.dataclass(frozen=True)
class LogRecord:
    """One logged window of training: the step it ends at and the mean losses over it (``None``: not logged)."""

    iteration: int
    lr: float
    total: float
    loss_cls: float | None = None
    loss_aux: float | None = None


LOSS_FIELDS = ("total", "loss_cls", "loss_aux")

_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+\s+")  # '2020-11-22 14:03:27 INFO     '
_FIELD = re.compile(r"\[(\w+)\]: (.*?)(?=, \[|,?\s*$)")  # '[EPOCH]: 2/60' -> ('EPOCH', '2/60')
_LOSS = re.compile(r"(\w+) (\S+?),")  # 'loss_cls 1.1022,' -> ('loss_cls', '1.1022')


def read_reference_log(path: str | Path) -> list[LogRecord]:
    """The training records of a reference ``.log`` file (either format), one per logged iteration, in order."""
    rows = list(_reference_records(_lines(path), path))
    if not rows:
        raise LogError(
            f"{path}: no training line of the reference's logs found (neither '[EPOCH]: e/E, [BATCH]: b/n, ...' "
            "followed by '[LOSS]: ...', nor a dict with 'cur_iter'): pass a training log of sssegmentation"
        )
    return _by_iteration(rows)


def read_our_log(path: str | Path) -> list[LogRecord]:
    """The training records (those with a ``loss``) of one of our ``metrics.jsonl`` files, in order."""
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise LogError(f"{path}, line {number}: not JSON: pass a run's metrics.jsonl") from None
        if isinstance(record, dict) and "loss" in record:
            rows.append(
                LogRecord(record["iter"], record["lr"], record["loss"], record.get("loss_cls"), record.get("loss_aux"))
            )
    if not rows:
        raise LogError(f"{path}: no training record (a line with 'loss') found: pass a run's metrics.jsonl")
    return _by_iteration(rows)


def _lines(path: str | Path) -> list[str]:
    if not Path(path).is_file():
        raise LogError(f"{path}: no such file")
    return Path(path).read_text(errors="replace").splitlines()


def _by_iteration(rows: Iterable[LogRecord]) -> list[LogRecord]:
    """One row per iteration, sorted; where a resumed run logged an iteration again, its later line wins."""
    return sorted({row.iteration: row for row in rows}.values(), key=lambda row: row.iteration)


def _reference_records(lines: Iterable[str], path: str | Path) -> Iterator[LogRecord]:
    header: dict[str, str] | None = None  # the fields of a 2020 line, waiting for the '[LOSS]' line below it
    for number, line in enumerate(lines, start=1):
        message = _PREFIX.sub("", line.strip(), count=1)
        try:
            if header is not None and message.startswith("[LOSS]:"):
                yield _from_2020_lines(header, message)
            elif message.startswith("{") and (row := _from_dict_line(message)) is not None:
                yield row
        except (KeyError, ValueError) as error:  # a line cut short (a killed job) or edited
            problem = f"without {error}" if isinstance(error, KeyError) else f"with a value that is no number ({error})"
            raise LogError(
                f"{path}, line {number}: a training record {problem}: cut short or edited? delete that line to "
                "compare the lines before it"
            ) from None
        fields = {key.upper(): value for key, value in _FIELD.findall(message)}
        header = fields if {"EPOCH", "BATCH", "LEARNING_RATE"} <= fields.keys() else None


def _from_2020_lines(header: dict[str, str], loss_line: str) -> LogRecord:
    """The record of ``[EPOCH]: e/E, [BATCH]: b/n, [LEARNING_RATE]: lr, ...`` and ``[LOSS]: name value, ...``."""
    epoch, (batch, batches_per_epoch) = int(header["EPOCH"].split("/")[0]), map(int, header["BATCH"].split("/"))
    losses = {name: float(value) for name, value in _LOSS.findall(loss_line + ",")}
    return LogRecord(
        (epoch - 1) * batches_per_epoch + batch,  # both counted from 1
        float(header["LEARNING_RATE"]),
        losses["total"],
        losses.get("loss_cls"),
        losses.get("loss_aux"),
    )


def _from_dict_line(message: str) -> LogRecord | None:
    """The record of a 1.x line; ``None`` for other dicts (the config, evaluation results)."""
    try:
        record: Any = ast.literal_eval(message)
    except (ValueError, SyntaxError):  # not a plain literal, e.g. a config holding classes or numpy scalars
        return None
    if not isinstance(record, dict) or "cur_iter" not in record:
        return None
    total = record.get("loss_total", record.get("total"))
    if total is None:
        return None
    return LogRecord(record["cur_iter"], record["learning_rate"], total, record.get("loss_cls"), record.get("loss_aux"))


def nearest(rows: Sequence[LogRecord], iteration: int) -> LogRecord:
    """The row of ``rows`` (sorted by iteration) logged closest to ``iteration``; the earlier one on a tie."""
    iterations = [row.iteration for row in rows]
    index = bisect.bisect_left(iterations, iteration)
    candidates = rows[max(index - 1, 0) : index + 1]
    return min(candidates, key=lambda row: abs(row.iteration - iteration))


def losses_at(
    ours: Sequence[LogRecord], reference: Sequence[LogRecord], iterations: Iterable[int]
) -> list[tuple[LogRecord, LogRecord]]:
    """For each of ``iterations``, the rows of ``ours`` and of ``reference`` logged nearest to it."""
    return [(nearest(ours, iteration), nearest(reference, iteration)) for iteration in iterations]


def common_range(ours: Sequence[LogRecord], reference: Sequence[LogRecord]) -> tuple[int, int]:
    """The first and last iteration both logs cover; :class:`LogError` if they do not overlap."""
    first, last = max(ours[0].iteration, reference[0].iteration), min(ours[-1].iteration, reference[-1].iteration)
    if first > last:
        raise LogError(
            f"the logs share no iterations: ours covers {ours[0].iteration}-{ours[-1].iteration}, the reference "
            f"{reference[0].iteration}-{reference[-1].iteration}: train further or pass the matching reference log"
        )
    return first, last


def spread(first: int, last: int, points: int, spacing: Literal["log", "linear"] = "log") -> list[int]:
    """``points`` iterations from ``first`` to ``last`` (both included), evenly or log-uniformly spaced."""
    if points < 2 or first == last:
        return [last]
    if spacing == "log":
        steps = [math.log(first) + k * (math.log(last) - math.log(first)) / (points - 1) for k in range(points)]
        return sorted({round(math.exp(step)) for step in steps})
    return sorted({round(first + k * (last - first) / (points - 1)) for k in range(points)})


def comparison_table(
    ours: Sequence[LogRecord],
    reference: Sequence[LogRecord],
    *,
    points: int = 10,
    spacing: Literal["log", "linear"] = "log",
) -> str:
    """A markdown table of both runs' window-mean losses at about ``points`` iterations over their common range.

    Each row is at an iteration the reference logged (the one nearest to each of the :func:`spread` points);
    ours is taken at its nearest logged iteration, shown in brackets when it is not the same one. ``–``: a loss
    that log does not have.
    """
    iterations = dict.fromkeys(
        nearest(reference, it).iteration for it in spread(*common_range(ours, reference), points, spacing)
    )
    lines = [
        "| iteration | ours total | reference total | ours loss_cls | reference loss_cls "
        "| ours loss_aux | reference loss_aux |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for our_row, reference_row in losses_at(ours, reference, iterations):
        at = f"{reference_row.iteration}" + (
            f" (ours {our_row.iteration})" if our_row.iteration != reference_row.iteration else ""
        )
        cells = [_number(getattr(row, field)) for field in LOSS_FIELDS for row in (our_row, reference_row)]
        lines.append(f"| {at} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
